"""A worker slot outlives broker errors: a failed claim or hand-back is logged, never fatal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from flowrra import Flowrra
from flowrra.backends import InMemoryBackend
from flowrra.brokers import MemoryBroker
from flowrra.brokers.base import Delivery
from flowrra.config import BackendConfig, BrokerConfig, Config, ExecutorConfig
from flowrra.task import Task, TaskResult, TaskStatus


class FlakyBroker(MemoryBroker):
    """A memory broker whose next ``claim_failures`` waiting claims, acks and releases
    raise, like a broker whose server went away for a moment."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.claim_failures = failures
        self.ack_failures = failures
        self.release_failures = failures

    async def claim(self, lanes: Sequence[str]) -> Delivery:
        if self.claim_failures:
            self.claim_failures -= 1
            raise ConnectionError("broker unreachable (claim)")
        return await super().claim(lanes)

    def ack_nowait(self, delivery: Delivery) -> bool:
        if self.ack_failures:
            self.ack_failures -= 1
            raise ConnectionError("broker unreachable (ack)")
        return super().ack_nowait(delivery)

    async def release(self, delivery: Delivery) -> bool:
        if self.release_failures:
            self.release_failures -= 1
            raise ConnectionError("broker unreachable (release)")
        return await super().release(delivery)


async def test_a_slot_survives_failed_claims_acks_and_releases(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("flowrra.worker._CLAIM_BACKOFF", 0.01)
    monkeypatch.setattr("flowrra.worker._SETTLE_BACKOFF", 0.01)
    broker = FlakyBroker(failures=1)
    app = Flowrra(Config(broker=BrokerConfig(url=broker), executor=ExecutorConfig(io_workers=1)))

    @app.task
    async def double(value: int) -> int:
        return value * 2

    async with app:
        first = await double.submit(1)  # its ack fails, then its hand-back fails
        assert (await app.wait_for_result(first, timeout=5)).result == 2
        second = await double.submit(2)
        assert (await app.wait_for_result(second, timeout=5)).result == 4
        third = await double.submit(3)
        assert (await app.wait_for_result(third, timeout=5)).status == TaskStatus.SUCCESS
    assert broker.claim_failures == broker.ack_failures == broker.release_failures == 0
    messages = caplog.text
    assert "could not claim" in messages
    assert "its lease will return it to the queue" in messages


class UnwritableBackend(InMemoryBackend):
    """A result backend that cannot store anything (its server is down)."""

    attempts = 0

    async def store(self, task_id: str, result: TaskResult) -> None:
        self.attempts += 1
        raise ConnectionError("backend unreachable")


async def test_a_backend_that_cannot_store_does_not_spin_the_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed settlement hands the task back and pauses the slot, so the task is not
    claimed (and run) again and again as fast as the event loop turns."""
    monkeypatch.setattr("flowrra.worker._SETTLE_BACKOFF", 0.2)
    backend = UnwritableBackend()
    app = Flowrra(
        Config(
            backend=BackendConfig(url=backend),
            executor=ExecutorConfig(io_workers=1),
        )
    )

    @app.task
    async def count() -> None:
        return None

    await app.start()
    try:
        queue = app.broker  # submit() would fail: the pending record cannot be written
        assert isinstance(queue, MemoryBroker)
        await queue.enqueue(Task("t-1", "count", (), {}))
        await asyncio.sleep(0.7)
    finally:
        await app.stop(timeout=1)
    assert 1 <= backend.attempts <= 6, f"{backend.attempts} attempts to record it in 0.7 s"
    assert "failed to settle" in caplog.text
