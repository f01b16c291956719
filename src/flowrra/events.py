"""The event bus: ``task.update`` events on every state change of a task.

Subscribers are plain callables or coroutine functions taking one ``dict`` event::

    {"type": "task.update", "task": TaskResult.to_dict}

Emitting costs nothing when nobody listens: publishers check :attr:`EventBus.has_subscribers`
before they build an event. A subscriber that raises is logged and kept; it never breaks
the task that triggered the event.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("flowrra.events")

Event = dict[str, Any]
Subscriber = Callable[[Event], Awaitable[None] | None]


class EventBus:
    """Fan-out of events to in-process subscribers."""

    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        """The current subscribers (read it; change it with subscribe/unsubscribe)."""
        self._watchers: list[weakref.WeakMethod[Callable[[], None]]] = []

    def watch(self, method: Callable[[], None]) -> None:
        """Call the bound ``method`` after every change of the subscribers.

        Held weakly: a watcher's owner can be garbage-collected without unwatching.
        """
        self._watchers.append(weakref.WeakMethod(method))

    def _changed(self) -> None:
        alive = []
        for reference in self._watchers:
            method = reference()
            if method is not None:
                alive.append(reference)
                method()
        self._watchers = alive

    @property
    def has_subscribers(self) -> bool:
        """True when at least one subscriber listens."""
        return bool(self.subscribers)

    def subscribe(self, fn: Subscriber) -> None:
        """Add ``fn`` (sync or async); adding the same callable twice is a no-op."""
        if fn not in self.subscribers:
            self.subscribers.append(fn)
            self._changed()

    async def async_subscribe(self, fn: Subscriber) -> None:
        """Coroutine form of :meth:`subscribe`."""
        self.subscribe(fn)

    async def unsubscribe(self, fn: Subscriber) -> None:
        """Remove ``fn``; a no-op if it was not subscribed."""
        if fn in self.subscribers:
            self.subscribers.remove(fn)
            self._changed()

    async def emit(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber, in subscription order."""
        for fn in tuple(self.subscribers):
            try:
                outcome = fn(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("event subscriber %r failed", fn)


event_bus = EventBus()
"""The process-wide bus every app publishes to."""
