"""The Redis result backend: TTL on finished records only, fencing, many waiters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from flowrra.backends.redis import RedisBackend
from flowrra.redis_keys import BackendKeys
from flowrra.task import TaskResult, TaskStatus
from integration.redis_support import redis_url, scratch_backend, wait_until

pytestmark = pytest.mark.service

MakeBackend = Callable[..., RedisBackend]


def record(task_id: str, status: TaskStatus, **fields: object) -> TaskResult:
    return TaskResult(task_id, status, "job", **fields)  # type: ignore[arg-type]


async def test_ttl_applies_to_finished_records_only(
    make_backend: MakeBackend, raw: aioredis.Redis, prefix: str
) -> None:
    backend = make_backend(ttl=0.5)
    keys = BackendKeys(prefix)
    await backend.store("running", record("running", TaskStatus.RUNNING))
    await backend.store("done", record("done", TaskStatus.SUCCESS, result=1))
    await backend.store("again", record("again", TaskStatus.FAILED))
    await backend.store("again", record("again", TaskStatus.RETRYING))  # runs once more
    assert await raw.pttl(keys.record("running")) == -1
    assert await raw.pttl(keys.record("again")) == -1, "a record that is not finished kept a TTL"
    assert 0 < await raw.pttl(keys.record("done")) <= 500
    await asyncio.sleep(0.7)
    assert await backend.get("done") is None
    assert await backend.get("running") is not None
    assert await backend.get("again") is not None
    assert await backend.list_by_status(TaskStatus.SUCCESS) == []


async def test_a_fenced_write_from_a_lost_lease_is_refused(make_backend: MakeBackend) -> None:
    backend = make_backend()
    assert await backend.store_fenced("t", record("t", TaskStatus.RUNNING), 5)
    assert await backend.store_fenced("t", record("t", TaskStatus.RUNNING, deliveries=2), 9)
    assert not await backend.store_fenced("t", record("t", TaskStatus.SUCCESS, result="old"), 5)
    loaded = await backend.get("t")
    assert loaded is not None
    assert loaded.status == TaskStatus.RUNNING
    assert await backend.store_fenced("t", record("t", TaskStatus.SUCCESS, result="new"), 9)
    done = await backend.get("t")
    assert done is not None
    assert done.result == "new"


async def test_ten_thousand_waiters_are_all_woken(make_backend: MakeBackend) -> None:
    count = 10_000
    backend = make_backend(ttl=60)
    ids = [f"w{index}" for index in range(count)]
    await asyncio.gather(*(backend.store(i, record(i, TaskStatus.RUNNING)) for i in ids))
    waiters = [asyncio.ensure_future(backend.wait_for(i, 30)) for i in ids]
    await asyncio.sleep(0.5)
    assert not any(waiter.done() for waiter in waiters)
    started = time.monotonic()
    await asyncio.gather(
        *(backend.store(i, record(i, TaskStatus.SUCCESS, result=n)) for n, i in enumerate(ids))
    )
    results = await asyncio.wait_for(asyncio.gather(*waiters), 20)
    assert [result.result for result in results] == list(range(count))
    assert time.monotonic() - started < 15


async def test_waiter_in_another_process_is_woken(make_backend: MakeBackend) -> None:
    writer = make_backend()
    reader = make_backend()
    await writer.store("x", record("x", TaskStatus.RUNNING))
    waiter = asyncio.ensure_future(reader.wait_for("x", 5))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await writer.store("x", record("x", TaskStatus.FAILED, error="ValueError: no"))
    loaded = await asyncio.wait_for(waiter, 2)
    assert loaded.error == "ValueError: no"


async def test_clear_removes_only_its_own_prefix(make_backend: MakeBackend) -> None:
    mine = make_backend()
    other = scratch_backend(prefix=f"{mine.keys.prefix}-other")
    try:
        await mine.store("a", record("a", TaskStatus.SUCCESS))
        await other.store("a", record("a", TaskStatus.SUCCESS))
        assert await mine.clear() == 1
        assert await mine.get("a") is None
        assert await other.get("a") is not None
        assert await mine.ping()
    finally:
        await other.clear()
        await other.close()


class ReadCounter:
    """Counts the record reads a backend sends to Redis."""

    def __init__(self, backend: RedisBackend) -> None:
        self.reads = 0
        reader = backend._reader
        original = reader._run

        async def counted(task_ids: list[str]) -> list[bytes | None]:
            self.reads += len(task_ids)
            return await original(task_ids)

        reader._run = counted


async def subscribed(backend: RedisBackend) -> None:
    """Make ``backend`` listen for completions, as its first ``wait_for`` does."""
    await backend.store("warm-up", record("warm-up", TaskStatus.SUCCESS))
    await backend.wait_for("warm-up", 5)


async def held_task(
    make_backend: MakeBackend,
) -> tuple[RedisBackend, RedisBackend, ReadCounter]:
    """A subscribed producer that recorded task "t" as pending, a worker's backend, and
    the producer's read counter."""
    producer, worker = make_backend(), make_backend()
    await subscribed(producer)
    counter = ReadCounter(producer)
    await producer.store("t", record("t", TaskStatus.PENDING, args=(1,)))
    return producer, worker, counter


async def test_a_completion_that_came_before_the_wait_is_not_read_again(
    make_backend: MakeBackend,
) -> None:
    producer, worker, counter = await held_task(make_backend)
    assert await worker.store_fenced("t", record("t", TaskStatus.SUCCESS, result=2), 1)
    # the completion message is on its way
    assert await wait_until(lambda: producer._recent._young.get("t") is not None, 5)
    done = await producer.wait_for("t", 5)
    assert (done.status, done.result) == (TaskStatus.SUCCESS, 2)
    assert counter.reads == 0, "the held completion was read from Redis again"


async def test_a_held_task_is_woken_by_its_completion_without_a_read(
    make_backend: MakeBackend,
) -> None:
    producer, worker, counter = await held_task(make_backend)
    waiter = asyncio.ensure_future(producer.wait_for("t", 5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert await worker.store_fenced("t", record("t", TaskStatus.RUNNING), 1)
    await asyncio.sleep(0.05)
    assert not waiter.done(), "a running record woke the waiter"
    assert await worker.store_fenced("t", record("t", TaskStatus.FAILED, error="E: x"), 1)
    done = await asyncio.wait_for(waiter, 5)
    assert done.error == "E: x"
    assert counter.reads == 0


async def test_held_ids_are_read_again_after_a_resubscription(make_backend: MakeBackend) -> None:
    producer, worker = make_backend(), make_backend()
    await subscribed(producer)
    await producer.store("t", record("t", TaskStatus.PENDING))
    producer._on_subscribed()  # what a reconnection does: completions may have been missed
    assert await worker.store_fenced("t", record("t", TaskStatus.SUCCESS, result=3), 1)
    counter = ReadCounter(producer)
    done = await producer.wait_for("t", 5)
    assert done.result == 3
    assert counter.reads == 1, "after a resubscription the record must be read"


async def test_a_pending_record_stored_before_subscribing_is_read(
    make_backend: MakeBackend,
) -> None:
    producer, worker = make_backend(), make_backend()
    await producer.store("t", record("t", TaskStatus.PENDING))  # not yet subscribed
    assert await worker.store_fenced("t", record("t", TaskStatus.SUCCESS, result=4), 1)
    counter = ReadCounter(producer)
    done = await producer.wait_for("t", 5)
    assert done.result == 4
    assert counter.reads == 1


async def test_a_posted_write_lands_before_later_writes(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await backend.connect()
    running = backend.post_fenced("t", record("t", TaskStatus.RUNNING), 3)
    assert running is not None
    assert await backend.store_fenced("t", record("t", TaskStatus.SUCCESS, result=5), 3)
    assert await running == 1
    loaded = await backend.get("t")
    assert loaded is not None
    assert (loaded.status, loaded.result) == (TaskStatus.SUCCESS, 5)
    stale = backend.post_fenced("t", record("t", TaskStatus.RUNNING), 2)
    assert stale is not None
    assert await stale == 0, "a posted write from an older claim was not refused"


async def test_post_fenced_before_start_asks_the_caller_to_await(
    make_backend: MakeBackend,
) -> None:
    assert make_backend().post_fenced("t", record("t", TaskStatus.RUNNING), 1) is None


async def test_several_writes_of_one_task_in_one_batch_land_as_the_last(
    make_backend: MakeBackend, raw: aioredis.Redis, prefix: str
) -> None:
    backend = make_backend(ttl=60)
    keys = BackendKeys(prefix)
    await backend.store("a", record("a", TaskStatus.PENDING))
    await backend.store("b", record("b", TaskStatus.PENDING))
    updates: list[dict[str, object]] = []
    await backend.listen_updates(lambda event: updates.append(event["task"]))
    results = await asyncio.gather(
        backend.store_fenced("a", record("a", TaskStatus.RUNNING), 1),
        backend.store_fenced("a", record("a", TaskStatus.SUCCESS, result=1), 1),
        backend.store_fenced("b", record("b", TaskStatus.FAILED, error="E: x"), 2),
        backend.store("b", record("b", TaskStatus.PENDING, deliveries=1)),  # requeued
        backend.store_fenced("b", record("b", TaskStatus.RUNNING), 1),  # stale: refused
    )
    assert list(results) == [True, True, True, None, False]
    a, b = await backend.get("a"), await backend.get("b")
    assert a is not None
    assert b is not None
    assert (a.status, a.result) == (TaskStatus.SUCCESS, 1)
    assert (b.status, b.deliveries) == (TaskStatus.PENDING, 1)
    assert 0 < await raw.pttl(keys.record("a")) <= 60_000
    assert await raw.pttl(keys.record("b")) == -1, "a later unfinished write kept the TTL"
    counts = await backend.count_by_status()
    assert counts[TaskStatus.SUCCESS] == 1
    assert counts[TaskStatus.PENDING] == 1
    assert counts[TaskStatus.RUNNING] == counts[TaskStatus.FAILED] == 0
    assert await wait_until(lambda: len(updates) >= 4, 5)
    assert [(u["task_id"], u["status"]) for u in updates] == [
        ("a", "running"),
        ("a", "success"),
        ("b", "failed"),
        ("b", "pending"),
    ]


async def test_a_late_running_record_of_a_claim_cannot_undo_its_outcome(
    make_backend: MakeBackend,
) -> None:
    """A running write re-sent after a lost connection may land after the claim's final
    record: it is refused, whatever the final state."""
    backend = make_backend()
    for final in (TaskStatus.SUCCESS, TaskStatus.RETRYING, TaskStatus.FAILED):
        task_id = f"t-{final}"
        assert await backend.store_fenced(task_id, record(task_id, TaskStatus.RUNNING), 7)
        assert await backend.store_fenced(task_id, record(task_id, final), 7)
        assert not await backend.store_fenced(task_id, record(task_id, TaskStatus.RUNNING), 7)
        loaded = await backend.get(task_id)
        assert loaded is not None
        assert loaded.status == final
    # a later claim still runs it again
    assert await backend.store_fenced("t-retrying", record("t-retrying", TaskStatus.RUNNING), 8)


async def test_an_id_whose_new_record_is_refused_is_read_when_waited_for(
    make_backend: MakeBackend,
) -> None:
    """Another process ran the task and published its completion before this one
    submitted the same id: the completion was never seen here, so it must be read."""
    producer, worker = make_backend(), make_backend()
    await subscribed(producer)
    assert await worker.store_fenced("t", record("t", TaskStatus.SUCCESS, result=6), 1)
    await asyncio.sleep(0.05)  # its completion came and went, unheld
    written = producer.post_new("t", record("t", TaskStatus.PENDING))
    assert written is not None
    assert await written == 0
    done = await asyncio.wait_for(producer.wait_for("t", 5), 5)
    assert done.result == 6


async def test_a_subclass_that_stores_its_own_way_is_not_bypassed(prefix: str) -> None:
    stored: list[str] = []

    class Audited(RedisBackend):
        async def store(self, task_id: str, result: TaskResult) -> None:
            stored.append(task_id)
            await super().store(task_id, result)

    backend = Audited(redis_url(), prefix=prefix)
    try:
        await backend.connect()
        assert backend.post_new("t", record("t", TaskStatus.PENDING)) is None
        assert backend.post_fenced("t", record("t", TaskStatus.RUNNING), 1) is None
    finally:
        await backend.clear()
        await backend.close()


async def test_a_stalled_claim_cannot_change_the_outcome_written_for_it(
    make_backend: MakeBackend,
) -> None:
    """The reaper records a buried task as failed, fenced by the buried claim: a worker of
    that claim that was only stalled cannot turn it into a success afterwards."""
    backend = make_backend()
    assert await backend.store_fenced("t", record("t", TaskStatus.RUNNING), 5)
    failed = record("t", TaskStatus.FAILED, error="lease expired 3 times")
    assert await backend.store_unless_finished("t", failed, 5)
    assert not await backend.store_fenced("t", record("t", TaskStatus.SUCCESS, result=1), 5)
    loaded = await backend.get("t")
    assert loaded is not None
    assert loaded.status == TaskStatus.FAILED
    # a final record sent twice (its first reply lost) is still accepted
    assert await backend.store_fenced("u", record("u", TaskStatus.SUCCESS, result=2), 6)
    assert await backend.store_fenced("u", record("u", TaskStatus.SUCCESS, result=2), 6)
