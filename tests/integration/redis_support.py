"""Helpers for tests on a real Redis: an isolated database and key prefix per test."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from _services import require_redis, require_redis_cluster
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker

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
