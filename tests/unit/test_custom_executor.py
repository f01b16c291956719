"""A user-written executor plugged into the app with ``register_executor``.

``ThreadExecutor`` runs plain functions in threads. The worker owns retries, timeouts and
cancellation for every executor, so the same semantics must hold on it as on the built-in
ones. A thread cannot be stopped from outside, so the functions that block here wait on a
``threading.Event`` that each test sets before it ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flowrra import BackendError, Config, ExecutorConfig, Flowrra, TaskStatus
from flowrra.executors import BaseTaskExecutor

RESULT_WAIT = 30.0


class ThreadExecutor(BaseTaskExecutor):
    """Runs plain functions with ``asyncio.to_thread``; counts hooks and concurrent calls."""

    def __init__(self, concurrency: int = 2) -> None:
        super().__init__(concurrency)
        self.events: list[str] = []
        self.active = 0
        self.peak = 0

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self.events.append("run")
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        finally:
            self.active -= 1


def make_app(executor: BaseTaskExecutor | None = None) -> Flowrra:
    """A fresh app with ``executor`` (if any) registered as ``"threads"``."""
    app = Flowrra(Config(executor=ExecutorConfig(cpu_workers=1, max_retries=0)))
    if executor is not None:
        app.register_executor("threads", executor)
    return app


async def wait_until_set(event: threading.Event, within: float = 10.0) -> None:
    """Wait, without blocking the loop, until a thread sets ``event``."""
    assert await asyncio.to_thread(event.wait, within), "the call never started"


async def test_results_come_back_and_hooks_run_once_each() -> None:
    executor = ThreadExecutor()
    app = make_app(executor)

    @app.task(executor="threads")
    def double(x: int) -> dict[str, Any]:
        return {"value": 2 * x, "thread": threading.current_thread().name}

    async with app:
        assert executor.events == ["start"]
        task_ids = [await app.submit(double, x) for x in range(5)]
        records = [await app.wait_for_result(t, timeout=RESULT_WAIT) for t in task_ids]
        assert "stop" not in executor.events
    assert [r.status for r in records] == [TaskStatus.SUCCESS] * 5
    assert [r.result["value"] for r in records] == [0, 2, 4, 6, 8]
    # the calls really ran through the executor, off the event loop's thread
    assert all(r.result["thread"] != threading.current_thread().name for r in records)
    assert executor.events == ["start"] + ["run"] * 5 + ["stop"]


async def test_never_more_calls_at_once_than_its_concurrency() -> None:
    executor = ThreadExecutor(concurrency=2)
    app = make_app(executor)
    lock = threading.Lock()
    inside = 0
    inside_peak = 0

    @app.task(executor="threads")
    def hold(x: int) -> int:
        nonlocal inside, inside_peak
        with lock:
            inside += 1
            inside_peak = max(inside_peak, inside)
        time.sleep(0.1)
        with lock:
            inside -= 1
        return x

    async with app:
        task_ids = [await app.submit(hold, x) for x in range(8)]
        records = [await app.wait_for_result(t, timeout=RESULT_WAIT) for t in task_ids]
    assert [r.result for r in records] == list(range(8))
    assert executor.peak <= executor.concurrency
    assert inside_peak <= executor.concurrency
    # and it does use its concurrency: two calls of 0.1 s each overlapped
    assert executor.peak == 2


async def test_retries_work_on_a_custom_executor() -> None:
    app = make_app(ThreadExecutor())
    attempts = 0

    @app.task(executor="threads", max_retries=3, retry_delay=0.01)
    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionError(f"attempt {attempts} failed")
        return "ok"

    async with app:
        task_id = await app.submit(flaky)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.SUCCESS
    assert record.result == "ok"
    assert record.retries == 2
    assert attempts == 3


async def test_timeout_on_a_custom_executor() -> None:
    app = make_app(ThreadExecutor())
    release = threading.Event()

    @app.task(executor="threads", timeout=0.2, max_retries=0)
    def stuck() -> str:
        release.wait(30)
        return "finished"

    try:
        async with app:
            task_id = await app.submit(stuck)
            record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
            release.set()
    finally:
        release.set()
    assert record.status == TaskStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("TaskTimeoutError"), record.error
    assert record.retries == 0


async def test_cancel_a_running_call_on_a_custom_executor() -> None:
    app = make_app(ThreadExecutor())
    started = threading.Event()
    release = threading.Event()

    @app.task(executor="threads")
    def stuck() -> str:
        started.set()
        release.wait(30)
        return "finished"

    try:
        async with app:
            task_id = await app.submit(stuck)
            await wait_until_set(started)
            assert await app.cancel(task_id) is True
            record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
            release.set()
    finally:
        release.set()
    assert record.status == TaskStatus.CANCELLED
    assert record.result is None


async def test_start_fails_for_a_task_routed_to_an_unregistered_executor() -> None:
    app = make_app(ThreadExecutor())

    @app.task(executor="nowhere")
    def lost() -> None:
        return None

    with pytest.raises(BackendError, match="nowhere"):
        await app.start()
    assert app.is_running is False


async def test_register_executor_rejects_non_executors_and_late_calls() -> None:
    app = make_app()
    with pytest.raises(TypeError):
        app.register_executor("threads", object())  # type: ignore[arg-type]
    assert "threads" not in app.executors
    async with app:
        with pytest.raises(RuntimeError):
            app.register_executor("threads", ThreadExecutor())
    assert "threads" not in app.executors
