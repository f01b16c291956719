"""The QueueBroker contract, run against every broker implementation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from flowrra.brokers.base import QueueBroker, lane_of
from flowrra.task import Task

BrokerFactory = Callable[[int], Awaitable[QueueBroker]]

IO = lane_of("default", "io")
CPU = lane_of("default", "cpu")


def make_task(
    task_id: str, priority: int = 0, *, executor: str = "io", eta: float | None = None
) -> Task:
    return Task(task_id, "job", (task_id,), {}, priority=priority, executor=executor, eta=eta)


async def claim_ids(broker: QueueBroker, count: int, lanes: list[str] | None = None) -> list[str]:
    ids = []
    for _ in range(count):
        delivery = await asyncio.wait_for(broker.claim(lanes or [IO]), 2)
        ids.append(delivery.task.id)
        assert await broker.ack(delivery)
    return ids


async def test_higher_priority_first_and_fifo_within_priority(broker: QueueBroker) -> None:
    for task_id, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -3), ("f", 9)]:
        assert await broker.enqueue(make_task(task_id, priority))
    assert await claim_ids(broker, 6) == ["f", "b", "d", "a", "c", "e"]


async def test_enqueue_is_idempotent_on_task_id(broker: QueueBroker) -> None:
    assert await broker.enqueue(make_task("same"))
    assert not await broker.enqueue(make_task("same"))
    delivery = await broker.claim([IO])
    assert not await broker.enqueue(make_task("same")), "an in-flight id must not be queued again"
    assert (await broker.counts()).ready == 0
    assert await broker.ack(delivery)


async def test_lanes_are_separate(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("cpu-task", executor="cpu"))
    await broker.enqueue(make_task("io-task"))
    assert await claim_ids(broker, 1, [IO]) == ["io-task"]
    assert await claim_ids(broker, 1, [CPU]) == ["cpu-task"]


async def test_claim_waits_for_work_and_wakes_on_enqueue(broker: QueueBroker) -> None:
    claimer = asyncio.ensure_future(broker.claim([IO]))
    await asyncio.sleep(0.05)
    assert not claimer.done()
    await broker.enqueue(make_task("late"))
    delivery = await asyncio.wait_for(claimer, 2)
    assert delivery.task.id == "late"
    assert delivery.deliveries == 1
    assert await broker.ack(delivery)


async def test_each_task_goes_to_exactly_one_claimer(broker: QueueBroker) -> None:
    claimers = [asyncio.ensure_future(broker.claim([IO])) for _ in range(5)]
    await asyncio.sleep(0.02)
    for index in range(3):
        await broker.enqueue(make_task(f"t{index}"))
    done, pending = await asyncio.wait(claimers, timeout=1)
    assert sorted(d.result().task.id for d in done) == ["t0", "t1", "t2"]
    assert len(pending) == 2
    for claimer in pending:
        claimer.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await broker.enqueue(make_task("after-cancel"))
    assert await claim_ids(broker, 1) == ["after-cancel"], "a cancelled claimer must not eat a task"


async def test_delayed_task_is_not_claimable_before_its_eta(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("later", eta=time.time() + 0.3))
    await broker.enqueue(make_task("now"))
    assert await claim_ids(broker, 1) == ["now"]
    counts = await broker.counts()
    assert (counts.ready, counts.delayed) == (0, 1)
    started = time.monotonic()
    assert await claim_ids(broker, 1) == ["later"]
    assert time.monotonic() - started >= 0.2


async def test_retry_moves_task_to_the_delayed_set(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("flaky"))
    delivery = await broker.claim([IO])
    delivery.task.current_retry = 1
    assert await broker.retry(delivery, 0.2)
    counts = await broker.counts()
    assert (counts.ready, counts.delayed, counts.in_flight) == (0, 1, 0)
    started = time.monotonic()
    again = await asyncio.wait_for(broker.claim([IO]), 2)
    assert time.monotonic() - started >= 0.15
    assert again.task.id == "flaky"
    assert again.task.current_retry == 1
    assert again.deliveries == 1, "a retry starts a new attempt: its deliveries restart"
    assert await broker.ack(again)


async def test_release_puts_task_back_first_and_counts_a_delivery(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("first"))
    await broker.enqueue(make_task("second"))
    delivery = await broker.claim([IO])
    assert delivery.task.id == "first"
    assert await broker.release(delivery)
    again = await broker.claim([IO])
    assert again.task.id == "first"
    assert again.deliveries == 2
    assert await broker.ack(again)
    assert await claim_ids(broker, 1) == ["second"]


async def test_settling_twice_is_refused(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("once"))
    delivery = await broker.claim([IO])
    assert await broker.ack(delivery)
    assert not await broker.ack(delivery)
    assert not await broker.release(delivery)
    assert not await broker.retry(delivery, 0)
    assert not await broker.bury(delivery, "late")


async def test_bury_moves_task_to_dead_letters(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("poison"))
    delivery = await broker.claim([IO])
    assert await broker.bury(delivery, "worker died 3 times")
    letters = await broker.dead_letters()
    assert [(d.task.id, d.reason) for d in letters] == [("poison", "worker died 3 times")]
    counts = await broker.counts()
    assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 1)


async def test_cancel_removes_waiting_and_delayed_tasks(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("keep"))
    await broker.enqueue(make_task("drop"))
    await broker.enqueue(make_task("drop-later", eta=time.time() + 60))
    removed = await broker.cancel("drop")
    assert removed is not None
    assert removed.id == "drop"
    assert (await broker.cancel("drop-later")) is not None
    assert await broker.cancel("drop") is None
    assert await broker.cancel("unknown") is None
    assert await claim_ids(broker, 1) == ["keep"]
    counts = await broker.counts()
    assert (counts.ready, counts.delayed) == (0, 0)


async def test_full_broker_makes_enqueue_wait(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(2)
    try:
        await broker.enqueue(make_task("1"))
        await broker.enqueue(make_task("2"))
        blocked = asyncio.ensure_future(broker.enqueue(make_task("3")))
        await asyncio.sleep(0.05)
        assert not blocked.done(), "a full broker must apply back-pressure"
        delivery = await broker.claim([IO])
        assert await asyncio.wait_for(blocked, 2)
        assert await broker.ack(delivery)
        assert await claim_ids(broker, 2) == ["2", "3"]
    finally:
        await broker.close()


async def test_retries_are_accepted_when_full(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(1)
    try:
        await broker.enqueue(make_task("a"))
        delivery = await broker.claim([IO])
        await broker.enqueue(make_task("b"))
        assert await asyncio.wait_for(broker.retry(delivery, 0), 1)
        assert sorted(await claim_ids(broker, 2)) == ["a", "b"]
    finally:
        await broker.close()


async def test_wait_idle_returns_when_everything_is_settled(broker: QueueBroker) -> None:
    await broker.wait_idle()
    await broker.enqueue(make_task("x"))
    idle = asyncio.ensure_future(broker.wait_idle())
    delivery = await broker.claim([IO])
    await asyncio.sleep(0.02)
    assert not idle.done(), "an in-flight task keeps the broker busy"
    await broker.ack(delivery)
    await asyncio.wait_for(idle, 1)


async def test_pop_and_push_follow_the_minimal_protocol(broker: QueueBroker) -> None:
    await broker.push(make_task("low", 1))
    await broker.push(make_task("high", 2))
    assert await broker.size() == 2
    popped = await broker.pop(timeout=1)
    assert popped is not None
    assert popped.id == "high"
    assert await broker.pop(timeout=1) is not None
    assert await broker.pop(timeout=0.05) is None


@pytest.mark.parametrize("count", [500])
async def test_many_tasks_keep_their_order(broker_factory: BrokerFactory, count: int) -> None:
    broker = await broker_factory(count)
    try:
        for index in range(count):
            await broker.enqueue(make_task(f"{index:04d}", priority=index % 3))
        ids = await claim_ids(broker, count)
        expected = sorted((f"{i:04d}" for i in range(count)), key=lambda t: (-(int(t) % 3), t))
        assert ids == expected
    finally:
        await broker.close()
