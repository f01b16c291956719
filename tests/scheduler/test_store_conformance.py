"""One conformance suite for every schedule store (SQLite file and memory, PostgreSQL, MariaDB)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from flowrra.scheduler import ScheduledTask, ScheduleType
from flowrra.scheduler.backends import BaseSchedulerBackend
from flowrra.scheduler.timing import Claim, plan_claim

from .conftest import T0, Store

NASTY = 'x\'); DROP TABLE flowrra_schedules; -- "quoted" \\ back`tick` %s ? $1 ☃'


def make_task(
    task_id: str = "s1",
    interval: float = 60.0,
    next_run_at: datetime | None = T0,
    **fields: object,
) -> ScheduledTask:
    task = ScheduledTask(
        id=task_id,
        task_name=str(fields.pop("task_name", "job")),
        schedule_type=ScheduleType.INTERVAL,
        schedule=repr(interval),
        next_run_at=next_run_at,
        created_at=T0,
        updated_at=T0,
    )
    for name, value in fields.items():
        setattr(task, name, value)
    return task


async def test_create_get_round_trip(backend: BaseSchedulerBackend) -> None:
    task = make_task(
        args=(1, "two", [3.5, None], {"k": True}),
        kwargs={"b": 1, "a": {"nested": ["x"]}},
        description="hourly report",
        max_retries=7,
        retry_delay=2.5,
        priority=9,
        last_run_at=datetime(2024, 5, 1, 11, 59, 0, 123_456, tzinfo=UTC),
        next_run_at=datetime(2024, 5, 1, 12, 0, 0, 654_321, tzinfo=UTC),
        catch_up=True,
    )
    assert await backend.create(task) == task
    stored = await backend.get("s1")
    assert stored == task
    assert stored is not None
    assert stored.next_run_at is not None
    assert stored.next_run_at.tzinfo is not None
    assert stored.next_run_at.microsecond == 654_321
    assert await backend.get("missing") is None


async def test_injection_looking_values_round_trip(backend: BaseSchedulerBackend) -> None:
    task = make_task(
        task_id=NASTY,
        task_name=NASTY,
        args=(NASTY, "'; SELECT 1; --"),
        kwargs={NASTY: NASTY, "q": "\"'`"},
        description=NASTY,
    )
    await backend.create(task)
    assert await backend.get(NASTY) == task
    assert await backend.find_by_definition_key(task.definition_key) == task
    assert [t.id for t in await backend.list_all()] == [NASTY]
    assert await backend.delete(NASTY)
    assert await backend.list_all() == []


async def test_same_definition_is_stored_once(backend: BaseSchedulerBackend) -> None:
    first = make_task("a", kwargs={"x": 1, "y": 2})
    second = make_task("b", kwargs={"y": 2, "x": 1})
    assert first.definition_key == second.definition_key
    await backend.create(first)
    assert (await backend.create(second)).id == "a"
    assert [t.id for t in await backend.list_all()] == ["a"]
    found = await backend.find_by_definition(
        "job", ScheduleType.INTERVAL, 60, kwargs={"y": 2, "x": 1}
    )
    assert found is not None
    assert found.id == "a"


async def test_an_id_used_by_another_definition_is_refused(backend: BaseSchedulerBackend) -> None:
    await backend.create(make_task("a", interval=60.0))
    with pytest.raises(ValueError, match="already used"):
        await backend.create(make_task("a", interval=30.0))


async def test_lists_due_update_and_clear(backend: BaseSchedulerBackend) -> None:
    await backend.create(make_task("late", interval=1.0, next_run_at=T0 + timedelta(seconds=30)))
    await backend.create(make_task("early", interval=2.0, next_run_at=T0))
    await backend.create(make_task("off", interval=3.0, next_run_at=T0, enabled=False))
    await backend.create(make_task("done", interval=4.0, next_run_at=None))
    assert {t.id for t in await backend.list_enabled()} == {"late", "early", "done"}
    assert [t.id for t in await backend.list_due(T0 + timedelta(seconds=30))] == ["early", "late"]
    assert [t.id for t in await backend.list_due(T0)] == ["early"]
    assert await backend.next_due_at() == T0

    assert await backend.update_run_times("early", T0, T0 + timedelta(seconds=2))
    assert not await backend.update_run_times("missing", T0, T0)
    early = await backend.get("early")
    assert early is not None
    assert early.last_run_at == T0
    early.description = "changed"
    early.priority = 5
    assert await backend.update(early)
    updated = await backend.get("early")
    assert updated is not None
    assert updated.updated_at > T0
    assert replace(updated, updated_at=early.updated_at) == early

    assert await backend.set_enabled("late", False)
    assert await backend.set_enabled("off", True, T0 + timedelta(seconds=9))
    assert [t.id for t in await backend.list_due(T0 + timedelta(seconds=60))] == ["early", "off"]
    assert await backend.clear() == 4
    assert await backend.list_all() == []


async def test_reopening_a_store_keeps_its_rows(store: Store) -> None:
    first = store.open()
    await first.create(make_task("kept"))
    await first.close()
    second = store.open()
    if store.kind == "sqlite-memory":
        assert await second.list_all() == []  # an in-memory database ends with its connection
    else:
        assert [t.id for t in await second.list_all()] == ["kept"]


async def test_concurrent_claims_take_each_due_schedule_once(store: Store) -> None:
    backends = [store.open() for _ in range(3)]
    for n in range(30):
        await backends[0].create(make_task(f"s{n}", interval=10.0 + n, next_run_at=T0))
    claimed: list[str] = []

    async def fire(claims: list[Claim]) -> list[Claim]:
        await asyncio.sleep(0.01)
        claimed.extend(claim.task.id for claim in claims)
        return claims

    now = T0 + timedelta(seconds=1)
    await asyncio.gather(
        *(b.claim_due(now, 7, plan_claim, fire) for b in backends for _ in range(3))
    )
    # Up to 9 claims of 7: all 30 due schedules are taken, none twice.
    assert sorted(claimed) == sorted(f"s{n}" for n in range(30))
    assert await backends[0].list_due(now) == []


async def test_a_claim_whose_fire_fails_is_not_advanced(backend: BaseSchedulerBackend) -> None:
    await backend.create(make_task("s", next_run_at=T0))

    async def fire(claims: list[Claim]) -> list[Claim]:
        return []

    assert await backend.claim_due(T0, 10, plan_claim, fire) == []
    assert [t.id for t in await backend.list_due(T0)] == ["s"]

    async def explode(claims: list[Claim]) -> list[Claim]:
        raise RuntimeError("crashed mid-claim")

    with pytest.raises(RuntimeError):
        await backend.claim_due(T0, 10, plan_claim, explode)
    task = await backend.get("s")
    assert task is not None
    assert task.next_run_at == T0
