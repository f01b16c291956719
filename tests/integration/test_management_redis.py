"""The management API over Redis: stats, listings, dead letters, purge and health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

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
