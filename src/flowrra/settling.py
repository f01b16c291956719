"""Settling finished tasks in the background, so a worker slot goes on to its next task.

With a broker and backend that post writes in order (Redis), a slot that finished a task
posts its final record and moves on; :class:`BackgroundSettlements` acks the task once the
record is stored. The record is always stored before the ack is sent, so a crash in
between only delivers the task again (at-least-once). A record that cannot be written is
written again with a capped back-off (the task keeps its lease meanwhile and is not run
again); only when the worker stops first is the task handed back to the queue. The
worker waits for every settlement in flight when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from flowrra.brokers.base import Delivery, QueueBroker
from flowrra.recording import TaskRecorder
from flowrra.task import TaskResult

logger = logging.getLogger("flowrra.worker")

RETRY_FIRST_DELAY = 0.5
"""Seconds before a final record that could not be written is written again (doubling)."""
RETRY_MAX_DELAY = 10.0

Succeeded = Callable[[str, datetime, datetime], None]
"""Counts a success: task name, started and finished time."""


class BackgroundSettlements:
    """The acks and final-record writes a worker started and did not wait for."""

    def __init__(
        self,
        broker: QueueBroker,
        recorder: TaskRecorder,
        succeeded: Succeeded,
        hand_back: Callable[[Delivery], Awaitable[None]],
    ) -> None:
        self._broker = broker
        self._recorder = recorder
        self._succeeded = succeeded
        self._hand_back = hand_back
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._stopping: asyncio.Event | None = None
        self._room_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return len(self._in_flight)

    async def room(self, limit: int) -> None:
        """Wait until at most ``limit`` settlements are in flight (a worker stops claiming
        while its results cannot be stored, instead of piling up finished tasks)."""
        while len(self._in_flight) > limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append((limit, waiter))
            try:
                await waiter
            finally:
                if (limit, waiter) in self._room_waiters:
                    self._room_waiters.remove((limit, waiter))

    def _settled(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.discard(future)
        if self._room_waiters:
            size = len(self._in_flight)
            for limit, waiter in list(self._room_waiters):
                if size <= limit and not waiter.done():
                    waiter.set_result(None)

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
        record: TaskResult,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        """Settle a success whose final ``record`` write ``stored`` was posted: count it
        and ack when the record is stored; drop it when a newer claim owns the task; write
        it again when the write failed."""
        self._in_flight.add(stored)
        stored.add_done_callback(
            lambda done: self._after_store(done, delivery, record, started_at, finished_at)
        )

    async def drain(self) -> None:
        """Stop writing records again, then wait until every settlement started so far
        (and the acks and hand-backs they start) is done."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        self._stopping.set()
        try:
            while self._in_flight:
                await asyncio.wait(set(self._in_flight))
        finally:
            self._stopping = None

    def _after_store(
        self,
        done: asyncio.Future[int],
        delivery: Delivery,
        record: TaskResult,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        self._settled(done)
        if done.cancelled():
            return
        task = delivery.task
        error = done.exception()
        if error is not None:
            logger.warning(
                "could not store the result of task %s[%s]; writing it again: %s",
                task.name,
                task.id,
                error,
            )
            self._track(
                asyncio.ensure_future(self._store_again(delivery, record, started_at, finished_at))
            )
            return
        self._stored(bool(done.result()), delivery, started_at, finished_at)

    async def _store_again(
        self, delivery: Delivery, record: TaskResult, started_at: datetime, finished_at: datetime
    ) -> None:
        """Write the final record again with a capped back-off until it is stored (then
        ack) or the worker stops (then hand the task back: it runs again elsewhere)."""
        token = delivery.token
        fence = token if isinstance(token, int) else None
        delay = RETRY_FIRST_DELAY
        while not await self._stopped_within(delay):
            try:
                stored = await self._recorder.record(record, fence=fence)
            except Exception as error:
                logger.warning(
                    "could not store the result of task %s[%s]; writing it again in %.1f s: %s",
                    record.task_name,
                    record.task_id,
                    min(delay * 2, RETRY_MAX_DELAY),
                    error,
                )
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            self._stored(stored, delivery, started_at, finished_at)
            return
        logger.warning(
            "worker stopping: task %s[%s] goes back to the queue, its result unstored",
            record.task_name,
            record.task_id,
        )
        await self._hand_back(delivery)

    async def _stopped_within(self, seconds: float) -> bool:
        """Sleep ``seconds``; True at once (or as soon as) the worker is stopping."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        stopping = self._stopping
        if stopping.is_set():
            return True
        try:
            async with asyncio.timeout(seconds):
                await stopping.wait()
        except TimeoutError:
            return False
        return True

    def _stored(
        self, stored: bool, delivery: Delivery, started_at: datetime, finished_at: datetime
    ) -> None:
        task = delivery.task
        if not stored:
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
        self._settled(posted)
        if not posted.cancelled() and posted.exception() is not None:
            logger.warning(
                "an ack failed; the task's lease will return it to the queue: %s",
                posted.exception(),
            )
