"""ASGI routing: web requests to Django, WebSockets to cq.live, the `cq-tasks`
channel to cq's consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

import cq.live  # noqa: E402
from cq.consumers import CQConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(cq.live.websocket_urlpatterns))
        ),
        "channel": ChannelNameRouter({"cq-tasks": CQConsumer.as_asgi()}),
    }
)
