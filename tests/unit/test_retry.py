"""Retries: exponential back-off, cap, jitter, exception filters, and no slot held."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from flowrra import Config, ExecutorConfig, Flowrra, RetryPolicy, TaskStatus
from flowrra.brokers import QueueBroker


def queue_of(app: Flowrra) -> QueueBroker:
    assert isinstance(app.broker, QueueBroker)
    return app.broker


def make_app(**executor: Any) -> Flowrra:
    return Flowrra(Config(executor=ExecutorConfig(**executor)))


def test_delay_doubles_from_retry_delay() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n, 2.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert policy.delay(1, 0.0) == 0.0
    with pytest.raises(ValueError, match="starts at 1"):
        policy.delay(0, 2.0)


def test_cap_bounds_each_delay() -> None:
    policy = RetryPolicy(backoff_max=10.0)
    assert [policy.delay(n, 2.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_stays_between_half_and_the_whole_delay() -> None:
    policy = RetryPolicy(jitter=True)
    delays = [policy.delay(3, 2.0) for _ in range(500)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 400, "jitter must actually spread delays"


def test_exception_filters() -> None:
    only_io = RetryPolicy(retry_on=(OSError,), dont_retry_on=(PermissionError,))
    assert only_io.is_retryable(ConnectionError())
    assert not only_io.is_retryable(PermissionError())
    assert not only_io.is_retryable(ValueError())
    assert RetryPolicy().is_retryable(ValueError())
    assert not RetryPolicy().is_retryable(KeyboardInterrupt())


async def test_task_retries_then_succeeds_with_exponential_delays() -> None:
    app = make_app()
    attempts: list[float] = []

    @app.task(max_retries=3, retry_delay=0.05)
    async def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    async with app:
        result = await app.wait_for_result(await app.submit(flaky), timeout=5)
    assert result.status == TaskStatus.SUCCESS
    assert result.retries == 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.045, "first retry waits retry_delay"
    assert gaps[1] >= 0.095, "second retry waits twice as long"


async def test_retries_are_counted_after_the_first_attempt() -> None:
    app = make_app()
    calls: list[int] = []

    @app.task(max_retries=2, retry_delay=0)
    async def always_fails() -> None:
        calls.append(1)
        raise RuntimeError("nope")

    async with app:
        result = await app.wait_for_result(await app.submit(always_fails), timeout=5)
    assert len(calls) == 3
    assert result.status == TaskStatus.FAILED
    assert result.retries == 2
    assert result.error == "RuntimeError: nope"


async def test_exceptions_outside_the_filter_fail_at_once() -> None:
    app = make_app()
    calls: list[str] = []

    @app.task(max_retries=5, retry_delay=0, retry_on=(ConnectionError,))
    async def picky(kind: str) -> None:
        calls.append(kind)
        raise (ConnectionError if kind == "net" and len(calls) < 2 else KeyError)(kind)

    @app.task(max_retries=5, retry_delay=0, dont_retry_on=(KeyError,))
    async def never_on_key_error() -> None:
        calls.append("key")
        raise KeyError("missing")

    async with app:
        picky_result = await app.wait_for_result(await app.submit(picky, "net"), timeout=5)
        key_result = await app.wait_for_result(await app.submit(never_on_key_error), timeout=5)
    assert picky_result.retries == 1
    assert picky_result.error == "KeyError: 'net'"
    assert key_result.retries == 0
    assert calls == ["net", "net", "key"]


async def test_a_waiting_retry_holds_no_worker_slot() -> None:
    app = make_app(io_workers=1)
    finished: list[str] = []

    @app.task(max_retries=1, retry_delay=1.0)
    async def fails_once(state: dict[str, int]) -> None:
        finished.append("flaky-attempt")
        raise RuntimeError("later")

    @app.task
    async def quick(label: str) -> None:
        finished.append(label)

    async with app:
        flaky_id = await app.submit(fails_once, {})
        await asyncio.sleep(0.05)
        record = await app.get_result(flaky_id)
        assert record is not None
        assert record.status == TaskStatus.RETRYING
        quick_ids = [await app.submit(quick, f"q{i}") for i in range(3)]
        for task_id in quick_ids:
            await app.wait_for_result(task_id, timeout=5)
        assert (await queue_of(app).counts()).delayed == 1, "the retry still waits"
        await app.run_until_idle(timeout=5)
    assert finished == ["flaky-attempt", "q0", "q1", "q2", "flaky-attempt"]


async def test_submit_overrides_for_scheduled_runs() -> None:
    app = make_app()

    @app.task(max_retries=0)
    async def fails() -> None:
        raise RuntimeError("x")

    async with app:
        task_id = await app.submit_call(fails, (), {}, max_retries=2, retry_delay=0)
        result = await app.wait_for_result(task_id, timeout=5)
    assert result.retries == 2
