"""The CPU executor through the app: parallel child processes, errors, crashes, stops.

CPU tasks are the plain functions of ``cpu_tasks``; children import that module by name.
Behaviour that happens in a child is observed through what the task returns or through
files it writes under ``tmp_path``: never through wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import cpu_tasks
import pytest

from flowrra import Config, ExecutorConfig, Flowrra, TaskStatus
from flowrra.brokers.base import QueueBroker

RESULT_WAIT = 60.0  # generous upper bound for one result (children start by spawn)


def make_app(cpu_workers: int = 2, **executor: Any) -> Flowrra:
    """A fresh app with ``cpu_workers`` children and no retries unless asked."""
    executor.setdefault("max_retries", 0)
    return Flowrra(Config(executor=ExecutorConfig(cpu_workers=cpu_workers, **executor)))


def _read_pid_when_written(path: Path, within: float) -> int:
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no task wrote {path} within {within} s")
        time.sleep(0.02)
    return int(path.read_text(encoding="utf-8"))


async def wait_for_pid_file(path: Path, within: float = 30.0) -> int:
    """The pid a task wrote to ``path``, once the file exists (polled off the loop)."""
    return await asyncio.to_thread(_read_pid_when_written, path, within)


def is_alive(pid: int) -> bool:
    """True while a process (or an unreaped zombie) with ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_until_gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer exists, False if it is still there after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while is_alive(pid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -- results and parallelism -------------------------------------------------------------


async def test_cpu_task_returns_its_result() -> None:
    app = make_app()
    add = app.task(cpu_bound=True)(cpu_tasks.add)
    async with app:
        task_id = await app.submit(add, 2, 40)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.SUCCESS
    assert record.result == 42
    assert record.error is None


async def test_cpu_task_runs_in_another_process() -> None:
    app = make_app()
    getpid = app.task(cpu_bound=True)(cpu_tasks.getpid)
    async with app:
        task_id = await app.submit(getpid)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.SUCCESS
    assert isinstance(record.result, int)
    assert record.result != os.getpid()


async def test_cpu_tasks_run_in_parallel_on_two_children() -> None:
    app = make_app(cpu_workers=2)
    busy = app.task(cpu_bound=True)(cpu_tasks.busy_interval)
    async with app:
        task_ids = [await app.submit(busy, 0.5) for _ in range(4)]
        records = [await app.wait_for_result(t, timeout=RESULT_WAIT) for t in task_ids]
    assert [r.status for r in records] == [TaskStatus.SUCCESS] * 4
    intervals = [(r.result[0], r.result[1], int(r.result[2])) for r in records]
    pids = {pid for _, _, pid in intervals}
    assert len(pids) == 2, f"expected the 2 children to share the work, got pids {pids}"
    assert os.getpid() not in pids
    overlapping = [
        (a, b)
        for i, a in enumerate(intervals)
        for b in intervals[i + 1 :]
        if a[2] != b[2] and max(a[0], b[0]) < min(a[1], b[1])
    ]
    assert overlapping, f"no two tasks ran at the same time in different children: {intervals}"


# -- errors raised in the child ----------------------------------------------------------


async def test_exception_in_child_is_reported_with_the_childs_traceback() -> None:
    app = make_app()
    fail = app.task(cpu_bound=True)(cpu_tasks.raise_value_error)
    async with app:
        task_id = await app.submit(fail, "bad input")
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("ValueError: ")
    assert record.error == "ValueError: bad input"
    assert record.traceback is not None
    # the frame that raised, in the child, must be part of the reported traceback
    assert "raise_value_error" in record.traceback, record.traceback
    assert "cpu_tasks.py" in record.traceback, record.traceback


async def test_unpicklable_exception_still_reports_its_type_name() -> None:
    app = make_app()
    fail = app.task(cpu_bound=True)(cpu_tasks.raise_unpicklable)
    async with app:
        task_id = await app.submit(fail, "holds a lock")
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.FAILED
    assert record.error == "UnpicklableError: holds a lock"
    assert record.traceback is not None
    assert "raise_unpicklable" in record.traceback


@pytest.mark.parametrize(
    "function",
    [cpu_tasks.return_lock, cpu_tasks.return_set],
    ids=["unpicklable", "not-json"],
)
async def test_result_that_cannot_travel_fails_with_serialization_error(
    function: Any,
) -> None:
    app = make_app(max_retries=2, retry_delay=0.01)
    task = app.task(cpu_bound=True)(function)
    async with app:
        task_id = await app.submit(task)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
    assert record.status == TaskStatus.FAILED
    assert record.error is not None
    assert record.error.startswith("SerializationError: "), record.error
    # a value that cannot be sent will never be sendable: it is not retried
    assert record.retries == 0


# -- children that die -------------------------------------------------------------------


async def test_killed_child_task_is_delivered_again_while_others_succeed(
    tmp_path: Path,
) -> None:
    app = make_app(cpu_workers=2)
    victim = app.task(cpu_bound=True)(cpu_tasks.sleep_unless_marked)
    square = app.task(cpu_bound=True)(cpu_tasks.slow_square)
    pid_file = tmp_path / "victim.pid"
    marker = tmp_path / "victim.marker"
    async with app:
        victim_id = await app.submit(victim, str(pid_file), str(marker), 60)
        killed_pid = await wait_for_pid_file(pid_file)
        other_ids = [await app.submit(square, x, 0.1) for x in range(6)]
        os.kill(killed_pid, signal.SIGKILL)
        others = [await app.wait_for_result(t, timeout=RESULT_WAIT) for t in other_ids]
        record = await app.wait_for_result(victim_id, timeout=RESULT_WAIT)
    assert [r.status for r in others] == [TaskStatus.SUCCESS] * 6
    assert [r.result for r in others] == [x * x for x in range(6)]
    assert record.status == TaskStatus.SUCCESS, record.error
    assert record.result["run"] == "again"
    assert record.result["pid"] != killed_pid
    assert record.deliveries == 2
    assert record.retries == 0
    assert await wait_until_gone(killed_pid)


async def test_poison_task_is_dead_lettered_after_max_deliveries(tmp_path: Path) -> None:
    app = make_app(cpu_workers=2, max_deliveries=3)
    poison = app.task(cpu_bound=True)(cpu_tasks.exit_hard)
    square = app.task(cpu_bound=True)(cpu_tasks.slow_square)
    counter = tmp_path / "runs.txt"
    async with app:
        before = [await app.submit(square, x, 0.05) for x in range(5)]
        poison_id = await app.submit(poison, str(counter))
        after = [await app.submit(square, x, 0.05) for x in range(5, 10)]
        normal = [await app.wait_for_result(t, timeout=RESULT_WAIT) for t in before + after]
        record = await app.wait_for_result(poison_id, timeout=RESULT_WAIT)
        broker = app.broker
        assert isinstance(broker, QueueBroker)
        dead = await broker.dead_letters()
    assert [r.status for r in normal] == [TaskStatus.SUCCESS] * 10
    assert [r.result for r in normal] == [x * x for x in range(10)]
    assert record.status == TaskStatus.FAILED
    assert record.error is not None
    assert "WorkerLostError" in record.error
    assert record.retries == 0
    assert record.deliveries == 3
    runs = counter.read_text(encoding="utf-8").splitlines()
    assert len(runs) == 3
    assert len(set(runs)) == 3  # each delivery ran in a fresh child
    assert poison_id in [letter.task.id for letter in dead]


# -- timeouts and cancellation stop the child --------------------------------------------


async def test_timeout_kills_the_child_and_the_executor_keeps_serving(tmp_path: Path) -> None:
    app = make_app(cpu_workers=1)
    getpid = app.task(cpu_bound=True)(cpu_tasks.getpid)
    sleeper = app.task(name="sleeper", cpu_bound=True, timeout=0.5, max_retries=0)(
        cpu_tasks.write_pid_and_sleep
    )
    pid_file = tmp_path / "sleeper.pid"
    async with app:
        # start the only child first, so the 0.5 s limit is spent inside the task
        warm = await app.wait_for_result(await app.submit(getpid), timeout=RESULT_WAIT)
        task_id = await app.submit(sleeper, str(pid_file), 30)
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
        assert record.status == TaskStatus.FAILED
        assert record.error is not None
        assert "TaskTimeoutError" in record.error
        child_pid = await wait_for_pid_file(pid_file, within=0)
        assert child_pid == warm.result
        assert await wait_until_gone(child_pid), f"child {child_pid} outlived its timeout"
        later = await app.wait_for_result(await app.submit(getpid), timeout=RESULT_WAIT)
    assert later.status == TaskStatus.SUCCESS
    assert later.result != child_pid


async def test_cancel_running_cpu_task_kills_its_child(tmp_path: Path) -> None:
    app = make_app(cpu_workers=1)
    getpid = app.task(cpu_bound=True)(cpu_tasks.getpid)
    sleeper = app.task(cpu_bound=True)(cpu_tasks.write_pid_and_sleep)
    pid_file = tmp_path / "sleeper.pid"
    async with app:
        task_id = await app.submit(sleeper, str(pid_file), 30)
        child_pid = await wait_for_pid_file(pid_file)
        assert await app.cancel(task_id) is True
        record = await app.wait_for_result(task_id, timeout=RESULT_WAIT)
        assert record.status == TaskStatus.CANCELLED
        assert await wait_until_gone(child_pid), f"child {child_pid} outlived its cancel"
        later = await app.wait_for_result(await app.submit(getpid), timeout=RESULT_WAIT)
    assert later.status == TaskStatus.SUCCESS
    assert later.result != child_pid


# -- registration ------------------------------------------------------------------------


def test_lambda_cannot_be_cpu_bound() -> None:
    app = make_app()
    with pytest.raises(TypeError, match="module level"):
        app.task(name="square", cpu_bound=True)(lambda x: x * x)
    assert "square" not in app.registry


def test_nested_function_cannot_be_cpu_bound() -> None:
    app = make_app()

    def nested(x: int) -> int:
        return x * x

    with pytest.raises(TypeError, match="module level"):
        app.task(cpu_bound=True)(nested)
    assert "nested" not in app.registry


async def _async_function(x: int) -> int:
    return x


def test_async_function_cannot_be_cpu_bound() -> None:
    app = make_app()
    with pytest.raises(TypeError, match="async"):
        app.task(cpu_bound=True)(_async_function)
    assert "_async_function" not in app.registry
