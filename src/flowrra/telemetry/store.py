"""Where workers publish their presence and counts, and where any process reads them.

:class:`TelemetryStore` is the contract; :class:`~flowrra.telemetry.memory.MemoryTelemetryStore`
keeps everything in this process, :class:`~flowrra.telemetry.redis.RedisTelemetryStore`
shares it between every process of an app on Redis.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from flowrra.telemetry.stats import MinuteCounts, TaskStats

#: Seconds a worker's presence is kept after its last heartbeat.
PRESENCE_TTL = 600.0
#: Seconds a minute's throughput counts are kept.
THROUGHPUT_TTL = 3600.0
#: A worker is alive while its last heartbeat is at most this many intervals old.
ALIVE_INTERVALS = 3


def iso(timestamp: float) -> str:
    """A UNIX time as an ISO 8601 string in UTC."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class WorkerPresence:
    """What one worker process says about itself at each heartbeat.

    ``started_at`` and ``last_heartbeat`` are UNIX times; ``processed`` counts tasks that
    ended (succeeded, failed for good or cancelled) and ``failed`` those that failed, both
    since the worker started. ``heartbeat_interval`` is the seconds between heartbeats.
    """

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    io: int
    cpu: int
    running: int
    processed: int
    failed: int
    started_at: float
    last_heartbeat: float
    heartbeat_interval: float

    def alive(self, now: float) -> bool:
        """True while the last heartbeat is within :data:`ALIVE_INTERVALS` intervals."""
        return now - self.last_heartbeat <= ALIVE_INTERVALS * self.heartbeat_interval

    def to_dict(self, now: float) -> dict[str, Any]:
        """The JSON-ready form of one entry of ``get_stats()["workers"]``."""
        return {
            "id": self.id,
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": {"io": self.io, "cpu": self.cpu},
            "running": self.running,
            "processed": self.processed,
            "failed": self.failed,
            "started_at": iso(self.started_at),
            "last_heartbeat": iso(self.last_heartbeat),
            "alive": self.alive(now),
        }

    def to_json(self) -> str:
        """The stored form (a JSON object of every field)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> WorkerPresence:
        """Parse :meth:`to_json`'s output; ``ValueError`` for anything else."""
        try:
            fields = json.loads(data)
            queues = fields.pop("queues")
            if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
                raise ValueError("queues must be a list of strings")
            presence = cls(queues=tuple(queues), **fields)
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a worker presence record: {error}") from None
        _check_presence(presence)
        return presence


def _check_presence(presence: WorkerPresence) -> None:
    for name in ("id", "hostname"):
        if not isinstance(getattr(presence, name), str):
            raise ValueError(f"worker presence field {name} must be a string")
    for name in ("pid", "io", "cpu", "running", "processed", "failed"):
        value = getattr(presence, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"worker presence field {name} must be an integer")
    for name in ("started_at", "last_heartbeat", "heartbeat_interval"):
        value = getattr(presence, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"worker presence field {name} must be a number")


@dataclass(frozen=True, slots=True)
class Flush:
    """One heartbeat's publication: the presence, and the counts since the last flush.

    ``minutes``: minute start (UNIX seconds, a multiple of 60) -> counts that ended in that
    minute. ``tasks``: task name -> counts and durations added since the last flush.
    """

    presence: WorkerPresence
    minutes: Mapping[int, MinuteCounts]
    tasks: Mapping[str, TaskStats]


class TelemetryStore(ABC):
    """Holds worker presence, per-minute throughput and per-task-name stats.

    Contract for every implementation:

    - :meth:`publish` replaces the worker's presence and adds the flush's counts to the
      shared totals, all or nothing: when it raises, nothing of the flush may be counted,
      so the caller publishes the same counts again later (a store on a network may
      count a flush twice if the connection drops after the server applied it, and never
      loses one).
    - Presence is kept :data:`PRESENCE_TTL` seconds after the last heartbeat, then
      forgotten; :meth:`remove` forgets it at once (a clean stop).
    - Throughput counts are kept at least :data:`THROUGHPUT_TTL` seconds; task stats are
      kept until :meth:`reset_task_stats`, across worker restarts.
    - Reads never modify the totals. Errors of the storage (a network outage) propagate.
    """

    @abstractmethod
    async def publish(self, flush: Flush) -> None:
        """Store ``flush.presence`` and add ``flush.minutes`` and ``flush.tasks``."""

    @abstractmethod
    async def remove(self, worker_id: str) -> None:
        """Forget the presence of ``worker_id`` (no error if unknown)."""

    @abstractmethod
    async def workers(self, now: float) -> list[WorkerPresence]:
        """Every worker whose last heartbeat is within :data:`PRESENCE_TTL` of ``now``
        (UNIX time), sorted by hostname, pid and id."""

    @abstractmethod
    async def throughput(self, minutes: Sequence[int]) -> list[MinuteCounts]:
        """The counts of each minute start in ``minutes``, in that order (zeros if none)."""

    @abstractmethod
    async def task_stats(self) -> dict[str, TaskStats]:
        """The totals of every task name ever published (and not reset)."""

    @abstractmethod
    async def reset_task_stats(self) -> None:
        """Forget every task name's totals."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release what the store owns (a store on a shared connection owns nothing)."""


def sort_workers(workers: list[WorkerPresence]) -> list[WorkerPresence]:
    """``workers`` in the order :meth:`TelemetryStore.workers` promises."""
    return sorted(workers, key=lambda w: (w.hostname, w.pid, w.id))
