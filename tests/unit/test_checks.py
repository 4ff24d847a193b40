"""System checks on the Redis and cache settings cq relies on, and on cq's own."""

import copy
import sqlite3

import pytest
from django.conf import settings
from django.test import override_settings

from cq.checks import (
    check_cache_is_shared,
    check_cache_timeout,
    check_channel_layer,
    check_outage_poll_interval,
    check_sqlite_locking,
    check_unknown_settings,
    sqlite_locking_problems,
)


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


SENTINEL_HOST = {"sentinels": [("s1", 26379)], "master_name": "mymaster", "db": 0}


def test_w001_judges_a_sentinel_host_by_its_socket_timeout_like_any_host():
    with override_settings(CHANNEL_LAYERS=layers_with_host(SENTINEL_HOST)):
        [warning] = check_channel_layer(None)
    assert warning.id == "cq.W001" and "'mymaster'" in warning.msg
    host = {**SENTINEL_HOST, "socket_timeout": 10}
    with override_settings(CHANNEL_LAYERS=layers_with_host(host)):
        assert check_channel_layer(None) == []


def test_a_sentinel_backed_cache_with_a_socket_timeout_passes_the_cache_checks():
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://mymaster/0",
            "OPTIONS": {
                "pool_class": "cq.sentinel.SentinelPool",
                "sentinels": [("s1", 26379)],
                "socket_timeout": 5,
            },
        }
    }
    with override_settings(CACHES=caches):
        assert check_cache_timeout(None) == check_cache_is_shared(None) == []


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


@pytest.mark.parametrize(
    "backend, problem",
    [
        ("django.core.cache.backends.locmem.LocMemCache", "lines that subtasks write on other"),
        ("django.core.cache.backends.dummy.DummyCache", "every task log line is dropped"),
    ],
)
def test_w005_flags_a_cq_cache_that_other_processes_cannot_see(backend, problem):
    caches = {**settings.CACHES, "logs": {"BACKEND": backend}}
    with override_settings(CACHES=caches, CQ_CACHE="logs"):
        [warning] = check_cache_is_shared(None)
    assert warning.id == "cq.W005"
    assert "'logs'" in warning.msg and problem in warning.msg
    assert check_cache_is_shared(None) == []  # the suite's Redis cache
    shared = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache"}}
    with override_settings(CACHES=shared):
        assert check_cache_is_shared(None) == []


def test_w005_accepts_a_per_process_cache_when_everything_runs_in_one_process():
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    in_memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CACHES=local, CQ_SERIAL=True):
        assert check_cache_is_shared(None) == []
    with override_settings(CACHES=local, CHANNEL_LAYERS=in_memory):
        assert check_cache_is_shared(None) == []


@override_settings(CQ_RESULTS_TTL=60, CQ_FLAVOUR="vanilla", CQ_RESULT_TTL=60)
def test_w006_names_an_unknown_cq_setting_and_the_closest_known_one():
    flavour, typo = check_unknown_settings(None)
    assert (typo.id, flavour.id) == ("cq.W006", "cq.W006")
    assert typo.msg == "CQ_RESULTS_TTL is not a cq setting; cq ignores it."
    assert typo.hint == "Did you mean CQ_RESULT_TTL?"
    assert flavour.msg.startswith("CQ_FLAVOUR is not") and "docs/settings.md" in flavour.hint


def test_w006_is_quiet_about_the_suites_own_settings():
    assert check_unknown_settings(None) == []


def sqlite_file(path, journal_mode):
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA journal_mode={journal_mode}")
        connection.execute("CREATE TABLE t (x)")
    connection.close()
    return str(path)


WAL = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"


@pytest.mark.parametrize(
    "options, missing",
    [
        ({"timeout": 30}, ["WAL journal mode", "IMMEDIATE"]),
        ({"timeout": 30, "init_command": WAL}, ["IMMEDIATE"]),
        ({"transaction_mode": "IMMEDIATE"}, ["WAL journal mode"]),
        ({"transaction_mode": "DEFERRED", "init_command": WAL}, ["IMMEDIATE"]),
    ],
)
def test_w008_flags_sqlite_without_wal_or_immediate_transactions(tmp_path, options, missing):
    config = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": sqlite_file(tmp_path / "db.sqlite3", "DELETE"),
        "OPTIONS": options,
    }
    [warning] = sqlite_locking_problems("default", config)
    assert warning.id == "cq.W008" and "'default'" in warning.msg
    assert all(what in warning.msg for what in missing), warning.msg
    assert "transaction_mode" in warning.hint and "journal_mode=WAL" in warning.hint


@pytest.mark.parametrize(
    "options",
    [
        {"transaction_mode": "IMMEDIATE", "init_command": WAL},
        {"transaction_mode": "immediate", "init_command": "pragma JOURNAL_MODE = 'wal'"},
    ],
)
def test_w008_accepts_wal_and_immediate_however_they_are_spelled(tmp_path, options):
    config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "new.sqlite3")}
    assert sqlite_locking_problems("default", {**config, "OPTIONS": options}) == []


def test_w008_reads_a_file_already_in_wal_mode_without_touching_it(tmp_path):
    # WAL persists in the file: a database converted once needs no init_command.
    name = sqlite_file(tmp_path / "wal.sqlite3", "WAL")
    before = sorted(tmp_path.iterdir())
    config = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
    assert sqlite_locking_problems("default", config) == []
    assert sorted(tmp_path.iterdir()) == before  # no -wal, -shm or new file


def test_w008_leaves_other_databases_and_the_suites_own_alone():
    assert sqlite_locking_problems("default", {"ENGINE": "django.db.backends.postgresql"}) == []
    assert check_sqlite_locking(None) == []  # both lanes of the suite use WAL + IMMEDIATE


@pytest.mark.parametrize("value", [0, -1, "1", True])
def test_e003_names_an_outage_poll_interval_that_is_not_a_positive_number(value):
    with override_settings(CQ_OUTAGE_POLL_INTERVAL=value):
        [error] = check_outage_poll_interval(None)
    assert error.id == "cq.E003"
    assert error.msg.startswith(f"CQ_OUTAGE_POLL_INTERVAL is {value!r};")


@pytest.mark.parametrize("value", [None, 0.5, 2])
def test_e003_accepts_a_positive_outage_poll_interval_or_none(value):
    with override_settings(CQ_OUTAGE_POLL_INTERVAL=value):
        assert check_outage_poll_interval(None) == []
