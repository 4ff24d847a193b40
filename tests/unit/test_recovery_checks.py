"""The system check that keeps recovery from misfiring."""

from django.test import override_settings

from cq.checks import check_worker_timeout


@override_settings(CQ_WORKER_TIMEOUT=10, CQ_HEARTBEAT_INTERVAL=5)
def test_worker_timeout_shorter_than_three_heartbeats_is_flagged():
    [warning] = check_worker_timeout(None)
    assert warning.id == "cq.W003"


@override_settings(CQ_WORKER_TIMEOUT=30, CQ_HEARTBEAT_INTERVAL=5)
def test_default_timings_pass():
    assert check_worker_timeout(None) == []
