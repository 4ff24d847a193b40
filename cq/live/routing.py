"""WebSocket routes of cq.live, for the project's asgi.py:

    "websocket": AuthMiddlewareStack(URLRouter(cq.live.websocket_urlpatterns)),

`{% cq_progress task %}` and the admin's pages connect to these paths.
"""

from django.urls import path

from .consumer import DashboardConsumer, TaskConsumer

# The path prefix the browser side (cq/templates/cq/live.js) connects to.
PREFIX = "cq/live/"

websocket_urlpatterns = [
    path(f"{PREFIX}tasks/<uuid:task_id>/", TaskConsumer.as_asgi(), name="cq-live-task"),
    path(f"{PREFIX}dashboard/", DashboardConsumer.as_asgi(), name="cq-live-dashboard"),
]
