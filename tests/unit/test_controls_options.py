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
