"""Prometheus exposition of an app's queues, workers and per-task statistics.

Needs ``pip install 'flowrra[metrics]'`` (``prometheus_client``), imported only when a
page is rendered. :func:`render_prometheus` reads a snapshot through a
:class:`~flowrra.management.FlowrraManager` (asynchronously, so a scrape never blocks the
event loop on Redis), then builds the text exposition from that snapshot with a private
``CollectorRegistry``: nothing is registered in ``prometheus_client``'s global registry,
and two apps in one process never share a metric. Every metric and its labels are listed
in ``docs/metrics.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from flowrra.management import FlowrraManager

logger = logging.getLogger("flowrra.metrics")

#: The ``queue`` and ``priority`` label of totals when the broker gives no per-queue detail.
ALL = "all"


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401, PLC0415 - optional extra
    except ModuleNotFoundError as missing:
        raise ImportError(
            "the Prometheus exposition needs prometheus_client: pip install 'flowrra[metrics]'"
        ) from missing


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape shows: ``FlowrraManager.get_stats()`` and ``get_task_stats()``."""

    stats: dict[str, Any]
    tasks: list[dict[str, Any]]


async def take_snapshot(manager: FlowrraManager) -> Snapshot:
    """Read the stats and task stats; task stats that cannot be read are left out (logged)."""
    stats = await manager.get_stats()
    try:
        tasks = await manager.get_task_stats()
    except Exception as error:  # a scrape shows what it can
        logger.warning("metrics: task stats unavailable: %s: %s", type(error).__name__, error)
        tasks = []
    return Snapshot(stats, tasks)


def _queue_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 - optional extra

    depth = GaugeMetricFamily(
        "flowrra_queue_depth", "Tasks ready to run", labels=["queue", "priority"]
    )
    delayed = GaugeMetricFamily(
        "flowrra_queue_delayed", "Tasks waiting for their due time", labels=["queue"]
    )
    in_flight = GaugeMetricFamily(
        "flowrra_queue_in_flight", "Tasks claimed by a worker", labels=["queue"]
    )
    dead = GaugeMetricFamily("flowrra_dead_letters", "Dead-lettered tasks", labels=["queue"])
    oldest = GaugeMetricFamily(
        "flowrra_queue_oldest_age_seconds",
        "Age of the oldest ready task",
        labels=["queue"],
    )
    details = stats.get("queue_details") or []
    for detail in details:
        queue = str(detail["queue"])
        for priority, count in detail.get("by_priority", {}).items():
            depth.add_metric([queue, str(priority)], count)
        for family, key in ((delayed, "delayed"), (in_flight, "in_flight"), (dead, "dead")):
            if detail.get(key) is not None:
                family.add_metric([queue], detail[key])
        if detail.get("oldest_age") is not None:
            oldest.add_metric([queue], detail["oldest_age"])
    totals = stats.get("queues")
    if not details and totals is not None:
        if totals.get("ready") is not None:
            depth.add_metric([ALL, ALL], totals["ready"])
        for family, key in ((delayed, "delayed"), (in_flight, "in_flight"), (dead, "dead")):
            if totals.get(key) is not None:
                family.add_metric([ALL], totals[key])
    yield from (depth, delayed, in_flight, dead, oldest)


def _worker_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 - optional extra

    workers = stats.get("workers") or []
    alive = [worker for worker in workers if worker["alive"]]
    yield GaugeMetricFamily(
        "flowrra_workers_alive", "Workers whose heartbeat is recent", value=len(alive)
    )
    yield GaugeMetricFamily(
        "flowrra_workers_stale",
        "Workers seen in the last 10 minutes whose heartbeat is stale",
        value=len(workers) - len(alive),
    )
    yield GaugeMetricFamily(
        "flowrra_tasks_running",
        "Tasks the alive workers are running",
        value=sum(worker["running"] for worker in alive),
    )


def _task_metrics(tasks: list[dict[str, Any]]) -> Iterator[Metric]:
    from prometheus_client.core import (  # noqa: PLC0415 - optional extra
        CounterMetricFamily,
        HistogramMetricFamily,
    )

    outcomes = CounterMetricFamily(
        "flowrra_task_outcomes", "Task runs by outcome", labels=["task", "outcome"]
    )
    retries = CounterMetricFamily("flowrra_task_retries", "Attempts retried", labels=["task"])
    durations = HistogramMetricFamily(
        "flowrra_task_duration_seconds", "Duration of successful runs", labels=["task"]
    )
    for entry in tasks:
        name = entry["name"]
        for outcome, count in entry["outcomes"].items():
            outcomes.add_metric([name, outcome], count)
        retries.add_metric([name], entry["outcomes"]["retried"])
        duration = entry["duration"]
        buckets = [
            ("+Inf" if bucket["le"] is None else repr(float(bucket["le"])), bucket["count"])
            for bucket in duration["buckets"]
        ]
        durations.add_metric([name], buckets, duration["sum"])
    yield from (outcomes, retries, durations)


class SnapshotCollector:
    """A ``prometheus_client`` collector over one :class:`Snapshot` (no I/O in ``collect``)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every metric of the snapshot."""
        yield from _queue_metrics(self.snapshot.stats)
        yield from _worker_metrics(self.snapshot.stats)
        yield from _task_metrics(self.snapshot.tasks)


def exposition(snapshot: Snapshot) -> tuple[bytes, str]:
    """The text exposition of ``snapshot`` and its content type."""
    _require_prometheus()
    from prometheus_client import (  # noqa: PLC0415 - optional extra
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
    )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def render_prometheus(manager: FlowrraManager) -> tuple[bytes, str]:
    """The ``/metrics`` page of ``manager``'s app: ``(body, content type)``.

    Raises ``ImportError`` naming ``pip install 'flowrra[metrics]'`` without
    ``prometheus_client`` (before reading anything).
    """
    _require_prometheus()
    return exposition(await take_snapshot(manager))
