"""The block `runworker cq-tasks` prints as it starts (a real worker's is in tests/e2e)."""

import copy

from django.conf import settings
from django.test import override_settings

from cq import __version__
from cq.banner import banner, channel_layer, mask_password
from cq.worker import Worker


def test_the_banner_names_version_queues_concurrency_database_layer_and_tasks():
    worker = Worker(concurrency=3, queues=["emails", "default"], scheduler=False)
    lines = banner(worker).splitlines()
    assert lines[0] == f"cq {__version__} worker {worker.name}"
    assert "  queues:        emails, default" in lines
    assert "  concurrency:   3" in lines
    assert "  scheduler:     off" in lines
    [database] = [line for line in lines if line.startswith("  database:")]
    assert settings.DATABASES["default"]["NAME"] in database
    assert "default: channels_redis.core.RedisChannelLayer redis://" in banner(worker)
    [tasks] = [line for line in lines if line.startswith("  tasks:")]
    assert tasks.split()[1].isdigit() and int(tasks.split()[1]) > 10


def test_the_banner_masks_redis_passwords():
    assert mask_password("redis://:s3cret@redis.local:6379/0") == "redis://:***@redis.local:6379/0"
    assert mask_password("rediss://user:s3cret@host:6380") == "rediss://user:***@host:6380"
    assert mask_password("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"] = [
        "redis://:s3cret@a:6379",
        ("b", 6379),
        {"address": "redis://c:6379", "password": "s3cret"},
    ]
    with override_settings(CHANNEL_LAYERS=layers):
        text = channel_layer("default")
    assert "s3cret" not in text
    assert text.endswith("redis://:***@a:6379, b:6379, redis://c:6379")


def test_the_banner_names_the_sentinels_and_master_of_a_sentinel_host():
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"] = [
        {
            "sentinels": [("s1", 26379), ("s2", 26379)],
            "master_name": "mymaster",
            "password": "s3cret",
        }
    ]
    with override_settings(CHANNEL_LAYERS=layers):
        text = channel_layer("default")
    assert "s3cret" not in text
    assert text.endswith("sentinels s1:26379, s2:26379 master mymaster")
