"""Helpers for tests on a real Redis: an isolated database and key prefix per test."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _services import require_redis, require_redis_cluster
from flowrra import Flowrra, TaskStatus
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker

# redis-server options of the tests' own servers: append-only persistence, flushed on
# every write, so a restarted server has everything it acknowledged
PERSISTENCE_OPTIONS = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")

# one non-zero database per test run, so runs and other users of database 0 never collide
RUN_DB = random.randint(1, 15)


def redis_url() -> str:
    """The test Redis URL on this run's database (skips, or fails in CI, without Redis)."""
    base = require_redis().rsplit("/", 1)[0]
    return f"{base}/{RUN_DB}"


def cluster_url() -> str:
    """The test Redis Cluster's URL (a cluster has one database: tests keep to their own
    prefixes); skips, or fails in CI, without it."""
    return require_redis_cluster()


def unique_prefix(kind: str) -> str:
    """A key prefix no other test uses."""
    return f"flowrra-test-{kind}-{uuid.uuid4().hex[:12]}"


class ScratchBroker(RedisBroker):
    """A broker on its own prefix whose keys are deleted when it closes."""

    async def close(self) -> None:
        try:
            await self.purge()
        finally:
            await super().close()


def scratch_broker(url: str | None = None, **options: Any) -> ScratchBroker:
    """A :class:`ScratchBroker` on ``url`` (default: this run's database) with a fresh
    prefix."""
    options.setdefault("prefix", unique_prefix("broker"))
    return ScratchBroker(url or redis_url(), **options)


def scratch_backend(url: str | None = None, **options: Any) -> RedisBackend:
    """A :class:`RedisBackend` on ``url`` (default: this run's database) with a fresh
    prefix."""
    options.setdefault("prefix", unique_prefix("backend"))
    return RedisBackend(url or redis_url(), **options)


async def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def run_with_interruption(
    url: str, prefix: str, interrupt: Callable[[], Awaitable[Any]], tasks: int = 300
) -> tuple[int, Any]:
    """Run ``tasks`` short tasks on an app (worker included) on Redis at ``url``; a third of
    the way through, await ``interrupt()`` (a restart, a slot move...). Asserts that every
    task then succeeded and every one ran; returns how many had run when the interruption
    began, and what ``interrupt`` returned."""
    app = Flowrra.from_urls(
        broker=RedisBroker(url, prefix=prefix, lease=3.0),
        backend=RedisBackend(url, prefix=prefix),
    )
    done: list[int] = []
    a_third_done = asyncio.Event()

    @app.task(max_retries=0)
    async def step(n: int) -> int:
        await asyncio.sleep(0.01)
        done.append(n)
        if len(done) >= tasks // 3:
            a_third_done.set()
        return n

    await app.start()
    try:
        ids = [await step.submit(n) for n in range(tasks)]
        await asyncio.wait_for(a_third_done.wait(), 30)
        ran_before = len(done)
        outcome = await interrupt()
        records = [await app.wait_for_result(task_id, timeout=60) for task_id in ids]
    finally:
        await app.close()
    assert [r.status for r in records] == [TaskStatus.SUCCESS] * tasks
    assert sorted(set(done)) == list(range(tasks)), "every task ran"
    return ran_before, outcome
