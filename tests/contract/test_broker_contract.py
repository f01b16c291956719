"""The QueueBroker contract, run against every broker implementation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

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


async def test_concurrent_enqueues_keep_one_copy_of_an_id(broker: QueueBroker) -> None:
    results = await asyncio.gather(
        *(broker.enqueue(make_task(task_id)) for task_id in ["x", "y", "x", "z", "y", "x"])
    )
    assert results == [True, True, False, True, False, False]
    assert sorted(await claim_ids(broker, 3)) == ["x", "y", "z"]
    assert (await broker.counts()).ready == 0


async def test_concurrent_enqueues_past_the_bound_wait_for_room(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory(3)
    try:
        enqueues = [
            asyncio.ensure_future(broker.enqueue(make_task(str(index)))) for index in range(5)
        ]
        await asyncio.sleep(0.1)
        assert sum(e.done() for e in enqueues) == 3, "the bound admitted the wrong number"
        claimed = await claim_ids(broker, 2)
        assert await asyncio.wait_for(asyncio.gather(*enqueues), 2) == [True] * 5
        claimed += await claim_ids(broker, 3)
        assert sorted(claimed) == ["0", "1", "2", "3", "4"]
    finally:
        await broker.close()


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


# -- dead letters ------------------------------------------------------------------------


async def bury_one(broker: QueueBroker, task: Task, reason: str = "gave up") -> None:
    await broker.enqueue(task)
    delivery = await asyncio.wait_for(broker.claim([lane_of(task.queue, task.executor_name)]), 2)
    assert delivery.task.id == task.id
    assert await broker.bury(delivery, reason)


async def test_requeue_dead_runs_again_with_its_priority_and_fresh_deliveries(
    broker: QueueBroker,
) -> None:
    await broker.enqueue(make_task("poison", 5))
    first = await broker.claim([IO])
    assert await broker.release(first)
    second = await broker.claim([IO])
    assert second.deliveries == 2
    assert await broker.bury(second, "lease expired twice")
    for task_id, priority in [("low", 0), ("high", 5)]:
        await broker.enqueue(make_task(task_id, priority))
    assert await broker.requeue_dead("poison")
    assert await broker.dead_letters() == []
    counts = await broker.counts()
    assert (counts.ready, counts.dead) == (3, 0)
    again = await asyncio.wait_for(broker.claim([IO]), 2)
    assert again.task.id == "high", "a requeued task goes behind its own priority"
    assert await broker.ack(again)
    requeued = await asyncio.wait_for(broker.claim([IO]), 2)
    assert (requeued.task.id, requeued.task.priority) == ("poison", 5)
    assert requeued.deliveries == 1, "a requeued task starts its deliveries afresh"
    assert await broker.ack(requeued)
    assert await claim_ids(broker, 1) == ["low"]
    assert not await broker.requeue_dead("poison"), "it is no longer dead-lettered"
    assert not await broker.requeue_dead("never-seen")


async def test_requeue_dead_keeps_the_lane_of_the_task(broker: QueueBroker) -> None:
    await bury_one(broker, make_task("crunch", executor="cpu"))
    assert await broker.requeue_dead("crunch")
    assert await claim_ids(broker, 1, [CPU]) == ["crunch"]


async def test_requeue_dead_refuses_an_id_a_live_task_holds(broker: QueueBroker) -> None:
    await bury_one(broker, make_task("twin"))
    await broker.enqueue(make_task("twin"))
    assert not await broker.requeue_dead("twin")
    assert [letter.task.id for letter in await broker.dead_letters()] == ["twin"]
    assert await claim_ids(broker, 1) == ["twin"]
    assert await broker.requeue_dead("twin"), "once the live task is gone it can be requeued"


async def test_delete_dead_and_purge_dead(broker: QueueBroker) -> None:
    for task_id in ("d1", "d2", "d3"):
        await bury_one(broker, make_task(task_id))
    assert await broker.delete_dead("d2")
    assert not await broker.delete_dead("d2")
    assert not await broker.delete_dead("unknown")
    assert [letter.task.id for letter in await broker.dead_letters()] == ["d3", "d1"]
    assert await broker.purge_dead() == 2
    assert await broker.purge_dead() == 0
    assert await broker.dead_letters() == []
    assert (await broker.counts()).dead == 0
    assert not await broker.requeue_dead("d1")


# -- queue details -----------------------------------------------------------------------


def submitted(task: Task, seconds_ago: float) -> Task:
    task.submitted_at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return task


async def test_queue_details_of_an_empty_broker(broker: QueueBroker) -> None:
    assert await broker.queue_details() == []


async def test_queue_details_count_each_queue(broker: QueueBroker) -> None:
    for task in [
        submitted(make_task("a", 5), 20),
        submitted(make_task("b", 5), 0),
        submitted(make_task("c", 0), 40),
        submitted(make_task("d", 0, executor="cpu"), 0),
        submitted(make_task("e", 9, eta=time.time() + 60), 100),
    ]:
        assert await broker.enqueue(task)
    side = lane_of("side", "io")
    await bury_one(broker, Task("f", "job", (), {}, queue="side"))
    await broker.enqueue(Task("h", "job", (), {}, queue="side"))
    running = await asyncio.wait_for(broker.claim([side]), 2)
    await broker.enqueue(submitted(Task("g", "job", (), {}, priority=-2, queue="side"), 1))

    default, other = await broker.queue_details()
    assert (default.queue, other.queue) == ("default", "side")
    assert (default.ready, default.by_priority) == (4, {5: 2, 0: 2})
    assert list(default.by_priority) == [5, 0], "highest priority first"
    assert (default.delayed, default.in_flight, default.dead) == (1, 0, 0)
    assert default.oldest_age is not None
    assert 39 <= default.oldest_age < 60, "the p0 head 'c' waited 40 s (delayed ones do not count)"
    assert (other.ready, other.by_priority) == (1, {-2: 1})
    assert (other.delayed, other.in_flight, other.dead) == (0, 1, 1)
    assert other.oldest_age is not None
    assert 0 <= other.oldest_age < 20
    assert await broker.ack(running)


async def test_queue_details_skip_cancelled_tasks_and_unknown_ages(broker: QueueBroker) -> None:
    await broker.enqueue(submitted(make_task("gone", 3), 50))
    await broker.enqueue(make_task("no-time", 3))
    assert await broker.cancel("gone") is not None
    (detail,) = await broker.queue_details()
    assert (detail.ready, detail.by_priority) == (1, {3: 1})
    assert detail.oldest_age is None, "the head has no submission time"


async def test_a_retry_carries_the_attempt_history(broker: QueueBroker) -> None:
    await broker.enqueue(make_task("flaky"))
    delivery = await broker.claim([IO])
    assert delivery.task.attempts == (), "a first attempt carries no history"
    history = [
        {
            "attempt": 1,
            "started_at": "2025-01-01T00:00:00+00:00",
            "finished_at": "2025-01-01T00:00:01+00:00",
            "error": "ConnectionError: down",
            "worker": "host-1-abc",
        }
    ]
    delivery.task.current_retry = 1
    delivery.task.attempts = tuple(history)
    assert await broker.retry(delivery, 0)
    again = await asyncio.wait_for(broker.claim([IO]), 2)
    assert again.task.attempts == tuple(history)
    assert await broker.ack(again)
