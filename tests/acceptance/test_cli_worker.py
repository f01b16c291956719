"""``flowrra worker`` as real processes on a real Redis: kills, shutdown, poison, supervisor.

Each test has its own key prefix (broker and backend) and output directory; every process
it starts is killed in a ``finally`` block (``deployment``), and its keys are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_app import read_effects
from worker_harness import (
    HERE,
    Deployment,
    alive,
    child_pids,
    counts,
    deployment,
    producer,
    wait_exit,
    wait_until,
)

from _services import require_redis, require_redis_cluster
from flowrra.brokers.redis import RedisBroker
from flowrra.supervisor import Backoff
from flowrra.task import TaskStatus

pytestmark = pytest.mark.service

KILL_TASKS = 2000
KILL_WORKERS = 3
KILL_CONCURRENCY = 6
KILL_EVERY = 2.0  # s


def done_keys(output: Path) -> Counter[str]:
    """How many times each key recorded ``done``."""
    return Counter(key for event, key in read_effects(output) if event == "done")


def started_keys(output: Path) -> Counter[str]:
    """How many times each key recorded ``start``."""
    return Counter(key for event, key in read_effects(output) if event == "start")


@pytest.mark.slow
@pytest.mark.parametrize("server", ["redis", "redis-cluster"])
async def test_sigkilled_workers_lose_no_task(tmp_path: Path, server: str) -> None:
    """2,000 tasks on 3 workers, one SIGKILLed and restarted every 2 s: none is lost (on one
    Redis server, and on a three-node Redis Cluster)."""
    url = require_redis() if server == "redis" else require_redis_cluster()
    options = ("--concurrency", str(KILL_CONCURRENCY), "--grace", "5")
    # prefetch=0: a killed worker holds only the tasks it runs (spares would count a
    # delivery each time their holder dies, and could reach max_deliveries unrun).
    # lease=1.0, well below the kill period: a task handed back by the reaper has run
    # again long before the next kill. (With lease == kill period, hand-backs arrive just
    # as the next kill lands, and a task can be hit max_deliveries times and buried.)
    with deployment(url, tmp_path, lease=1.0, prefetch=0) as deployed:
        workers = [deployed.start(*options) for _ in range(KILL_WORKERS)]
        async with producer(deployed) as app:
            rng = random.Random(20_000)
            keys = [f"task-{number:04d}" for number in range(KILL_TASKS)]
            began = time.monotonic()
            await asyncio.gather(
                *(app.submit("work", key, rng.randint(20, 200), task_id=key) for key in keys)
            )
            kills = 0
            next_kill = time.monotonic() + KILL_EVERY
            while (await counts(app)).busy:
                assert time.monotonic() - began < 50, f"not done: {await counts(app)}"
                if time.monotonic() >= next_kill:
                    victim = kills % KILL_WORKERS
                    workers[victim].kill()
                    workers[victim].wait(timeout=10)
                    workers[victim] = deployed.start(*options)
                    kills += 1
                    next_kill += KILL_EVERY
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - began

            final = await counts(app)
            broker = app.broker
            assert isinstance(broker, RedisBroker)
            letters = [(letter.task.id, letter.reason) for letter in await broker.dead_letters()]
            records = await asyncio.gather(*(app.get_result(key) for key in keys))
            effects = done_keys(tmp_path)
            started = lambda: all("worker started:" in deployed.log_of(w) for w in workers)  # noqa: E731
            assert await wait_until(started, 15), deployed.all_logs()[-3000:]
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [wait_exit(worker, 15) for worker in workers]

        assert kills >= 3, f"only {kills} kills in {elapsed:.1f} s: the test proved nothing"
        assert (final.ready, final.delayed, final.in_flight) == (0, 0, 0), final
        assert final.dead == 0, (final, letters)
        statuses = Counter(record.status if record else None for record in records)
        assert statuses == {TaskStatus.SUCCESS: KILL_TASKS}, statuses
        missing = [key for key in keys if effects[key] == 0]
        assert missing == [], f"{len(missing)} tasks never ran: {missing[:10]}"
        duplicates = sum(count - 1 for count in effects.values())
        assert duplicates <= kills * KILL_CONCURRENCY, (duplicates, kills)
        redelivered = sum(1 for record in records if record and record.deliveries > 1)
        assert redelivered > 0, "no kill hit a running task: the test proved nothing"
        assert codes == [0] * KILL_WORKERS, deployed.all_logs()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shorts", "longs", "queued"),
    [
        pytest.param(4, 2, 4, id="interrupted-and-spares"),
        # nothing interrupted: only broker.close() hands the claimed-ahead spares back
        pytest.param(2, 0, 3, id="spares-only"),
    ],
)
async def test_sigterm_finishes_short_tasks_and_hands_back_the_rest(
    tmp_path: Path, shorts: int, longs: int, queued: int
) -> None:
    """SIGTERM, --grace 1: tasks that end in time are acked once, the rest are ready again."""
    url = require_redis()
    # a long lease: a task not handed back would stay in flight for the whole test
    with deployment(url, tmp_path, lease=60.0, prefetch=16) as deployed:
        async with producer(deployed) as app:
            short = [f"short-{n}" for n in range(shorts)]
            long = [f"long-{n}" for n in range(longs)]
            waiting = [f"queued-{n}" for n in range(queued)]
            for key in short:
                await app.submit("sleepy", key, 0.5, task_id=key)
            for key in long + waiting:
                await app.submit("sleepy", key, 30.0, task_id=key)
            worker = deployed.start("--concurrency", str(shorts + longs), "--grace", "1")
            running = set(short + long)
            assert await wait_until(lambda: set(started_keys(tmp_path)) >= running, 20, 0.01), (
                deployed.all_logs()
            )
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            code = wait_exit(worker, 10)
            exited_after = time.monotonic() - signalled
            final = await counts(app)
            records = {key: await app.get_result(key) for key in short + long + waiting}
        log = deployed.log_of(worker)

        assert code == 0, log
        assert exited_after < 1 + 1.5, f"exited {exited_after:.2f} s after SIGTERM"
        handed_back = longs + queued
        assert (final.ready, final.delayed, final.in_flight, final.dead) == (
            handed_back,
            0,
            0,
            0,
        ), final
        assert done_keys(tmp_path) == Counter(short), read_effects(tmp_path)
        assert set(started_keys(tmp_path)) == running, "a queued task started"
        for key in short:
            record = records[key]
            assert record is not None
            assert record.status == TaskStatus.SUCCESS, record
        for key in long + waiting:
            record = records[key]
            assert record is not None
            assert record.status == TaskStatus.PENDING, record
        assert "worker stopped" in log


@pytest.mark.slow
async def test_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    """A second SIGTERM during the grace period exits at once; the leases keep the tasks."""
    url = require_redis()
    with deployment(url, tmp_path, lease=60.0, prefetch=0) as deployed:
        async with producer(deployed) as app:
            keys = [f"long-{n}" for n in range(2)]
            for key in keys:
                await app.submit("sleepy", key, 30.0, task_id=key)
            worker = deployed.start("--concurrency", "2", "--grace", "20")
            assert await wait_until(lambda: set(started_keys(tmp_path)) >= set(keys), 20, 0.01)
            worker.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert worker.poll() is None, "the first SIGTERM must wait for the grace period"
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            code = wait_exit(worker, 10)
            exited_after = time.monotonic() - signalled
            final = await counts(app)
        log = deployed.log_of(worker)

        assert code == 1, log
        assert exited_after < 2, f"exited {exited_after:.2f} s after the second SIGTERM"
        assert "second SIGTERM: exiting at once" in log
        assert "worker stopped" not in log
        # not handed back: still leased, so another worker's reaper returns them on expiry
        assert (final.ready, final.in_flight) == (0, 2), final


@pytest.mark.slow
async def test_poison_task_is_dead_lettered_after_max_deliveries(tmp_path: Path) -> None:
    """A task that kills its worker is buried after 3 deliveries; 500 others succeed."""
    url = require_redis()
    # lease=3.0: short for a quick test, long enough that a loaded machine's late heartbeat
    # does not expire the lease of a healthy task beside the poison one
    with deployment(url, tmp_path, lease=3.0, prefetch=0, max_deliveries=3) as deployed:
        async with producer(deployed) as app:
            rng = random.Random(500)
            normal = [f"normal-{n:03d}" for n in range(500)]
            for key in normal[:250]:
                await app.submit("work", key, rng.randint(10, 50), task_id=key)
            await app.submit("poison", "poison", task_id="poison")
            for key in normal[250:]:
                await app.submit("work", key, rng.randint(10, 50), task_id=key)
            supervisor = deployed.start("--processes", "2", "--concurrency", "4", "--grace", "5")
            began = time.monotonic()
            while (await counts(app)).busy:
                assert time.monotonic() - began < 45, (await counts(app), deployed.all_logs())
                await asyncio.sleep(0.1)
            final = await counts(app)
            broker = app.broker
            assert isinstance(broker, RedisBroker)
            letters = await broker.dead_letters()
            records = await asyncio.gather(*(app.get_result(key) for key in normal))
            poison = await app.wait_for_result("poison", timeout=10)  # the reaper recorded it
            supervisor.send_signal(signal.SIGTERM)
            code = wait_exit(supervisor, 20)
        log = deployed.log_of(supervisor)

        assert final.dead == 1, (final, [(letter.task.id, letter.reason) for letter in letters])
        assert [letter.task.id for letter in letters] == ["poison"]
        assert "3 times" in letters[0].reason, letters[0].reason
        assert poison.status == TaskStatus.FAILED
        assert poison.error == letters[0].reason
        assert started_keys(tmp_path)["poison"] == 3, log
        statuses = Counter(record.status if record else None for record in records)
        assert statuses == {TaskStatus.SUCCESS: len(normal)}, (statuses, log[-4000:])
        assert all(done_keys(tmp_path)[key] >= 1 for key in normal)
        assert log.count("exited unexpectedly") == 3, log
        assert code == 0, log


@pytest.mark.slow
def test_supervisor_restarts_a_killed_child_and_stops_all_on_sigterm(tmp_path: Path) -> None:
    url = require_redis()
    with deployment(url, tmp_path) as deployed:
        supervisor = deployed.start("--processes", "2", "--concurrency", "2", "--grace", "2")
        assert asyncio.run(wait_until(ready_count(deployed, supervisor, 2), 20)), deployed.log_of(
            supervisor
        )
        first = child_pids(deployed.log_of(supervisor))
        assert len(first) == 2
        assert all(alive(pid) for pid in first)

        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        restarted = lambda: len(child_pids(deployed.log_of(supervisor))) == 3  # noqa: E731
        assert asyncio.run(wait_until(restarted, 20)), deployed.log_of(supervisor)
        assert asyncio.run(wait_until(ready_count(deployed, supervisor, 3), 20))
        children = child_pids(deployed.log_of(supervisor))
        assert children[2] not in first
        assert not alive(victim)

        supervisor.send_signal(signal.SIGTERM)
        code = wait_exit(supervisor, 20)
        log = deployed.log_of(supervisor)
        assert code == 0, log
        assert not any(alive(pid) for pid in children), log
        assert log.count("worker stopped:") == 2, log
        assert "restarting in" in log
        assert "supervisor stopped (exit code 0)" in log


def test_worker_stops_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    url = require_redis()
    with deployment(url, tmp_path) as deployed:
        supervisor = deployed.start("--processes", "2", "--grace", "1")
        assert asyncio.run(wait_until(ready_count(deployed, supervisor, 2), 20))
        children = child_pids(deployed.log_of(supervisor))
        supervisor.kill()
        supervisor.wait(timeout=10)
        gone = lambda: not any(alive(pid) for pid in children)  # noqa: E731
        assert asyncio.run(wait_until(gone, 10)), deployed.log_of(supervisor)
        log = deployed.log_of(supervisor)
        assert log.count("the supervisor is gone") == 2, log
        assert log.count("worker stopped:") == 2, log


def ready_count(
    deployed: Deployment, process: subprocess.Popen[str], wanted: int
) -> Callable[[], bool]:
    """A condition: ``process``'s log shows ``wanted`` workers started."""
    return lambda: deployed.log_of(process).count("worker started:") >= wanted


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, cap=10.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(10_000) == 10.0


def run_command(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowrra ARGUMENTS`` in the tests' directory."""
    return subprocess.run(
        [sys.executable, "-m", "flowrra", *arguments],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("worker", "no_such_module:app"), "cannot import 'no_such_module'"),
        (("worker", "worker_app"), "APP must look like 'module:attribute'"),
        (("worker", "worker_app:missing"), "is not a Flowrra app"),
        (("worker", "memory_app:app"), "in-process memory broker"),
        (("worker", "memory_app:app", "--processes", "2"), "in-process memory broker"),
        (("worker", "worker_app:app", "--concurrency", "0"), "must be an integer >= 1"),
        (("worker", "worker_app:app", "--queues", ","), "--queues needs at least one"),
    ],
)
def test_worker_refuses_what_it_cannot_run(arguments: tuple[str, ...], message: str) -> None:
    outcome = run_command(*arguments)
    assert outcome.returncode != 0
    assert message in outcome.stderr, outcome.stderr
    if "memory" in message:
        assert outcome.returncode == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_with_password(password: str) -> Iterator[int]:
    """A throw-away ``redis-server`` requiring ``password``; yields its port."""
    port = free_port()
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--requirepass", password, "--save", "", "--appendonly", "no"),
            *("--daemonize", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = lambda: _accepts(port)  # noqa: E731
        assert asyncio.run(wait_until(ready, 10)), "redis-server did not start"
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def _run_one_task(deployed: Deployment) -> TaskStatus:
    async with producer(deployed) as app:
        task_id = await app.submit("work", "secret-test", 10)
        record = await app.wait_for_result(task_id, timeout=20)
        return record.status


def test_redis_password_never_appears_in_the_output(tmp_path: Path) -> None:
    require_redis()  # the same binary; skips alike when Redis is not installed
    password = "s3cr3t-value"
    with redis_with_password(password) as port:
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        with deployment(url, tmp_path) as deployed:
            worker = deployed.start("--concurrency", "2", "--grace", "1", "--log-level", "DEBUG")
            assert asyncio.run(wait_until(ready_count(deployed, worker, 1), 20)), deployed.log_of(
                worker
            )
            assert asyncio.run(_run_one_task(deployed)) == TaskStatus.SUCCESS
            worker.send_signal(signal.SIGTERM)
            assert wait_exit(worker, 15) == 0, deployed.log_of(worker)

            wrong = "wr0ng-pa55word"
            deployed.url = f"redis://:{wrong}@127.0.0.1:{port}/0"
            refused = deployed.start("--log-level", "DEBUG")
            assert wait_exit(refused, 20) == 1, deployed.log_of(refused)
            output = deployed.all_logs()
    assert "worker started: app=worker_app:app broker=<RedisBroker redis://:***@" in output
    assert "does not answer" in output
    assert password not in output
    assert wrong not in output
