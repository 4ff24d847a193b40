"""cq.live.origins: which handshakes' Origin the consumers accept, and the
system checks on CQ_LIVE_ALLOWED_ORIGINS and CQ_LIVE_RECHECK_INTERVAL."""

import pytest
from django.test import override_settings

from cq.checks import check_live_allowed_origins, check_live_recheck_interval
from cq.live import origins


def scope(origin):
    headers = [(b"cookie", b"sessionid=x")]
    if origin is not None:
        headers.append((b"origin", origin.encode("latin1")))
    return {"type": "websocket", "headers": headers}


@pytest.mark.parametrize(
    "allowed, origin, expected",
    [
        (["shop.example.com"], "https://shop.example.com", True),
        (["shop.example.com"], "http://shop.example.com:8000", True),  # a host pattern: any port
        (["shop.example.com"], "https://evil.example", False),
        (["shop.example.com"], "https://shop.example.com.evil.example", False),
        ([".example.com"], "https://admin.example.com", True),
        (["https://shop.example.com"], "https://shop.example.com:443", True),
        (["https://shop.example.com"], "https://shop.example.com:8443", False),
        (["https://shop.example.com"], "http://shop.example.com", False),
        (["shop.example.com"], "null", False),
        (["shop.example.com"], "http://[broken", False),
        (["https://shop.example.com"], "https://shop.example.com:99999", False),
        (["shop.example.com"], None, False),
        (["*"], None, True),
        (["*"], "https://anything.example", True),
        ([], "https://shop.example.com", False),
    ],
)
def test_an_origin_is_allowed_as_channels_origin_validator_would(allowed, origin, expected):
    with override_settings(ALLOWED_HOSTS=allowed):
        assert origins.allowed(scope(origin)) is expected


def test_cq_live_allowed_origins_replaces_allowed_hosts():
    with override_settings(
        ALLOWED_HOSTS=[".example.com"], CQ_LIVE_ALLOWED_ORIGINS=["https://app.example.com"]
    ):
        assert origins.allowed(scope("https://app.example.com"))
        assert not origins.allowed(scope("https://www.example.com"))


def test_a_debug_project_without_allowed_hosts_allows_localhost_as_django_does():
    with override_settings(DEBUG=True, ALLOWED_HOSTS=[]):
        assert origins.allowed(scope("http://localhost:8000"))
        assert origins.allowed(scope("http://127.0.0.1:8000"))
        assert not origins.allowed(scope("https://evil.example"))
    with override_settings(DEBUG=False, ALLOWED_HOSTS=[]):
        assert not origins.allowed(scope("http://localhost:8000"))


@pytest.mark.parametrize(
    "value, problem",
    [
        ("https://shop.example.com", "not a list"),
        (["wss://shop.example.com"], "scheme 'wss'"),
        (["https://shop.example.com/live"], "has a path"),
        (["https://"], "names no host"),
        (["https://shop.example.com:99999"], "not a valid origin"),
        ([""], "not a non-empty string"),
        ([None], "not a non-empty string"),
    ],
)
def test_e010_names_an_origin_that_can_never_match(value, problem):
    with override_settings(CQ_LIVE_ALLOWED_ORIGINS=value):
        [error] = check_live_allowed_origins(None)
    assert error.id == "cq.E010" and problem in error.msg


@pytest.mark.parametrize(
    "value",
    [None, ["https://shop.example.com", "http://localhost:8000", ".example.com", "a.example"]],
)
def test_e010_accepts_origins_and_host_patterns(value):
    with override_settings(CQ_LIVE_ALLOWED_ORIGINS=value, ALLOWED_HOSTS=["shop.example.com"]):
        assert check_live_allowed_origins(None) == []


def test_w010_warns_when_any_origin_may_open_a_live_socket_outside_debug():
    with override_settings(ALLOWED_HOSTS=["*"], DEBUG=False):
        [warning] = check_live_allowed_origins(None)
    assert warning.id == "cq.W010" and "ALLOWED_HOSTS" in warning.msg
    with override_settings(ALLOWED_HOSTS=["*"], CQ_LIVE_ALLOWED_ORIGINS=["https://a.example"]):
        assert check_live_allowed_origins(None) == []
    with override_settings(ALLOWED_HOSTS=["*"], DEBUG=True):
        assert check_live_allowed_origins(None) == []


@pytest.mark.parametrize("value", [0, -1, None, "5", True])
def test_e011_refuses_a_recheck_interval_that_is_not_a_positive_number(value):
    with override_settings(CQ_LIVE_RECHECK_INTERVAL=value):
        [error] = check_live_recheck_interval(None)
    assert error.id == "cq.E011" and repr(value) in error.msg


@pytest.mark.parametrize("value", [5.0, 1, 0.5])
def test_e011_accepts_a_positive_number_of_seconds(value):
    with override_settings(CQ_LIVE_RECHECK_INTERVAL=value):
        assert check_live_recheck_interval(None) == []
