"""A user's minimal broker (push / pop / size) still runs tasks through the real worker."""

from __future__ import annotations

import asyncio

from flowrra import Flowrra, TaskStatus
from flowrra.brokers import BaseBroker
from flowrra.brokers.adapter import MinimalBrokerAdapter
from flowrra.task import Task


class ListBroker(BaseBroker):
    """The kind of broker a 0.1.x user wrote: a FIFO list, nothing else."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Task] = asyncio.Queue()
        self.pushed: list[str] = []
        self.closed = False

    async def push(self, task: Task) -> None:
        self.pushed.append(task.id)
        await self.queue.put(task)

    async def pop(self, timeout: float | None = None) -> Task | None:
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None

    async def size(self) -> int:
        return self.queue.qsize()

    async def close(self) -> None:
        self.closed = True


async def test_tasks_run_through_a_minimal_broker() -> None:
    user_broker = ListBroker()
    app = Flowrra.from_urls(broker=user_broker)
    attempts: list[int] = []

    @app.task
    async def double(x: int) -> int:
        return x * 2

    @app.task(max_retries=2, retry_delay=0.01)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("once")
        return "ok"

    async with app:
        assert isinstance(app.broker, MinimalBrokerAdapter)
        ids = [await app.submit(double, i) for i in range(20)]
        flaky_id = await app.submit(flaky)
        delayed = await double.options(countdown=0.1).submit(100)
        results = [await app.wait_for_result(i, timeout=5) for i in ids]
        flaky_result = await app.wait_for_result(flaky_id, timeout=5)
        delayed_result = await app.wait_for_result(delayed, timeout=5)
        await app.run_until_idle(timeout=5)
    assert [r.result for r in results] == [i * 2 for i in range(20)]
    assert flaky_result.status == TaskStatus.SUCCESS
    assert flaky_result.retries == 1
    assert delayed_result.result == 200
    assert set(ids) <= set(user_broker.pushed), "ready tasks went through the user's broker"
    assert await user_broker.size() == 0


async def test_cancel_a_delayed_task_held_by_the_adapter() -> None:
    app = Flowrra.from_urls(broker=ListBroker())

    @app.task
    async def job() -> None:
        return None

    async with app:
        task_id = await job.options(countdown=30).submit()
        assert await app.cancel(task_id)
        record = await app.get_result(task_id)
        assert record is not None
        assert record.status == TaskStatus.CANCELLED
        await app.run_until_idle(timeout=5)


async def test_dead_letters_of_a_minimal_broker_can_be_listed_requeued_and_deleted() -> None:
    user_broker = ListBroker()
    app = Flowrra.from_urls(broker=user_broker)
    async with app:
        await user_broker.push(Task("stray-1", "no_such_task", (), {}))
        await user_broker.push(Task("stray-2", "no_such_task", (), {}))
        broker = app.broker
        assert isinstance(broker, MinimalBrokerAdapter)
        for _ in range(200):
            if len(await broker.dead_letters()) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(letter.task.id for letter in await broker.dead_letters()) == [
            "stray-1",
            "stray-2",
        ]
        assert await broker.requeue_dead("stray-1")
        assert not await broker.requeue_dead("unknown")
        assert await broker.delete_dead("stray-2")
        assert not await broker.delete_dead("stray-2")
        for _ in range(200):  # the requeued stray is claimed again and buried again
            if [letter.task.id for letter in await broker.dead_letters()] == ["stray-1"]:
                break
            await asyncio.sleep(0.01)
        assert [letter.task.id for letter in await broker.dead_letters()] == ["stray-1"]
        assert await broker.purge_dead() == 1
        assert await broker.dead_letters() == []
