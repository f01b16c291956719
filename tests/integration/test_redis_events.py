"""Record updates cross processes: every stored record reaches listeners of any backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from flowrra import Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.task import TaskResult, TaskStatus
from integration.redis_support import redis_url

pytestmark = pytest.mark.service


async def double(value: int) -> int:
    return value * 2


def make_app(prefix: str) -> Flowrra:
    app = Flowrra.from_urls(
        broker=RedisBroker(redis_url(), prefix=prefix),
        backend=RedisBackend(redis_url(), prefix=prefix),
    )
    app.task(name="double")(double)
    return app


async def close(app: Flowrra) -> None:
    await app.stop()
    await app.broker.close()
    await app.backend.close()


async def test_a_producer_sees_every_state_of_a_task_run_by_another_app(prefix: str) -> None:
    producer, worker = make_app(prefix), make_app(prefix)
    seen: list[dict[str, Any]] = []
    ended = asyncio.Event()

    def collect(event: dict[str, Any]) -> None:
        seen.append(event)
        if event["task"]["status"] == "success":
            ended.set()

    backend = producer.backend
    assert isinstance(backend, RedisBackend)
    await backend.listen_updates(collect)
    await worker.start()
    await producer.start(worker=False)
    try:
        task_id = await producer.submit("double", 21)
        assert (await producer.wait_for_result(task_id, timeout=10)).result == 42
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        await backend.clear()
        await close(producer)
        await close(worker)
    assert {event["type"] for event in seen} == {"task.update"}
    states = [event["task"]["status"] for event in seen if event["task"]["task_id"] == task_id]
    assert states == ["pending", "running", "success"]
    assert seen[-1]["task"]["result"] == 42


async def test_async_listeners_run_in_order_and_a_failing_one_is_kept(
    make_backend: Callable[..., RedisBackend],
) -> None:
    writer = make_backend()
    received: list[str] = []
    calls = 0
    arrived = asyncio.Event()

    def broken(event: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("listener bug")

    async def ordered(event: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        received.append(event["task"]["task_id"])
        arrived.set()

    async def until(count: int) -> None:
        while len(received) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)

    listener = RedisBackend(redis_url(), prefix=writer.keys.prefix)
    try:
        await listener.listen_updates(broken)
        await listener.listen_updates(ordered)
        for index in range(20):
            await writer.store(f"t{index}", TaskResult(f"t{index}", TaskStatus.PENDING, "job"))
        await until(20)
        await listener.stop_listening(broken)
        await writer.store("last", TaskResult("last", TaskStatus.PENDING, "job"))
        await until(21)
    finally:
        await listener.close()
    assert received == [f"t{index}" for index in range(20)] + ["last"]
    assert calls == 20
