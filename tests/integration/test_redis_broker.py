"""The Redis broker's own guarantees: leases, heartbeats, reaping, dead letters, parsing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from flowrra.brokers.base import lane_of
from flowrra.brokers.redis import RedisBroker
from flowrra.redis_keys import BrokerKeys
from flowrra.task import Task

pytestmark = pytest.mark.service

IO = lane_of("default", "io")
MakeBroker = Callable[..., RedisBroker]


def make_task(task_id: str, **fields: object) -> Task:
    return Task(task_id, "job", (task_id,), {}, **fields)  # type: ignore[arg-type]


async def inject(raw: aioredis.Redis, prefix: str, task_id: str, body: bytes) -> None:
    """Write a message the way a foreign producer could: bypassing every check."""
    keys = BrokerKeys(prefix)
    queue = keys.queue("default")
    sequence = await raw.incr(queue.base + "seq")
    await raw.hset(queue.messages, task_id, body)
    await raw.hset(queue.base + "meta", task_id, "io|0")
    await raw.zadd(queue.ready("io"), {task_id: 1000 * 2**41 + 2**40 + sequence})
    await raw.rpush(queue.notify("io"), "1")
    await raw.sadd(keys.queues, "default")
    await raw.sadd(keys.lanes, IO)


async def test_expired_lease_is_redelivered_with_its_delivery_count(
    make_broker: MakeBroker,
) -> None:
    dying = make_broker(lease=0.3)
    await dying.enqueue(make_task("t"))
    first = await asyncio.wait_for(dying.claim([IO]), 2)
    assert first.deliveries == 1
    await dying.close()  # the worker dies: nobody renews the lease any more
    survivor = make_broker(lease=0.3)
    started = time.monotonic()
    second = await asyncio.wait_for(survivor.claim([IO]), 3)
    assert time.monotonic() - started >= 0.15, "redelivered before the lease expired"
    assert second.task.id == "t"
    assert second.deliveries == 2
    assert await survivor.ack(second)


async def test_heartbeat_keeps_a_long_task_leased(make_broker: MakeBroker) -> None:
    runner = make_broker(lease=0.3)
    other = make_broker(lease=0.3)
    await runner.enqueue(make_task("long"))
    delivery = await asyncio.wait_for(runner.claim([IO]), 2)
    stealer = asyncio.ensure_future(other.claim([IO]))
    await asyncio.sleep(1.5)  # five lease periods
    assert not stealer.done(), "a renewed lease must not be reaped"
    assert (await other.counts()).in_flight == 1
    assert await runner.ack(delivery)
    stealer.cancel()
    await asyncio.gather(stealer, return_exceptions=True)


async def test_a_stale_claim_cannot_settle(make_broker: MakeBroker) -> None:
    dying = make_broker(lease=0.3)
    await dying.enqueue(make_task("t"))
    stale = await asyncio.wait_for(dying.claim([IO]), 2)
    await dying.close()
    owner = make_broker(lease=5)
    current = await asyncio.wait_for(owner.claim([IO]), 3)
    assert current.deliveries == 2
    late = make_broker()  # the paused worker comes back with its old delivery
    assert not await late.ack(stale)
    assert not await late.retry(stale, 0)
    assert not await late.release(stale)
    assert not await late.bury(stale, "too late")
    assert (await owner.counts()).in_flight == 1
    assert await owner.ack(current)


async def test_max_deliveries_dead_letters_a_poison_task(make_broker: MakeBroker) -> None:
    for attempt in range(2):
        dying = make_broker(lease=0.2, max_deliveries=2)
        if attempt == 0:
            await dying.enqueue(make_task("poison"))
        delivery = await asyncio.wait_for(dying.claim([IO]), 3)
        assert delivery.deliveries == attempt + 1
        await dying.close()
    watcher = make_broker(lease=0.2, max_deliveries=2)
    reported: list[tuple[str, str, int]] = []
    fences: list[int | None] = []

    async def listener(task: Task, reason: str, deliveries: int, fence: int | None) -> None:
        reported.append((task.id, reason, deliveries))
        fences.append(fence)

    watcher.dead_letter_listener = listener
    claimer = asyncio.ensure_future(watcher.claim([IO]))  # runs the reaper
    await asyncio.wait_for(watcher.wait_idle(), 3)
    assert not claimer.done()
    claimer.cancel()
    await asyncio.gather(claimer, return_exceptions=True)
    letters = await watcher.dead_letters()
    assert [letter.task.id for letter in letters] == ["poison"]
    assert "lease expired 2 times" in letters[0].reason
    assert "max_deliveries=2" in letters[0].reason
    assert (await watcher.counts()).dead == 1
    assert reported == [("poison", letters[0].reason, 2)], "the app was not told, once"
    assert fences[0] == delivery.token, "the buried claim's token was not passed on"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (json.dumps({"id": "bad", "name": "job"}).encode(), "lacks field"),
        (
            json.dumps(
                {"id": "bad", "name": "job", "args": [], "kwargs": {}, "priority": "high"}
            ).encode(),
            "'priority' has type str",
        ),
        (
            json.dumps({"id": "bad", "name": "job", "args": ["x" * 2000], "kwargs": {}}).encode(),
            "exceeds the 1000-byte limit",
        ),
    ],
)
async def test_malformed_message_is_dead_lettered_and_the_next_is_served(
    make_broker: MakeBroker, raw: aioredis.Redis, prefix: str, body: bytes, reason: str
) -> None:
    broker = make_broker(max_message_bytes=1000)
    await inject(raw, prefix, "bad", body)
    await broker.enqueue(make_task("good"))
    delivery = await asyncio.wait_for(broker.claim([IO]), 2)
    assert delivery.task.id == "good"
    assert await broker.ack(delivery)
    letters = await broker.dead_letters()
    assert [letter.task.id for letter in letters] == ["bad"]
    assert reason in letters[0].reason
    assert letters[0].reason.startswith("malformed message")


async def test_enqueue_refuses_an_oversize_message(make_broker: MakeBroker) -> None:
    broker = make_broker(max_message_bytes=200)
    with pytest.raises(TypeError, match="over the broker's 200-byte limit"):
        await broker.enqueue(Task("big", "job", ("y" * 500,), {}))
    assert (await broker.counts()).ready == 0


async def test_delayed_task_is_promoted_by_its_timer_not_the_safety_net(
    make_broker: MakeBroker,
) -> None:
    consumer = make_broker(maintenance_interval=30.0)
    producer = make_broker()
    claimer = asyncio.ensure_future(consumer.claim([IO]))
    await asyncio.sleep(0.1)  # the consumer is blocked and its timer idle
    started = time.monotonic()
    await producer.enqueue(make_task("soon", eta=time.time() + 0.3))
    delivery = await asyncio.wait_for(claimer, 3)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.0
    assert delivery.task.id == "soon"
    assert delivery.task.eta is None
    assert await consumer.ack(delivery)


async def test_retry_back_off_lives_in_redis(make_broker: MakeBroker) -> None:
    worker = make_broker()
    await worker.enqueue(make_task("flaky"))
    delivery = await asyncio.wait_for(worker.claim([IO]), 2)
    delivery.task.current_retry = 1
    assert await worker.retry(delivery, 30)
    await worker.close()  # the worker goes away: the waiting retry must not depend on it
    inspector = make_broker()
    counts = await inspector.counts()
    assert (counts.ready, counts.delayed, counts.in_flight) == (0, 1, 0)
    removed = await inspector.cancel("flaky")
    assert removed is not None
    assert removed.current_retry == 1


async def test_priorities_and_queues_across_brokers(make_broker: MakeBroker) -> None:
    producer = make_broker()
    consumer = make_broker(prefetch=0)
    for task_id, priority in [("low", -1000), ("mid", 0), ("top", 1000), ("mid2", 0)]:
        await producer.enqueue(make_task(task_id, priority=priority))
    await producer.enqueue(make_task("urgent", queue="urgent"))
    lanes = [lane_of("urgent", "io"), IO]
    order = []
    for _ in range(5):
        delivery = await asyncio.wait_for(consumer.claim(lanes), 2)
        order.append(delivery.task.id)
        assert await consumer.ack(delivery)
    assert order == ["urgent", "top", "mid", "mid2", "low"]
    await asyncio.wait_for(producer.wait_idle(), 2)
