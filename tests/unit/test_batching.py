"""Coalesced batches, posted (unawaited) writes and the held completions of a producer."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import pytest

from flowrra import Flowrra
from flowrra.backends import InMemoryBackend
from flowrra.backends.waiters import RecentSubmissions
from flowrra.brokers import MemoryBroker
from flowrra.brokers.base import Delivery
from flowrra.config import BrokerConfig, Config, ExecutorConfig
from flowrra.events import EventBus
from flowrra.recording import TaskRecorder, _log_posted
from flowrra.redis_connection import Coalescer
from flowrra.settling import BackgroundSettlements
from flowrra.task import TaskResult, TaskStatus

# -- RecentSubmissions ------------------------------------------------------------------


def test_a_held_id_tells_whether_it_finished() -> None:
    recent = RecentSubmissions()
    recent.watch("a")
    recent.watch("b")
    recent.arrived("a", b"{done}")
    recent.arrived("stranger", b"{x}")  # not held: ignored
    assert recent.take("a") == (True, b"{done}")
    assert recent.take("b") == (True, None)
    assert recent.take("a") == (False, None), "a taken id is no longer held"
    assert recent.take("stranger") == (False, None)
    assert len(recent) == 0


def test_memory_is_bounded_to_two_generations() -> None:
    recent = RecentSubmissions(capacity=3)
    for index in range(10):
        recent.watch(f"t{index}")
    assert len(recent) <= 6
    assert recent.take("t9") == (True, None)
    assert recent.take("t0") == (False, None), "the oldest ids were not dropped"
    recent.arrived("t7", b"{}")
    assert recent.take("t7") == (True, b"{}")


def test_clear_forgets_every_id() -> None:
    recent = RecentSubmissions(capacity=2)
    for name in ("a", "b", "c"):
        recent.watch(name)
    recent.clear()
    assert len(recent) == 0
    assert recent.take("c") == (False, None)
    with pytest.raises(ValueError, match="capacity"):
        RecentSubmissions(capacity=0)


# -- Coalescer.post / drain -------------------------------------------------------------


async def test_posted_items_go_out_in_order_with_submitted_ones() -> None:
    batches: list[list[int]] = []

    async def run(batch: list[int]) -> list[int]:
        batches.append(batch)
        await asyncio.sleep(0.01)
        return [item * 10 for item in batch]

    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=2)
    first = coalescer.post(1)
    second = coalescer.post(2)
    assert not first.done()
    assert await coalescer.submit(3) == 30
    assert (await first, await second) == (10, 20)
    assert [item for batch in batches for item in batch] == [1, 2, 3]


async def test_drain_waits_for_every_posted_item_and_raises_nothing() -> None:
    async def run(batch: list[int]) -> list[int]:
        await asyncio.sleep(0.02)
        if 0 in batch:
            raise ConnectionError("gone")
        return batch

    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=1)
    futures = [coalescer.post(item) for item in (3, 0, 4)]
    await coalescer.drain()
    assert all(future.done() for future in futures)
    assert futures[0].result() == 3
    assert isinstance(futures[1].exception(), ConnectionError)
    assert futures[2].result() == 4
    await coalescer.drain()  # nothing left: returns at once


# -- posted writes: failures are logged --------------------------------------------------


async def test_a_refused_or_failed_posted_write_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    record = TaskResult("t1", TaskStatus.RUNNING, "job")
    refused: asyncio.Future[int] = loop.create_future()
    refused.set_result(0)
    failed: asyncio.Future[int] = loop.create_future()
    failed.set_exception(ConnectionError("redis went away"))
    stored: asyncio.Future[int] = loop.create_future()
    stored.set_result(1)
    with caplog.at_level(logging.WARNING, logger="flowrra.tasks"):
        _log_posted(stored, record)
        assert caplog.text == ""
        _log_posted(refused, record)
        _log_posted(failed, record)
    assert "a newer claim owns it" in caplog.text
    assert "redis went away" in caplog.text


# -- posted acks: the worker waits for them when it stops --------------------------------


class PostingBroker(MemoryBroker):
    """A memory broker whose acks are posted and complete ``delay`` seconds later."""

    def __init__(self, delay: float, fail: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.fail = fail
        self.posted: list[asyncio.Future[int]] = []

    def ack_nowait(self, delivery: Delivery) -> None:  # type: ignore[override]
        return None  # the worker then takes its awaiting path, which posts

    def post_ack(self, delivery: Delivery) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def finish() -> None:
            if self.fail:
                future.set_exception(ConnectionError("ack lost"))
            else:
                future.set_result(1 if MemoryBroker.ack_nowait(self, delivery) else 0)

        loop.call_later(self.delay, finish)
        self.posted.append(future)
        return future


def app_on(broker: MemoryBroker) -> Flowrra:
    app = Flowrra(Config(broker=BrokerConfig(url=broker), executor=ExecutorConfig(io_workers=2)))

    @app.task(name="double")
    async def double(value: int) -> int:
        return value * 2

    return app


async def test_stop_waits_for_posted_acks() -> None:
    broker = PostingBroker(delay=0.2)
    app = app_on(broker)
    await app.start()
    ids = [await app.submit("double", value) for value in range(3)]
    for task_id, value in zip(ids, range(3), strict=True):
        assert (await app.wait_for_result(task_id, timeout=5)).result == value * 2
    assert not all(future.done() for future in broker.posted), "the acks were not posted"
    await app.stop()
    assert len(broker.posted) == 3
    assert all(future.result() == 1 for future in broker.posted)


async def test_a_failed_posted_ack_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    broker = PostingBroker(delay=0.01, fail=True)
    app = app_on(broker)
    async with app:
        task_id = await app.submit("double", 4)
        assert (await app.wait_for_result(task_id, timeout=5)).result == 8
        await asyncio.sleep(0.05)
    assert "an ack failed; the task's lease will return it to the queue" in caplog.text


def test_a_resubmitted_id_forgets_its_older_completion() -> None:
    recent = RecentSubmissions(capacity=2)
    recent.watch("a")
    recent.arrived("a", b"{first run}")
    recent.watch("b")  # the young generation fills: "a" is now in the old one
    recent.watch("a")  # submitted again
    assert recent.take("a") == (True, None), "the first run's completion was returned"


def test_a_large_completion_is_not_kept() -> None:
    recent = RecentSubmissions(keep_bytes=10)
    recent.watch("small")
    recent.watch("large")
    recent.arrived("small", b"{}")
    recent.arrived("large", b"{" + b"x" * 100 + b"}")
    assert recent.take("small") == (True, b"{}")
    assert recent.take("large") == (False, None), "a large completion was kept"


async def test_slots_wait_for_room_while_settlements_pile_up() -> None:
    broker = MemoryBroker()
    recorder = TaskRecorder(InMemoryBackend(), EventBus())
    settlements = BackgroundSettlements(broker, recorder, _count, _nothing)
    loop = asyncio.get_running_loop()
    pending = [loop.create_future() for _ in range(3)]
    for future in pending:
        settlements._track(future)
    waiter = asyncio.ensure_future(settlements.room(1))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    pending[0].set_result(1)
    await asyncio.sleep(0.01)
    assert not waiter.done(), "two still in flight, above the limit of one"
    pending[1].set_result(1)
    await asyncio.wait_for(waiter, 1)
    pending[2].set_result(1)
    await settlements.drain()
    assert len(settlements) == 0


def _count(name: str, started_at: datetime, finished_at: datetime) -> None:
    return None


async def _nothing(delivery: Delivery) -> None:
    return None
