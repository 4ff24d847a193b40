"""System checks on the Redis settings cq relies on."""

import copy

import pytest
from django.conf import settings
from django.test import override_settings

from cq.checks import check_cache_timeout, check_channel_layer


def layers_with_host(host):
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"] = [host]
    return layers


@pytest.mark.parametrize(
    "host, problem",
    [
        ({"address": "redis://r:6379/0", "socket_timeout": None}, "no socket timeout"),
        ({"address": "redis://r:6379/0", "socket_timeout": 5}, "socket timeout of 5s"),
        ({"address": "redis://r:6379/0"}, "socket timeout of 5s"),
        ("redis://r:6379/0", "socket timeout of 5s"),
    ],
)
def test_w001_flags_a_host_without_a_timeout_or_one_too_short_for_stock_consumers(host, problem):
    with override_settings(CHANNEL_LAYERS=layers_with_host(host)):
        [warning] = check_channel_layer(None)
    assert warning.id == "cq.W001"
    assert problem in warning.msg and "redis://r:6379/0" in warning.msg


def test_w001_accepts_a_timeout_above_channels_redis_blocking_receive():
    host = {"address": "redis://r:6379/0", "socket_timeout": 10}
    with override_settings(CHANNEL_LAYERS=layers_with_host(host)):
        assert check_channel_layer(None) == []


def test_w004_flags_a_redis_cache_without_socket_timeout():
    caches = copy.deepcopy(settings.CACHES)
    del caches["default"]["OPTIONS"]
    with override_settings(CACHES=caches):
        [warning] = check_cache_timeout(None)
    assert warning.id == "cq.W004"
    assert check_cache_timeout(None) == []  # the suite's own cache has one
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=local):
        assert check_cache_timeout(None) == []
