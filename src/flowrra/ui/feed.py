"""The live feed: ``task.update`` events from the event bus and periodic stats."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from flowrra.events import Event, EventBus
from flowrra.ui.records import Redactor

#: Events kept for a client that reads slower than tasks change; older ones are dropped.
BUFFER_SIZE = 256


class _Inbox:
    """A bounded FIFO of events that drops the oldest when full (a lagging client loses
    intermediate updates, never the newest state)."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.dropped = 0

    def put(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


async def _next_event(inbox: _Inbox, timeout: float) -> Event | None:
    """The next bus event, or ``None`` when ``timeout`` seconds pass without one."""
    try:
        async with asyncio.timeout(timeout):
            return await inbox.queue.get()
    except TimeoutError:
        return None


async def live_events(
    bus: EventBus,
    redactor: Redactor,
    stats: Callable[[], Awaitable[dict[str, Any]]],
    interval: float = 5.0,
    buffer: int = BUFFER_SIZE,
) -> AsyncIterator[dict[str, Any]]:
    """Yield ``{"type": "stats", "stats": ...}`` at once and then every ``interval``
    seconds, and ``{"type": "task.update", "task": <redacted record>}`` for every
    ``task.update`` on ``bus`` in between.

    Subscribes on the first ``__anext__`` and unsubscribes when the consumer closes the
    iterator (or stops it by cancellation). At most ``buffer`` events wait for a slow
    consumer; beyond that the oldest are dropped.
    """
    inbox = _Inbox(buffer)

    def receive(event: Event) -> None:
        if event.get("type") == "task.update" and isinstance(event.get("task"), dict):
            inbox.put(event)

    bus.subscribe(receive)
    try:
        loop = asyncio.get_running_loop()
        while True:
            yield {"type": "stats", "stats": await stats()}
            due = loop.time() + interval
            while (left := due - loop.time()) > 0:
                event = await _next_event(inbox, left)
                if event is not None:
                    yield {"type": "task.update", "task": redactor.task(event["task"])}
    finally:
        with contextlib.suppress(Exception):
            await bus.unsubscribe(receive)
