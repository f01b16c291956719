"""The Redis telemetry store: every process of an app sees every worker.

Needs ``pip install 'flowrra[redis]'``. It runs on the broker's own client (it does not
open or close connections) under the broker's key prefix; the key layout is in
:class:`~flowrra.redis_keys.TelemetryKeys`. A flush is one ``MULTI``/``EXEC`` transaction:
the presence, the throughput ``HINCRBY`` and the task stats ``HINCRBY``/``HINCRBYFLOAT``
are applied together or not at all.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from flowrra.redis_connection import Client
from flowrra.redis_keys import TelemetryKeys
from flowrra.telemetry.stats import BUCKETS, MinuteCounts, TaskStats
from flowrra.telemetry.store import (
    PRESENCE_TTL,
    THROUGHPUT_TTL,
    Flush,
    TelemetryStore,
    WorkerPresence,
    sort_workers,
)

logger = logging.getLogger("flowrra.telemetry")

_COUNT_FIELDS = ("success", "failed", "retried", "cancelled")
_BUCKET_FIELDS = tuple(f"b{index}" for index in range(BUCKETS))
_MINUTE_FIELDS = ("succeeded", "failed", "retried")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _int(raw: Mapping[bytes, bytes], field: str) -> int:
    value = raw.get(field.encode())
    return 0 if value is None else int(value)


def _parse_task(name: str, raw: Mapping[bytes, bytes]) -> TaskStats:
    """A task stats hash as :class:`TaskStats`; ``ValueError`` if a field is malformed."""
    duration = raw.get(b"duration_sum")
    success, failed, retried, cancelled = (_int(raw, field) for field in _COUNT_FIELDS)
    return TaskStats(
        name,
        success,
        failed,
        retried,
        cancelled,
        0.0 if duration is None else float(duration),
        tuple(_int(raw, field) for field in _BUCKET_FIELDS),
    )


class RedisTelemetryStore(TelemetryStore):
    """A :class:`TelemetryStore` in Redis, on ``client`` (owned by the caller) under ``prefix``."""

    def __init__(self, client: Client, prefix: str) -> None:
        self._client = client
        self.keys = TelemetryKeys(prefix)

    async def publish(self, flush: Flush) -> None:
        """One transaction: presence (expires after the presence TTL), index, counts."""
        keys = self.keys
        presence = flush.presence
        now_ms = int(presence.last_heartbeat * 1000)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(keys.worker(presence.id), presence.to_json(), px=int(PRESENCE_TTL * 1000))
            pipe.zadd(keys.workers, {presence.id: now_ms})
            pipe.zremrangebyscore(keys.workers, "-inf", now_ms - int(PRESENCE_TTL * 1000))
            for minute, counts in flush.minutes.items():
                key = keys.minute(minute)
                for field, value in zip(
                    _MINUTE_FIELDS, (counts.succeeded, counts.failed, counts.retried), strict=True
                ):
                    if value:
                        pipe.hincrby(key, field, value)
                pipe.expireat(key, minute + 60 + int(THROUGHPUT_TTL))
            for name, stats in flush.tasks.items():
                self._add_task(pipe, name, stats)
            await pipe.execute()

    def _add_task(self, pipe: Any, name: str, stats: TaskStats) -> None:
        key = self.keys.task(name)
        pipe.sadd(self.keys.tasks, name)
        counts = (stats.success, stats.failed, stats.retried, stats.cancelled)
        for field, value in zip(_COUNT_FIELDS, counts, strict=True):
            if value:
                pipe.hincrby(key, field, value)
        for field, value in zip(_BUCKET_FIELDS, stats.buckets, strict=True):
            if value:
                pipe.hincrby(key, field, value)
        if stats.duration_sum:
            pipe.hincrbyfloat(key, "duration_sum", stats.duration_sum)

    async def remove(self, worker_id: str) -> None:
        """Delete the presence and its index entry."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.worker(worker_id))
            pipe.zrem(self.keys.workers, worker_id)
            await pipe.execute()

    async def workers(self, now: float) -> list[WorkerPresence]:
        """Workers indexed within the TTL whose presence record is still there.

        A record that does not parse is skipped with a warning.
        """
        since = math.floor((now - PRESENCE_TTL) * 1000)
        raw_ids: list[Any] = await self._client.zrangebyscore(self.keys.workers, since, "+inf")
        if not raw_ids:
            return []
        ids = [_text(raw) for raw in raw_ids]
        bodies: list[Any] = await self._client.mget([self.keys.worker(i) for i in ids])
        found: list[WorkerPresence] = []
        for worker_id, body in zip(ids, bodies, strict=True):
            if body is None:
                continue  # expired, or removed between the two reads
            try:
                found.append(WorkerPresence.from_json(body))
            except ValueError as error:
                logger.warning("skipping worker %r: %s", worker_id, error)
        return sort_workers(found)

    async def throughput(self, minutes: Sequence[int]) -> list[MinuteCounts]:
        """One ``HGETALL`` per minute, pipelined."""
        async with self._client.pipeline(transaction=False) as pipe:
            for minute in minutes:
                pipe.hgetall(self.keys.minute(minute))
            replies: list[dict[bytes, bytes]] = await pipe.execute()
        return [
            MinuteCounts(*(_int(raw, field) for field in _MINUTE_FIELDS)) for raw in replies
        ]

    async def task_stats(self) -> dict[str, TaskStats]:
        """Every name in the index; a hash that does not parse is skipped with a warning."""
        names = sorted(_text(raw) for raw in await self._client.smembers(self.keys.tasks))
        if not names:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.task(name))
            replies: list[dict[bytes, bytes]] = await pipe.execute()
        stats: dict[str, TaskStats] = {}
        for name, raw in zip(names, replies, strict=True):
            try:
                stats[name] = _parse_task(name, raw)
            except ValueError as error:
                logger.warning("skipping the stats of task %r: %s", name, error)
        return stats

    async def reset_task_stats(self) -> None:
        """Delete every task's stats hash and the index."""
        names = [_text(raw) for raw in await self._client.smembers(self.keys.tasks)]
        await self._client.delete(self.keys.tasks, *(self.keys.task(name) for name in names))

    async def clear(self) -> None:
        """Delete every telemetry key of this prefix (workers, throughput, task stats)."""
        doomed = [key async for key in self._client.scan_iter(match=self._pattern())]
        for start in range(0, len(doomed), 500):
            await self._client.delete(*doomed[start : start + 500])

    def _pattern(self) -> str:
        base = self.keys.base
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in base)
        return escaped + "*"
