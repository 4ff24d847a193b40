"""The test project's ASGI routing: cq's consumer, and a plain consumer on another
channel to show that `runworker <other channel>` is still channels' own worker.
(`runworker` sets Django up before it loads this module.)"""

from channels.consumer import SyncConsumer
from channels.routing import ChannelNameRouter, ProtocolTypeRouter

from cq.consumers import CQConsumer
from tests.app.models import Note


class NoteConsumer(SyncConsumer):
    def note_write(self, message):
        Note.objects.create(text=message["text"])


application = ProtocolTypeRouter(
    {
        "channel": ChannelNameRouter(
            {
                "cq-tasks": CQConsumer.as_asgi(),
                "test-notes": NoteConsumer.as_asgi(),
            }
        ),
    }
)
