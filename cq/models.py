"""cq's tables. The row is the truth; a channel message only says "look at row X"."""

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from . import enqueue, errorbacks, transitions
from .completion import notify_parent, release_chained
from .enqueue import delay, delay_many  # noqa: F401 - also importable from here, as before
from .exceptions import DuplicateSubmitError, WaitTimeout
from .queues import DEFAULT_QUEUE
from .reruns import rerun
from .revoking import revoke_tree
from .schedules import next_run, schedule_task, validate  # noqa: F401 - schedule_task: django-cq's import path
from .storable import check_json
from .waiting import wait_for

if TYPE_CHECKING:
    from .decorators import TaskRef

logger = logging.getLogger(__name__)


class TaskQuerySet(models.QuerySet):
    def active(self):
        """Tasks that have not reached a final status."""
        return self.filter(status__in=Task.STATUS_ACTIVE)

    def done(self):
        return self.filter(status__in=Task.STATUS_DONE)

    def due(self, now):
        """QUEUED or RETRY rows whose `run_after` time has come."""
        return self.filter(status__in=(Task.STATUS_QUEUED, Task.STATUS_RETRY), run_after__lte=now)


class Task(models.Model):
    class Status(models.TextChoices):
        """Where a task is in its life. The stored values are django-cq's letters."""

        PENDING = "P", "Pending"  # created with submit=False; a chained task waits here
        RETRY = "Y", "Retry"  # an attempt failed; waits out its backoff, then QUEUED again
        QUEUED = "Q", "Queued"  # waits for a worker
        RUNNING = "R", "Running"  # claimed by a worker; its function runs
        FAILURE = "F", "Failure"  # raised, with no retry left
        SUCCESS = "S", "Success"  # returned; its subtasks, if any, all succeeded
        WAITING = "W", "Waiting"  # its function returned; its subtasks still run
        INCOMPLETE = "I", "Incomplete"  # returned, but a subtask failed or was revoked
        LOST = "L", "Lost"  # its worker died, or its outcome could not be recorded
        REVOKED = "E", "Revoked"  # revoked before it finished; it never runs again

    # django-cq's names for the statuses, kept for code written against it.
    STATUS_PENDING = Status.PENDING
    STATUS_RETRY = Status.RETRY
    STATUS_QUEUED = Status.QUEUED
    STATUS_RUNNING = Status.RUNNING
    STATUS_FAILURE = Status.FAILURE
    STATUS_SUCCESS = Status.SUCCESS
    STATUS_WAITING = Status.WAITING
    STATUS_INCOMPLETE = Status.INCOMPLETE
    STATUS_LOST = Status.LOST
    STATUS_REVOKED = Status.REVOKED
    STATUS_CHOICES = Status.choices
    STATUS_ERROR = frozenset({STATUS_FAILURE, STATUS_INCOMPLETE, STATUS_LOST})
    STATUS_DONE = STATUS_ERROR | {STATUS_SUCCESS, STATUS_REVOKED}
    STATUS_ACTIVE = frozenset(
        {STATUS_PENDING, STATUS_RETRY, STATUS_QUEUED, STATUS_RUNNING, STATUS_WAITING}
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    func_name = models.CharField(
        "function",
        max_length=255,
        help_text="Registered name of the @task, e.g. 'shop.tasks.send_receipt'.",
    )
    args = models.JSONField(
        default=list,
        encoder=DjangoJSONEncoder,
        help_text='Positional arguments after cqt, as JSON, e.g. [42, "a@b.c"].',
    )
    kwargs = models.JSONField(
        default=dict,
        encoder=DjangoJSONEncoder,
        help_text='Keyword arguments as JSON, e.g. {"retry": true}.',
    )
    status = models.CharField(
        max_length=1,
        choices=Status.choices,
        default=Status.PENDING,
        help_text="Where the task is in its life, e.g. Queued, Running, Success.",
    )
    result = models.JSONField(
        null=True,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text='The return value, as JSON, e.g. {"sent": 3}.',
    )
    error = models.TextField(
        blank=True, help_text="Why the task failed, e.g. 'ValueError: bad address'."
    )
    traceback = models.TextField(blank=True, help_text="Traceback of the failure, if any.")
    logs = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Log lines of the whole task tree, stored when the tree finishes.",
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="subtasks",
        db_index=False,
        help_text="The task that launched this one as a subtask and waits for it.",
    )
    root = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="descendants",
        db_index=False,
        help_text="Top-level task of this tree (empty for a top-level task); it keeps the logs.",
    )
    previous = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="next",
        db_index=False,
        help_text="The task this one is chained after; its result is this one's first argument.",
    )
    waits_for = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        help_text="A task this one returned: it finishes with that task's result.",
    )
    force_chain = models.BooleanField(
        default=False, help_text="Run this chained task even if the previous one failed."
    )
    errorbacks = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text='Tasks called on final failure, e.g. [{"func_name": "app.tasks.alert", '
        '"args": [], "kwargs": {}}].',
    )
    queue = models.CharField(
        max_length=64,
        default=DEFAULT_QUEUE,
        help_text="Only workers of this queue run it (runworker --queues), e.g. 'emails'.",
    )
    priority = models.SmallIntegerField(
        default=0,
        help_text="From -100 to 100; higher runs first, first come first served within one.",
    )
    time_limit = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds this call may run before it is stopped, e.g. 30 "
        "(empty: the task's own limit, or CQ_DEFAULT_TIME_LIMIT).",
    )
    retries = models.PositiveIntegerField(
        default=0, help_text="Failed attempts that were retried so far, e.g. 2."
    )
    run_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Not run before this time (countdown, retry backoff), e.g. 2026-01-01 03:00.",
    )
    submitted = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="When the task was created."
    )
    started = models.DateTimeField(null=True, blank=True, help_text="When a worker claimed it.")
    finished = models.DateTimeField(
        null=True, blank=True, help_text="When it reached a final status."
    )
    result_ttl = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds the row is kept after finishing, e.g. 86400 (empty: the default).",
    )
    result_expiry = models.DateTimeField(
        null=True,
        blank=True,
        help_text="After this time the clean-up task may delete the row.",
    )
    worker = models.CharField(
        max_length=255,
        blank=True,
        help_text="Worker that claimed it, e.g. 'web-1:4242:ab12cd'.",
    )
    backend = models.CharField(
        "Django task backend",
        max_length=64,
        blank=True,
        help_text="Alias in TASKS of the Django task backend that enqueued it through "
        "Django's task API (.enqueue()), e.g. 'default'; empty for cq's own API (.delay()).",
    )
    repeating_task = models.ForeignKey(
        "RepeatingTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
        help_text="The repeating task that launched this run, if any.",
    )
    progress = models.JSONField(
        null=True,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text='Latest progress the task reported, e.g. {"done": 3, "total": 10, '
        '"message": "page 3"}.',
    )
    attempts = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Earlier attempts that failed and were retried, oldest first, e.g. "
        '[{"started": "...", "ended": "...", "worker": "w1", "error": "ValueError: x"}].',
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retried_as",
        db_index=False,
        help_text="The task this one re-runs (Task.retry(), the admin's retry action).",
    )

    unique_key = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="While this task is active, no other task has this key (@task(unique=True)), "
        "e.g. 'shop.tasks.sync:user-42'.",
    )

    objects = TaskQuerySet.as_manager()

    class Meta:
        # At most one active task per unique key: the database decides among
        # concurrent callers (cq.uniqueness); a finished row leaves the index.
        constraints = [
            models.UniqueConstraint(  # the letters of STATUS_ACTIVE (a test checks it)
                fields=["unique_key"],
                name="cq_task_unique_key",
                condition=models.Q(status__in=["P", "Y", "Q", "R", "W"], unique_key__isnull=False),
            ),
        ]
        # Every status change rewrites a row's entry in each index it is in, so
        # indexes cover only the rows their queries look at: active tasks (a
        # small set however large the table grows), due times, tree links.
        indexes = [
            models.Index(  # the letters of STATUS_ACTIVE (a test checks it)
                fields=["status", "submitted"],
                name="cq_task_active",
                condition=models.Q(status__in=["P", "Y", "Q", "R", "W"]),
            ),
            # What a worker claims next: the due QUEUED rows of its queues,
            # highest priority first, then oldest (cq.statements.claim_batch).
            models.Index(
                fields=["queue", "-priority", "submitted"],
                name="cq_task_claim",
                condition=models.Q(status="Q", run_after__isnull=True),
            ),
            models.Index(
                fields=["run_after"],
                name="cq_task_run_after",
                condition=models.Q(run_after__isnull=False),
            ),
            models.Index(
                fields=["result_expiry"],
                name="cq_task_result_expiry",
                condition=models.Q(result_expiry__isnull=False),
            ),
            *(
                models.Index(
                    fields=[link],
                    name=f"cq_task_{link}",
                    condition=models.Q(**{f"{link}__isnull": False}),
                )
                for link in (
                    "parent",
                    "root",
                    "previous",
                    "waits_for",
                    "repeating_task",
                    "retry_of",
                )
            ),
            # The admin lists top-level tasks, newest first.
            models.Index(
                fields=["-submitted"],
                name="cq_task_top_newest",
                condition=models.Q(parent__isnull=True),
            ),
        ]

    def __str__(self):
        return f"{self.func_name} {self.pk} ({self.get_status_display()})"

    # ---- reading

    @property
    def signature(self) -> dict[str, Any]:
        return {"func_name": self.func_name, "args": self.args, "kwargs": self.kwargs}

    @property
    def is_done(self) -> bool:
        return self.status in self.STATUS_DONE

    @property
    def is_error(self) -> bool:
        return self.status in self.STATUS_ERROR

    @property
    def top_id(self) -> uuid.UUID:
        """Id of the top-level task of this tree, which collects its logs."""
        return self.root_id or self.pk

    def wait(self, timeout: float | None = None, raise_on_timeout: bool = False) -> Self:
        """Block until the task is done or `timeout` seconds pass; return it refreshed.

        On timeout the task is returned as last read, not done (django-cq's
        behaviour), unless `raise_on_timeout=True`: then WaitTimeout is raised."""
        latest = wait_for(self, timeout)
        if latest is None:
            raise Task.DoesNotExist(f"task {self.pk} was deleted while it was waited for")
        for field in self._meta.concrete_fields:
            setattr(self, field.attname, getattr(latest, field.attname))
        if raise_on_timeout and not self.is_done:
            raise WaitTimeout(
                f"task {self.pk} ({self.func_name}) not done after {timeout:g}s: "
                f"status {self.get_status_display()}"
            )
        return self

    # ---- the API a running task (`cqt`) offers

    def chain(
        self,
        fn: "TaskRef",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        force_chain: bool = False,
        **fields: Any,
    ) -> "Task":
        """Run `fn(result, *args, **kwargs)` after this task succeeds (or after
        it fails too, with `force_chain=True`, receiving None). Returns the new task."""
        with transaction.atomic():
            locked = Task.objects.select_for_update().only("status", "result").get(pk=self.pk)
            follower = delay(
                fn,
                args,
                kwargs,
                submit=False,
                previous=self,
                parent=self.parent,
                root_id=self.top_id,
                force_chain=force_chain,
                **fields,
            )
            if locked.is_done:
                release_chained(locked, [follower])
        if locked.is_done:
            follower.refresh_from_db()
        return follower

    def errorback(
        self,
        fn: "TaskRef | Callable[..., Any]",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Call `fn(failed_task, error, *args, **kwargs)` if this task finally
        fails: the errorback takes the failed task and its error text, no `cqt`.
        `fn` is a @task or a plain module-level function (cq.errorbacks)."""
        entry = errorbacks.entry(self, fn, args, kwargs)
        self.errorbacks = [*self.errorbacks, entry]
        Task.objects.filter(pk=self.pk).update(errorbacks=self.errorbacks)

    # ---- named state changes

    def submit(self, *pre_args: Any) -> Self:
        """Queue a PENDING task, with `pre_args` before its stored arguments."""
        args = [*pre_args, *self.args]
        check_json(args, "arguments")
        if not transitions.submit(self, args, timezone.now()):
            self.refresh_from_db(fields=["status"])
            if self.status == self.STATUS_REVOKED:
                return self
            raise DuplicateSubmitError(
                f"task {self.pk} was already submitted (status {self.get_status_display()})"
            )
        self.status, self.args = self.STATUS_QUEUED, args
        if self.run_after is None:
            enqueue.ring([self])
        return self

    def retry(self) -> "Task":
        """Run this failed, incomplete or lost task's call again: a new QUEUED
        task, linked back by `retry_of`; returns it (cq.reruns)."""
        return rerun(self)

    def revoke(self, terminate: bool = False) -> Self:
        """Mark this task, its subtasks and its chained tasks REVOKED: none of
        them will start. A task already running is told (`cqt.cancelled`,
        within a second of the commit); if it finishes anyway, its outcome is
        discarded (and an atomic task's writes are rolled back). With
        `terminate=True` it is stopped like a task past its time limit.

        Works inside the caller's transaction; the revoked rows stay locked
        until it commits. See `cq.revoking` for the lock order and
        `cq.cancelling` for running tasks."""
        with transaction.atomic():
            revoke_tree(self, terminate)
            self.refresh_from_db()
            notify_parent(self)
        return self


class WorkerHeartbeat(models.Model):
    """One row per live `runworker cq-tasks` process, refreshed while it lives."""

    name = models.CharField(
        max_length=255, primary_key=True, help_text="host:pid:random, e.g. 'web-1:4242:ab12cd'."
    )
    started = models.DateTimeField(default=timezone.now, help_text="When the worker started.")
    seen = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="Its last heartbeat."
    )
    concurrency = models.PositiveIntegerField(default=1, help_text="Tasks it runs at once, e.g. 4.")
    channel_down_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text=(
            "Since when its channel layer (Redis) has not answered it; empty while it answers."
        ),
    )

    class Meta:
        verbose_name = "worker heartbeat"

    def __str__(self):
        return self.name


class RepeatingTask(models.Model):
    """A task launched on a cron schedule, e.g. every night at 03:00."""

    func_name = models.CharField(
        "function",
        max_length=255,
        help_text="Registered @task to run, e.g. 'cq.tasks.clean_up'.",
    )
    crontab = models.CharField(
        max_length=100,
        help_text="Five cron fields: minute hour day month weekday, e.g. '0 3 * * *'.",
    )
    timezone = models.CharField(
        max_length=63,
        blank=True,
        help_text="Time zone the cron is read in, e.g. 'Europe/Paris' (empty: TIME_ZONE).",
    )
    args = models.JSONField(
        default=list,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="Positional arguments as JSON, e.g. [7].",
    )
    kwargs = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text='Keyword arguments as JSON, e.g. {"days": 7}.',
    )
    result_ttl = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds each run's row is kept, e.g. 86400 (empty: the default).",
    )
    coalesce = models.BooleanField(
        default=True, help_text="Skip an occurrence while the previous run is still active."
    )
    enabled = models.BooleanField(default=True, help_text="Untick to pause the schedule.")
    last_run = models.DateTimeField(
        null=True, blank=True, help_text="When the last run was launched."
    )
    next_run = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the next run is due."
    )

    class Meta:
        verbose_name = "repeating task"
        ordering = ["next_run"]

    # Saving a change to one of these recomputes `next_run`.
    SCHEDULE_FIELDS = ("crontab", "timezone", "enabled")
    # Fields the scheduler moves on by itself, while a copy of the row may sit
    # in an admin form.
    RUN_FIELDS = ("next_run", "last_run")

    def __str__(self):
        return f"{self.func_name} [{self.crontab}]"

    @classmethod
    def from_db(cls, db, field_names, values, **options):
        # **options: Django 6.1 passes fetch_mode.
        instance = super().from_db(db, field_names, values, **options)
        instance._remember_loaded()
        return instance

    @classmethod
    def schedule(
        cls,
        crontab: str,
        fn_or_name: "TaskRef",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Self:
        """Create a repeating task; see `schedule_task`."""
        return schedule_task(cls, crontab, fn_or_name, args, kwargs, **options)

    def clean(self):
        errors = validate(self.func_name, self.crontab, self.timezone, self.args, self.kwargs)
        if errors:
            raise ValidationError(errors)

    def save(self, *args, update_fields=None, **kwargs):
        """Save, recomputing `next_run` (from now) when the crontab, the time zone
        or `enabled` changed, or when a new enabled row has none.

        `next_run` and `last_run` are written only when changed on this object:
        saving a stale copy (an admin form opened before the last tick) must not
        move `next_run` back, which would launch an occurrence twice."""
        recompute = self._schedule_changed()
        if recompute:
            self.next_run = next_run(self.crontab, self.timezone, self.enabled)
        if update_fields is None:
            update_fields = self._fields_to_write()
        elif recompute:
            update_fields = {*update_fields, "next_run"}
        super().save(*args, update_fields=update_fields, **kwargs)
        self._remember_loaded()

    def _schedule_changed(self):
        loaded = getattr(self, "_loaded", None)
        if loaded is None:  # a new row
            return self.next_run is None or not self.enabled
        # A field still deferred (`.only()`) was neither loaded nor changed.
        return any(
            f in self.__dict__ and (f not in loaded or self.__dict__[f] != loaded[f])
            for f in self.SCHEDULE_FIELDS
        )

    def _fields_to_write(self):
        """None (all) for a new row; otherwise all but the deferred fields and
        the run fields this object did not change."""
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            return None
        skipped = self.get_deferred_fields() | {
            f for f in self.RUN_FIELDS if f in loaded and self.__dict__.get(f) == loaded[f]
        }
        return [
            field.name
            for field in self._meta.concrete_fields
            if not field.primary_key and field.attname not in skipped
        ]

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._remember_loaded()

    def _remember_loaded(self):
        # Deferred fields (`.only()`, `.defer()`) are not read: that would query.
        fields = self.SCHEDULE_FIELDS + self.RUN_FIELDS
        self._loaded = {f: self.__dict__[f] for f in fields if f in self.__dict__}
