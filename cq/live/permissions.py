"""Who may watch a task live: by default, active staff users who may view
tasks in the admin; CQ_LIVE_PERMISSION names the app's own rule instead,
e.g. "the user who started it"."""

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
