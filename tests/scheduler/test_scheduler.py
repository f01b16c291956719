"""Scheduler behaviour: input checks, policies, time zones, the loop and its wake-ups."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowrra.exceptions import BackendError
from flowrra.registry import TaskRegistry
from flowrra.scheduler import ScheduledTask, Scheduler, ScheduleType
from flowrra.scheduler.backends import (
    BaseSchedulerBackend,
    SQLiteSchedulerBackend,
    get_scheduler_backend,
)
from flowrra.scheduler.timing import run_task_id

from .conftest import T0, Recorder, SimClock, Store


@pytest.fixture
def scheduler(
    memory_backend: SQLiteSchedulerBackend,
    registry: TaskRegistry,
    clock: SimClock,
    recorder: Recorder,
) -> Scheduler:
    return Scheduler(memory_backend, registry, submit=recorder, clock=clock)


async def test_bad_input_is_refused(scheduler: Scheduler) -> None:
    with pytest.raises(ValueError, match="Task 'nope' is not registered"):
        await scheduler.schedule_interval("nope", 5)
    with pytest.raises(ValueError, match="invalid cron expression"):
        await scheduler.schedule_cron("job", "every day")
    for bad in (0, -1, math.nan, math.inf, "5", True):
        with pytest.raises(ValueError, match="interval must be"):
            await scheduler.schedule_interval("job", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_at must be a datetime"):
        await scheduler.schedule_once("job", "2024-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority"):
        await scheduler.schedule_interval("job", 5, priority=10**6)
    with pytest.raises(ValueError, match="unknown time zone"):
        await scheduler.schedule_cron("job", "* * * * *", timezone="Nowhere/Land")
    assert await scheduler.list_scheduled_tasks() == []


async def test_unknown_ids(scheduler: Scheduler) -> None:
    assert await scheduler.unschedule("missing") is False
    assert await scheduler.get_scheduled_task("missing") is None
    with pytest.raises(ValueError, match="'missing' not found"):
        await scheduler.enable_task("missing")
    with pytest.raises(ValueError, match="'missing' not found"):
        await scheduler.disable_task("missing")


async def test_registration_is_idempotent(scheduler: Scheduler) -> None:
    a = await scheduler.schedule_interval("job", 60, kwargs={"a": 1, "b": 2})
    assert await scheduler.schedule_interval("job", 60.0, kwargs={"b": 2, "a": 1}) == a
    c = await scheduler.schedule_cron("job", "*/5  *  * * *")
    assert await scheduler.schedule_cron("job", "*/5 * * * *") == c
    assert await scheduler.schedule_cron("job", "*/5 * * * *", timezone="Europe/Paris") != c
    assert await scheduler.schedule_interval("job", 61) != a
    assert len(await scheduler.list_scheduled_tasks()) == 4


async def test_three_instances_register_forty_schedules_concurrently(
    store: Store, registry: TaskRegistry, recorder: Recorder
) -> None:
    instances = [Scheduler(store.open(), registry, submit=recorder) for _ in range(3)]

    async def register_all(s: Scheduler) -> list[str]:
        return [await s.schedule_interval("job", 10 + n, args=(n, "x'y")) for n in range(40)]

    ids = await asyncio.gather(*(register_all(s) for s in instances))
    assert ids[0] == ids[1] == ids[2]
    assert len(set(ids[0])) == 40
    assert len(await instances[0].list_scheduled_tasks()) == 40


async def test_runs_carry_the_stored_options(
    scheduler: Scheduler, clock: SimClock, recorder: Recorder
) -> None:
    sid = await scheduler.schedule_interval(
        "job", 10, args=(1, "a'b"), kwargs={"k": [1]}, priority=7, max_retries=5, retry_delay=0.5
    )
    assert await scheduler.tick(T0 + timedelta(seconds=9)) == 0
    clock.advance(10)
    assert await scheduler.tick() == 1
    (call,) = recorder.calls
    assert (call.task_name, call.args, call.kwargs) == ("job", (1, "a'b"), {"k": [1]})
    assert (call.priority, call.max_retries, call.retry_delay) == (7, 5, 0.5)
    assert call.task_id == run_task_id(sid, T0 + timedelta(seconds=10))


async def test_missed_runs_coalesce_by_default(
    backend: BaseSchedulerBackend, registry: TaskRegistry, clock: SimClock, recorder: Recorder
) -> None:
    s = Scheduler(backend, registry, submit=recorder, clock=clock)
    every = await s.schedule_interval("job", 10)
    minutely = await s.schedule_cron("job", "* * * * *")
    clock.advance(605)  # ten minutes of downtime
    assert await s.tick() == 2
    assert sorted(recorder.task_ids) == sorted(
        [
            run_task_id(every, T0 + timedelta(seconds=600)),
            run_task_id(minutely, datetime(2024, 5, 1, 12, 10, tzinfo=UTC)),
        ]
    )
    task = await s.get_scheduled_task(every)
    assert task is not None
    assert task.next_run_at == T0 + timedelta(seconds=610)


async def test_missed_runs_all_fire_with_catch_up(
    backend: BaseSchedulerBackend, registry: TaskRegistry, clock: SimClock, recorder: Recorder
) -> None:
    s = Scheduler(backend, registry, submit=recorder, clock=clock)
    every = await s.schedule_interval("job", 10, catch_up=True)
    minutely = await s.schedule_cron("job", "* * * * *", catch_up=True)
    clock.advance(605)
    assert await s.tick() == 70
    expected = [run_task_id(every, T0 + timedelta(seconds=10 * k)) for k in range(1, 61)]
    expected += [
        run_task_id(minutely, datetime(2024, 5, 1, 12, m, tzinfo=UTC)) for m in range(1, 11)
    ]
    assert sorted(recorder.task_ids) == sorted(expected)
    assert await s.tick() == 0


async def test_one_time_fires_once_then_is_done(
    scheduler: Scheduler, clock: SimClock, recorder: Recorder
) -> None:
    past = await scheduler.schedule_once("job", datetime(2024, 5, 1, 11, 0))  # naive: UTC
    later = await scheduler.schedule_once("job", T0 + timedelta(seconds=30))
    assert await scheduler.tick() == 1
    assert recorder.task_ids == [run_task_id(past, datetime(2024, 5, 1, 11, 0, tzinfo=UTC))]
    clock.advance(3600)
    assert await scheduler.tick() == 1
    assert await scheduler.tick() == 0
    done = await scheduler.get_scheduled_task(later)
    assert done is not None
    assert not done.enabled
    assert done.next_run_at is None
    assert done.last_run_at == T0 + timedelta(seconds=30)


async def test_disable_and_enable_keep_the_interval_grid(
    scheduler: Scheduler, clock: SimClock, recorder: Recorder
) -> None:
    sid = await scheduler.schedule_interval("job", 10)
    await scheduler.disable_task(sid)
    clock.advance(35)
    assert await scheduler.tick() == 0
    await scheduler.enable_task(sid)
    task = await scheduler.get_scheduled_task(sid)
    assert task is not None
    assert task.enabled
    assert task.next_run_at == T0 + timedelta(seconds=40)
    clock.advance(5)
    assert await scheduler.tick() == 1
    assert await scheduler.unschedule(sid)
    assert await scheduler.unschedule(sid) is False


async def test_failed_submission_stays_due_and_keeps_its_task_id(
    scheduler: Scheduler, clock: SimClock, recorder: Recorder
) -> None:
    sid = await scheduler.schedule_interval("job", 10)
    clock.advance(10)
    recorder.fail = True
    assert await scheduler.tick() == 0
    recorder.fail = False
    clock.advance(1)
    assert await scheduler.tick() == 1
    assert recorder.task_ids == [run_task_id(sid, T0 + timedelta(seconds=10))]


async def test_dst_gap_and_repeat_fire_once_per_day(
    scheduler: Scheduler, clock: SimClock, recorder: Recorder
) -> None:
    clock.now = datetime(2024, 3, 9, 12, tzinfo=UTC)
    await scheduler.schedule_cron("job", "30 2 * * *", timezone="America/New_York")
    await scheduler.schedule_cron("report", "30 1 * * *", timezone="America/New_York")
    for start in (datetime(2024, 3, 9, 12, tzinfo=UTC), datetime(2024, 11, 2, 12, tzinfo=UTC)):
        clock.now = start
        while clock.now < start + timedelta(days=2):
            clock.advance(300)
            await scheduler.tick()
    fired = sorted((c.task_name, c.at.date().isoformat()) for c in recorder.calls)
    # Each job fires once a day, on both transition days (03-10 and 11-03) included;
    # between the two windows it coalesced into one run (at 11-02).
    assert fired == sorted(
        [("job", d) for d in ("2024-03-10", "2024-03-11", "2024-11-02", "2024-11-03", "2024-11-04")]
        + [
            ("report", d)
            for d in ("2024-03-10", "2024-03-11", "2024-11-02", "2024-11-03", "2024-11-04")
        ]
    )


async def test_start_needs_a_submit_callback(
    memory_backend: SQLiteSchedulerBackend, registry: TaskRegistry, recorder: Recorder
) -> None:
    s = Scheduler(memory_backend, registry)
    with pytest.raises(RuntimeError, match="no submit callback"):
        await s.start()
    with pytest.raises(RuntimeError, match="no submit callback"):
        await s.tick()
    s.set_submit_callback(recorder)
    await s.start()
    await s.start()
    assert s.is_running
    await s.stop()
    await s.stop()
    assert not s.is_running


async def test_loop_sees_changes_from_another_process_within_a_second(
    tmp_path: Path, registry: TaskRegistry
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    recorder = Recorder()
    running = Scheduler(get_scheduler_backend(url), registry, check_interval=60, submit=recorder)
    other = Scheduler(get_scheduler_backend(url), registry, submit=recorder)
    await running.start()
    try:
        await asyncio.sleep(0.2)
        created = datetime.now(UTC)
        await other.schedule_once("job", created)  # written through another connection
        for _ in range(40):
            if recorder.calls:
                break
            await asyncio.sleep(0.05)
        assert recorder.calls
        assert recorder.calls[0].at - created < timedelta(seconds=1.5)
        await running.schedule_interval("report", 0.1)  # a local change wakes the loop
        await asyncio.sleep(0.75)
        assert 3 <= sum(c.task_name == "report" for c in recorder.calls) <= 8
    finally:
        await running.close()
        await other.close()


def test_schedule_model_round_trips_through_dict() -> None:
    task = ScheduledTask(
        id="x",
        task_name="job",
        schedule_type=ScheduleType.CRON,
        schedule="0 * * * *",
        args=(1,),
        kwargs={"a": 1},
        next_run_at=T0,
        timezone="Europe/Paris",
        catch_up=True,
    )
    data = task.to_dict()
    assert data["schedule_type"] == "cron"
    assert data["next_run_at"] == T0.isoformat()
    assert ScheduledTask.from_dict(data) == task


def test_backend_urls(tmp_path: Path) -> None:
    assert isinstance(get_scheduler_backend(), SQLiteSchedulerBackend)
    absolute = get_scheduler_backend(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(absolute, SQLiteSchedulerBackend)
    assert absolute.database == f"{tmp_path}/a.db"
    relative = get_scheduler_backend("sqlite:///rel.db")
    assert isinstance(relative, SQLiteSchedulerBackend)
    assert relative.database == "rel.db"
    with pytest.raises(BackendError, match="'mongodb'"):
        get_scheduler_backend("mongodb://localhost")
    with pytest.raises(ValueError, match="invalid table name"):
        get_scheduler_backend(table_name="x; DROP TABLE y")


def test_import_flowrra_does_not_import_the_scheduler() -> None:
    code = (
        "import sys, flowrra; "
        "assert not [m for m in sys.modules if m.startswith('flowrra.scheduler')]; "
        "assert 'croniter' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
