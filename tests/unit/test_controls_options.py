"""The options of the controls, checked where `@task` is written."""

import pytest

from cq import task
from cq.decorators import TaskFunction
from cq.exceptions import InvalidTaskOption


@pytest.mark.parametrize("rate", ["10", "ten/s", "10/w", "0/s", "-1/m", "10/0s", 10, "1/s/s"])
def test_a_bad_rate_limit_is_refused_at_the_decorator(rate):
    with pytest.raises(InvalidTaskOption, match="rate_limit"):
        task(name="tests.bad_rate", rate_limit=rate)(lambda cqt: None)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"unique": "yes"}, "unique must be"),
        ({"unique": 1.5}, "unique must be"),
        ({"unique_key": 42}, "unique_key must be"),
    ],
)
def test_bad_unique_options_are_refused_at_the_decorator(options, message):
    with pytest.raises(InvalidTaskOption, match=message):
        task(name="tests.bad_unique", **options)(lambda cqt: None)


def test_unique_options_read_as_a_mode():
    def fn(cqt, x):
        pass

    assert TaskFunction(fn, unique=True).unique == "return"
    assert TaskFunction(fn, unique="raise").unique == "raise"
    assert TaskFunction(fn, unique_key="k-{x}").unique == "return"
    assert TaskFunction(fn, unique=False, unique_key="k-{x}").unique is None
    assert TaskFunction(fn).unique is None


def test_retry_jitter_can_be_turned_off():
    function = TaskFunction(lambda cqt: None, retry_delay=3, retry_jitter=False)
    assert {function.retry_countdown(2) for _ in range(20)} == {6}


def test_a_key_is_scoped_by_the_task_name_and_a_long_one_stored_as_its_hash():
    from cq import uniqueness

    def fn(cqt, text):
        pass

    short = TaskFunction(fn, name="tests.keys", unique_key="k-{text}")
    assert uniqueness.key_for(short, ["a"], {}, "return") == "tests.keys:k-a"
    long_key = uniqueness.key_for(short, ["x" * 300], {}, "return")
    assert long_key.startswith("sha256:") and len(long_key) <= uniqueness.MAX_KEY
    assert long_key != uniqueness.key_for(short, ["y" * 300], {}, "return")
    by_arguments = TaskFunction(fn, name="tests.args", unique=True)
    assert uniqueness.key_for(by_arguments, ["a"], {}, "return") != uniqueness.key_for(
        by_arguments, ["b"], {}, "return"
    )
    assert uniqueness.key_for(by_arguments, ["a"], {}, None) is None


@pytest.mark.parametrize(
    "options",
    [
        {"retry_delay": float("nan")},
        {"retry_delay": float("inf")},
        {"retry_delay": 10**400},
        {"time_limit": float("nan")},
        {"time_limit": float("inf")},
        {"result_ttl": -5},
        {"result_ttl": "abc"},
        {"result_ttl": 2**31},
    ],
)
def test_numbers_that_are_not_finite_or_out_of_range_are_refused_at_the_decorator(options):
    [name] = options
    with pytest.raises(InvalidTaskOption, match=name):
        task(name="tests.bad_numbers", **options)(lambda cqt: None)


def test_a_retry_backoff_stays_a_time_the_worker_can_compute():
    from datetime import timedelta

    from django.utils import timezone

    from cq.options import MAX_SECONDS

    function = TaskFunction(lambda cqt: None, retry_delay=60, retries=2000, retry_jitter=False)
    for attempt in (40, 2000):
        # Doubled 39 times, 60 s overflowed `now + backoff` in the worker.
        assert function.retry_countdown(attempt) == MAX_SECONDS
        timezone.now() + timedelta(seconds=function.retry_countdown(attempt))
