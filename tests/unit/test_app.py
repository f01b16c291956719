"""The app: submission, results, lifecycle, ordering, back-pressure and events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowrra import (
    Config,
    ExecutorConfig,
    ExecutorNotRunningError,
    Flowrra,
    SerializationError,
    TaskNotFoundError,
    TaskResult,
    TaskStatus,
    TaskTimeoutError,
)
from flowrra.brokers import QueueBroker
from flowrra.events import Event, event_bus


def queue_of(app: Flowrra) -> QueueBroker:
    assert isinstance(app.broker, QueueBroker)
    return app.broker


def make_app(**executor: Any) -> Flowrra:
    return Flowrra(Config(executor=ExecutorConfig(**executor)))


@pytest.fixture
async def app() -> AsyncIterator[Flowrra]:
    application = make_app(io_workers=4)
    yield application
    await application.stop(wait=False)


async def test_submit_by_object_and_by_name(app: Flowrra) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        by_object = await app.submit(add, 1, 2)
        by_name = await app.submit("add", 3, y=4)
        typed = await add.submit(5, 6)
        results = [await app.wait_for_result(i, timeout=5) for i in (by_object, by_name, typed)]
    assert [r.result for r in results] == [3, 7, 11]
    assert all(r.status == TaskStatus.SUCCESS and r.is_success for r in results)


async def test_final_record_keeps_submission_details(app: Flowrra) -> None:
    @app.task
    async def echo(value: str, *, suffix: str) -> str:
        return value + suffix

    async with app:
        task_id = await app.submit(echo, "a", suffix="b")
        result = await app.wait_for_result(task_id, timeout=5)
    assert result.task_name == "echo"
    assert result.result == "ab"
    assert result.args == ("a",)
    assert result.kwargs == {"suffix": "b"}
    assert result.submitted_at is not None
    assert result.started_at is not None
    assert result.finished_at is not None
    assert result.submitted_at <= result.started_at <= result.finished_at
    assert result.deliveries == 1
    restored = TaskResult.from_dict(result.to_dict)
    assert restored == result
    assert result.to_dict["status"] == "success"
    assert result.to_dict["submitted_at"] == result.submitted_at.isoformat()


async def test_failure_records_the_exception_type(app: Flowrra) -> None:
    @app.task(max_retries=0)
    async def broken() -> None:
        raise ValueError("bad input")

    async with app:
        result = await app.wait_for_result(await app.submit(broken), timeout=5)
    assert result.status == TaskStatus.FAILED
    assert result.error == "ValueError: bad input"
    assert result.traceback is not None
    assert "broken" in result.traceback


async def test_errors_for_bad_submissions(app: Flowrra) -> None:
    @app.task
    async def job(value: Any = None) -> None:
        return None

    with pytest.raises(ExecutorNotRunningError):
        await app.submit(job)
    async with app:
        with pytest.raises(TaskNotFoundError, match="Task 'nope' not registered"):
            await app.submit("nope")
        with pytest.raises(SerializationError, match="cannot be sent as JSON"):
            await app.submit(job, object())
        with pytest.raises(TypeError):
            await app.submit(job, {1, 2})
        with pytest.raises(ValueError, match="priority"):
            await app.submit(job, priority=5000)
        with pytest.raises(ValueError, match="countdown"):
            await app.submit(job, countdown=-1)
        with pytest.raises(ValueError, match="either countdown or eta"):
            await app.submit(job, countdown=1, eta=datetime.now(UTC))
        with pytest.raises(ValueError, match="task_id"):
            await app.submit(job, task_id="")
        assert (await queue_of(app).counts()).ready == 0, "a refused submission queues nothing"


async def test_arguments_cross_the_json_boundary(app: Flowrra) -> None:
    seen: list[Any] = []

    @app.task
    async def inspect(items: Any, mapping: Any) -> Any:
        seen.append((items, mapping))
        return {"pair": (1, 2)}

    async with app:
        original = [1, 2]
        task_id = await app.submit(inspect, (1, "x"), {"k": original})
        original.append(3)
        result = await app.wait_for_result(task_id, timeout=5)
    assert seen == [([1, "x"], {"k": [1, 2]})], "tuples arrive as lists; later changes don't leak"
    assert result.result == {"pair": [1, 2]}


async def test_a_result_that_is_not_json_fails_the_task(app: Flowrra) -> None:
    @app.task(max_retries=3)
    async def returns_object() -> object:
        return object()

    async with app:
        result = await app.wait_for_result(await app.submit(returns_object), timeout=5)
    assert result.status == TaskStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("SerializationError")
    assert result.retries == 0, "a result that can't be serialised is not retried"


async def test_wait_for_result_timeout_and_unknown_id(app: Flowrra) -> None:
    release = asyncio.Event()

    @app.task
    async def slow() -> None:
        await release.wait()

    async with app:
        task_id = await app.submit(slow)
        with pytest.raises(TaskTimeoutError) as caught:
            await app.wait_for_result(task_id, timeout=0.05)
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value, asyncio.TimeoutError)
        with pytest.raises(TaskNotFoundError) as unknown:
            await app.wait_for_result("no-such-id", timeout=0.05)
        assert isinstance(unknown.value, ValueError)
        release.set()
        assert (await app.wait_for_result(task_id, timeout=5)).is_success


async def test_get_result_states_and_after_stop(app: Flowrra) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @app.task
    async def gated() -> str:
        started.set()
        await release.wait()
        return "done"

    assert await app.get_result("unknown") is None
    async with app:
        task_id = await app.submit(gated)
        await started.wait()
        running = await app.get_result(task_id)
        assert running is not None
        assert running.status == TaskStatus.RUNNING
        assert running.started_at is not None
        release.set()
        await app.wait_for_result(task_id, timeout=5)
    assert not app.is_running
    final = await app.get_result(task_id)
    assert final is not None
    assert final.result == "done"


async def test_start_and_stop_are_idempotent(app: Flowrra) -> None:
    states = []
    await app.start()
    await app.start()
    states.append(app.is_running)
    await app.stop()
    await app.stop()
    states.append(app.is_running)
    await check_reentry(app)
    assert states == [True, False]


async def check_reentry(app: Flowrra) -> None:
    async with app as entered:
        assert entered is app
        assert app.is_running
    assert not app.is_running


async def test_higher_priority_runs_first_fifo_within_priority() -> None:
    app = make_app(io_workers=1)
    order: list[str] = []
    gate = asyncio.Event()

    @app.task
    async def blocker() -> None:
        await gate.wait()

    @app.task
    async def record(label: str) -> None:
        order.append(label)

    async with app:
        await app.submit(blocker)
        await asyncio.sleep(0.01)
        for label, priority in [("low-1", 0), ("high-1", 10), ("low-2", 0), ("high-2", 10)]:
            await app.submit(record, label, priority=priority)
        await app.submit(record, "lowest", priority=-5)
        await record.options(priority=20).submit("urgent")
        gate.set()
        await app.run_until_idle(timeout=5)
    assert order == ["urgent", "high-1", "high-2", "low-1", "low-2", "lowest"]


async def test_task_default_priority_applies() -> None:
    app = make_app(io_workers=1)
    order: list[str] = []
    gate = asyncio.Event()

    @app.task
    async def blocker() -> None:
        await gate.wait()

    @app.task(priority=7)
    async def important() -> None:
        order.append("important")

    @app.task
    async def normal() -> None:
        order.append("normal")

    async with app:
        await app.submit(blocker)
        await asyncio.sleep(0.01)
        await app.submit(normal)
        await app.submit(important)
        gate.set()
        await app.run_until_idle(timeout=5)
    assert order == ["important", "normal"]


async def test_full_queue_makes_submit_wait() -> None:
    app = make_app(io_workers=1, max_queue_size=2)
    gate = asyncio.Event()

    @app.task
    async def blocked() -> None:
        await gate.wait()

    async with app:
        await app.submit(blocked)
        await asyncio.sleep(0.01)
        await app.submit(blocked)
        await app.submit(blocked)
        third = asyncio.ensure_future(app.submit(blocked))
        await asyncio.sleep(0.05)
        assert not third.done(), "submit must wait while the queue is full"
        gate.set()
        task_id = await asyncio.wait_for(third, 5)
        assert (await app.wait_for_result(task_id, timeout=5)).is_success


async def test_countdown_and_eta_delay_the_start() -> None:
    app = make_app()
    ran_at: dict[str, datetime] = {}

    @app.task
    async def stamp(label: str) -> None:
        ran_at[label] = datetime.now(UTC)

    async with app:
        submitted = datetime.now(UTC)
        await app.submit(stamp, "countdown", countdown=0.3)
        await app.submit(stamp, "eta", eta=submitted + timedelta(seconds=0.2))
        naive = (submitted + timedelta(seconds=0.1)).replace(tzinfo=None)
        await app.submit(stamp, "naive-utc", eta=naive)
        await app.submit(stamp, "past", eta=submitted - timedelta(hours=1))
        await stamp.options(countdown=0.25).submit("options")
        assert (await queue_of(app).counts()).delayed == 4
        await app.run_until_idle(timeout=5)
    assert ran_at["countdown"] - submitted >= timedelta(seconds=0.29)
    assert ran_at["eta"] - submitted >= timedelta(seconds=0.19)
    assert ran_at["naive-utc"] - submitted >= timedelta(seconds=0.09)
    assert ran_at["options"] - submitted >= timedelta(seconds=0.24)
    assert ran_at["past"] < ran_at["naive-utc"], "a past eta runs at once, before any delay"


async def test_submit_with_a_known_task_id_is_idempotent(app: Flowrra) -> None:
    runs: list[int] = []

    @app.task
    async def once(value: int) -> int:
        runs.append(value)
        return value

    async with app:
        first = await app.submit(once, 1, task_id="order-42")
        again_queued = await app.submit(once, 2, task_id="order-42")
        await app.wait_for_result(first, timeout=5)
        again_done = await app.submit(once, 3, task_id="order-42")
        await app.run_until_idle(timeout=5)
    assert first == again_queued == again_done == "order-42"
    assert runs == [1]


async def test_generated_ids_are_uuid4_strings(app: Flowrra) -> None:
    import uuid

    @app.task
    async def job() -> None:
        return None

    async with app:
        ids = {await app.submit(job) for _ in range(200)}
        await app.run_until_idle(timeout=5)
    assert len(ids) == 200
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


async def test_run_until_idle_requires_a_running_app_and_can_time_out(app: Flowrra) -> None:
    gate = asyncio.Event()

    @app.task
    async def forever() -> None:
        await gate.wait()

    with pytest.raises(ExecutorNotRunningError):
        await app.run_until_idle()
    async with app:
        await app.submit(forever)
        with pytest.raises(TimeoutError):
            await app.run_until_idle(timeout=0.05)
        gate.set()
        await app.run_until_idle(timeout=5)


async def test_event_bus_sees_every_state_change(app: Flowrra) -> None:
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    @app.task(max_retries=1, retry_delay=0)
    async def flaky(calls: list[int] = []) -> str:  # noqa: B006 - shared on purpose
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    await event_bus.async_subscribe(collect)
    try:
        async with app:
            task_id = await app.submit(flaky)
            await app.wait_for_result(task_id, timeout=5)
            await app.run_until_idle(timeout=5)
    finally:
        await event_bus.unsubscribe(collect)
    mine = [e["task"] for e in events if e["task"]["task_id"] == task_id]
    assert all(e["type"] == "task.update" for e in events)
    assert [t["status"] for t in mine] == ["pending", "running", "retrying", "running", "success"]
    assert mine[-1]["retries"] == 1


async def test_sync_subscribers_and_failing_subscribers_do_not_break_tasks(app: Flowrra) -> None:
    seen: list[str] = []

    def sync_subscriber(event: Event) -> None:
        seen.append(event["task"]["status"])

    def broken_subscriber(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    @app.task
    async def job() -> int:
        return 1

    event_bus.subscribe(sync_subscriber)
    event_bus.subscribe(broken_subscriber)
    try:
        async with app:
            result = await app.wait_for_result(await app.submit(job), timeout=5)
    finally:
        await event_bus.unsubscribe(sync_subscriber)
        await event_bus.unsubscribe(broken_subscriber)
    assert result.is_success
    assert seen[-1] == "success"
    assert not event_bus.has_subscribers


async def test_from_urls_memory_and_unknown_scheme() -> None:
    from flowrra import BackendError
    from flowrra.backends import InMemoryBackend
    from flowrra.brokers import MemoryBroker

    app = Flowrra.from_urls(broker="memory://", backend="memory://")
    assert isinstance(app.broker, MemoryBroker)
    assert isinstance(app.backend, InMemoryBackend)
    custom = InMemoryBackend(ttl=5)
    assert Flowrra.from_urls(backend=custom).backend is custom
    with pytest.raises(BackendError, match="'amqp'"):
        Flowrra.from_urls(broker="amqp://guest:pw@host/")
    with pytest.raises(BackendError, match="'mongodb'") as caught:
        Flowrra.from_urls(backend="mongodb://user:topsecret@host/")
    assert "topsecret" not in str(caught.value)


async def test_a_task_from_another_app_is_refused(app: Flowrra) -> None:
    other = make_app()

    @other.task
    async def foreign() -> None:
        return None

    async with app:
        with pytest.raises(TaskNotFoundError):
            await app.submit(foreign)


async def test_a_worker_serves_only_its_queues() -> None:
    app = make_app()
    ran: list[str] = []

    @app.task(queue="emails")
    async def send() -> None:
        ran.append("emails")

    @app.task
    async def other() -> None:
        ran.append("default")

    with pytest.raises(ValueError, match="queues"):
        await app.start(queues=[])
    await app.start(queues=["emails"])
    try:
        email_id = await app.submit(send)
        other_id = await app.submit(other)
        await app.wait_for_result(email_id, timeout=5)
        with pytest.raises(TaskTimeoutError):
            await app.wait_for_result(other_id, timeout=0.1)
        assert (await queue_of(app).counts()).ready == 1
    finally:
        await app.stop()
    assert ran == ["emails"]


def test_a_delayed_task_survives_a_restart_in_another_event_loop() -> None:
    app = make_app()
    ran: list[str] = []

    @app.task
    async def later() -> None:
        ran.append("later")

    async def submit_then_stop() -> str:
        await app.start()
        task_id = await later.options(countdown=0.2).submit()
        await app.stop()
        return task_id

    async def restart_and_wait(task_id: str) -> TaskStatus:
        async with app:
            return (await app.wait_for_result(task_id, timeout=5)).status

    task_id = asyncio.run(submit_then_stop())
    assert asyncio.run(restart_and_wait(task_id)) == TaskStatus.SUCCESS
    assert ran == ["later"]
