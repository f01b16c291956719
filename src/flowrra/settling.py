"""Settling finished tasks in the background, so a worker slot goes on to its next task.

With a broker and backend that post writes in order (Redis), a slot that finished a task
posts its final record and moves on; :class:`BackgroundSettlements` acks the task once the
record is stored. The record is always stored before the ack is sent, so a crash in
between only delivers the task again (at-least-once). The worker waits for every
settlement in flight when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from flowrra.brokers.base import Delivery, QueueBroker

logger = logging.getLogger("flowrra.worker")

Succeeded = Callable[[str, datetime, datetime], None]
"""Counts a success: task name, started and finished time."""


class BackgroundSettlements:
    """The acks and final-record writes a worker started and did not wait for."""

    def __init__(
        self,
        broker: QueueBroker,
        succeeded: Succeeded,
        hand_back: Callable[[Delivery], Awaitable[None]],
    ) -> None:
        self._broker = broker
        self._succeeded = succeeded
        self._hand_back = hand_back
        self._in_flight: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._in_flight)

    def ack(self, delivery: Delivery) -> bool:
        """Post the ack of a task whose final record is stored; False if the broker
        cannot post (then the caller awaits ``broker.ack``). A lost ack only delivers the
        task again, when its lease expires; it is logged."""
        posted = self._broker.post_ack(delivery)
        if posted is None:
            return False
        self._in_flight.add(posted)
        posted.add_done_callback(self._acked)
        return True

    def success(
        self,
        stored: asyncio.Future[int],
        delivery: Delivery,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        """Settle a success whose final record write ``stored`` was posted: count it and
        ack when the record is stored; drop it when a newer claim owns the task; hand it
        back to the queue when the write failed."""
        self._in_flight.add(stored)
        stored.add_done_callback(
            lambda done: self._after_store(done, delivery, started_at, finished_at)
        )

    async def drain(self) -> None:
        """Wait until every settlement started so far (and the acks they start) is done."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    def _after_store(
        self,
        done: asyncio.Future[int],
        delivery: Delivery,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        self._in_flight.discard(done)
        if done.cancelled():
            return
        task = delivery.task
        error = done.exception()
        if error is not None:
            logger.warning(
                "could not store the result of task %s[%s]; handing it back: %s",
                task.name,
                task.id,
                error,
            )
            self._track(asyncio.ensure_future(self._hand_back(delivery)))
            return
        if not done.result():
            logger.warning(
                "task %s[%s]: a newer claim owns it; dropping this worker's success record",
                task.name,
                task.id,
            )
            return
        self._succeeded(task.name, started_at, finished_at)
        if not self.ack(delivery):
            self._track(asyncio.ensure_future(self._broker.ack(delivery)))

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.add(future)
        future.add_done_callback(self._acked)

    def _acked(self, posted: asyncio.Future[Any]) -> None:
        self._in_flight.discard(posted)
        if not posted.cancelled() and posted.exception() is not None:
            logger.warning(
                "an ack failed; the task's lease will return it to the queue: %s",
                posted.exception(),
            )
