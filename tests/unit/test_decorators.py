"""`@task`: its forms, its names, its options and their checks."""

import pytest

from cq import registry, task
from cq.decorators import TaskFunction
from cq.exceptions import InvalidTaskOption, UnknownTaskError
from cq.models import Task


@task
def bare(cqt, x):
    return x * 2


@task()
def called_empty(cqt):
    return "empty"


@task("tests.decorators.by_name")
def by_name(cqt):
    return "by name"


@task(name="tests.decorators.by_keyword", retries=2, retry_delay=5, atomic=False)
def by_keyword(cqt):
    return "by keyword"


@task("tests.decorators.with_options", retries=3, retry_exceptions=[ConnectionError], result_ttl=60)
def with_options(cqt):
    return "options"


def test_bare_decorator_registers_module_and_function_name():
    assert isinstance(bare, TaskFunction)
    assert bare.name == "tests.unit.test_decorators.bare"
    assert registry.get("tests.unit.test_decorators.bare") is bare
    assert called_empty.name == "tests.unit.test_decorators.called_empty"


def test_a_task_can_be_named_positionally_or_by_keyword():
    assert registry.get("tests.decorators.by_name") is by_name
    assert registry.get("tests.decorators.by_keyword") is by_keyword


def test_options_are_kept_with_defaults_for_the_rest():
    assert (bare.atomic, bare.retries, bare.retry_delay, bare.result_ttl) == (True, 0, 0, None)
    assert (by_keyword.atomic, by_keyword.retries, by_keyword.retry_delay) == (False, 2, 5)
    assert with_options.retry_exceptions == (ConnectionError,)
    assert with_options.result_ttl == 60


def test_the_function_keeps_its_name_and_docstring():
    def documented(cqt):
        """Says what it does."""

    wrapped = task("tests.decorators.documented")(documented)
    assert wrapped.__name__ == "documented"
    assert wrapped.__doc__ == "Says what it does."


@pytest.mark.django_db
def test_a_direct_call_runs_inline_and_writes_no_row():
    assert bare(21) == 42
    assert by_keyword() == "by keyword"
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"retries": -1}, "retries must be an integer >= 0, got -1"),
        ({"retries": "3"}, "retries must be an integer >= 0, got '3'"),
        ({"retries": True}, "retries must be an integer >= 0, got True"),
        ({"retry_delay": -1}, "retry_delay must be a number of seconds >= 0"),
        ({"result_ttl": "1 day"}, "result_ttl must be a whole number of seconds >= 0"),
        ({"retry_exceptions": [int]}, "retry_exceptions takes exception classes or callables"),
        ({"retry_exceptions": ["ValueError"]}, "got 'ValueError'"),
        ({"retris": 3}, "unknown option(s) retris"),
    ],
)
def test_a_bad_option_is_refused_at_definition(options, message):
    with pytest.raises(InvalidTaskOption) as caught:
        task("tests.decorators.bad", **options)(lambda cqt: None)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_name_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidTaskOption, match="name string"):
        task(42)


def test_a_name_given_twice_is_refused():
    with pytest.raises(InvalidTaskOption, match="name once"):
        task("a.b", name="c.d")


def test_two_functions_under_one_name_are_refused():
    def first(cqt):
        pass

    def second(cqt):
        pass

    task("tests.decorators.clash")(first)
    with pytest.raises(ValueError, match="two @task functions"):
        task("tests.decorators.clash")(second)


def test_a_single_exception_class_or_predicate_is_accepted():
    assert task("tests.decorators.one", retries=1, retry_exceptions=KeyError)(
        lambda cqt: None
    ).retry_exceptions == (KeyError,)


@pytest.mark.parametrize(
    "rules, exc, expected",
    [
        ([ConnectionError], ConnectionResetError("x"), True),
        ([ConnectionError], ValueError("x"), False),
        ([lambda exc: "retry me" in str(exc)], ValueError("retry me"), True),
        ([lambda exc: "retry me" in str(exc)], ValueError("no"), False),
        ([], ValueError("anything"), True),
        (None, ValueError("anything"), True),
    ],
)
def test_should_retry_follows_retry_exceptions(rules, exc, expected):
    function = TaskFunction(lambda cqt: None, name="x", retries=1, retry_exceptions=rules)
    assert function.should_retry(exc, attempts_done=0) is expected


def test_should_retry_stops_when_retries_are_used_up():
    function = TaskFunction(lambda cqt: None, name="x", retries=2)
    assert function.should_retry(ValueError(), 1)
    assert not function.should_retry(ValueError(), 2)
    assert not TaskFunction(lambda cqt: None, name="y").should_retry(ValueError(), 0)


def test_retry_countdown_doubles_each_attempt():
    function = TaskFunction(
        lambda cqt: None, name="x", retries=3, retry_delay=10, retry_jitter=False
    )
    assert [function.retry_countdown(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert TaskFunction(lambda cqt: None, name="y", retries=3).retry_countdown(2) == 0


def test_retry_countdown_has_jitter_by_default_between_half_and_all_of_the_backoff():
    function = TaskFunction(lambda cqt: None, name="x", retries=3, retry_delay=10)
    for attempt, backoff in ((1, 10), (2, 20), (3, 40)):
        countdowns = [function.retry_countdown(attempt) for _ in range(200)]
        assert all(backoff / 2 <= c <= backoff for c in countdowns)
        # Spread over the range, not in lockstep: both halves of it are hit.
        assert min(countdowns) < backoff * 0.6 and max(countdowns) > backoff * 0.9
        assert len(set(countdowns)) > 150


def test_the_public_api_imports_from_the_package():
    from cq import RepeatingTask, Task, delay, delay_many, models, schedule_task, task

    assert (Task, RepeatingTask) == (models.Task, models.RepeatingTask)
    assert delay is models.delay and delay_many is models.delay_many
    assert schedule_task is models.schedule_task
    assert callable(task)


# ---- queues and priorities


def test_queue_and_priority_default_to_default_and_zero():
    assert (bare.queue, bare.priority) == ("default", 0)


def test_task_takes_a_queue_and_a_priority():
    fn = TaskFunction(bare.fn, name="tests.decorators.urgent", queue="emails", priority=-100)
    assert (fn.queue, fn.priority) == ("emails", -100)


@pytest.mark.parametrize("queue", ["", "has space", "dots.not", "x" * 65, None, 3])
def test_a_bad_queue_name_is_refused_at_definition(queue):
    with pytest.raises(InvalidTaskOption, match="queue must be a name"):
        TaskFunction(bare.fn, name="tests.decorators.badqueue", queue=queue)


@pytest.mark.parametrize("priority", [101, -101, True, "1", 1.5, None])
def test_a_priority_outside_minus_100_to_100_is_refused_at_definition(priority):
    with pytest.raises(InvalidTaskOption, match="priority must be an integer from -100 to 100"):
        TaskFunction(bare.fn, name="tests.decorators.badpriority", priority=priority)


def test_runworker_queues_are_checked():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="queue must be a name"):
        call_command("runworker", "cq-tasks", "--queues", "ok,not ok")
    with pytest.raises(CommandError, match="at least one queue"):
        call_command("runworker", "cq-tasks", "--queues", " , ")


# ---- `async def` tasks


async def _coroutine(cqt):
    return None


def test_a_coroutine_task_is_not_atomic_by_default():
    coroutine = TaskFunction(_coroutine, name="tests.decorators.coroutine")
    assert (coroutine.is_coroutine, coroutine.atomic) == (True, False)
    assert (bare.is_coroutine, bare.atomic) == (False, True)


def test_atomic_true_on_a_coroutine_is_refused_at_decoration():
    with pytest.raises(InvalidTaskOption, match=r"async def task: it cannot be atomic=True"):
        task("tests.decorators.atomic_coroutine", atomic=True)(_coroutine)
    with pytest.raises(UnknownTaskError):
        registry.get("tests.decorators.atomic_coroutine")
