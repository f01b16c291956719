"""Scheduler throughput and lateness on every schedule store.

Run: ``python benchmarks/bench_scheduler.py [--schedules N]``. For each store it prints:

* burst: N interval schedules all due at once; one ``tick()`` claims and submits them
  (submission is a no-op callback); runs/s, and how long after the pass started the
  p50/p99 run was submitted;
* loop: the real scheduler loop with 100 schedules every 0.25 s for 3 s; lateness of each
  submission after its nominal time, p50/p99.

PostgreSQL (127.0.0.1:5432, database test) and MariaDB (127.0.0.1:3306, database test)
rows are skipped when the server is not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg  # type: ignore[import-untyped]

from flowrra.registry import TaskRegistry
from flowrra.scheduler import Scheduler
from flowrra.scheduler.backends import BaseSchedulerBackend, get_scheduler_backend
from flowrra.scheduler.timing import run_task_id

SERVERS = {
    "postgresql": ("postgresql://postgres@127.0.0.1:5432/test", 5432),
    "mariadb": ("mysql://root@127.0.0.1:3306/test", 3306),
}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1..99) of ``values``."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Recorder:
    """A no-op submit callback that notes when each run was submitted."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    async def __call__(
        self,
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_id: str,
        priority: int,
        max_retries: int,
        retry_delay: float,
    ) -> str:
        self.times[task_id] = time.time()
        return task_id


def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task
    async def job(n: int) -> int:
        return n

    return tasks


async def burst(backend: BaseSchedulerBackend, count: int) -> tuple[float, float, float]:
    """(runs/s, p50 ms, p99 ms) for ``count`` schedules due at once."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = [start]
    recorder = Recorder()
    scheduler = Scheduler(backend, registry(), submit=recorder, clock=lambda: clock[0])
    for n in range(count):
        await scheduler.schedule_interval("job", 60, args=(n,))
    clock[0] = start + timedelta(seconds=61)
    began = time.time()
    submitted = await scheduler.tick()
    elapsed = time.time() - began
    assert submitted == count, (submitted, count)
    delays = [(t - began) * 1000 for t in recorder.times.values()]
    return count / elapsed, percentile(delays, 50), percentile(delays, 99)


async def loop(backend: BaseSchedulerBackend) -> tuple[float, float]:
    """(p50 ms, p99 ms) lateness of the real loop: 100 schedules every 0.25 s for 3 s."""
    recorder = Recorder()
    scheduler = Scheduler(backend, registry(), submit=recorder)
    ids = [await scheduler.schedule_interval("job", 0.25, args=(n,)) for n in range(100)]
    await scheduler.start()
    await asyncio.sleep(3.0)
    await scheduler.stop()
    lateness = []
    for sid in ids:
        task = await scheduler.get_scheduled_task(sid)
        assert task is not None
        for k in range(1, 20):
            nominal = task.created_at + timedelta(seconds=0.25 * k)
            at = recorder.times.get(run_task_id(sid, nominal))
            if at is not None:
                lateness.append((at - nominal.timestamp()) * 1000)
    return percentile(lateness, 50), percentile(lateness, 99)


async def measure(
    name: str, open_backend: Callable[[str], BaseSchedulerBackend], count: int
) -> str:
    table = f"bench_{uuid.uuid4().hex[:10]}"
    backend = open_backend(table)
    try:
        rate, b50, b99 = await burst(backend, count)
        await backend.clear()
        l50, l99 = await loop(backend)
        await backend.clear()
    finally:
        await backend.close()
    return f"{name:<14} {rate:>12,.0f} {b50:>10.1f} {b99:>10.1f} {l50:>10.1f} {l99:>10.1f}"


def server_opener(url: str) -> Callable[[str], BaseSchedulerBackend]:
    """Opens a backend on ``url`` for a given table name."""

    def opener(table: str) -> BaseSchedulerBackend:
        return get_scheduler_backend(url, table_name=table)

    return opener


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, Callable[[str], BaseSchedulerBackend]] = {
            "sqlite-memory": lambda t: get_scheduler_backend("sqlite:///:memory:", table_name=t),
            "sqlite-file": lambda t: get_scheduler_backend(
                f"sqlite:///{Path(tmp) / 'bench.db'}", table_name=t
            ),
        }
        for name, (url, port) in SERVERS.items():
            if reachable(port):
                stores[name] = server_opener(url)
        print(f"{count:,} schedules due at once (burst); real loop: 100 schedules every 0.25 s")
        header = ("store", "burst runs/s", "burst p50", "burst p99", "loop p50", "loop p99")
        print(
            f"{header[0]:<14} {header[1]:>12} {header[2]:>10} {header[3]:>10} "
            f"{header[4]:>10} {header[5]:>10}   (times in ms)"
        )
        for name, opener in stores.items():
            print(await measure(name, opener, count), flush=True)
        for name in SERVERS:
            if name not in stores:
                print(f"{name:<14} skipped: server not reachable")
        await drop_tables()


async def drop_tables() -> None:
    """Remove the benchmark's tables from the servers."""
    if reachable(5432):
        conn = await asyncpg.connect(SERVERS["postgresql"][0])
        names = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench\\_%'")
        for row in names:
            await conn.execute(f'DROP TABLE IF EXISTS "{row[0]}"')
        await conn.close()
    if reachable(3306):
        conn = await aiomysql.connect(host="127.0.0.1", user="root", db="test", autocommit=True)
        async with conn.cursor() as cur:
            await cur.execute("SHOW TABLES LIKE 'bench\\_%'")
            for (name,) in await cur.fetchall():
                await cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().schedules))
