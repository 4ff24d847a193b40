"""Live updates of task trees over Channels: what a browser watching a task sees.

`cq.live.events` publishes (status changes, progress, log lines) to
channel-layer groups; `cq.live.consumer.TaskConsumer` streams a tree to a
WebSocket; `cq.live.state` reads a tree's current state. The consumer is
imported on first use, not with this package: it needs Django set up.
"""

__all__ = ["DashboardConsumer", "TaskConsumer", "websocket_urlpatterns"]


def __getattr__(name):
    if name in ("TaskConsumer", "DashboardConsumer"):
        from . import consumer

        return getattr(consumer, name)
    if name == "websocket_urlpatterns":
        from .routing import websocket_urlpatterns

        return websocket_urlpatterns
    raise AttributeError(f"module 'cq.live' has no attribute {name!r}")
