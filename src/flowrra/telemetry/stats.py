"""Per-task-name statistics as plain values: outcome counts and a duration histogram.

:class:`TaskStats` is what the worker's accumulator snapshots, what a store adds up across
workers and what the management API and the Prometheus exposition read. Durations are those
of successful runs, in seconds, counted in the fixed buckets of :data:`DURATION_BOUNDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Upper bounds (seconds, inclusive) of the duration buckets; a last bucket holds the rest.
DURATION_BOUNDS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Number of buckets: one per bound plus the unbounded last one.
BUCKETS = len(DURATION_BOUNDS) + 1
#: The outcomes counted per task name, in the order of ``TaskStats.outcomes``.
OUTCOMES: tuple[str, ...] = ("success", "failed", "retried", "cancelled")
_NO_BUCKETS: tuple[int, ...] = (0,) * BUCKETS


def _check_buckets(buckets: Sequence[int]) -> None:
    if len(buckets) != BUCKETS:
        raise ValueError(f"a duration histogram has {BUCKETS} buckets, got {len(buckets)}")


@dataclass(frozen=True, slots=True)
class TaskStats:
    """Outcomes and durations of one task name.

    ``buckets[i]`` counts successful runs that took more than ``DURATION_BOUNDS[i - 1]``
    and at most ``DURATION_BOUNDS[i]`` seconds (the last bucket: more than the last
    bound); the counts are per bucket, not cumulative. ``duration_sum`` is the total time
    of those runs. ``retried`` counts attempts that failed and were retried; ``failed``
    counts tasks that failed for good.
    """

    name: str
    success: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    duration_sum: float = 0.0
    buckets: tuple[int, ...] = _NO_BUCKETS

    def __post_init__(self) -> None:
        _check_buckets(self.buckets)

    @property
    def duration_count(self) -> int:
        """How many durations the histogram holds (one per successful run)."""
        return sum(self.buckets)

    @property
    def outcomes(self) -> dict[str, int]:
        """``{"success": n, "failed": n, "retried": n, "cancelled": n}``."""
        return {
            "success": self.success,
            "failed": self.failed,
            "retried": self.retried,
            "cancelled": self.cancelled,
        }

    @property
    def is_empty(self) -> bool:
        """True when nothing was counted."""
        return not (
            self.success or self.failed or self.retried or self.cancelled or self.duration_sum
        ) and not any(self.buckets)

    def plus(self, other: TaskStats) -> TaskStats:
        """The sum of both (``other``'s name is ignored)."""
        return TaskStats(
            self.name,
            self.success + other.success,
            self.failed + other.failed,
            self.retried + other.retried,
            self.cancelled + other.cancelled,
            self.duration_sum + other.duration_sum,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )

    def minus(self, other: TaskStats) -> TaskStats:
        """What was counted since ``other`` (an earlier snapshot of the same counters)."""
        return TaskStats(
            self.name,
            self.success - other.success,
            self.failed - other.failed,
            self.retried - other.retried,
            self.cancelled - other.cancelled,
            self.duration_sum - other.duration_sum,
            tuple(a - b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (0 < q <= 1) of the durations, in seconds.

        Interpolates linearly inside the bucket that holds it, as Prometheus'
        ``histogram_quantile`` does; a quantile in the unbounded last bucket is reported as
        the last bound. ``None`` when no duration was counted.
        """
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q!r}")
        total = self.duration_count
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.buckets):
            if count and seen + count >= rank:
                if index == len(DURATION_BOUNDS):
                    return DURATION_BOUNDS[-1]
                lower = DURATION_BOUNDS[index - 1] if index else 0.0
                upper = DURATION_BOUNDS[index]
                return lower + (upper - lower) * (rank - seen) / count
            seen += count
        return DURATION_BOUNDS[-1]  # pragma: no cover - the loop always reaches the rank

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of ``FlowrraManager.get_task_stats``.

        ``{"name", "outcomes": {...}, "duration": {"count", "sum", "avg", "p50", "p95",
        "p99", "buckets": [{"le": bound or None (no bound), "count": cumulative}]}}``;
        ``avg`` and the quantiles are ``None`` with no duration counted.
        """
        count = self.duration_count
        cumulative = 0
        buckets: list[dict[str, Any]] = []
        for bound, bucket in zip((*DURATION_BOUNDS, None), self.buckets, strict=True):
            cumulative += bucket
            buckets.append({"le": bound, "count": cumulative})
        return {
            "name": self.name,
            "outcomes": self.outcomes,
            "duration": {
                "count": count,
                "sum": self.duration_sum,
                "avg": self.duration_sum / count if count else None,
                "p50": self.quantile(0.5),
                "p95": self.quantile(0.95),
                "p99": self.quantile(0.99),
                "buckets": buckets,
            },
        }


def merge_stats(parts: Iterable[TaskStats]) -> dict[str, TaskStats]:
    """The stats of every name in ``parts``, added up per name."""
    merged: dict[str, TaskStats] = {}
    for stats in parts:
        known = merged.get(stats.name)
        merged[stats.name] = stats if known is None else known.plus(stats)
    return merged


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """Tasks that ended in one minute: succeeded, failed for good, and retried attempts."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0

    def plus(self, other: MinuteCounts) -> MinuteCounts:
        """The sum of both."""
        return MinuteCounts(
            self.succeeded + other.succeeded,
            self.failed + other.failed,
            self.retried + other.retried,
        )

    def minus(self, other: MinuteCounts) -> MinuteCounts:
        """The counts added since ``other``."""
        return MinuteCounts(
            self.succeeded - other.succeeded,
            self.failed - other.failed,
            self.retried - other.retried,
        )

    @property
    def is_empty(self) -> bool:
        """True when all three counts are zero."""
        return not (self.succeeded or self.failed or self.retried)
