"""A final record that cannot be written is written again, never bought with a second run."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flowrra import Flowrra, TaskStatus
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.task import TaskResult
from integration.redis_support import (
    redis_url,
    wait_until,
)

pytestmark = pytest.mark.service


class FailingFinalWrites(RedisBackend):
    """Posted success records fail ``failures`` times, like a backend that is briefly down
    (the awaited writes that write them again are the real ones)."""

    def __init__(self, *args: object, failures: int, **options: object) -> None:
        super().__init__(*args, **options)  # type: ignore[arg-type]
        self.failures = failures

    def post_fenced(
        self, task_id: str, result: TaskResult, fence: int
    ) -> asyncio.Future[int] | None:
        if result.status == TaskStatus.SUCCESS and self.failures:
            self.failures -= 1
            failed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            failed.set_exception(ConnectionError("backend unreachable"))
            return failed
        return super().post_fenced(task_id, result, fence)


@pytest.fixture
def prefix(app_prefix: str) -> str:
    return app_prefix


def app_on(prefix: str, backend: RedisBackend, runs: list[int]) -> Flowrra:
    app = Flowrra.from_urls(broker=RedisBroker(redis_url(), prefix=prefix), backend=backend)

    @app.task(name="count")
    async def count(value: int) -> int:
        runs.append(value)
        return value

    return app


async def test_a_failed_final_write_is_written_again_and_the_task_runs_once(
    prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flowrra.settling.RETRY_FIRST_DELAY", 0.05)
    runs: list[int] = []
    app = app_on(prefix, FailingFinalWrites(redis_url(), prefix=prefix, failures=1), runs)
    await app.start()
    try:
        task_id = await app.submit("count", 7)
        done = await app.wait_for_result(task_id, timeout=10)
        await app.run_until_idle(timeout=10)  # acked: nothing left in the broker
    finally:
        await app.close()
    assert (done.status, done.result) == (TaskStatus.SUCCESS, 7)
    assert runs == [7], "the task ran again because its record could not be written"
    assert "writing it again" in caplog.text


async def test_a_worker_that_stops_before_the_record_is_written_hands_the_task_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []
    app = app_on(prefix, FailingFinalWrites(redis_url(), prefix=prefix, failures=10**6), runs)
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    with caplog.at_level(logging.WARNING):
        await app.start()
        try:
            await app.submit("count", 8)
            assert await wait_until(lambda: bool(runs), 10)
            await app.stop(timeout=5)
            counts = await broker.counts()
        finally:
            await app.close()
    assert runs == [8]
    assert (counts.ready, counts.in_flight) == (1, 0), "the task was not handed back"
    assert "goes back to the queue, its result unstored" in caplog.text
