"""Helpers of the live tests: listening to a tree's channel-layer group as a
browser's consumer would, from the test process."""

import asyncio
import time

from channels.layers import get_channel_layer

from cq.live.events import tree_group


class GroupListener:
    """Collects every event sent to a tree's group, from `async with` on."""

    def __init__(self, top_id):
        self.group = tree_group(top_id)
        self.events = []
        self.layer = get_channel_layer()

    async def __aenter__(self):
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        return self

    async def __aexit__(self, *exc):
        await self.layer.group_discard(self.group, self.channel)

    async def collect_until(self, predicate, timeout=30.0):
        """Receive events until `predicate(events)` holds; the events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events so far: {self.events}")
            try:
                event = await asyncio.wait_for(self.layer.receive(self.channel), min(left, 1))
            except TimeoutError:
                continue
            self.events.append(event)
        return self.events

    def of_type(self, kind):
        return [event for event in self.events if event["type"] == kind]
