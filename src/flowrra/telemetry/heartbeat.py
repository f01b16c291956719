"""The heartbeat: a background coroutine that publishes a worker's presence and counts.

Every ``interval`` seconds, and at the turn of every minute, it publishes one
:class:`~flowrra.telemetry.store.Flush`: the
worker's presence, and the counts added since the last successful flush. When the store
fails (Redis is down) the coroutine logs it, waits longer (doubling, up to
:data:`MAX_BACKOFF` seconds) and tries again; the counts stay pending until a flush goes
through, so an outage delays them but loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from flowrra._aio import cancel_until_done
from flowrra.telemetry.accumulator import minute_of
from flowrra.telemetry.stats import TaskStats
from flowrra.telemetry.store import Flush, TelemetryStore, WorkerPresence

if TYPE_CHECKING:
    from flowrra.worker import Worker

logger = logging.getLogger("flowrra.telemetry")

_MINUTE_SLACK = 0.001  # s past the turn of a minute at which the heartbeat wakes
#: The longest wait, in seconds, between two attempts while the store keeps failing.
MAX_BACKOFF = 30.0


def _deltas(now: Mapping[str, TaskStats], then: Mapping[str, TaskStats]) -> dict[str, TaskStats]:
    deltas: dict[str, TaskStats] = {}
    for name, stats in now.items():
        before = then.get(name)
        delta = stats if before is None else stats.minus(before)
        if not delta.is_empty:
            deltas[name] = delta
    return deltas


class Heartbeat:
    """Publishes ``worker``'s presence and counts to ``store`` every ``interval`` seconds.

    ``queues`` and ``concurrency`` (``{"io": n, "cpu": n}``) are shown in the presence.
    :meth:`start` publishes once at once (a failure is logged, not raised) and starts the
    coroutine; :meth:`stop` ends it, publishes what is pending and removes the presence.
    """

    def __init__(
        self,
        worker: Worker,
        store: TelemetryStore,
        *,
        queues: Sequence[str],
        concurrency: Mapping[str, int],
        interval: float = 5.0,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.interval = float(interval)
        self.store = store
        self._worker = worker
        self._queues = tuple(queues)
        self._io = concurrency.get("io", 0)
        self._cpu = concurrency.get("cpu", 0)
        self._hostname = socket.gethostname()
        self._pid = os.getpid()
        self._started_at = time.time()
        self._flushed: dict[str, TaskStats] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        """Flushes that failed in a row (0 after a flush went through)."""

    @property
    def worker_id(self) -> str:
        """The id of the worker this heartbeat speaks for."""
        return self._worker.id

    def _presence(self, stats: Mapping[str, TaskStats], now: float) -> WorkerPresence:
        processed = sum(s.success + s.failed + s.cancelled for s in stats.values())
        return WorkerPresence(
            id=self._worker.id,
            hostname=self._hostname,
            pid=self._pid,
            queues=self._queues,
            io=self._io,
            cpu=self._cpu,
            running=self._worker.running,
            processed=processed,
            failed=sum(s.failed for s in stats.values()),
            started_at=self._started_at,
            last_heartbeat=now,
            heartbeat_interval=self.interval,
        )

    async def flush(self) -> None:
        """Publish the presence and the counts added since the last flush, now.

        Raises what the store raises; the counts are then kept for the next flush.
        """
        async with self._lock:
            telemetry = self._worker.telemetry
            stats = telemetry.task_stats()
            minutes = telemetry.take_minutes()
            flush = Flush(
                self._presence(stats, time.time()), minutes, _deltas(stats, self._flushed)
            )
            try:
                await self.store.publish(flush)
            except BaseException:
                telemetry.give_back_minutes(minutes)
                raise
            self._flushed = stats

    async def start(self) -> None:
        """Publish once (within one interval; a failure is logged), then every interval."""
        if self._task is not None:
            return
        self._stopping.clear()
        try:
            async with asyncio.timeout(self.interval):
                await self.flush()
        except Exception as error:  # the loop retries; starting the worker must not fail
            logger.warning("worker %s: first heartbeat failed: %s", self.worker_id, error)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"flowrra-heartbeat-{self.worker_id}"
        )

    async def _run(self) -> None:
        delay = self.interval
        while not self._stopping.is_set():
            now = time.time()
            # wake at the turn of each minute too, so counts land in the minute they ended in
            next_minute = minute_of(now) + 60 + _MINUTE_SLACK - now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, next_minute)):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            delay = await self._beat()

    async def _beat(self) -> float:
        """One flush; returns the seconds to wait before the next one."""
        try:
            await self.flush()
        except Exception as error:  # an outage must not end the heartbeat
            self.failures += 1
            delay = min(self.interval * 2.0**self.failures, max(MAX_BACKOFF, self.interval))
            logger.warning(
                "worker %s: heartbeat failed %d time(s) in a row (%s: %s); next try in %.1fs",
                self.worker_id,
                self.failures,
                type(error).__name__,
                error,
                delay,
            )
            return delay
        if self.failures:
            logger.info("worker %s: heartbeat published again", self.worker_id)
        self.failures = 0
        return self.interval

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    async def stop(self, timeout: float = 5.0) -> None:
        """End the coroutine, publish what is pending and remove the presence.

        Waits at most ``timeout`` seconds for the store; a failure is logged (the presence
        then expires by itself, and the unpublished counts of this worker are lost).
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            await cancel_until_done([task])
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
                await self.store.remove(self.worker_id)
        except Exception as error:  # stopping must finish even when the store is down
            logger.warning(
                "worker %s: could not publish its last heartbeat: %s: %s",
                self.worker_id,
                type(error).__name__,
                error,
            )
