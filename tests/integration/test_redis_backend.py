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
from integration.redis_support import scratch_backend

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
