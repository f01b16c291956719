"""Worker telemetry: presence, heartbeats, throughput and per-task statistics.

Each :class:`~flowrra.worker.Worker` counts its outcomes in a :class:`WorkerTelemetry`; a
:class:`Heartbeat` publishes them, with the worker's presence, to a
:class:`TelemetryStore` that any process of the app can read (through Redis when the
broker is Redis, else in this process). See ``docs/management.md`` and ``docs/metrics.md``.

Nothing here imports ``redis`` unless the app's broker is the Redis one.
"""

from __future__ import annotations

import sys

from flowrra.telemetry.accumulator import WorkerTelemetry
from flowrra.telemetry.heartbeat import Heartbeat
from flowrra.telemetry.memory import MemoryTelemetryStore
from flowrra.telemetry.stats import DURATION_BOUNDS, OUTCOMES, MinuteCounts, TaskStats
from flowrra.telemetry.store import (
    ALIVE_INTERVALS,
    PRESENCE_TTL,
    THROUGHPUT_TTL,
    Flush,
    TelemetryStore,
    WorkerPresence,
)

__all__ = [
    "ALIVE_INTERVALS",
    "DURATION_BOUNDS",
    "OUTCOMES",
    "PRESENCE_TTL",
    "THROUGHPUT_TTL",
    "Flush",
    "Heartbeat",
    "MemoryTelemetryStore",
    "MinuteCounts",
    "TaskStats",
    "TelemetryStore",
    "WorkerPresence",
    "WorkerTelemetry",
    "store_for_broker",
]


def store_for_broker(broker: object) -> TelemetryStore:
    """The store that matches ``broker``: Redis for a ``RedisBroker`` (on its connection
    and key prefix), else one in this process."""
    redis_brokers = sys.modules.get("flowrra.brokers.redis")  # loaded if one was built
    if redis_brokers is not None and isinstance(broker, redis_brokers.RedisBroker):
        from flowrra.telemetry.redis import RedisTelemetryStore  # noqa: PLC0415 - extra

        return RedisTelemetryStore(broker._client, broker.keys.prefix)
    return MemoryTelemetryStore()
