"""The worker's own counters, updated once per finished task.

:class:`WorkerTelemetry` is owned by one :class:`~flowrra.worker.Worker`; only that
worker's event loop touches it, so it needs no lock. :meth:`WorkerTelemetry.succeeded` is
on the hot path (an in-process worker finishes 100,000 tasks a second): it reuses the
record's own timestamps and costs one dict lookup, one datetime subtraction and
comparison, and two integer additions. A run longer than the first bucket bound costs a
bisection more.

Per-minute throughput is not counted per task either: the counters only grow, and
:meth:`WorkerTelemetry.take_minutes` hands out what was counted since its previous call,
as counts of the minute that call was made in. The heartbeat calls it every few seconds
and at every minute boundary, so each count lands in the minute it ended in.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from datetime import datetime, timedelta

from flowrra.telemetry.stats import BUCKETS, DURATION_BOUNDS, MinuteCounts, TaskStats

_FIRST_BOUND = timedelta(seconds=DURATION_BOUNDS[0])


def minute_of(moment: float) -> int:
    """The UNIX time (seconds) of the start of the minute of UNIX time ``moment``."""
    return int(moment) // 60 * 60


class _Counters:
    """The mutable counters of one task name (see :class:`TaskStats` for the meaning).

    Durations up to the first bound are counted in ``fast`` and summed in whole
    microseconds in ``fast_micros`` (exact, and cheaper than a float conversion); longer
    ones go to ``slow`` (per bucket) and ``slow_sum`` (seconds).
    """

    __slots__ = ("cancelled", "failed", "fast", "fast_micros", "retried", "slow", "slow_sum")

    def __init__(self) -> None:
        self.fast = 0
        self.fast_micros = 0
        self.slow = [0] * BUCKETS
        self.slow_sum = 0.0
        self.failed = 0
        self.retried = 0
        self.cancelled = 0

    def observe(self, elapsed: timedelta) -> None:
        """Count a successful run longer than the first bound (or negative: the wall
        clock was set back during the run, so it counts as zero)."""
        seconds = max(elapsed.total_seconds(), 0.0)
        self.slow_sum += seconds
        self.slow[bisect_left(DURATION_BOUNDS, seconds)] += 1

    def succeeded(self) -> int:
        return self.fast + sum(self.slow)

    def snapshot(self, name: str) -> TaskStats:
        buckets = list(self.slow)
        buckets[0] += self.fast
        return TaskStats(
            name,
            self.fast + sum(self.slow),
            self.failed,
            self.retried,
            self.cancelled,
            self.fast_micros / 1_000_000 + self.slow_sum,
            tuple(buckets),
        )


class WorkerTelemetry:
    """Outcome counts and durations per task name, and per-minute totals, of one worker.

    Counts only grow; :meth:`task_stats` and :meth:`totals` snapshot them. Per-minute
    counts are handed out once by :meth:`take_minutes` (for publishing) and can be handed
    back with :meth:`give_back_minutes` when publishing failed, so nothing is lost.
    """

    __slots__ = ("_mark", "_pending", "_since", "_tasks")

    def __init__(self, now: float | None = None) -> None:
        self._tasks: dict[str, _Counters] = {}
        self._pending: dict[int, MinuteCounts] = {}
        self._mark = MinuteCounts()
        self._since = time.time() if now is None else now

    # -- counting (the worker's event loop only) -------------------------------------

    def succeeded(self, name: str, started_at: datetime, finished_at: datetime) -> None:
        """A run of task ``name`` succeeded (the record's aware start and finish times).

        A run during which the wall clock was set back counts as a run of the first
        bucket (its duration is then off by less than one second).
        """
        try:
            counters = self._tasks[name]
        except KeyError:  # the first run of this name (a lookup is cheaper than .get)
            counters = self._tasks[name] = _Counters()
        elapsed = finished_at - started_at
        if elapsed <= _FIRST_BOUND:
            counters.fast += 1
            counters.fast_micros += elapsed.microseconds
        else:
            counters.observe(elapsed)

    def failed(self, name: str) -> None:
        """Task ``name`` failed for good (no retry left, not retryable, or dead-lettered)."""
        self._counters(name).failed += 1

    def retried(self, name: str) -> None:
        """An attempt of task ``name`` failed and the task waits for its retry."""
        self._counters(name).retried += 1

    def cancelled(self, name: str) -> None:
        """A running task ``name`` was cancelled."""
        self._counters(name).cancelled += 1

    def _counters(self, name: str) -> _Counters:
        counters = self._tasks.get(name)
        if counters is None:
            counters = self._tasks[name] = _Counters()
        return counters

    # -- reading -----------------------------------------------------------------------

    def totals(self) -> MinuteCounts:
        """Everything counted so far: succeeded, failed and retried, over all task names."""
        succeeded = failed = retried = 0
        for counters in self._tasks.values():
            succeeded += counters.succeeded()
            failed += counters.failed
            retried += counters.retried
        return MinuteCounts(succeeded, failed, retried)

    def task_stats(self) -> dict[str, TaskStats]:
        """A snapshot of every task name's counters."""
        return {name: counters.snapshot(name) for name, counters in self._tasks.items()}

    def take_minutes(self, now: float | None = None) -> dict[int, MinuteCounts]:
        """Per-minute counts (minute start, UNIX seconds -> counts) not taken before.

        What was counted since the previous call is counted in the minute of that call
        (the first call: of this object's creation); ``now`` (UNIX time, default the
        clock) starts the next span. Counts handed back by :meth:`give_back_minutes` are
        included. Minutes with nothing counted are left out.
        """
        moment = time.time() if now is None else now
        taken, self._pending = self._pending, {}
        totals = self.totals()
        counted = totals.minus(self._mark)
        self._mark = totals
        if not counted.is_empty:
            _add(taken, minute_of(self._since), counted)
        self._since = moment
        return taken

    def give_back_minutes(self, minutes: dict[int, MinuteCounts]) -> None:
        """Return counts from :meth:`take_minutes` that could not be published."""
        for minute, counts in minutes.items():
            _add(self._pending, minute, counts)


def _add(minutes: dict[int, MinuteCounts], minute: int, counts: MinuteCounts) -> None:
    known = minutes.get(minute)
    minutes[minute] = counts if known is None else known.plus(counts)
