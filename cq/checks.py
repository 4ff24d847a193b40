"""System checks: mistakes in settings that would silently break cq."""

from django.conf import settings
from django.core import checks

from .conf import settings as cq_settings


@checks.register()
def check_app_order(app_configs, **kwargs):
    apps = [app for app in settings.INSTALLED_APPS]
    names = [app.split(".apps.")[0] for app in apps]
    if "channels" in names and "cq" in names and names.index("channels") < names.index("cq"):
        return [checks.Error(
            "'cq' is listed after 'channels' in INSTALLED_APPS, so `runworker` is "
            "channels' own: it would run cq-tasks without bounded prefetch or recovery.",
            hint="Move 'cq' above 'channels' in INSTALLED_APPS.",
            id="cq.E001",
        )]
    return []


@checks.register()
def check_channel_layer(app_configs, **kwargs):
    if cq_settings.SERIAL:
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    alias = cq_settings.CHANNEL_LAYER
    if alias not in layers:
        return [checks.Error(
            f"CQ_CHANNEL_LAYER is {alias!r}, which is not in CHANNEL_LAYERS.",
            hint="Add a channels-redis layer under that alias, or set CQ_CHANNEL_LAYER.",
            id="cq.E002",
        )]
    config = layers[alias].get("CONFIG", {})
    for host in config.get("hosts", []):
        if isinstance(host, dict) and host.get("socket_timeout", 5) is not None:
            return [checks.Warning(
                "a host of the cq channel layer has a socket timeout: an idle worker's "
                "blocking receive then fails every few seconds (redis-py's default is 5 s).",
                hint="Give the host \"socket_timeout\": None, e.g. "
                "{\"address\": \"redis://127.0.0.1:6379/0\", \"socket_timeout\": None}.",
                id="cq.W001",
            )]
        if not isinstance(host, dict):
            return [checks.Warning(
                f"cq channel layer host {host!r} uses redis-py's 5 s socket timeout.",
                hint="Write it as {\"address\": ..., \"socket_timeout\": None}.",
                id="cq.W001",
            )]
    return []


@checks.register()
def check_time_zone_support(app_configs, **kwargs):
    if settings.USE_TZ:
        return []
    return [checks.Warning(
        "USE_TZ is False: repeating tasks, run_after and countdown compute aware "
        "datetimes, which a database without time zone support rejects or misreads.",
        hint="Set USE_TZ = True (Django's default since 5.0).",
        id="cq.W002",
    )]


@checks.register()
def check_worker_timeout(app_configs, **kwargs):
    # A live worker must be able to miss a beat or two (a slow database write)
    # without being presumed dead and having its tasks requeued.
    if cq_settings.WORKER_TIMEOUT < 3 * cq_settings.HEARTBEAT_INTERVAL:
        return [checks.Warning(
            f"CQ_WORKER_TIMEOUT ({cq_settings.WORKER_TIMEOUT}s) is less than three "
            f"heartbeats (CQ_HEARTBEAT_INTERVAL={cq_settings.HEARTBEAT_INTERVAL}s): "
            "a live worker may be presumed dead and its tasks run twice.",
            hint="Make CQ_WORKER_TIMEOUT at least 3 x CQ_HEARTBEAT_INTERVAL (default 30s / 5s).",
            id="cq.W003",
        )]
    return []
