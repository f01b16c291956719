"""The in-process telemetry store: the one process sees its own worker."""

from __future__ import annotations

import time
from collections.abc import Sequence

from flowrra.telemetry.stats import MinuteCounts, TaskStats
from flowrra.telemetry.store import (
    PRESENCE_TTL,
    THROUGHPUT_TTL,
    Flush,
    TelemetryStore,
    WorkerPresence,
    sort_workers,
)


class MemoryTelemetryStore(TelemetryStore):
    """A :class:`TelemetryStore` in this process's memory (plain dicts, no I/O)."""

    def __init__(self) -> None:
        self._workers: dict[str, WorkerPresence] = {}
        self._minutes: dict[int, MinuteCounts] = {}
        self._tasks: dict[str, TaskStats] = {}

    async def publish(self, flush: Flush) -> None:
        """Replace the presence, add the counts, and drop minutes older than the TTL."""
        presence = flush.presence
        self._workers[presence.id] = presence
        for minute, counts in flush.minutes.items():
            known = self._minutes.get(minute)
            self._minutes[minute] = counts if known is None else known.plus(counts)
        for name, stats in flush.tasks.items():
            known_stats = self._tasks.get(name)
            self._tasks[name] = stats if known_stats is None else known_stats.plus(stats)
        oldest = time.time() - THROUGHPUT_TTL - 60
        for minute in [m for m in self._minutes if m < oldest]:
            del self._minutes[minute]

    async def remove(self, worker_id: str) -> None:
        """Forget ``worker_id``."""
        self._workers.pop(worker_id, None)

    async def workers(self, now: float) -> list[WorkerPresence]:
        """Workers heard from within the presence TTL (older ones are dropped here)."""
        for worker_id in [
            w.id for w in self._workers.values() if now - w.last_heartbeat > PRESENCE_TTL
        ]:
            del self._workers[worker_id]
        return sort_workers(list(self._workers.values()))

    async def throughput(self, minutes: Sequence[int]) -> list[MinuteCounts]:
        """The counts of each minute asked for."""
        return [self._minutes.get(minute, MinuteCounts()) for minute in minutes]

    async def task_stats(self) -> dict[str, TaskStats]:
        """A copy of the totals."""
        return dict(self._tasks)

    async def reset_task_stats(self) -> None:
        """Forget the totals."""
        self._tasks.clear()
