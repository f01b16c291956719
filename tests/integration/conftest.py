"""Fixtures for the Redis integration tests: isolated brokers, backends and a raw client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from integration.redis_support import (
    redis_url,
    scratch_backend,
    scratch_broker,
    unique_prefix,
)

pytestmark = pytest.mark.service


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test only."""
    return unique_prefix("it")


@pytest.fixture
async def app_prefix() -> AsyncIterator[str]:
    """A key prefix of this test only; its broker and backend keys are removed afterwards
    (for tests that build apps rather than brokers and backends)."""
    name = unique_prefix("app")
    yield name
    await scratch_broker(prefix=name).close()
    backend = scratch_backend(prefix=name)
    await backend.clear()
    await backend.close()
    client = aioredis.Redis.from_url(redis_url())
    try:  # what a worker's telemetry left
        leftovers = [key async for key in client.scan_iter(match=f"{name}:*")]
        if leftovers:
            await client.delete(*leftovers)
    finally:
        await client.aclose()


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test database (to inspect or corrupt keys directly)."""
    client = aioredis.Redis.from_url(redis_url())
    yield client
    await client.aclose()


@pytest.fixture
async def make_broker(prefix: str) -> AsyncIterator[Callable[..., RedisBroker]]:
    """Builds brokers sharing this test's prefix (like worker processes of one app).

    A test may close one early to play a worker that died; all are closed afterwards and
    the prefix's keys deleted.
    """
    built: list[RedisBroker] = []

    def make(**options: Any) -> RedisBroker:
        broker = RedisBroker(redis_url(), prefix=prefix, **options)
        built.append(broker)
        return broker

    yield make
    for broker in reversed(built):
        await broker.close()
    await scratch_broker(prefix=prefix).close()


@pytest.fixture
async def make_backend(prefix: str) -> AsyncIterator[Callable[..., RedisBackend]]:
    """Builds backends sharing this test's prefix; all are cleared and closed afterwards."""
    built: list[RedisBackend] = []

    def make(**options: Any) -> RedisBackend:
        backend = scratch_backend(prefix=prefix, **options)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        await backend.clear()
        await backend.close()
