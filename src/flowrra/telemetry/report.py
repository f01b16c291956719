"""Telemetry as the management API shows it: plain, JSON-ready values."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flowrra.telemetry.stats import TaskStats
from flowrra.telemetry.store import TelemetryStore, iso

if TYPE_CHECKING:
    from flowrra.app import Flowrra

#: How many minutes ``get_stats()["throughput"]`` covers (the current one included).
THROUGHPUT_MINUTES = 15


async def workers_report(store: TelemetryStore, now: float | None = None) -> list[dict[str, Any]]:
    """Every worker seen within the presence TTL, as ``get_stats()["workers"]`` lists them."""
    moment = time.time() if now is None else now
    return [worker.to_dict(moment) for worker in await store.workers(moment)]


async def throughput_report(
    store: TelemetryStore, now: float | None = None, minutes: int = THROUGHPUT_MINUTES
) -> list[dict[str, Any]]:
    """The last ``minutes`` minutes up to the current one, oldest first, summed over all
    workers: ``{"minute": ISO start, "succeeded", "failed", "retried"}``."""
    moment = time.time() if now is None else now
    current = int(moment) // 60 * 60
    starts = [current - 60 * back for back in range(minutes - 1, -1, -1)]
    counts = await store.throughput(starts)
    return [
        {
            "minute": iso(start),
            "succeeded": count.succeeded,
            "failed": count.failed,
            "retried": count.retried,
        }
        for start, count in zip(starts, counts, strict=True)
    ]


async def task_stats_report(store: TelemetryStore) -> list[dict[str, Any]]:
    """Every task name's totals (``TaskStats.to_dict``), sorted by name."""
    stats: dict[str, TaskStats] = await store.task_stats()
    return [stats[name].to_dict() for name in sorted(stats)]


async def _sync(app: Flowrra) -> None:
    """Publish this process's pending counts first, so a read includes them."""
    heartbeat = app.heartbeat
    if heartbeat is not None and heartbeat.running:
        await heartbeat.flush()


async def telemetry_stats(app: Flowrra) -> dict[str, Any]:
    """``{"workers": [...], "throughput": [...], "telemetry_error": None}`` for ``get_stats``.

    When the store cannot be read, both lists are empty and ``telemetry_error`` says why.
    """
    try:
        await _sync(app)
        store = app.telemetry
        now = time.time()
        return {
            "workers": await workers_report(store, now),
            "throughput": await throughput_report(store, now),
            "telemetry_error": None,
        }
    except Exception as error:  # stats report an unreadable store instead of failing
        return {"workers": [], "throughput": [], "telemetry_error": _describe(error)}


async def task_stats(app: Flowrra) -> list[dict[str, Any]]:
    """Every task name's totals across all workers (``FlowrraManager.get_task_stats``)."""
    await _sync(app)
    return await task_stats_report(app.telemetry)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
