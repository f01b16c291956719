"""The management API over Redis: stats, listings, dead letters, purge and health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from flowrra import Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.management import FlowrraManager
from integration.redis_support import redis_url, scratch_backend, scratch_broker, unique_prefix

pytestmark = pytest.mark.service

UNREACHABLE = "redis://127.0.0.1:1/0"


def redis_app(prefix: str) -> Flowrra:
    app = Flowrra.from_urls(
        broker=RedisBroker(redis_url(), prefix=prefix),
        backend=RedisBackend(redis_url(), prefix=prefix),
    )

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(max_retries=0)
    async def boom() -> None:
        raise ValueError("no")

    @app.task(max_retries=0)
    async def gone() -> None:
        return None

    return app


@pytest.fixture
async def app() -> AsyncIterator[Flowrra]:
    prefix = unique_prefix("mgmt")
    application = redis_app(prefix)
    yield application
    await application.close()
    await scratch_broker(prefix=prefix).close()
    backend = scratch_backend(prefix=prefix)
    await backend.clear()
    await backend.close()


async def test_stats_and_listings(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    async with app:
        ok = [await app.submit("add", i, i) for i in range(3)]
        bad = await app.submit("boom")
        await app.run_until_idle(timeout=10)
        later = await app.submit("add", 0, 0, countdown=60)
        stats = await manager.get_stats()
        pending = await manager.list_pending_tasks()
        assert (await manager.cancel_task(later))["cancelled"] is True
    assert stats["queues"] == {"ready": 0, "delayed": 1, "in_flight": 0, "dead": 0}
    assert stats["results"] is not None
    assert (stats["results"]["success"], stats["results"]["failed"]) == (3, 1)
    assert stats["results"]["pending"] == 1
    assert stats["tasks"] == {"registered": 3, "running": 0}
    assert [r["task_id"] for r in pending] == [later]
    completed = await manager.list_completed_tasks()
    assert {r["task_id"] for r in completed} == set(ok)
    assert sorted(r["result"] for r in completed) == [0, 2, 4]
    assert len(await manager.list_completed_tasks(limit=2)) == 2
    assert len(await manager.list_completed_tasks(limit=2, offset=2)) == 1
    failed = await manager.list_failed_tasks()
    assert [r["task_id"] for r in failed] == [bad]
    assert failed[0]["error"] == "ValueError: no"
    json.dumps([stats, completed, failed])


async def test_dead_letters_retry_and_purge(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    await app.start(worker=False)
    buried = await app.submit("gone")
    await app.stop()
    app.registry.unregister("gone")
    async with app:
        await app.run_until_idle(timeout=10)
        failed = await app.submit("boom")
        await app.run_until_idle(timeout=10)
        retried = await manager.retry_task(failed)
        await app.run_until_idle(timeout=10)
        letters = await manager.list_dead_letters(limit=10)
        await app.submit("add", 1, 1, countdown=60)
        assert (await manager.get_stats())["queues"]["delayed"] == 1
        purged = await manager.purge_queue()
        after = await manager.get_stats()
    assert [(d["task_id"], d["task_name"]) for d in letters] == [(buried, "gone")]
    assert "not registered" in letters[0]["reason"]
    again = await manager.get_task_result(retried["task_id"])
    assert again is not None
    assert again["status"] == "failed"
    assert purged == {
        "purged": True,
        "removed": {"ready": 0, "delayed": 1, "in_flight": 0, "dead": 1},
    }
    assert after["queues"] == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    json.dumps(letters)


async def test_health_of_a_reachable_redis(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    async with app:
        report = await manager.health_check()
    assert report["healthy"] is True
    assert report["checks"]["broker"]["healthy"] is True
    assert "ping" in report["checks"]["broker"]["detail"]
    assert report["checks"]["backend"]["healthy"] is True


async def test_an_unreachable_redis_is_unhealthy_not_an_error() -> None:
    prefix = unique_prefix("mgmt-down")
    down = Flowrra.from_urls(
        broker=RedisBroker(UNREACHABLE, prefix=prefix),
        backend=RedisBackend(UNREACHABLE, prefix=prefix),
    )
    manager = FlowrraManager(down)
    try:
        report = await manager.health_check(timeout=5)
        stats = await manager.get_stats()
    finally:
        await down.close()
    assert report["healthy"] is False
    assert report["status"] == "unhealthy"
    assert report["checks"]["broker"]["healthy"] is False
    assert "broker is unreachable" in report["checks"]["broker"]["reason"]
    assert report["checks"]["backend"]["healthy"] is False
    assert any("broker" in reason for reason in report["reasons"])
    assert stats["queues"] is None
    assert stats["queues_error"]
    assert stats["results"] is None
    assert stats["results_error"]
    json.dumps([report, stats])


FLAKY_FAILURES: list[str] = []


async def test_dead_letters_requeue_delete_and_purge_on_redis(app: Flowrra) -> None:
    manager = FlowrraManager(app)

    async def gone_again() -> str:
        return "back"

    app.registry.unregister("gone")
    app.task(name="gone", priority=7, max_retries=0)(gone_again)
    await app.start(worker=False)
    ids = [await app.submit("gone") for _ in range(3)]
    await app.stop()
    app.registry.unregister("gone")
    async with app:
        await app.run_until_idle(timeout=10)
    app.task(name="gone", priority=7, max_retries=0)(gone_again)
    assert (await manager.get_stats())["queues"]["dead"] == 3
    await app.start(worker=False)
    assert await manager.requeue_dead_letter(ids[0]) == {"task_id": ids[0], "requeued": True}
    pending = await manager.get_task_result(ids[0])
    stats = await manager.get_stats()
    await app.stop()
    assert pending is not None
    assert (pending["status"], pending["deliveries"]) == ("pending", 0)
    (default,) = stats["queue_details"]
    assert (default["ready"], default["by_priority"], default["dead"]) == (1, {"7": 1}, 2)
    assert default["oldest_age"] is not None
    async with app:
        record = await app.wait_for_result(ids[0], timeout=10)
    assert (record.status, record.result) == ("success", "back")
    with pytest.raises(ValueError, match="not dead-lettered"):
        await manager.requeue_dead_letter(ids[0])
    assert await manager.delete_dead_letter(ids[1]) is True
    assert await manager.delete_dead_letter(ids[1]) is False
    assert [d["task_id"] for d in await manager.list_dead_letters()] == [ids[2]]
    assert await manager.purge_dead_letters() == {"removed": 1}
    assert (await manager.get_stats())["queues"]["dead"] == 0


async def test_queue_details_and_filters_on_redis(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    await app.start(worker=False)
    await app.submit("add", 1, 1, priority=3)
    await app.submit("add", 2, 2)
    await app.submit("add", 3, 3)
    later = await app.submit("boom", countdown=60)
    (default,) = (await manager.get_stats())["queue_details"]
    assert await app.cancel(later)
    await app.stop()
    assert default["queue"] == "default"
    assert (default["ready"], default["by_priority"]) == (3, {"3": 1, "0": 2})
    assert (default["delayed"], default["in_flight"], default["dead"]) == (1, 0, 0)
    assert 0 <= default["oldest_age"] < 10
    async with app:
        await app.run_until_idle(timeout=10)
        middle = datetime.now(UTC)
        late = await app.submit("add", 9, 9)
        await app.run_until_idle(timeout=10)
    assert len(await manager.list_completed_tasks(name="add")) == 4
    assert await manager.list_completed_tasks(name="boom") == []
    since = await manager.list_completed_tasks(since=middle.isoformat())
    assert [r["task_id"] for r in since] == [late]
    assert len(await manager.list_completed_tasks(until=middle, limit=2)) == 2
    json.dumps(default)


async def test_records_carry_the_attempt_history_through_redis(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    FLAKY_FAILURES.clear()

    @app.task(max_retries=3, retry_delay=0)
    async def flaky() -> str:
        if len(FLAKY_FAILURES) < 2:
            FLAKY_FAILURES.append("x")
            raise ConnectionError(f"failure {len(FLAKY_FAILURES)}")
        return "ok"

    async with app:
        task_id = await app.submit("flaky")
        record = await app.wait_for_result(task_id, timeout=10)
        once = await app.submit("add", 1, 2)
        single = await app.wait_for_result(once, timeout=10)
    assert (record.status, record.retries) == ("success", 2)
    assert [a["attempt"] for a in record.attempts] == [1, 2]
    assert [a["error"] for a in record.attempts] == [
        "ConnectionError: failure 1",
        "ConnectionError: failure 2",
    ]
    assert record.worker is not None
    assert {a["worker"] for a in record.attempts} == {record.worker}
    assert (single.worker, single.attempts) == (record.worker, ())
    stored = await manager.get_task_result(task_id)
    assert stored is not None
    assert stored["attempts"] == list(record.attempts)
