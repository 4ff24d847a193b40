"""The worker's default log format applies only where the project's LOGGING
says nothing about cq (a real worker's output is in tests/e2e)."""

import contextlib
import logging

import pytest

from cq import worker_logging


@contextlib.contextmanager
def bare_logging():
    """Logging as Django's default leaves it for cq (no root handler, cq's
    loggers unset); restored afterwards. Entered in the test's body: pytest
    puts its capturing handlers on the root logger around each phase."""
    root = logging.getLogger()
    cq_loggers = [logging.getLogger(name) for name in ("cq", "cq.worker", "cq.tasks")]
    saved = (root.handlers[:], [(lg.handlers[:], lg.level, lg.disabled) for lg in cq_loggers])
    root.handlers[:] = []
    for lg in cq_loggers:
        lg.handlers[:], lg.level, lg.disabled = [], logging.NOTSET, False
    try:
        yield
    finally:
        _restore(root, cq_loggers, saved)


def _restore(root, cq_loggers, saved):
    root.handlers[:] = saved[0]
    for lg, (handlers, level, disabled) in zip(cq_loggers, saved[1], strict=True):
        lg.handlers[:], lg.level, lg.disabled = handlers, level, disabled


def test_with_no_logging_for_cq_the_worker_logs_info_with_times(capsys):
    with bare_logging():
        handler = worker_logging.install_default()
        assert handler is not None
        logging.getLogger("cq.worker").info("worker started name=%s", "w1")
        logging.getLogger("cq.worker").debug("not shown")
    line = capsys.readouterr().err
    assert line.endswith(" INFO cq.worker worker started name=w1\n")
    assert line[:4].isdigit() and line[10] == " ", "starts with the date and time"


@pytest.mark.parametrize(
    "configure",
    [
        lambda: logging.getLogger().addHandler(logging.NullHandler()),
        lambda: logging.getLogger("cq").setLevel(logging.WARNING),
        lambda: logging.getLogger("cq.tasks").addHandler(logging.NullHandler()),
        lambda: setattr(logging.getLogger("cq.worker"), "disabled", True),
    ],
    ids=["root-handler", "cq-level", "child-handler", "disabled"],
)
def test_a_project_logging_that_covers_cq_is_left_alone(configure):
    with bare_logging():
        assert not worker_logging.configured()
        configure()
        assert worker_logging.configured()
        assert worker_logging.install_default() is None
        assert logging.getLogger("cq").handlers == []
