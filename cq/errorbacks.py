"""Errorbacks: what `cqt.errorback(fn, args, kwargs)` stores, and what runs it.

An errorback is a `@task` (stored by its registered name, run from the
registry like any task) or, as django-cq allowed, a plain module-level
function. A plain function is stored by its import path, and a row is data
anyone with database access can edit: so the path is signed with the
project's SECRET_KEY, together with the task's id, and a path whose
signature does not match (a row edited to name `os.system`, or an entry
copied from another task) is refused and logged, never imported. A lambda,
a nested function or a closure has no import path a worker could follow:
it is refused at `errorback()`, where the caller sees why.
"""

import inspect
import logging
import sys

from django.core import signing
from django.utils.module_loading import import_string

from . import registry
from .decorators import TaskFunction
from .exceptions import ErrorbackRefused, InvalidTaskOption, UnknownTaskError
from .storable import check_json

logger = logging.getLogger(__name__)

_SALT = "cq.errorback"


def entry(task, fn, args=(), kwargs=None):
    """The stored form of `fn` as an errorback of `task`; raises
    InvalidTaskOption when it could not be called or found by a worker."""
    kwargs = dict(kwargs or {})
    fn = _task_of(_by_path(fn) if isinstance(fn, str) else fn)
    if isinstance(fn, (TaskFunction, str)):
        errorback = registry.resolve(fn)
        _check_signature(errorback.name, errorback.fn, args, kwargs)
        stored = {"func_name": errorback.name, "args": list(args), "kwargs": kwargs}
    else:
        path = _import_path(fn)
        _check_signature(path, fn, args, kwargs)
        signature = _signer().signature(_signed_value(task, path))
        stored = {"function": path, "signature": signature, "args": list(args), "kwargs": kwargs}
    check_json(stored, "errorback arguments")
    return stored


def resolve(task, stored):
    """The function a stored errorback names; ErrorbackRefused if its
    signature does not match, UnknownTaskError for an unknown @task."""
    if "function" not in stored:
        return registry.get(stored.get("func_name")).fn
    path = stored["function"]
    signer = _signer()
    try:
        signer.unsign(f"{_signed_value(task, path)}{signer.sep}{stored.get('signature', '')}")
    except signing.BadSignature:
        logger.error("errorback refused, its stored reference is not signed task id=%s", task.pk)
        raise ErrorbackRefused(
            f"errorback {path!r} refused: its stored reference does not match its signature "
            "(edited in the database, or signed with another SECRET_KEY)"
        ) from None
    found = import_string(path)
    # Made a @task since it was stored: call its function, not a direct call.
    return found.fn if isinstance(found, TaskFunction) else found


def name(stored):
    """How a stored errorback is named in logs and in the failed task's error."""
    return stored.get("function") or stored.get("func_name")


def _by_path(name):
    """A registered task's name stays a name; django-cq also took the import
    path of a plain function: that function, checked like one passed in."""
    try:
        registry.get(name)
    except UnknownTaskError:
        try:
            return import_string(name)
        except ImportError:
            raise UnknownTaskError(
                f"no @task is registered as {name!r}, and no function can be imported by that path"
            ) from None
    return name


def _task_of(fn):
    """The @task whose function `fn` is (`errorback(alert.fn)`), else `fn`."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    found = getattr(module, getattr(fn, "__qualname__", ""), None)
    return found if isinstance(found, TaskFunction) and found.fn is fn else fn


def _import_path(fn):
    """`module.name` of a plain module-level function; InvalidTaskOption otherwise."""
    if not inspect.isfunction(fn):
        raise InvalidTaskOption(
            f"errorback takes a @task or a plain module-level function, not {fn!r}"
        )
    qualname = fn.__qualname__
    if fn.__name__ == "<lambda>" or "." in qualname or fn.__closure__:
        raise InvalidTaskOption(
            f"errorback {qualname} is a lambda, a nested function or a closure: a worker "
            "cannot import it; define it at module level (or make it a @task)"
        )
    path = f"{fn.__module__}.{qualname}"
    try:
        found = import_string(path)
    except ImportError:
        found = None
    if fn.__module__ == "__main__" or found is not fn:
        raise InvalidTaskOption(
            f"errorback {path} cannot be imported by that path; a worker would not find it"
        )
    return path


def _check_signature(label, fn, args, kwargs):
    """Refuse at registration an errorback that could not be called as
    `fn(failed_task, error, *args, **kwargs)`: in the worker, the call would
    fail only after the task did, with nobody watching."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a callable Python cannot describe: trust it
    try:
        signature.bind(None, "", *args, **kwargs)
    except TypeError as exc:
        raise InvalidTaskOption(
            f"errorback {label}{signature} cannot be called as "
            f"fn(failed_task, error, *{list(args)!r}, **{kwargs!r}): {exc}; "
            "an errorback takes the failed task and its error first, and no cqt"
        ) from None


def _signed_value(task, path):
    return f"{task.pk}:{path}"


def _signer():
    return signing.Signer(salt=_SALT)
