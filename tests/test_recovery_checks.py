"""System checks that keep recovery from misfiring."""

from django.test import override_settings

from cq.checks import check_single_host, check_worker_timeout
from tests.conftest import channel_layers


@override_settings(CQ_WORKER_TIMEOUT=10, CQ_HEARTBEAT_INTERVAL=5)
def test_worker_timeout_shorter_than_three_heartbeats_is_flagged():
    [warning] = check_worker_timeout(None)
    assert warning.id == "cq.W002"


@override_settings(CQ_WORKER_TIMEOUT=30, CQ_HEARTBEAT_INTERVAL=5)
def test_default_timings_pass():
    assert check_worker_timeout(None) == []


def test_cq_layer_with_several_hosts_is_flagged():
    layers = channel_layers()
    layers["default"]["CONFIG"]["hosts"] *= 2
    with override_settings(CHANNEL_LAYERS=layers):
        [warning] = check_single_host(None)
    assert warning.id == "cq.W003"
    assert check_single_host(None) == []
