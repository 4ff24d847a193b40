"""The values `cqt.progress()` accepts, and the error it gives for the others."""

import pytest

from cq import InvalidProgress
from cq.progress import make_report, percent


def test_report_keeps_done_total_and_message():
    report = make_report(3, 10, "page 3")
    assert (report["done"], report["total"], report["message"]) == (3, 10, "page 3")
    assert percent(report) == 30.0


def test_report_without_total_has_no_percent():
    assert percent(make_report(7)) is None


@pytest.mark.parametrize(
    ("done", "total", "message", "named"),
    [
        (-1, None, "", "done=-1"),
        (True, None, "", "done=True"),
        ("3", 10, "", "done='3'"),
        (11, 10, "", "done=11 is above total=10"),
        (1, 0, "", "total=0"),
        (1, 10, 42, "message=42"),
    ],
)
def test_bad_report_is_refused_naming_the_value(done, total, message, named):
    with pytest.raises(InvalidProgress, match=named):
        make_report(done, total, message)


def test_long_message_is_cut():
    assert len(make_report(1, 2, "x" * 1000)["message"]) == 200
