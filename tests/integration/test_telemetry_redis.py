"""Worker telemetry on Redis: what a worker process publishes, another process reads."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.config import BackendConfig, BrokerConfig
from flowrra.management import FlowrraManager
from flowrra.redis_connection import connect
from flowrra.telemetry import Flush, WorkerPresence
from flowrra.telemetry.redis import RedisTelemetryStore
from integration.redis_support import (
    redis_url,
    scratch_backend,
    scratch_broker,
    unique_prefix,
    wait_until,
)

pytestmark = pytest.mark.service

UNREACHABLE = "redis://127.0.0.1:1/0"


def redis_app(prefix: str, interval: float = 5.0) -> Flowrra:
    """An app on this run's database under ``prefix`` (each call: another process's app)."""
    app = Flowrra(
        Config(
            broker=BrokerConfig(url=RedisBroker(redis_url(), prefix=prefix)),
            backend=BackendConfig(url=RedisBackend(redis_url(), prefix=prefix)),
            executor=ExecutorConfig(io_workers=4, heartbeat_interval=interval),
        )
    )

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(max_retries=1, retry_delay=0)
    async def boom() -> None:
        raise ValueError("no")

    return app


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique_prefix("telemetry")
    yield name
    client = connect(redis_url())
    try:
        await RedisTelemetryStore(client, name).clear()
    finally:
        await client.aclose()
    await scratch_broker(prefix=name).close()
    backend = scratch_backend(prefix=name)
    await backend.clear()
    await backend.close()


async def test_a_client_only_app_sees_the_worker_of_another(prefix: str) -> None:
    worker_app = redis_app(prefix)
    client_app = redis_app(prefix)
    manager = FlowrraManager(client_app)
    try:
        await client_app.start(worker=False)
        await worker_app.start()
        assert client_app.heartbeat is None
        for i in range(5):
            await client_app.submit("add", i, i)
        await client_app.submit("boom")
        await worker_app.run_until_idle(timeout=10)
        assert worker_app.heartbeat is not None
        worker_id = worker_app.heartbeat.worker_id
        await worker_app.heartbeat.flush()  # what the next heartbeat would publish
        stats = await manager.get_stats()
        tasks = {entry["name"]: entry for entry in await manager.get_task_stats()}
        health = await manager.health_check()
        await worker_app.stop()
        after = await manager.get_stats()
        after_health = await manager.health_check()
    finally:
        await worker_app.close()
        await client_app.close()
    assert stats["telemetry_error"] is None
    [worker] = stats["workers"]
    assert worker["id"] == worker_id
    assert worker["alive"] is True
    assert (worker["processed"], worker["failed"]) == (6, 1)
    assert worker["queues"] == ["default"]
    assert sum(e["succeeded"] for e in stats["throughput"]) == 5
    assert sum(e["failed"] for e in stats["throughput"]) == 1
    assert sum(e["retried"] for e in stats["throughput"]) == 1
    assert tasks["add"]["outcomes"]["success"] == 5
    assert tasks["add"]["duration"]["count"] == 5
    assert tasks["boom"]["outcomes"] == {"success": 0, "failed": 1, "retried": 1, "cancelled": 0}
    assert health["checks"]["workers"]["healthy"] is True
    assert health["checks"]["workers"]["alive"] == 1
    # a clean stop flushed and removed the worker; its counts stay
    assert after["workers"] == []
    assert sum(e["succeeded"] for e in after["throughput"]) == 5
    assert after_health["checks"]["workers"]["healthy"] is False
    assert "no alive worker serves queue(s) default" in after_health["reasons"]
    json.dumps([stats, tasks, health, after])


async def test_totals_add_up_over_workers_and_restarts(prefix: str) -> None:
    first, second = redis_app(prefix), redis_app(prefix)
    manager = FlowrraManager(first)
    try:
        for app in (first, second):
            async with app:
                for i in range(3):
                    await app.submit("add", i, 1)
                await app.run_until_idle(timeout=10)
        async with first:  # restarted: a new worker id, the totals carry on
            await first.submit("add", 0, 0)
            await first.run_until_idle(timeout=10)
            tasks = {entry["name"]: entry for entry in await manager.get_task_stats()}
            workers = (await manager.get_stats())["workers"]
    finally:
        await first.close()
        await second.close()
    assert tasks["add"]["outcomes"]["success"] == 7
    assert [worker["processed"] for worker in workers] == [1]


async def test_a_stale_heartbeat_is_reported(prefix: str) -> None:
    app = redis_app(prefix)
    manager = FlowrraManager(app)
    store = app.telemetry
    now = time.time()
    died = WorkerPresence(
        id="died-worker",
        hostname="elsewhere",
        pid=7,
        queues=("default",),
        io=4,
        cpu=1,
        running=1,
        processed=10,
        failed=0,
        started_at=now - 300,
        last_heartbeat=now - 45,
        heartbeat_interval=5.0,
    )
    try:
        await store.publish(Flush(died, {}, {}))  # what a worker killed 45 s ago left
        async with app:
            stats = await manager.get_stats()
            report = await manager.health_check()
    finally:
        await app.close()
    by_id = {worker["id"]: worker for worker in stats["workers"]}
    assert by_id["died-worker"]["alive"] is False
    assert len([w for w in stats["workers"] if w["alive"]]) == 1  # this app's own worker
    assert report["healthy"] is False
    assert report["checks"]["workers"]["stale"] == ["died-worker"]
    assert any("died-worker" in reason and "45s" in reason for reason in report["reasons"])


@pytest.mark.slow
async def test_an_outage_delays_counts_but_loses_none(prefix: str) -> None:
    app = redis_app(prefix, interval=0.05)
    reader = redis_app(prefix)
    manager = FlowrraManager(reader)
    down_client = connect(UNREACHABLE, socket_timeout=0.5)
    down = RedisTelemetryStore(down_client, prefix)
    try:
        await app.start()
        heartbeat = app.heartbeat
        assert heartbeat is not None
        live = heartbeat.store
        heartbeat.store = down  # Redis goes away for the heartbeat
        for i in range(4):
            await app.submit("add", i, i)
        await app.run_until_idle(timeout=10)
        assert await wait_until(lambda: heartbeat.failures >= 2, 60)
        assert heartbeat.running  # the coroutine survived the failures
        heartbeat.store = live  # Redis is back
        assert await wait_until(lambda: heartbeat.failures == 0, 60)
        tasks = {entry["name"]: entry for entry in await manager.get_task_stats()}
        throughput = (await manager.get_stats())["throughput"]
    finally:
        await app.close()
        await reader.close()
        await down_client.aclose()
    assert tasks["add"]["outcomes"]["success"] == 4
    assert sum(entry["succeeded"] for entry in throughput) == 4


async def test_unreadable_telemetry_is_reported_not_raised() -> None:
    prefix = unique_prefix("telemetry-down")
    down = Flowrra.from_urls(
        broker=RedisBroker(UNREACHABLE, prefix=prefix, socket_timeout=0.5),
        backend=RedisBackend(UNREACHABLE, prefix=prefix, socket_timeout=0.5),
    )
    manager = FlowrraManager(down)
    try:
        stats = await manager.get_stats()
        report = await manager.health_check(timeout=5)
    finally:
        await down.close()
    assert (stats["workers"], stats["throughput"]) == ([], [])
    assert stats["telemetry_error"]
    assert report["checks"]["workers"]["healthy"] is False
