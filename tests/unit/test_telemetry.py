"""Worker telemetry in one process: counters, the memory store, the heartbeat, the manager."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.exceptions import ConfigurationError
from flowrra.management import FlowrraManager
from flowrra.telemetry import (
    DURATION_BOUNDS,
    Flush,
    MemoryTelemetryStore,
    MinuteCounts,
    TaskStats,
    WorkerPresence,
    WorkerTelemetry,
)
from flowrra.telemetry.stats import BUCKETS

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def presence(worker_id: str = "w1", *, beat: float | None = None) -> WorkerPresence:
    now = time.time() if beat is None else beat
    return WorkerPresence(
        id=worker_id,
        hostname="host",
        pid=42,
        queues=("default",),
        io=4,
        cpu=2,
        running=1,
        processed=3,
        failed=1,
        started_at=now - 10,
        last_heartbeat=now,
        heartbeat_interval=5.0,
    )


# -- the worker's counters ----------------------------------------------------------


def test_success_durations_fall_in_their_buckets() -> None:
    telemetry = WorkerTelemetry()
    for elapsed in (0.001, 0.005, 0.02, 0.3, 90.0):
        telemetry.succeeded("job", T0, T0 + timedelta(seconds=elapsed))
    stats = telemetry.task_stats()["job"]
    assert stats.success == 5
    assert stats.duration_count == 5
    assert stats.duration_sum == pytest.approx(0.001 + 0.005 + 0.02 + 0.3 + 90.0)
    expected = [0] * BUCKETS
    expected[0] = 2  # 1 ms and exactly 5 ms (bounds are inclusive)
    expected[DURATION_BOUNDS.index(0.025)] = 1
    expected[DURATION_BOUNDS.index(0.5)] = 1
    expected[-1] = 1  # beyond the last bound
    assert list(stats.buckets) == expected


def test_failures_retries_and_cancellations_are_counted_per_name() -> None:
    telemetry = WorkerTelemetry()
    telemetry.failed("a")
    telemetry.retried("a")
    telemetry.retried("a")
    telemetry.cancelled("b")
    telemetry.succeeded("b", T0, T0)
    stats = telemetry.task_stats()
    assert stats["a"].outcomes == {"success": 0, "failed": 1, "retried": 2, "cancelled": 0}
    assert stats["b"].outcomes == {"success": 1, "failed": 0, "retried": 0, "cancelled": 1}
    assert telemetry.totals() == MinuteCounts(succeeded=1, failed=1, retried=2)


def test_minutes_are_handed_out_once_and_can_be_given_back() -> None:
    start = T0.timestamp()
    telemetry = WorkerTelemetry(now=start + 10)
    telemetry.succeeded("a", T0, T0)
    telemetry.failed("a")
    first = telemetry.take_minutes(now=start + 65)
    assert first == {int(start): MinuteCounts(1, 1, 0)}
    telemetry.retried("a")
    second = telemetry.take_minutes(now=start + 70)
    assert second == {int(start) + 60: MinuteCounts(0, 0, 1)}
    telemetry.give_back_minutes(second)
    telemetry.succeeded("a", T0, T0)
    third = telemetry.take_minutes(now=start + 75)
    assert third == {int(start) + 60: MinuteCounts(1, 0, 1)}
    assert telemetry.take_minutes(now=start + 80) == {}


def test_task_stats_arithmetic_and_quantiles() -> None:
    buckets = [0] * BUCKETS
    buckets[1] = 10  # (0.005, 0.01]
    buckets[3] = 10  # (0.025, 0.05]
    stats = TaskStats("t", success=20, duration_sum=0.5, buckets=tuple(buckets))
    assert stats.quantile(0.5) == pytest.approx(0.01)
    assert stats.quantile(0.75) == pytest.approx(0.0375)
    assert TaskStats("t").quantile(0.5) is None
    with pytest.raises(ValueError, match="q must be"):
        stats.quantile(0)
    doubled = stats.plus(stats)
    assert doubled.success == 40
    assert doubled.minus(stats) == stats
    assert stats.minus(stats).is_empty
    shown = stats.to_dict()
    assert shown["duration"]["count"] == 20
    assert shown["duration"]["avg"] == pytest.approx(0.025)
    cumulative = [bucket["count"] for bucket in shown["duration"]["buckets"]]
    assert cumulative == [0, 10, 10, 20, *([20] * (BUCKETS - 4))]
    assert shown["duration"]["buckets"][-1]["le"] is None
    with pytest.raises(ValueError, match="buckets"):
        TaskStats("t", buckets=(1, 2))
    json.dumps(shown)


def test_presence_round_trips_and_rejects_garbage() -> None:
    record = presence()
    assert WorkerPresence.from_json(record.to_json()) == record
    for bad in ("[]", "{}", '{"id": 1}', "not json"):
        with pytest.raises(ValueError, match="presence"):
            WorkerPresence.from_json(bad)
    wrong_type = json.loads(record.to_json())
    wrong_type["pid"] = "42"
    with pytest.raises(ValueError, match="pid"):
        WorkerPresence.from_json(json.dumps(wrong_type))


# -- the memory store -----------------------------------------------------------------


async def test_memory_store_adds_flushes_and_forgets_old_workers() -> None:
    store = MemoryTelemetryStore()
    now = time.time()
    minute = int(now) // 60 * 60
    stats = TaskStats("job", success=2, duration_sum=1.0, buckets=(2, *([0] * (BUCKETS - 1))))
    flush = Flush(presence("w1", beat=now), {minute: MinuteCounts(2, 0, 1)}, {"job": stats})
    await store.publish(flush)
    await store.publish(Flush(presence("w2", beat=now - 601), {minute: MinuteCounts(1)}, {}))
    await store.publish(flush)
    assert [w.id for w in await store.workers(now)] == ["w1"]  # w2 is older than the TTL
    assert await store.throughput([minute - 60, minute]) == [
        MinuteCounts(),
        MinuteCounts(5, 0, 2),
    ]
    assert (await store.task_stats())["job"].success == 4
    await store.remove("w1")
    assert await store.workers(now) == []
    await store.reset_task_stats()
    assert await store.task_stats() == {}


# -- the app, its worker and the manager ----------------------------------------------


STARTED: list[asyncio.Event] = []


def build_app(interval: float = 5.0) -> Flowrra:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=4, heartbeat_interval=interval)))

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def slow() -> None:
        await asyncio.sleep(0.03)

    @app.task(max_retries=1, retry_delay=0)
    async def boom() -> None:
        raise ValueError("no")

    @app.task
    async def sleeper() -> None:
        for event in STARTED:
            event.set()
        await asyncio.sleep(60)

    return app


@pytest.fixture
async def app() -> AsyncIterator[Flowrra]:
    application = build_app()
    yield application
    await application.close()


async def test_the_manager_sees_its_own_worker(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    async with app:
        for i in range(7):
            await app.submit("add", i, i)
        await app.submit("slow")
        await app.submit("boom")
        await app.run_until_idle(timeout=10)
        started = asyncio.Event()
        STARTED[:] = [started]
        running = await app.submit("sleeper")
        await asyncio.wait_for(started.wait(), 10)
        stats = await manager.get_stats()
        assert await app.cancel(running)
        await app.run_until_idle(timeout=10)
        tasks = {entry["name"]: entry for entry in await manager.get_task_stats()}
        health = await manager.health_check()
    assert stats["telemetry_error"] is None
    [worker] = stats["workers"]
    assert worker["alive"] is True
    assert worker["queues"] == ["default"]
    assert worker["concurrency"] == {"io": 4, "cpu": app.executors["cpu"].concurrency}
    assert (worker["processed"], worker["failed"], worker["running"]) == (9, 1, 1)
    assert datetime.fromisoformat(worker["last_heartbeat"]) >= datetime.fromisoformat(
        worker["started_at"]
    )
    assert len(stats["throughput"]) == 15
    minutes = [datetime.fromisoformat(entry["minute"]) for entry in stats["throughput"]]
    assert minutes == sorted(minutes)
    assert minutes[-1] <= datetime.now(UTC) < minutes[-1] + timedelta(minutes=1)
    assert sum(e["succeeded"] for e in stats["throughput"]) == 8
    assert sum(e["failed"] for e in stats["throughput"]) == 1
    assert sum(e["retried"] for e in stats["throughput"]) == 1
    assert tasks["add"]["outcomes"] == {"success": 7, "failed": 0, "retried": 0, "cancelled": 0}
    assert tasks["boom"]["outcomes"] == {"success": 0, "failed": 1, "retried": 1, "cancelled": 0}
    assert tasks["sleeper"]["outcomes"]["cancelled"] == 1
    assert tasks["slow"]["duration"]["count"] == 1
    assert 0.03 <= tasks["slow"]["duration"]["sum"] < 5
    assert tasks["slow"]["duration"]["buckets"][0]["count"] == 0  # not under 5 ms
    assert health["checks"]["workers"]["healthy"] is True
    assert health["checks"]["workers"]["alive"] == 1
    json.dumps([stats, tasks, health])


async def test_a_stopped_worker_leaves_and_its_totals_stay(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    async with app:
        await app.submit("add", 1, 2)
        await app.run_until_idle(timeout=10)
    stats = await manager.get_stats()
    assert stats["workers"] == []
    assert sum(e["succeeded"] for e in stats["throughput"]) == 1
    async with app:  # a restart: a new worker, totals carry on
        await app.submit("add", 3, 4)
        await app.run_until_idle(timeout=10)
        [worker] = (await manager.get_stats())["workers"]
    assert worker["processed"] == 1
    [add] = [entry for entry in await manager.get_task_stats() if entry["name"] == "add"]
    assert add["outcomes"]["success"] == 2
    report = await manager.health_check()
    assert report["checks"]["workers"]["healthy"] is False
    assert "no alive worker serves queue(s) default" in report["reasons"]


async def test_the_heartbeat_publishes_every_interval() -> None:
    app = build_app(interval=0.05)
    try:
        async with app:
            heartbeat = app.heartbeat
            assert heartbeat is not None
            assert heartbeat.running
            first = (await app.telemetry.workers(time.time()))[0].last_heartbeat
            await asyncio.sleep(0.3)
            later = (await app.telemetry.workers(time.time()))[0].last_heartbeat
        assert later - first >= 0.1
        assert not heartbeat.running
    finally:
        await app.close()


async def test_a_client_only_app_publishes_nothing() -> None:
    app = build_app()
    manager = FlowrraManager(app)
    try:
        await app.start(worker=False)
        assert app.heartbeat is None
        await app.submit("add", 1, 1)
        stats = await manager.get_stats()
        health = await manager.health_check()
    finally:
        await app.close()
    assert stats["workers"] == []
    assert all(entry["succeeded"] == 0 for entry in stats["throughput"])
    assert health["checks"]["workers"]["healthy"] is False
    assert health["checks"]["workers"]["reason"] == "no alive worker serves queue(s) default"


async def test_a_stale_worker_is_a_health_reason(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    async with app:
        silent = presence("silent-worker", beat=time.time() - 60)
        await app.telemetry.publish(Flush(silent, {}, {}))
        stats = await manager.get_stats()
        report = await manager.health_check()
    by_id = {worker["id"]: worker for worker in stats["workers"]}
    assert by_id["silent-worker"]["alive"] is False
    assert report["healthy"] is False
    check = report["checks"]["workers"]
    assert check["stale"] == ["silent-worker"]
    assert "silent-worker" in check["reason"]
    assert "no heartbeat for 60s" in check["reason"]


def test_heartbeat_interval_is_validated_and_read_from_the_environment() -> None:
    with pytest.raises(ConfigurationError, match="heartbeat_interval"):
        ExecutorConfig(heartbeat_interval=0)
    config = Config.from_env(environ={"FLOWRRA_EXECUTOR_HEARTBEAT_INTERVAL": "2.5"})
    assert config.executor.heartbeat_interval == 2.5
