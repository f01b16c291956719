"""The in-process result backend.

Records of unfinished tasks live in one dict and never expire. Finished records live in an
ordered dict in the order they finished; since every finished record has the same TTL,
that order is also their expiry order, so expiry and the size bound only ever drop from
the front (O(1) per store, no timers, no scans). Waiters are futures resolved by the
``store`` that completes their task: nothing polls.

To keep the hot path cheap, a pending task's record is the queued :class:`Task` itself and
a running task's record is a small tuple; a :class:`TaskResult` is built only when
somebody reads it.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from flowrra.backends.base import BaseResultBackend
from flowrra.backends.waiters import ResultWaiters
from flowrra.exceptions import TaskNotFoundError
from flowrra.task import (
    CANCELLED,
    FAILED,
    PENDING,
    SUCCESS,
    Task,
    TaskResult,
    TaskStatus,
    is_terminal,
    live_record,
)

# An unfinished task's record, kept as what it is built from: (task, status, started, deliveries)
_Live = tuple[Task, TaskStatus, datetime | None, int]


def _build(entry: TaskResult | Task | _Live) -> TaskResult:
    if type(entry) is TaskResult:
        return entry
    if type(entry) is Task:
        return live_record(entry, PENDING, None, 0)
    return live_record(*entry)  # type: ignore[misc]


class InMemoryBackend(BaseResultBackend):
    """Results in this process's memory, bounded by ``ttl`` and ``max_results``.

    ``ttl``: seconds a finished record is kept (``None``: until pushed out by the bound).
    ``max_results``: the most finished records kept; the oldest go first (``None``: no
    bound, so set a ``ttl``). The defaults keep the 100,000 most recent results.
    """

    def __init__(self, ttl: float | None = None, max_results: int | None = 100_000) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds or None")
        if max_results is not None and max_results < 1:
            raise ValueError("max_results must be >= 1 or None")
        self.ttl = ttl
        self.max_results = max_results
        self._active: dict[str, TaskResult | Task | _Live] = {}
        self._finished: OrderedDict[str, TaskResult] = OrderedDict()
        self._finished_at: dict[str, float] = {}  # monotonic finish times, kept with a ttl
        self._waiters = ResultWaiters()
        self.finished_now: Callable[[str], TaskResult | None] = (
            self._finished.get if ttl is None else self._finished_unexpired
        )
        """The record of a task id if it is complete (and not expired), else None."""

    async def store(self, task_id: str, result: TaskResult) -> None:
        """Save the record; a complete one wakes the task's waiters."""
        self.store_now(task_id, result)

    def mark_live(
        self, task: Task, status: TaskStatus, started_at: datetime | None, deliveries: int
    ) -> bool:
        """Record an unfinished state without building a record until one is read.

        Returns True (it always stores), so it can stand in for a recorder's fast path.
        """
        if status is PENDING and deliveries == 0:
            self._active[task.id] = task
        else:
            self._active[task.id] = (task, status, started_at, deliveries)
        return True

    def store_now(self, task_id: str, result: TaskResult) -> bool:
        """:meth:`store` without awaiting (the in-process fast path); returns True."""
        finished = self._finished
        status = result.status
        if not (status is SUCCESS or status is FAILED or status is CANCELLED):
            if task_id in finished:
                del finished[task_id]
            self._active[task_id] = result
            return True
        self._active.pop(task_id, None)
        if task_id in finished:
            finished.move_to_end(task_id)
        finished[task_id] = result
        if self.ttl is not None:
            self._finished_at[task_id] = time.monotonic()
            self._expire()
        bound = self.max_results
        if bound is not None and len(finished) > bound:
            oldest, _ = finished.popitem(last=False)
            self._finished_at.pop(oldest, None)
        if self._waiters:
            self._waiters.resolve(task_id, result)
        return True

    def _expire(self) -> None:
        if self.ttl is None:
            return
        finished, finished_at = self._finished, self._finished_at
        deadline = time.monotonic() - self.ttl
        while finished:
            oldest = next(iter(finished))
            if finished_at.get(oldest, deadline) > deadline:
                return
            del finished[oldest]
            finished_at.pop(oldest, None)

    async def get(self, task_id: str) -> TaskResult | None:
        """The latest record, or ``None`` (unknown or expired)."""
        return self.get_now(task_id)

    def get_now(self, task_id: str) -> TaskResult | None:
        """:meth:`get` without awaiting."""
        entry = self._active.get(task_id)
        if entry is not None:
            return _build(entry)
        return self.finished_now(task_id)

    def _finished_unexpired(self, task_id: str) -> TaskResult | None:
        record = self._finished.get(task_id)
        if record is not None:
            self._expire()
            return self._finished.get(task_id)
        return record

    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        """Wait for completion; woken by the completing ``store``."""
        record = self.get_now(task_id)
        if record is None:
            raise TaskNotFoundError(task_id, f"Task id '{task_id}' is unknown (or expired)")
        if is_terminal(record.status):
            return record
        return await self._waiters.until(task_id, self._waiters.add(task_id), timeout)

    async def delete(self, task_id: str) -> bool:
        """Remove the record; True if there was one."""
        found = self._active.pop(task_id, None) is not None
        self._finished_at.pop(task_id, None)
        return self._finished.pop(task_id, None) is not None or found

    async def clear(self) -> int:
        """Remove every record."""
        count = len(self._active) + len(self._finished)
        self._active.clear()
        self._finished.clear()
        self._finished_at.clear()
        return count

    async def list_by_status(
        self, status: TaskStatus, limit: int | None = None, offset: int = 0
    ) -> list[TaskResult]:
        """Records in ``status``, most recent first."""
        status = TaskStatus(status)
        if is_terminal(status):
            self._expire()
            records = iter(reversed(self._finished.values()))
        else:
            records = (_build(entry) for entry in reversed(self._active.values()))
        matching = (record for record in records if record.status == status)
        stop = None if limit is None else offset + limit
        return list(itertools.islice(matching, offset, stop))

    async def count_by_status(self) -> dict[TaskStatus, int]:
        """Records per status, counted in one pass without building any record."""
        self._expire()
        counts = dict.fromkeys(TaskStatus, 0)
        for record in self._finished.values():
            counts[record.status] += 1
        for entry in self._active.values():
            if isinstance(entry, Task):
                counts[PENDING] += 1
            elif isinstance(entry, TaskResult):
                counts[entry.status] += 1
            else:
                counts[entry[1]] += 1
        return counts

    def __len__(self) -> int:
        return len(self._active) + len(self._finished)
