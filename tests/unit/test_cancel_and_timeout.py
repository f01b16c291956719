"""Cancellation and timeouts of IO tasks, and handing running tasks back on ``stop``.

A task can be cancelled wherever it is: queued, delayed, waiting for a retry, or running.
Timeouts are the worker's: they fail the run with ``TaskTimeoutError`` (and are retried
like any failure), while a ``TimeoutError`` the task raises itself keeps its own name.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowrra import Config, ExecutorConfig, Flowrra, TaskStatus
from flowrra.brokers.base import BrokerCounts, QueueBroker

RESULT_WAIT = 10.0
IDLE_WAIT = 5.0  # a queue with nothing left to run goes idle at once; this only bounds it


def make_app(io_workers: int = 4, **executor: Any) -> Flowrra:
    """A fresh app with no retries unless asked."""
    executor.setdefault("max_retries", 0)
    return Flowrra(
        Config(executor=ExecutorConfig(io_workers=io_workers, cpu_workers=1, **executor))
    )


async def queue_counts(app: Flowrra) -> BrokerCounts:
    """The sizes of the app's queue."""
    broker = app.broker
    assert isinstance(broker, QueueBroker)
    return await broker.counts()


async def wait_for_status(app: Flowrra, task_id: str, status: TaskStatus) -> None:
    """Wait until the task's record shows ``status``."""
    async with asyncio.timeout(RESULT_WAIT):
        while True:
            record = await app.get_result(task_id)
            if record is not None and record.status == status:
                return
            await asyncio.sleep(0.01)


# -- cancelling waiting tasks ------------------------------------------------------------


async def test_cancel_queued_task_never_runs_it() -> None:
    app = make_app(io_workers=1)
    blocked = asyncio.Event()
    release = asyncio.Event()
    ran: list[str] = []

    @app.task
    async def blocker() -> str:
        blocked.set()
        await release.wait()
        return "released"

    @app.task
    async def victim() -> str:
        ran.append("victim")
        return "ran"

    async with app:
        blocker_id = await app.submit(blocker)
        async with asyncio.timeout(RESULT_WAIT):
            await blocked.wait()
        victim_id = await app.submit(victim)
        assert await app.cancel(victim_id) is True
        record = await app.get_result(victim_id)
        assert record is not None
        assert record.status == TaskStatus.CANCELLED
        release.set()
        await app.run_until_idle(timeout=IDLE_WAIT)
        blocker_record = await app.wait_for_result(blocker_id, timeout=RESULT_WAIT)
        final = await app.get_result(victim_id)
    assert ran == []
    assert blocker_record.status == TaskStatus.SUCCESS
    assert final is not None
    assert final.status == TaskStatus.CANCELLED
    assert final.error is not None
    assert final.error.startswith("TaskCancelledError")


async def test_cancel_delayed_task() -> None:
    app = make_app()
    ran: list[str] = []

    @app.task
    async def later() -> str:
        ran.append("later")
        return "ran"

    async with app:
        task_id = await app.submit(later, countdown=30)
        assert await app.cancel(task_id) is True
        record = await app.get_result(task_id)
        assert record is not None
        assert record.status == TaskStatus.CANCELLED
        await app.run_until_idle(timeout=IDLE_WAIT)
        counts = await queue_counts(app)
    assert ran == []
    assert counts.delayed == 0
    assert counts.ready == 0


async def test_cancel_task_waiting_for_its_retry() -> None:
    app = make_app()
    attempts = 0

    @app.task(max_retries=3, retry_delay=30)
    async def fails_once() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    async with app:
        task_id = await app.submit(fails_once)
        await wait_for_status(app, task_id, TaskStatus.RETRYING)
        assert await app.cancel(task_id) is True
        record = await app.get_result(task_id)
        assert record is not None
        assert record.status == TaskStatus.CANCELLED
        await app.run_until_idle(timeout=IDLE_WAIT)
        counts = await queue_counts(app)
    assert attempts == 1
    assert counts.delayed == 0
    assert counts.ready == 0


# -- cancelling a running task -----------------------------------------------------------


async def test_cancel_running_io_task_cancels_its_coroutine() -> None:
    app = make_app()
    started = asyncio.Event()
    seen: list[str] = []

    @app.task
    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async with app:
        task_id = await app.submit(forever)
        async with asyncio.timeout(RESULT_WAIT):
            await started.wait()
        assert await app.cancel(task_id) is True
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
        await app.run_until_idle(timeout=IDLE_WAIT)
    assert record.status == TaskStatus.CANCELLED
    assert record.error is not None
    assert record.error.startswith("TaskCancelledError")
    assert seen == ["cancelled"]


async def test_cancel_unknown_or_finished_task_returns_false() -> None:
    app = make_app()

    @app.task
    async def quick() -> int:
        return 7

    async with app:
        assert await app.cancel("no-such-task") is False
        task_id = await app.submit(quick)
        done = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
        assert await app.cancel(task_id) is False
        after = await app.get_result(task_id)
    assert done.status == TaskStatus.SUCCESS
    assert after is not None
    assert after.status == TaskStatus.SUCCESS
    assert after.result == 7


# -- timeouts ----------------------------------------------------------------------------


async def test_io_timeout_fails_after_its_retries() -> None:
    app = make_app()
    attempts = 0
    cancelled = 0

    @app.task(timeout=0.1, max_retries=1, retry_delay=0.01)
    async def slow() -> str:
        nonlocal attempts, cancelled
        attempts += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return "too late"

    async with app:
        task_id = await app.submit(slow)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.FAILED
    assert record.retries == 1
    assert record.error is not None
    assert record.error.startswith("TaskTimeoutError"), record.error
    assert attempts == 2
    assert cancelled == 2  # each timed-out run was stopped, not left behind


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "with-timeout"])
async def test_timeout_error_raised_by_the_task_keeps_its_name(timeout: float | None) -> None:
    app = make_app()

    @app.task(timeout=timeout, max_retries=0)
    async def upstream_slow() -> None:
        raise TimeoutError("upstream did not answer")

    async with app:
        task_id = await app.submit(upstream_slow)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.FAILED
    assert record.error == "TimeoutError: upstream did not answer"


# -- stop hands running tasks back -------------------------------------------------------


async def test_stop_puts_a_running_task_back_and_start_runs_it_again() -> None:
    app = make_app()
    started = asyncio.Event()
    runs = 0

    @app.task
    async def long_job() -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            started.set()
            await asyncio.Event().wait()
        return "done"

    try:
        await app.start()
        task_id = await app.submit(long_job)
        async with asyncio.timeout(RESULT_WAIT):
            await started.wait()
        async with asyncio.timeout(RESULT_WAIT):
            await app.stop(timeout=0.2)
        assert app.is_running is False
        record = await app.get_result(task_id)
        assert record is not None
        assert record.status == TaskStatus.PENDING
        assert runs == 1

        await app.start()
        final = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    finally:
        await app.stop()
    assert final.status == TaskStatus.SUCCESS
    assert final.result == "done"
    assert runs == 2
