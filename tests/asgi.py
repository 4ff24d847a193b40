"""The test project's ASGI routing: cq's consumer, and a plain consumer on another
channel to show that `runworker <other channel>` is still channels' own worker."""

import django

django.setup()

from channels.consumer import SyncConsumer  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter  # noqa: E402

from cq.consumers import CQConsumer  # noqa: E402
from tests.app.models import Note  # noqa: E402


class NoteConsumer(SyncConsumer):
    def note_write(self, message):
        Note.objects.create(text=message["text"])


application = ProtocolTypeRouter({
    "channel": ChannelNameRouter({
        "cq-tasks": CQConsumer.as_asgi(),
        "test-notes": NoteConsumer.as_asgi(),
    }),
})
