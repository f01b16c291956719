"""The app end to end on Redis: the same worker loop and semantics as in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from flowrra import Flowrra, TaskStatus
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.events import Event, event_bus
from flowrra.exceptions import SerializationError, TaskNotFoundError, TaskTimeoutError
from flowrra.task import TaskResult
from integration.redis_support import redis_url

pytestmark = pytest.mark.service


@pytest.fixture
def prefix(app_prefix: str) -> str:
    return app_prefix


@pytest.fixture
async def make_app(prefix: str) -> AsyncIterator[Callable[[], Flowrra]]:
    """Builds apps on this test's Redis prefix; each is closed afterwards."""
    apps: list[Flowrra] = []

    def build() -> Flowrra:
        app = Flowrra.from_urls(
            broker=RedisBroker(redis_url(), prefix=prefix),
            backend=RedisBackend(redis_url(), prefix=prefix),
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        await app.close()


async def test_tasks_retries_and_priorities_on_redis(make_app: Callable[[], Flowrra]) -> None:
    app = make_app()
    attempts: list[int] = []

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(max_retries=2, retry_delay=0.05)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("not yet")
        return "ok"

    async with app:
        ids = [await add.submit(i, i) for i in range(50)]
        flaky_id = await flaky.submit()
        results = [await app.wait_for_result(i, timeout=10) for i in ids]
        flaky_result = await app.wait_for_result(flaky_id, timeout=10)
    assert [r.result for r in results] == [2 * i for i in range(50)]
    assert all(r.args == (i, i) and r.submitted_at is not None for i, r in enumerate(results))
    assert flaky_result.status == TaskStatus.SUCCESS
    assert flaky_result.retries == 2


async def test_idempotent_submit_and_cancel_on_redis(make_app: Callable[[], Flowrra]) -> None:
    app = make_app()
    runs: list[str] = []

    @app.task
    async def once(label: str) -> None:
        runs.append(label)

    async with app:
        first = await once.options(task_id="order-1").submit("a")
        again = await once.options(task_id="order-1").submit("b")
        await app.wait_for_result(first, timeout=10)
        later = await once.options(countdown=60).submit("never")
        assert await app.cancel(later)
        cancelled = await app.wait_for_result(later, timeout=10)
    assert first == again == "order-1"
    assert runs == ["a"]
    assert cancelled.status == TaskStatus.CANCELLED


async def test_each_state_change_reaches_subscribers_once(make_app: Callable[[], Flowrra]) -> None:
    app = make_app()
    seen: list[str] = []

    def collect(event: Event) -> None:
        seen.append(event["task"]["status"])

    @app.task
    async def job() -> int:
        return 1

    event_bus.subscribe(collect)
    try:
        async with app:
            await app.wait_for_result(await job.submit(), timeout=10)
            for _ in range(100):
                if seen[-1:] == ["success"]:
                    break
                await asyncio.sleep(0.02)
    finally:
        await event_bus.unsubscribe(collect)
    assert seen == ["pending", "running", "success"]


async def test_updates_are_relayed_only_while_the_bus_has_subscribers(
    make_app: Callable[[], Flowrra],
) -> None:
    worker, watcher = make_app(), make_app()
    seen: list[str] = []

    def collect(event: Event) -> None:
        seen.append(event["task"]["task_id"])

    async def job() -> int:
        return 1

    worker.task(name="job")(job)
    watcher.task(name="job")(job)
    listeners = watcher.backend._update_listeners  # type: ignore[attr-defined]
    async with worker, watcher:
        assert listeners == []  # nobody listens in this process: nothing relayed
        await asyncio.to_thread(event_bus.subscribe, collect)  # from a thread with no loop
        try:
            for _ in range(100):  # the subscription is confirmed a round trip later
                task_id = await worker.submit("job")
                await worker.wait_for_result(task_id, timeout=10)
                await asyncio.sleep(0.02)
                if task_id in seen:
                    break
            assert task_id in seen
            assert len(listeners) == 1
        finally:
            await event_bus.unsubscribe(collect)
        for _ in range(100):
            if not listeners:
                break
            await asyncio.sleep(0.01)
        assert listeners == []


async def test_a_task_whose_workers_keep_dying_is_recorded_failed(prefix: str) -> None:
    """The reaper's dead-lettering reaches the record, so a waiter is not left waiting."""

    def app_with(lease: float) -> Flowrra:
        return Flowrra.from_urls(
            broker=RedisBroker(redis_url(), prefix=prefix, lease=lease, max_deliveries=2),
            backend=RedisBackend(redis_url(), prefix=prefix),
        )

    producer = app_with(30.0)
    producer.task(name="doomed")(_never_returns)
    await producer.start(worker=False)
    try:
        task_id = await producer.submit("doomed")
        waiter = asyncio.ensure_future(producer.wait_for_result(task_id, timeout=15))
        for _ in range(2):  # two deliveries whose worker "dies": claimed, never settled
            # max_deliveries=3: these brokers' own reapers return the task, never bury it
            dying = RedisBroker(redis_url(), prefix=prefix, lease=1.0, max_deliveries=3)
            await asyncio.wait_for(dying.claim(["default:io"]), 5)
            await dying.close()
            await asyncio.sleep(1.1)  # the lease expires
        worker = app_with(1.0)
        worker.task(name="doomed")(_never_returns)
        await worker.start()  # its broker's reaper finds the second expired lease
        try:
            record = await waiter
        finally:
            await worker.close()
        assert record.status == TaskStatus.FAILED
        assert record.error is not None
        assert "lease expired 2 times" in record.error
        assert record.deliveries == 2
    finally:
        await producer.close()


async def _never_returns() -> None:
    await asyncio.Event().wait()


async def test_a_submit_that_failed_leaves_nothing_to_wait_for(prefix: str) -> None:
    app = Flowrra.from_urls(
        broker=RedisBroker(redis_url(), prefix=prefix, max_message_bytes=2000),
        backend=RedisBackend(redis_url(), prefix=prefix),
    )
    app.task(name="echo")(_echo)
    await app.start(worker=False)
    try:
        first = await app.submit("echo", "small")
        with pytest.raises(TaskTimeoutError):
            await app.wait_for_result(first, timeout=0.05)  # subscribes to completions
        with pytest.raises(SerializationError):
            await app.submit("echo", "x" * 5000, task_id="too-big")
        with pytest.raises(TaskNotFoundError):
            await app.wait_for_result("too-big", timeout=5)
    finally:
        await app.close()


async def test_cancelling_a_task_that_already_has_an_outcome_keeps_it(prefix: str) -> None:
    """A run stored its success but lost its ack, so the task came back to the queue: a
    cancel removes it from the queue and leaves the success on record."""
    app = Flowrra.from_urls(
        broker=RedisBroker(redis_url(), prefix=prefix),
        backend=RedisBackend(redis_url(), prefix=prefix),
    )
    app.task(name="echo")(_echo)
    await app.start(worker=False)
    try:
        task_id = await app.submit("echo", "value")
        await app.backend.store(task_id, TaskResult(task_id, TaskStatus.SUCCESS, "echo", "value"))
        assert await app.cancel(task_id)
        kept = await app.get_result(task_id)
        assert kept is not None
        assert (kept.status, kept.result) == (TaskStatus.SUCCESS, "value")
    finally:
        await app.close()


async def _echo(value: str) -> str:
    return value
