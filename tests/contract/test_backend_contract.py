"""The result-backend contract, run against every backend implementation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from flowrra.backends.base import BaseResultBackend
from flowrra.exceptions import TaskNotFoundError, TaskTimeoutError
from flowrra.task import TaskResult, TaskStatus


def record(task_id: str, status: TaskStatus, **fields: object) -> TaskResult:
    return TaskResult(task_id, status, "job", **fields)  # type: ignore[arg-type]


async def test_store_and_get_round_trip(backend: BaseResultBackend) -> None:
    submitted = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    stored = record(
        "t1",
        TaskStatus.SUCCESS,
        result={"answer": [1, 2.5, "x", None, True]},
        submitted_at=submitted,
        started_at=submitted,
        finished_at=submitted,
        retries=2,
        args=(1, "two"),
        kwargs={"k": "v"},
        deliveries=1,
    )
    await backend.store("t1", stored)
    loaded = await backend.get("t1")
    assert loaded == stored


async def test_the_worker_and_attempt_history_are_kept(backend: BaseResultBackend) -> None:
    attempts = [
        {
            "attempt": n,
            "started_at": f"2026-01-02T03:04:0{n}+00:00",
            "finished_at": f"2026-01-02T03:04:0{n + 1}+00:00",
            "error": f"OSError: try {n}",
            "worker": f"host-{n}",
        }
        for n in (1, 2)
    ]
    for status in (TaskStatus.RETRYING, TaskStatus.FAILED):
        stored = record("t2", status, retries=2, worker="host-3", attempts=tuple(attempts))
        await backend.store("t2", stored)
        loaded = await backend.get("t2")
        assert loaded is not None
        assert (loaded.worker, loaded.attempts) == ("host-3", tuple(attempts))
        assert loaded.to_dict["attempts"] == attempts
    fresh = record("t3", TaskStatus.SUCCESS)
    await backend.store("t3", fresh)
    loaded = await backend.get("t3")
    assert loaded is not None
    assert (loaded.worker, loaded.attempts) == (None, ())


async def test_get_unknown_is_none(backend: BaseResultBackend) -> None:
    assert await backend.get("missing") is None


async def test_store_replaces_the_record(backend: BaseResultBackend) -> None:
    await backend.store("t", record("t", TaskStatus.PENDING))
    await backend.store("t", record("t", TaskStatus.RUNNING))
    loaded = await backend.get("t")
    assert loaded is not None
    assert loaded.status == TaskStatus.RUNNING


async def test_wait_for_returns_a_complete_record_at_once(backend: BaseResultBackend) -> None:
    await backend.store("done", record("done", TaskStatus.FAILED, error="ValueError: x"))
    loaded = await asyncio.wait_for(backend.wait_for("done", 1), 2)
    assert loaded.error == "ValueError: x"


async def test_wait_for_wakes_on_completion(backend: BaseResultBackend) -> None:
    await backend.store("w", record("w", TaskStatus.RUNNING))
    waiters = [asyncio.ensure_future(backend.wait_for("w", 5)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    await backend.store("w", record("w", TaskStatus.RETRYING))
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters), "retrying is not complete"
    await backend.store("w", record("w", TaskStatus.SUCCESS, result=7))
    results = await asyncio.wait_for(asyncio.gather(*waiters), 2)
    assert [r.result for r in results] == [7, 7, 7]


async def test_wait_for_times_out_with_task_timeout_error(backend: BaseResultBackend) -> None:
    await backend.store("slow", record("slow", TaskStatus.RUNNING))
    with pytest.raises(TaskTimeoutError) as caught:
        await backend.wait_for("slow", 0.05)
    assert isinstance(caught.value, TimeoutError)


async def test_wait_for_unknown_id_raises_not_found(backend: BaseResultBackend) -> None:
    with pytest.raises(TaskNotFoundError):
        await backend.wait_for("nobody", 0.1)


async def test_delete_and_clear(backend: BaseResultBackend) -> None:
    await backend.store("a", record("a", TaskStatus.SUCCESS))
    await backend.store("b", record("b", TaskStatus.PENDING))
    assert await backend.delete("a")
    assert not await backend.delete("a")
    assert await backend.get("a") is None
    assert await backend.clear() >= 1
    assert await backend.get("b") is None


async def test_list_by_status_pages_most_recent_first(backend: BaseResultBackend) -> None:
    for index in range(5):
        await backend.store(f"s{index}", record(f"s{index}", TaskStatus.SUCCESS, result=index))
    await backend.store("f", record("f", TaskStatus.FAILED))
    await backend.store("p", record("p", TaskStatus.PENDING))
    successes = await backend.list_by_status(TaskStatus.SUCCESS)
    assert [r.task_id for r in successes] == ["s4", "s3", "s2", "s1", "s0"]
    page = await backend.list_by_status(TaskStatus.SUCCESS, limit=2, offset=1)
    assert [r.task_id for r in page] == ["s3", "s2"]
    assert [r.task_id for r in await backend.list_by_status(TaskStatus.PENDING)] == ["p"]
    assert [r.task_id for r in await backend.list_by_status(TaskStatus.FAILED)] == ["f"]


async def test_count_by_status_follows_every_change(backend: BaseResultBackend) -> None:
    for index in range(3):
        await backend.store(f"c{index}", record(f"c{index}", TaskStatus.PENDING))
    await backend.store("c0", record("c0", TaskStatus.RUNNING))
    await backend.store("c1", record("c1", TaskStatus.SUCCESS, result=1))
    await backend.store("c2", record("c2", TaskStatus.FAILED))
    await backend.store("c3", record("c3", TaskStatus.SUCCESS, result=3))
    counts = await backend.count_by_status()
    assert set(counts) == set(TaskStatus)
    assert counts[TaskStatus.PENDING] == 0
    assert counts[TaskStatus.RUNNING] == 1
    assert counts[TaskStatus.SUCCESS] == 2
    assert counts[TaskStatus.FAILED] == 1
    assert await backend.delete("c3")
    assert (await backend.count_by_status())[TaskStatus.SUCCESS] == 1


async def test_list_recent_pages_every_status_most_recently_changed_first(
    backend: BaseResultBackend,
) -> None:
    for index in range(4):
        await backend.store(f"r{index}", record(f"r{index}", TaskStatus.PENDING))
        await asyncio.sleep(0.002)  # distinct store times, however coarse the clock
    await backend.store("r1", record("r1", TaskStatus.SUCCESS, result=1, finished_at=_now()))
    await asyncio.sleep(0.002)
    await backend.store("r0", record("r0", TaskStatus.FAILED, finished_at=_now()))
    recent = [r.task_id for r in await backend.list_recent()]
    assert recent == ["r0", "r1", "r3", "r2"]
    assert [r.task_id for r in await backend.list_recent(limit=2, offset=1)] == ["r1", "r3"]
    assert await backend.list_recent(limit=5, offset=10) == []
    statuses = {r.task_id: r.status for r in await backend.list_recent(limit=10)}
    assert statuses == {
        "r0": TaskStatus.FAILED,
        "r1": TaskStatus.SUCCESS,
        "r2": TaskStatus.PENDING,
        "r3": TaskStatus.PENDING,
    }


def _now() -> datetime:
    return datetime.now(UTC)


async def test_store_unless_finished_keeps_a_finished_record(backend: BaseResultBackend) -> None:
    await backend.store("done", record("done", TaskStatus.SUCCESS, result=1))
    await backend.store("busy", record("busy", TaskStatus.RUNNING))
    assert not await backend.store_unless_finished(
        "done", record("done", TaskStatus.FAILED, error="lease expired")
    )
    assert await backend.store_unless_finished(
        "busy", record("busy", TaskStatus.FAILED, error="lease expired")
    )
    assert await backend.store_unless_finished(
        "new", record("new", TaskStatus.FAILED, error="lease expired")
    )
    statuses = [
        None if loaded is None else loaded.status
        for loaded in [await backend.get(task_id) for task_id in ("done", "busy", "new")]
    ]
    assert statuses == [TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.FAILED]
