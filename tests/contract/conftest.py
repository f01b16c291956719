"""Fixtures that yield every broker and result backend implementation.

Each implementation is one entry in ``BROKER_FACTORIES`` / ``BACKEND_FACTORIES``; a test in
this folder runs once per entry, so every implementation meets the same contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from flowrra.backends import InMemoryBackend
from flowrra.backends.base import BaseResultBackend
from flowrra.brokers import MemoryBroker
from flowrra.brokers.base import QueueBroker

BrokerFactory = Callable[[int], Awaitable[QueueBroker]]
BackendFactory = Callable[[], Awaitable[BaseResultBackend]]


async def _memory_broker(max_size: int) -> QueueBroker:
    return MemoryBroker(max_size=max_size)


async def _memory_backend() -> BaseResultBackend:
    return InMemoryBackend(ttl=None, max_results=1000)


async def _redis_broker(max_size: int) -> QueueBroker:
    from integration.redis_support import scratch_broker

    return scratch_broker(max_size=max_size)


async def _redis_backend() -> BaseResultBackend:
    from integration.redis_support import scratch_backend

    return scratch_backend(ttl=None)


async def _redis_cluster_broker(max_size: int) -> QueueBroker:
    from integration.redis_support import cluster_url, scratch_broker

    return scratch_broker(cluster_url(), max_size=max_size)


async def _redis_cluster_backend() -> BaseResultBackend:
    from integration.redis_support import cluster_url, scratch_backend

    return scratch_backend(cluster_url(), ttl=None)


BROKER_FACTORIES: dict[str, BrokerFactory] = {
    "memory": _memory_broker,
    "redis": _redis_broker,
    "redis-cluster": _redis_cluster_broker,
}
BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "memory": _memory_backend,
    "redis": _redis_backend,
    "redis-cluster": _redis_cluster_backend,
}


@pytest.fixture(params=sorted(BROKER_FACTORIES))
def broker_factory(request: pytest.FixtureRequest) -> BrokerFactory:
    """Builds a fresh, empty broker of one implementation with a given size bound."""
    factory: BrokerFactory = BROKER_FACTORIES[request.param]
    return factory


@pytest.fixture
async def broker(broker_factory: BrokerFactory) -> AsyncIterator[QueueBroker]:
    """A fresh, empty broker (bound: 100 waiting tasks)."""
    built = await broker_factory(100)
    yield built
    await built.close()


@pytest.fixture(params=sorted(BACKEND_FACTORIES))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[BaseResultBackend]:
    """A fresh, empty result backend of one implementation."""
    built = await BACKEND_FACTORIES[request.param]()
    yield built
    await built.clear()
    await built.close()
