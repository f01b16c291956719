"""The app's scheduler: runs go through the app, with their stored options, once each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowrra import Config, ExecutorConfig, Flowrra, SchedulerConfig, TaskStatus
from flowrra.scheduler import Scheduler


async def test_interval_schedule_runs_through_the_app(tmp_path: Path) -> None:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=2)))
    runs: list[int] = []

    @app.task
    async def tick(step: int) -> int:
        runs.append(step)
        return step

    scheduler = app.create_scheduler(f"sqlite:///{tmp_path / 'schedule.db'}", check_interval=0.1)
    assert isinstance(scheduler, Scheduler)
    assert app.scheduler is scheduler
    schedule_id = await scheduler.schedule_interval("tick", 0.2, args=(7,), priority=3)
    assert await scheduler.schedule_interval("tick", 0.2, args=(7,), priority=3) == schedule_id
    states = []
    async with app:
        states.append(scheduler.is_running)
        for _ in range(100):
            if len(runs) >= 2:
                break
            await asyncio.sleep(0.05)
    states.append(scheduler.is_running)
    assert states == [True, False]
    await scheduler.close()
    assert len(runs) >= 2
    assert set(runs) == {7}


async def test_a_scheduled_run_is_submitted_once_per_task_id(tmp_path: Path) -> None:
    app = Flowrra()
    runs: list[str] = []

    @app.task
    async def job(label: str) -> None:
        runs.append(label)

    app.create_scheduler(f"sqlite:///{tmp_path / 's.db'}")
    async with app:
        first = await app._submit_scheduled(
            "job", ("x",), {}, task_id="sched-1@t", priority=0, max_retries=0, retry_delay=0
        )
        again = await app._submit_scheduled(
            "job", ("x",), {}, task_id="sched-1@t", priority=0, max_retries=0, retry_delay=0
        )
        await app.run_until_idle(timeout=5)
        record = await app.wait_for_result(first, timeout=5)
    assert first == again == "sched-1@t"
    assert runs == ["x"]
    assert record.status == TaskStatus.SUCCESS
    assert app.scheduler is not None
    await app.scheduler.close()


async def test_scheduler_enabled_by_config_starts_with_the_app(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-config.db'}"
    app = Flowrra(Config(scheduler=SchedulerConfig(database_url=url, enabled=True)))

    @app.task
    async def job() -> None:
        return None

    before = app.scheduler
    async with app:
        during = app.scheduler
        assert during is not None
        assert during.is_running
    assert before is None
    await during.close()


async def test_unknown_task_cannot_be_scheduled(tmp_path: Path) -> None:
    app = Flowrra()
    scheduler = app.create_scheduler(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ValueError, match="missing"):
        await scheduler.schedule_interval("missing", 5)
    await scheduler.close()
