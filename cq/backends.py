"""Django's task API on cq: a backend for `TASKS`.

    TASKS = {
        "default": {
            "BACKEND": "cq.backends.CQBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"retries": 3, "retry_delay": 10},
        },
    }

A function decorated with Django's `@task` becomes a cq task named by its
module path: the backend registers it in cq's registry when Django validates
it (at decoration, so in every process that imports its module: the worker
imports each app's `tasks` module). `.enqueue()` stores a cq row, QUEUED in
the caller's transaction and rung once it commits, marked with the backend's
alias (`Task.backend`); `runworker cq-tasks --queues ...` runs it like any cq
task: claims, retries, recovery, admin, `cq_status`, `wait()` and revoke.

OPTIONS hold the cq options of the tasks decorated for this backend:
`retries`, `retry_delay`, `atomic` (default True for a plain function; an
`async def` task is never atomic), `at_least_once`, `result_ttl`.
"""

import logging
import sys
from importlib import import_module

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db import transaction

from . import doorbell, registry, taskresults
from .decorators import TaskFunction
from .djangotasks import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    TaskContext,
    normalize_json,
    task_backends,
)
from .enqueue import delay
from .exceptions import CQError, UnknownTaskError
from .queues import check_queue

logger = logging.getLogger(__name__)

# The OPTIONS a CQBackend understands: options of cq's @task.
TASK_OPTIONS = ("retries", "retry_delay", "atomic", "at_least_once", "result_ttl")


class CQBackend(BaseTaskBackend):
    """Runs Django tasks on cq's workers (`runworker cq-tasks`)."""

    supports_defer = True  # run_after: the row waits in the table
    supports_async_task = True  # `async def` tasks run on the worker (cq.coroutines)
    supports_get_result = True  # any process reads the row
    supports_priority = True  # cq's priorities, -100..100, higher first

    def __init__(self, alias, params):
        super().__init__(alias, params)
        for queue in self.queues:
            try:
                check_queue(queue)
            except CQError as exc:
                raise InvalidTaskBackend(f"TASKS[{alias!r}]['QUEUES']: {exc}") from None
        unknown = set(self.options) - set(TASK_OPTIONS)
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown option(s) {', '.join(sorted(unknown))}; "
                f"cq.backends.CQBackend takes {', '.join(TASK_OPTIONS)}"
            )
        try:
            # The values too, now, with @task's own checks (cq.options): a bad
            # one would otherwise surface at the first decoration, far away.
            TaskFunction(_no_op, name=f"TASKS[{alias!r}]", **self.options)
        except CQError as exc:
            raise InvalidTaskBackend(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
        taskresults.connect()
        registry.add_finder(import_module_of)

    def validate_task(self, task):
        super().validate_task(task)
        self._register(task)

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        # Django's rule: arguments that survive a JSON round trip; anything
        # else raises here, with Django's own error, and nothing is written.
        args, kwargs = normalize_json(args), normalize_json(kwargs)
        fields = {
            "queue": task.queue_name,
            "priority": task.priority,
            "run_after": task.run_after,
            "backend": self.alias,
        }
        if doorbell.inline():
            # CQ_SERIAL: the task runs when it is rung; Django says it was
            # enqueued before it starts.
            row = delay(task.module_path, args, kwargs, submit=False, **fields)
            taskresults.send_enqueued(self, taskresults.result_of(row, task))
            row.submit()
            return taskresults.result_of(row, task)  # the outcome: it ran
        row = delay(task.module_path, args, kwargs, **fields)
        result = taskresults.result_of(row, task)
        transaction.on_commit(lambda: taskresults.send_enqueued(self, result))
        return result

    def get_result(self, result_id):
        return taskresults.result_of(taskresults.get(self.alias, result_id))

    def _register(self, task):
        """Make the task a cq task named by its module path, run by an adapter
        that calls it as Django does; the first registration stands."""
        try:
            existing = registry.get(task.module_path)
        except UnknownTaskError:
            existing = None
        known = getattr(existing, "django_task", None)
        if known is not None and known.func is task.func:
            return
        options = {name: self.options[name] for name in TASK_OPTIONS if name in self.options}
        coroutine = iscoroutinefunction(task.func)
        if coroutine and options.get("atomic"):
            raise InvalidTask(
                f"{task.module_path} is an async def task: OPTIONS['atomic'] of backend "
                f"{self.alias!r} must not be True (see docs/django-tasks.md)"
            )
        if coroutine:
            options["atomic"] = False
        try:
            task_function = TaskFunction(_adapter(task), name=task.module_path, **options)
        except CQError as exc:
            raise InvalidTask(f"TASKS[{self.alias!r}]['OPTIONS']: {exc}") from None
        task_function.django_task = task
        registry.register(task_function)


def _no_op(cqt):
    """The function a backend's OPTIONS are checked with (a plain one: atomic may be True)."""


def _adapter(task):
    """The function cq runs for a Django task: Django's calling convention (a
    TaskContext first when `takes_context`, no cqt) and its rule for the
    return value (a JSON round trip; anything else fails the task)."""
    func = task.func

    def start(cqt):
        backend = task_backends[cqt.task.backend or task.backend]
        taskresults.send_started(backend, cqt.task, task)
        if task.takes_context:
            return (TaskContext(task_result=taskresults.result_of(cqt.task, task)),)
        return ()

    if iscoroutinefunction(func):

        async def run_coroutine(cqt, *args, **kwargs):
            # In the slot thread (thread-sensitive): receivers may use the ORM.
            context = await sync_to_async(start)(cqt)
            return normalize_json(await func(*context, *args, **kwargs))

        return run_coroutine

    def run(cqt, *args, **kwargs):
        return normalize_json(func(*start(cqt), *args, **kwargs))

    return run


def import_module_of(name):
    """Import the module of the task `name`, a Django task's module path, if it
    is not imported yet: a worker then knows the Django tasks of any module,
    not only of the `tasks` modules cq's app imports. Nothing is called by its
    path: the module's own decorations register what it defines."""
    module = name.rpartition(".")[0]
    if not module or module in sys.modules:
        return False
    try:
        import_module(module)
    except Exception as exc:  # noqa: BLE001 - an unknown task fails as one, with its name
        logger.warning("task module not imported name=%s error=%r", name, exc)
        return False
    return True
