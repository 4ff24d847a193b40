"""Schedules of repeating tasks: validation, next runs, and `schedule_task`.

Plain functions of field values, not model methods and with no import of
cq.models: `schedule_task` works as well on the historical model a data
migration gets from `apps.get_model()` as on `RepeatingTask`, and the model
itself uses them to validate and to compute `next_run`.
"""

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.utils import timezone

from . import registry
from .cron import expand, get_zone, next_after
from .exceptions import CQError, InvalidTaskOption
from .options import check_result_ttl
from .storable import check_json

if TYPE_CHECKING:
    from django.db.models import Model

    from .decorators import TaskRef

    M = TypeVar("M", bound=Model)

# Fields `schedule_task()` accepts besides the crontab, the task and its arguments.
OPTIONS = {"timezone", "coalesce", "enabled", "result_ttl"}


def check_func_name(fn_or_name):
    """The registered name of `fn_or_name`; UnknownTaskError for anything that
    is not a @task (a repeating task never runs an arbitrary dotted path)."""
    return registry.resolve(fn_or_name).name


def check_arguments(args, kwargs):
    """`args` as a list and `kwargs` as a dict, both storable as JSON."""
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple, e.g. [7], got {args!r}")
    if not isinstance(kwargs, dict):
        raise TypeError(f'kwargs must be a dict, e.g. {{"days": 7}}, got {kwargs!r}')
    check_json(list(args), "arguments")
    check_json(kwargs, "keyword arguments")
    return list(args), dict(kwargs)


def check_signature(func_name, args, kwargs):
    """TypeError unless the task `func_name` accepts `args` and `kwargs`: a
    typo in a keyword would otherwise fail every run, in the worker."""
    problem = signature_problem(func_name, args, kwargs)
    if problem:
        raise TypeError(problem[1])


def signature_problem(func_name, args, kwargs):
    """(field, message) when the task's function does not accept these
    arguments, field being "args" or "kwargs", the one to fix; else None."""
    fn = registry.get(func_name).fn
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a callable without one (a builtin): nothing to check
        return None
    problem = binding_problem(signature, args, kwargs)
    if problem is None:
        return None
    field, reason = problem
    return field, (
        f"{func_name}{signature} does not accept args={list(args)!r} "
        f"kwargs={dict(kwargs)!r}: {reason}"
    )


def binding_problem(signature, args, kwargs):
    """(field, reason) when a function of `signature` cannot take this call
    after `cqt`, as the worker makes it; else None."""
    try:
        signature.bind_partial(None, *args)
    except TypeError as exc:
        return "args", str(exc)
    # A typo'd keyword first: binding would only say a required one is missing.
    unexpected = _unexpected_keyword(signature, kwargs)
    if unexpected:
        return "kwargs", unexpected
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        # A missing argument may be given either way; blame what was given.
        return "kwargs" if kwargs else "args", str(exc)
    return None


def _unexpected_keyword(signature, kwargs):
    params = signature.parameters.values()
    if any(param.kind is param.VAR_KEYWORD for param in params):
        return ""
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name in kwargs:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"got an unexpected keyword argument {name!r}{hint}"
    return ""


def validate(func_name, crontab, timezone_name, args, kwargs):
    """Field name -> error message for each invalid value; empty when all are
    valid. Empty names and crontabs are left to the fields' own blank check."""
    checks = {
        "func_name": lambda: func_name and check_func_name(func_name),
        "crontab": lambda: crontab and expand(crontab),
        "timezone": lambda: get_zone(timezone_name),
        "args": lambda: check_arguments(args, {}),
        "kwargs": lambda: check_arguments([], kwargs),
    }
    errors = {}
    for field, check in checks.items():
        try:
            check()
        except (CQError, TypeError, ValueError) as exc:
            errors[field] = str(exc)
    # Only arguments of the right shape, for a registered task, can be bound.
    bindable = func_name and not errors.keys() & {"func_name", "args", "kwargs"}
    problem = bindable and signature_problem(func_name, args, kwargs)
    if problem:
        field, message = problem
        errors[field] = message
    return errors


def next_run(crontab, timezone_name="", enabled=True, now=None):
    """When a schedule next fires after `now`: None for a disabled one."""
    if not enabled:
        return None
    return next_after(crontab, now or timezone.now(), get_zone(timezone_name))


def prepare(crontab, fn_or_name, args=(), kwargs=None, **options):
    """The checked field values of a new RepeatingTask, `next_run` included."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(
            f"unknown repeating task option(s) {', '.join(sorted(unknown))}; "
            f"the options are {', '.join(sorted(OPTIONS))}"
        )
    try:
        check_result_ttl(options.get("result_ttl"))
    except InvalidTaskOption as exc:
        # @task's rule (cq.options), raised as the TypeError that
        # schedule_task() has always raised for bad input.
        raise TypeError(str(exc)) from None
    func_name = check_func_name(fn_or_name)
    expand(crontab)
    crontab = " ".join(crontab.split())
    args, kwargs = check_arguments(args, {} if kwargs is None else kwargs)
    when = next_run(crontab, options.get("timezone", ""), options.get("enabled", True))
    check_signature(func_name, args, kwargs)
    return {
        **options,
        "func_name": func_name,
        "crontab": crontab,
        "args": args,
        "kwargs": kwargs,
        "next_run": when,
    }


def schedule_task(
    model: "type[M]",
    crontab: str,
    fn_or_name: "TaskRef",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> "M":
    """Create a repeating task that runs `fn_or_name` (a registered @task or its
    name) every time `crontab` matches, and return it.

    `model` is `RepeatingTask`, or `apps.get_model("cq", "RepeatingTask")` in a
    data migration: only `model.objects.create()` is used. `options`:
    `timezone`, `coalesce`, `enabled`, `result_ttl`. Raises UnknownTaskError,
    InvalidSchedule, SerializationError or TypeError for bad input (TypeError
    too for arguments the task's function does not accept).
    """
    # django-stubs' Model declares no `objects`; every model here has it.
    fields = prepare(crontab, fn_or_name, args, kwargs, **options)
    return model.objects.create(**fields)  # type: ignore[attr-defined]
