"""Who may watch a task live: by default, active staff users who may view
tasks in the admin; CQ_LIVE_PERMISSION names the app's own rule instead,
e.g. "the user who started it"."""

from importlib import import_module
from types import SimpleNamespace

from django.conf import settings
from django.contrib import auth
from django.utils.module_loading import import_string

from ..conf import settings as cq_settings
from ..exceptions import ConfigurationError


def may_watch(user, task) -> bool:
    """Whether `user` may see `task`'s tree, its progress and its log lines."""
    return bool(rule()(user, task))


def staff_with_view_permission(user, task) -> bool:
    """The default rule: an active staff user with the `cq.view_task` permission."""
    return bool(
        user is not None and user.is_active and user.is_staff and user.has_perm("cq.view_task")
    )


def rule():
    """The function that decides (CQ_LIVE_PERMISSION, or the default rule)."""
    path = cq_settings.LIVE_PERMISSION
    if not path:
        return staff_with_view_permission
    try:
        return import_string(path)
    except ImportError as exc:
        raise ConfigurationError(
            f"CQ_LIVE_PERMISSION={path!r} does not name a function fn(user, task) -> bool: {exc}"
        ) from exc


def current_user(scope):
    """The user of a WebSocket connection as it is now, not as it was at the
    handshake (channels' AuthMiddleware reads it once): its session read
    again, so a logout shows as an anonymous user, and the user's row with
    it, so is_staff, is_active and permissions are as they stand now."""
    session = scope.get("session")
    key = getattr(session, "session_key", None) if session is not None else None
    if key is not None:
        store = import_module(settings.SESSION_ENGINE).SessionStore(key)
        # Django's own rule (the session's auth hash included: a changed
        # password logs the session out) on a copy of the session's data.
        return auth.get_user(SimpleNamespace(session=_SessionData(store.load())))
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return user
    from django.contrib.auth.models import AnonymousUser

    # Authenticated otherwise (a token middleware of the project's): the row.
    fresh = auth.get_user_model()._default_manager.filter(pk=user.pk).first()
    return fresh if fresh is not None else AnonymousUser()


class _SessionData(dict):
    """A session's data, read only: what auth.get_user would write back (a key
    cycled for a rotated secret, a flush) is the HTTP side's to do, with a
    response that can hand the browser its new cookie."""

    def cycle_key(self) -> None:
        pass

    def flush(self) -> None:
        self.clear()
