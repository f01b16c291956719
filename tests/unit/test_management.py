"""The management API on the in-memory setup: real tasks, then the dicts it reports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.management import FlowrraManager

FLAKY_CALLS: list[int] = []


def crunch(n: int) -> int:
    """A CPU task (registered, never run here: only its options are read)."""
    return n * n


def build_app() -> Flowrra:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=4)))

    @app.task(priority=2, queue="default", timeout=30.0)
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(max_retries=0)
    async def boom(label: str, *, loud: bool = False) -> None:
        raise RuntimeError(f"boom {label} {loud}")

    @app.task(max_retries=2, retry_delay=0)
    async def flaky() -> str:
        FLAKY_CALLS.append(1)
        if len(FLAKY_CALLS) < 2:
            raise ConnectionError("first try fails")
        return "ok"

    app.task(cpu_bound=True, max_retries=1)(crunch)
    return app


@pytest.fixture
async def app() -> AsyncIterator[Flowrra]:
    FLAKY_CALLS.clear()
    application = build_app()
    yield application
    await application.close()


@pytest.fixture
def manager(app: Flowrra) -> FlowrraManager:
    return FlowrraManager(app)


async def wait_status(manager: FlowrraManager, task_id: str, status: str) -> None:
    for _ in range(200):
        record = await manager.get_task_result(task_id)
        if record is not None and record["status"] == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{task_id} never reached {status}")


def test_the_manager_needs_an_app() -> None:
    with pytest.raises(TypeError, match="Flowrra app"):
        FlowrraManager("not an app")  # type: ignore[arg-type]


async def test_registered_tasks_and_task_info(manager: FlowrraManager) -> None:
    tasks = await manager.list_registered_tasks()
    assert [t["name"] for t in tasks] == ["add", "boom", "crunch", "flaky"]
    assert tasks[0] == {
        "name": "add",
        "executor": "io",
        "cpu_bound": False,
        "priority": 2,
        "max_retries": 3,
        "retry_delay": 1.0,
        "timeout": 30.0,
        "queue": "default",
    }
    crunch = await manager.get_task_info("crunch")
    assert crunch is not None
    assert (crunch["executor"], crunch["cpu_bound"], crunch["max_retries"]) == ("cpu", True, 1)
    assert await manager.get_task_info("missing") is None
    assert await manager.get_task_info("") is None
    assert await manager.get_task_info(42) is None
    json.dumps(tasks)


async def test_listings_after_success_failure_and_retry(
    app: Flowrra, manager: FlowrraManager
) -> None:
    async with app:
        ok = [await app.submit("add", i, 1) for i in range(3)]
        bad = await app.submit("boom", "x", loud=True)
        retried = await app.submit("flaky")
        await app.run_until_idle(timeout=5)
    completed = await manager.list_completed_tasks()
    assert {r["task_id"] for r in completed} == {*ok, retried}
    assert {r["task_id"] for r in await manager.list_completed_tasks(limit=2)} <= {*ok, retried}
    assert len(await manager.list_completed_tasks(limit=2)) == 2
    assert len(await manager.list_completed_tasks(limit=10, offset=3)) == 1
    assert await manager.list_completed_tasks(limit=0) == []
    failed = await manager.list_failed_tasks()
    assert [r["task_id"] for r in failed] == [bad]
    assert failed[0]["error"] == "RuntimeError: boom x True"
    assert failed[0]["args"] == ["x"]
    assert failed[0]["kwargs"] == {"loud": True}
    flaky = await manager.get_task_result(retried)
    assert flaky is not None
    assert (flaky["status"], flaky["result"], flaky["retries"]) == ("success", "ok", 1)
    assert await manager.list_pending_tasks() == []
    assert await manager.list_running_tasks() == []
    assert await manager.get_task_result("nope") is None
    assert await manager.get_task_result(None) is None
    json.dumps(completed + failed)


@pytest.mark.parametrize(
    ("limit", "offset"), [(-1, 0), ("3", 0), (True, 0), (1.5, 0), (None, -1), (None, "0")]
)
async def test_listings_refuse_bad_paging(manager: FlowrraManager, limit: Any, offset: Any) -> None:
    with pytest.raises(ValueError, match=r"limit|offset"):
        await manager.list_failed_tasks(limit=limit, offset=offset)


async def test_list_tasks_by_any_status(app: Flowrra, manager: FlowrraManager) -> None:
    async with app:
        task_id = await app.submit("add", 1, 2)
        cancelled = await app.submit("add", 5, 5, countdown=60)
        assert (await manager.cancel_task(cancelled)) == {"task_id": cancelled, "cancelled": True}
        await app.run_until_idle(timeout=5)
    assert [r["task_id"] for r in await manager.list_tasks("cancelled")] == [cancelled]
    assert [r["task_id"] for r in await manager.list_tasks("success")] == [task_id]
    with pytest.raises(ValueError, match="status must be one of"):
        await manager.list_tasks("finished")
    with pytest.raises(ValueError, match="status must be a string"):
        await manager.list_tasks(3)


async def test_stats_count_queues_tasks_and_results(app: Flowrra, manager: FlowrraManager) -> None:
    release = asyncio.Event()

    @app.task
    async def hold() -> None:
        await release.wait()

    idle = await manager.get_stats()
    assert idle["app"] == {"running": False}
    assert idle["queues"] == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    assert idle["tasks"] == {"registered": 5, "running": 0}
    assert idle["results"] == dict.fromkeys(
        ["pending", "running", "success", "failed", "retrying", "cancelled"], 0
    )
    assert idle["scheduler"]["configured"] is False
    async with app:
        held = await app.submit("hold")
        await wait_status(manager, held, "running")
        later = await app.submit("add", 1, 1, countdown=60)
        await app.submit("boom", "y")
        busy = await manager.get_stats()
        running = await manager.list_running_tasks()
        pending = await manager.list_pending_tasks()
        await app.cancel(later)
        release.set()
        await app.run_until_idle(timeout=5)
        done = await manager.get_stats()
    assert busy["app"] == {"running": True}
    assert busy["queues"]["delayed"] == 1
    assert busy["queues"]["in_flight"] >= 1
    assert busy["tasks"]["running"] >= 1
    assert busy["results"]["running"] >= 1
    assert [r["task_id"] for r in running][-1] == held
    assert later in [r["task_id"] for r in pending]
    assert done["queues"] == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    assert done["tasks"]["running"] == 0
    assert (done["results"]["success"], done["results"]["failed"]) == (1, 1)
    assert done["results"]["cancelled"] == 1
    assert done["queues_error"] is None
    assert done["results_error"] is None
    json.dumps(busy)


async def test_cancel_task_stops_a_running_task(app: Flowrra, manager: FlowrraManager) -> None:
    @app.task
    async def forever() -> None:
        await asyncio.Event().wait()

    async with app:
        task_id = await app.submit("forever")
        await wait_status(manager, task_id, "running")
        assert await manager.cancel_task(task_id) == {"task_id": task_id, "cancelled": True}
        await app.run_until_idle(timeout=5)
        assert await manager.cancel_task(task_id) == {"task_id": task_id, "cancelled": False}
        assert await manager.cancel_task("unknown") == {"task_id": "unknown", "cancelled": False}
        with pytest.raises(ValueError, match="task_id"):
            await manager.cancel_task("")
    record = await manager.get_task_result(task_id)
    assert record is not None
    assert record["status"] == "cancelled"


async def test_retry_task_resubmits_a_failed_task(app: Flowrra, manager: FlowrraManager) -> None:
    async with app:
        failed = await app.submit("boom", "again", loud=False)
        good = await app.submit("add", 2, 2)
        await app.run_until_idle(timeout=5)
        answer = await manager.retry_task(failed)
        await app.run_until_idle(timeout=5)
        with pytest.raises(ValueError, match="only failed tasks"):
            await manager.retry_task(good)
        with pytest.raises(ValueError, match="no task with id"):
            await manager.retry_task("missing")
        with pytest.raises(ValueError, match="task_id"):
            await manager.retry_task(None)
    assert answer["original_task_id"] == failed
    assert answer["task_name"] == "boom"
    assert answer["task_id"] != failed
    again = await manager.get_task_result(answer["task_id"])
    assert again is not None
    assert (again["status"], again["args"], again["kwargs"]) == (
        "failed",
        ["again"],
        {"loud": False},
    )
    assert len(await manager.list_failed_tasks()) == 2


async def test_dead_letters_and_unregistered_retries(app: Flowrra, manager: FlowrraManager) -> None:
    @app.task(max_retries=0)
    async def gone() -> None:
        return None

    await app.start(worker=False)
    task_id = await app.submit("gone")
    await app.stop()
    app.registry.unregister("gone")
    async with app:
        await app.run_until_idle(timeout=5)
        with pytest.raises(ValueError, match="not registered"):
            await manager.retry_task(task_id)
    letters = await manager.list_dead_letters()
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["task_id"], letter["task_name"]) == (task_id, "gone")
    assert "not registered" in letter["reason"]
    assert datetime.fromisoformat(letter["buried_at"]) <= datetime.now(UTC)
    assert letter["task"]["id"] == task_id
    assert await manager.list_dead_letters(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        await manager.list_dead_letters(limit=None)  # type: ignore[arg-type]
    assert (await manager.get_stats())["queues"]["dead"] == 1
    json.dumps(letters)


async def test_purge_is_refused_by_the_memory_broker(manager: FlowrraManager) -> None:
    answer = await manager.purge_queue()
    assert answer["purged"] is False
    assert "MemoryBroker" in answer["reason"]


async def test_health_of_the_memory_setup(app: Flowrra, manager: FlowrraManager) -> None:
    stopped = await manager.health_check()
    assert stopped["healthy"] is False
    assert stopped["status"] == "unhealthy"
    assert stopped["checks"]["app"]["healthy"] is False
    assert stopped["reasons"] == [
        "the app is not running (call app.start())",
        "no alive worker serves queue(s) default",
    ]
    async with app:
        running = await manager.health_check()
    assert running["healthy"] is True
    assert running["status"] == "healthy"
    assert running["reasons"] == []
    assert set(running["checks"]) == {"broker", "backend", "app", "scheduler", "workers"}
    assert all(check["healthy"] for check in running["checks"].values())
    assert running["checks"]["scheduler"]["configured"] is False
    with pytest.raises(ValueError, match="timeout"):
        await manager.health_check(timeout=0)
    json.dumps(running)


# -- schedules ------------------------------------------------------------------------


async def test_no_scheduler(manager: FlowrraManager) -> None:
    stats = await manager.get_scheduler_stats()
    assert stats["configured"] is False
    assert stats["running"] is False
    assert "create_scheduler" in stats["message"]
    assert await manager.list_schedules() == []
    assert await manager.get_schedule("x") is None
    assert await manager.enable_schedule("x") is None
    assert await manager.delete_schedule("x") is False
    with pytest.raises(ValueError, match="no scheduler"):
        await manager.create_schedule_interval("add", 60)


async def test_schedule_lifecycle(app: Flowrra, manager: FlowrraManager, tmp_path: Path) -> None:
    scheduler = app.create_scheduler(f"sqlite:///{tmp_path / 's.db'}")
    try:
        cron = await manager.create_schedule_cron(
            "add", "*/5 * * * *", [1, 2], description="every five", priority=4
        )
        interval = await manager.create_schedule_interval("boom", 30, kwargs={"label": "i"})
        once = await manager.create_schedule_once("add", "2030-01-01T00:00:00", (3, 4))
        assert cron["schedule_type"] == "cron"
        assert cron["schedule"] == "*/5 * * * *"
        assert (cron["args"], cron["priority"], cron["description"]) == ([1, 2], 4, "every five")
        assert (interval["schedule"], interval["kwargs"]) == ("30.0", {"label": "i"})
        assert once["next_run_at"] == "2030-01-01T00:00:00+00:00"
        again = await manager.create_schedule_interval("boom", 30.0, kwargs={"label": "i"})
        assert again["id"] == interval["id"]
        assert {s["id"] for s in await manager.list_schedules()} == {
            cron["id"],
            interval["id"],
            once["id"],
        }
        disabled = await manager.disable_schedule(cron["id"])
        assert disabled is not None
        assert disabled["enabled"] is False
        enabled_ids = {s["id"] for s in await manager.list_schedules(enabled_only=True)}
        assert enabled_ids == {interval["id"], once["id"]}
        stats = await manager.get_scheduler_stats()
        assert stats["configured"] is True
        assert stats["running"] is False
        assert (stats["total_schedules"], stats["enabled_schedules"]) == (3, 2)
        assert stats["disabled_schedules"] == 1
        assert stats["next_run_at"] is not None
        enabled = await manager.enable_schedule(cron["id"])
        assert enabled is not None
        assert enabled["enabled"] is True
        assert await manager.get_schedule(cron["id"]) == enabled
        assert await manager.delete_schedule(cron["id"]) is True
        assert await manager.delete_schedule(cron["id"]) is False
        assert await manager.get_schedule(cron["id"]) is None
        assert await manager.disable_schedule(cron["id"]) is None
        assert await manager.get_schedule(None) is None
        async with app:
            assert (await manager.get_scheduler_stats())["running"] is True
            health = await manager.health_check()
        assert health["checks"]["scheduler"]["healthy"] is True
        assert health["checks"]["scheduler"]["configured"] is True
        json.dumps(await manager.list_schedules())
    finally:
        await scheduler.close()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.create_schedule_cron("nope", "* * * * *"), "not registered"),
        (lambda m: m.create_schedule_cron("add", "61 * * * *"), "invalid cron"),
        (lambda m: m.create_schedule_cron("add", 5), "cron must be a string"),
        (lambda m: m.create_schedule_cron("add", "* * * * *", timezone="Mars/Base"), "zone"),
        (lambda m: m.create_schedule_interval("add", -1), "positive"),
        (lambda m: m.create_schedule_interval("add", "soon"), "interval"),
        (lambda m: m.create_schedule_interval("add", 5, args="ab"), "args"),
        (lambda m: m.create_schedule_interval("add", 5, kwargs=[1]), "kwargs"),
        (lambda m: m.create_schedule_interval("add", 5, args=[object()]), "JSON"),
        (lambda m: m.create_schedule_interval("add", 5, max_retries=-1), "max_retries"),
        (lambda m: m.create_schedule_interval("add", 5, retry_delay="x"), "not supported"),
        (lambda m: m.create_schedule_once("add", "tomorrow"), "ISO"),
        (lambda m: m.create_schedule_once("add", 12), "run_at"),
        (lambda m: m.create_schedule_once("", datetime.now(UTC)), "task_name"),
    ],
)
async def test_bad_schedules_are_value_errors(
    app: Flowrra, manager: FlowrraManager, tmp_path: Path, call: Any, message: str
) -> None:
    scheduler = app.create_scheduler(f"sqlite:///{tmp_path / 's.db'}")
    try:
        with pytest.raises(ValueError, match=message):
            await call(manager)
        assert await manager.list_schedules() == []
    finally:
        await scheduler.close()


async def test_a_due_schedule_runs_the_task(
    app: Flowrra, manager: FlowrraManager, tmp_path: Path
) -> None:
    scheduler = app.create_scheduler(f"sqlite:///{tmp_path / 's.db'}", check_interval=0.05)
    try:
        past = datetime.now(UTC) - timedelta(seconds=1)
        schedule = await manager.create_schedule_once("add", past, [20, 22])
        async with app:
            for _ in range(100):
                if await manager.list_completed_tasks():
                    break
                await asyncio.sleep(0.05)
        results = [r["result"] for r in await manager.list_completed_tasks()]
        assert results == [42]
        after = await manager.get_schedule(schedule["id"])
        assert after is not None
        assert after["enabled"] is False
    finally:
        await scheduler.close()


# -- dead letters, queue details, filters and record fields ------------------------------

WORKER_ID = re.compile(rf"^{re.escape(socket.gethostname())}-{os.getpid()}-[0-9a-f]{{6}}$")


async def bury_unregistered(app: Flowrra, name: str, count: int = 1) -> list[str]:
    """Submit ``count`` calls of a task the worker no longer knows: each is dead-lettered."""

    @app.task(name=name, priority=4)
    async def doomed(n: int) -> int:
        return n * 10

    await app.start(worker=False)
    ids = [await app.submit(name, n) for n in range(count)]
    await app.stop()
    app.registry.unregister(name)
    async with app:
        await app.run_until_idle(timeout=5)
    app.task(name=name, priority=4)(doomed.fn)
    return ids


async def test_requeue_dead_letter_runs_the_task_again(
    app: Flowrra, manager: FlowrraManager
) -> None:
    (task_id,) = await bury_unregistered(app, "doomed")
    dead = await manager.get_task_result(task_id)
    assert dead is not None
    assert dead["status"] == "failed"
    await app.start(worker=False)
    answer = await manager.requeue_dead_letter(task_id)
    assert answer == {"task_id": task_id, "requeued": True}
    waiting = await manager.get_task_result(task_id)
    assert waiting is not None
    assert (waiting["status"], waiting["error"], waiting["deliveries"]) == ("pending", None, 0)
    assert waiting["args"] == [0]
    stats = await manager.get_stats()
    assert (stats["queues"]["ready"], stats["queues"]["dead"]) == (1, 0)
    assert stats["queue_details"][0]["by_priority"] == {"4": 1}
    await app.stop()
    async with app:
        record = await app.wait_for_result(task_id, timeout=5)
    assert (record.status, record.result) == ("success", 0)
    assert await manager.list_dead_letters() == []
    with pytest.raises(ValueError, match="not dead-lettered"):
        await manager.requeue_dead_letter(task_id)


async def test_a_refused_requeue_leaves_the_record_as_it_was(
    app: Flowrra, manager: FlowrraManager
) -> None:
    async with app:
        task_id = await app.submit("add", 1, 2)
        await app.run_until_idle(timeout=5)
    before = await manager.get_task_result(task_id)
    with pytest.raises(ValueError, match="not dead-lettered"):
        await manager.requeue_dead_letter(task_id)
    assert await manager.get_task_result(task_id) == before
    with pytest.raises(ValueError, match="task_id"):
        await manager.requeue_dead_letter("")
    with pytest.raises(ValueError, match="task_id"):
        await manager.delete_dead_letter(7)


async def test_delete_and_purge_dead_letters(app: Flowrra, manager: FlowrraManager) -> None:
    first, second, third = await bury_unregistered(app, "doomed", 3)
    assert await manager.delete_dead_letter(second) is True
    assert await manager.delete_dead_letter(second) is False
    assert await manager.delete_dead_letter("unknown") is False
    assert {letter["task_id"] for letter in await manager.list_dead_letters()} == {first, third}
    failed = await manager.get_task_result(second)
    assert failed is not None
    assert failed["status"] == "failed", "deleting a dead letter keeps the record"
    assert await manager.purge_dead_letters() == {"removed": 2}
    assert await manager.purge_dead_letters() == {"removed": 0}
    assert (await manager.get_stats())["queues"]["dead"] == 0


async def test_stats_report_each_queue(app: Flowrra, manager: FlowrraManager) -> None:
    assert (await manager.get_stats())["queue_details"] == []
    await app.start(worker=False)
    await app.submit("add", 1, 2)
    await app.submit("add", 3, 4, priority=-1)
    await app.submit("boom", "later", countdown=60)
    await asyncio.sleep(0.05)
    (default,) = (await manager.get_stats())["queue_details"]
    assert default["queue"] == "default"
    assert (default["ready"], default["by_priority"]) == (2, {"2": 1, "-1": 1})
    assert (default["delayed"], default["in_flight"], default["dead"]) == (1, 0, 0)
    assert 0.04 <= default["oldest_age"] < 5
    json.dumps(default)


async def test_list_tasks_filters_by_name_and_submission_time(
    app: Flowrra, manager: FlowrraManager
) -> None:
    async with app:
        early = [await app.submit("add", n, 0) for n in range(3)]
        await asyncio.sleep(0.02)
        middle = datetime.now(UTC)
        await asyncio.sleep(0.02)
        late = [await app.submit("add", n, 1) for n in range(2)]
        await app.submit("boom", "z")
        await app.run_until_idle(timeout=5)
    named = await manager.list_completed_tasks(name="add")
    assert {r["task_id"] for r in named} == {*early, *late}
    assert await manager.list_completed_tasks(name="boom") == []
    assert [r["task_id"] for r in await manager.list_failed_tasks(name="boom")] != []
    since = await manager.list_tasks("success", since=middle)
    assert {r["task_id"] for r in since} == set(late)
    until = await manager.list_tasks("success", until=middle.isoformat())
    assert {r["task_id"] for r in until} == set(early)
    window = await manager.list_tasks(
        "success", name="add", since=middle - timedelta(hours=1), until=middle
    )
    assert {r["task_id"] for r in window} == set(early)
    naive = middle.replace(tzinfo=None).isoformat()
    assert {r["task_id"] for r in await manager.list_tasks("success", since=naive)} == set(late)
    paged = await manager.list_completed_tasks(limit=2, offset=1, name="add")
    assert [r["task_id"] for r in paged] == [r["task_id"] for r in named[1:3]]
    assert await manager.list_completed_tasks(limit=0, name="add") == []


async def test_list_recent_tasks_lists_every_status_most_recently_changed_first(
    app: Flowrra, manager: FlowrraManager
) -> None:
    async with app:
        added = await app.submit("add", 1, 1)
        await app.run_until_idle(timeout=5)
        failed = await app.submit("boom", "x")
        await app.run_until_idle(timeout=5)
        waiting = await app.submit("add", 2, 2, countdown=60)
        recent = [r["task_id"] for r in await manager.list_recent_tasks()]
        assert recent == [waiting, failed, added]
        page = await manager.list_recent_tasks(limit=1, offset=1)
        assert [r["task_id"] for r in page] == recent[1:2]
        only_add = await manager.list_recent_tasks(name="add")
        assert {r["task_id"] for r in only_add} == {added, waiting}
        assert await manager.list_recent_tasks(name="add", limit=1, offset=5) == []
        with pytest.raises(ValueError, match="limit"):
            await manager.list_recent_tasks(limit=-1)
        await app.cancel(waiting)


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"since": "yesterday"}, "since must be an ISO"),
        ({"until": 12.5}, "until must be a datetime"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "after until"),
    ],
)
async def test_list_tasks_refuses_bad_filters(
    manager: FlowrraManager, filters: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        await manager.list_tasks("success", **filters)


async def test_records_name_the_worker_and_keep_the_attempts(
    app: Flowrra, manager: FlowrraManager
) -> None:
    async with app:
        once = await app.submit("add", 2, 2)
        retried = await app.submit("flaky")
        await app.run_until_idle(timeout=5)
    single = await manager.get_task_result(once)
    assert single is not None
    assert WORKER_ID.match(single["worker"]), single["worker"]
    assert single["attempts"] == []
    record = await manager.get_task_result(retried)
    assert record is not None
    assert (record["status"], record["retries"], record["worker"]) == (
        "success",
        1,
        single["worker"],
    )
    (attempt,) = record["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["error"] == "ConnectionError: first try fails"
    assert attempt["worker"] == single["worker"]
    started = datetime.fromisoformat(attempt["started_at"])
    finished = datetime.fromisoformat(attempt["finished_at"])
    assert started <= finished <= datetime.fromisoformat(record["started_at"])
    json.dumps(record)


async def test_a_retrying_record_already_lists_the_failed_attempt(
    app: Flowrra, manager: FlowrraManager
) -> None:
    @app.task(max_retries=3, retry_delay=60)
    async def stubborn() -> None:
        raise OSError("still down")

    async with app:
        task_id = await app.submit("stubborn")
        await wait_status(manager, task_id, "retrying")
        waiting = await manager.get_task_result(task_id)
        assert await app.cancel(task_id)
    cancelled = await manager.get_task_result(task_id)
    assert waiting is not None
    assert cancelled is not None
    assert [a["error"] for a in waiting["attempts"]] == ["OSError: still down"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["attempts"] == waiting["attempts"]
