"""The in-memory result backend: bounded memory, expiry and waiters."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.backends import InMemoryBackend
from flowrra.task import TaskResult, TaskStatus


def finished(task_id: str) -> TaskResult:
    return TaskResult(task_id, TaskStatus.SUCCESS, "job", result=task_id)


async def test_size_bound_drops_the_oldest_finished_results() -> None:
    backend = InMemoryBackend(max_results=1000)
    await backend.store("running", TaskResult("running", TaskStatus.RUNNING, "job"))
    for index in range(5000):
        await backend.store(f"t{index}", finished(f"t{index}"))
    assert len(backend) == 1001
    assert await backend.get("t0") is None
    assert await backend.get("t4999") is not None
    running = await backend.get("running")
    assert running is not None, "unfinished records never expire"


async def test_ttl_expires_finished_results_only() -> None:
    backend = InMemoryBackend(ttl=0.5, max_results=None)
    await backend.store("done", finished("done"))
    await backend.store("active", TaskResult("active", TaskStatus.RUNNING, "job"))
    assert await backend.get("done") is not None
    await asyncio.sleep(0.6)
    assert await backend.get("done") is None
    assert await backend.get("active") is not None
    await backend.store("fresh", finished("fresh"))
    assert len(backend) == 2


def test_invalid_bounds_are_rejected() -> None:
    with pytest.raises(ValueError, match="ttl"):
        InMemoryBackend(ttl=0)
    with pytest.raises(ValueError, match="max_results"):
        InMemoryBackend(max_results=0)


async def test_default_app_does_not_keep_every_result() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=8, max_queue_size=10_000)))

    @app.task
    async def noop(value: int) -> int:
        return value

    total = 120_000
    async with app:
        for index in range(total):
            await app.submit(noop, index)
        await app.run_until_idle(timeout=60)
    backend = app.backend
    assert isinstance(backend, InMemoryBackend)
    assert len(backend) == 100_000, "the default bound keeps the 100,000 newest results"


async def test_waiters_are_woken_without_polling() -> None:
    backend = InMemoryBackend()
    await backend.store("t", TaskResult("t", TaskStatus.PENDING, "job"))
    waiter = asyncio.ensure_future(backend.wait_for("t", timeout=5))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await backend.store("t", finished("t"))
    result = await waiter
    assert result.result == "t"
    assert time.monotonic() - started < 0.5
    assert not backend._waiters, "no waiter is left behind"
