"""The web dashboard on a large Redis backend: latency of its JSON API, pages and metrics.

Set-up, all under a fresh key prefix on the chosen Redis database (deleted at the end,
also after a failure or Ctrl-C):

- ``--results`` finished records (mostly success, some failed with an error, a traceback
  and earlier attempts, some cancelled; arguments of a few hundred bytes to a few KiB)
  stored directly through ``RedisBackend.store``, many at a time;
- a few dead letters and schedules (a scheduler on SQLite in a temporary directory);
- ``--workers`` real ``flowrra worker`` processes (waited for until ``get_stats()`` lists
  them all alive), which then run a few hundred real tasks so the throughput and task
  statistics are not empty;
- one ``flowrra ui`` process on a free port.

Then one ``httpx.AsyncClient`` sends ``--requests`` sequential GETs to each route (after
a warm-up) and the table gives p50 / p95 / p99 latency and requests per second. Raw
baselines of the same run: a static file of the same server (HTTP and framework cost
without Redis) and a redis-py ``PING`` round trip.

    python benchmarks/bench_dashboard.py [--url redis://127.0.0.1:6379/9] [--results 100000]
                                         [--workers 10] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import redis.asyncio as aioredis

from flowrra import Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.management import FlowrraManager
from flowrra.task import CANCELLED, FAILED, SUCCESS, Task, TaskResult

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from dashboard_bench_app import (  # noqa: E402 - found through the line above
    PREFIX_ENV,
    SCHEDULE_DB_ENV,
    TASK_NAMES,
    URL_ENV,
    build_app,
)

TARGET_MS = 50.0
#: How often each task name occurs among the stored records (same order as TASK_NAMES).
NAME_WEIGHTS = (40, 25, 20, 10, 5)
#: The share of failed and cancelled records; the rest succeeded.
FAILED_SHARE, CANCELLED_SHARE = 0.08, 0.02
DEAD_LETTERS = 25
REAL_TASKS = 500
HOSTS = tuple(f"worker-{n:02d}" for n in range(10))


# -- the stored records ----------------------------------------------------------------


def _payload(name: str, rng: random.Random, i: int) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """Arguments, keyword arguments and result of a call of task ``name``."""
    if name == "send_email":
        body = " ".join(rng.choice(("order", "shipped", "thanks", "invoice")) for _ in range(60))
        args: tuple[Any, ...] = (f"user{i}@example.com", f"Your order #{i} has shipped", body)
        kwargs: dict[str, Any] = {"reply_to": "shop@example.com", "tags": ["order", "ship"]}
        return args, kwargs, {"to": args[0], "bytes": len(body), "message_id": f"<{i}@mx>"}
    if name == "resize_image":
        path = f"/uploads/2025/{i % 12 + 1:02d}/{uuid.UUID(int=i).hex}.jpg"
        sizes = [64, 128, 256, 512, 1024]
        kwargs = {"quality": 82, "format": "webp", "strip_metadata": True}
        return (path, sizes), kwargs, [f"{path}.{size}.webp" for size in sizes]
    if name == "sync_account":
        kwargs = {"full": i % 7 == 0, "page_size": 200, "scopes": ["orders", "customers"]}
        return (i, "2025-01-01T00:00:00+00:00"), kwargs, {"account_id": i, "changed": i % 17}
    if name == "generate_report":
        rows = [{"sku": f"SKU-{i + n}", "qty": n, "price": n * 1.5} for n in range(30)]
        return ("sales", rows), {"currency": "EUR", "locale": "fr_FR"}, f"/reports/{i}.pdf"
    order = f"ord_{i:08d}"
    kwargs = {"currency": "EUR", "idempotency_key": str(uuid.UUID(int=i)), "customer": i}
    return (order, 1000 + i % 90_000), kwargs, {"order_id": order, "charge": f"ch_{i}"}


TRACEBACK = "".join(
    f'  File "/srv/shop/tasks/{module}.py", line {line}, in {function}\n    {code}\n'
    for module, line, function, code in (
        ("runner", 41, "run", "return await handler(*args, **kwargs)"),
        ("payments", 118, "charge_card", "response = await client.post(url, json=body)"),
        ("http", 77, "post", "return await self._send('POST', url, json=json)"),
        ("http", 203, "_send", "raise ConnectionError(f'{host} did not answer')"),
    )
)


def _failure(name: str, i: int, started: datetime) -> tuple[str, str, tuple[dict[str, Any], ...]]:
    """Error, traceback and the attempts that were retried before the final failure."""
    error = f"ConnectionError: api-{i % 5}.payments.example did not answer in 10.0 s"
    attempts = tuple(
        {
            "attempt": n,
            "started_at": (started - timedelta(seconds=30 * (3 - n))).isoformat(),
            "finished_at": (started - timedelta(seconds=30 * (3 - n) - 10)).isoformat(),
            "error": error,
            "worker": f"{HOSTS[(i + n) % len(HOSTS)]}-{1000 + n}-a1b2c3",
        }
        for n in range(3)
    )
    return error, "Traceback (most recent call last):\n" + TRACEBACK + error + "\n", attempts


def make_record(i: int, total: int, rng: random.Random, now: datetime) -> TaskResult:
    """Record number ``i`` of ``total`` (later ``i``: submitted later, within the last day)."""
    name = rng.choices(TASK_NAMES, NAME_WEIGHTS)[0]
    args, kwargs, result = _payload(name, rng, i)
    submitted = now - timedelta(seconds=86_400 * (total - i) / total)
    started = submitted + timedelta(milliseconds=rng.randint(2, 400))
    finished = started + timedelta(milliseconds=rng.randint(5, 3000))
    record = TaskResult(
        task_id=str(uuid.uuid4()),
        status=SUCCESS,
        task_name=name,
        result=result,
        submitted_at=submitted,
        started_at=started,
        finished_at=finished,
        args=args,
        kwargs=kwargs,
        deliveries=1,
        worker=f"{HOSTS[i % len(HOSTS)]}-{1000 + i % 7}-a1b2c3",
    )
    roll = rng.random()
    if roll < FAILED_SHARE:
        record.status, record.result, record.retries = FAILED, None, 3
        record.error, record.traceback, record.attempts = _failure(name, i, started)
    elif roll < FAILED_SHARE + CANCELLED_SHARE:
        record.status, record.result = CANCELLED, None
        record.error = "TaskCancelledError: cancelled through the dashboard"
    return record


@dataclass
class Samples:
    """Ids and names the measured routes ask for."""

    success_id: str = ""
    failed_id: str = ""
    rare_name: str = TASK_NAMES[-1]


async def fill(backend: RedisBackend, total: int, batch: int) -> Samples:
    """Store ``total`` records, ``batch`` concurrent ``store`` calls at a time."""
    rng = random.Random(20250101)
    now = datetime.now(UTC)
    samples = Samples()
    for start in range(0, total, batch):
        records = [make_record(i, total, rng, now) for i in range(start, min(total, start + batch))]
        await asyncio.gather(*(backend.store(r.task_id, r) for r in records))
        for record in records:
            if record.status == SUCCESS and start <= total // 2:
                samples.success_id = record.task_id
            elif record.status == FAILED and start <= total // 2:
                samples.failed_id = record.task_id
    return samples


# -- dead letters and schedules --------------------------------------------------------


async def bury_dead_letters(broker: RedisBroker, count: int) -> None:
    """Queue ``count`` tasks, claim them and bury them, as a worker does after giving up."""
    for i in range(count):
        name = TASK_NAMES[i % len(TASK_NAMES)]
        args, kwargs, _ = _payload(name, random.Random(i), i)
        await broker.enqueue(
            Task(str(uuid.uuid4()), name, args, kwargs, submitted_at=datetime.now(UTC))
        )
    for _ in range(count):
        delivery = await broker.claim(["default:io"])
        await broker.bury(delivery, "delivered 5 times; the worker process died each time")


async def add_schedules(url: str, prefix: str, schedule_db: str) -> int:
    """A handful of cron, interval and one-time schedules in the scheduler's store."""
    app = build_app(url, prefix, schedule_db)
    scheduler = app.scheduler
    assert scheduler is not None
    try:
        for hour in range(8):
            await scheduler.schedule_cron("generate_report", f"0 {hour} * * *", ("sales", []))
        for minutes in (15, 30, 60, 120):
            await scheduler.schedule_interval("sync_account", minutes * 60, (minutes, "now"))
        next_year = datetime.now(UTC) + timedelta(days=365)
        for n in range(4):
            await scheduler.schedule_once("send_email", next_year, (f"u{n}@example.com", "hi", ""))
        return len(await scheduler.list_scheduled_tasks())
    finally:
        await scheduler.close()
        await app.backend.close()
        await app.broker.close()


# -- the processes ---------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Processes:
    """The worker and dashboard processes of one run; :meth:`stop_all` ends every one."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[tuple[str, asyncio.subprocess.Process, IO[bytes]]] = []

    async def start(self, label: str, *command: str, env: dict[str, str] | None = None) -> None:
        """Start ``python -m flowrra COMMAND...`` in the benchmarks folder (output to a log)."""
        log = (self.logs / f"{label}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowrra",
            *command,
            cwd=HERE,
            env=env or self.env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.running.append((label, process, log))

    def check_alive(self) -> None:
        """RuntimeError with the log's end if a process exited."""
        for label, process, _ in self.running:
            if process.returncode is not None:
                tail = (self.logs / f"{label}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{label} exited with code {process.returncode}:\n{tail}")

    async def stop_all(self) -> None:
        """SIGTERM every process, SIGKILL the ones still there after 10 s."""
        for _, process, _ in self.running:
            if process.returncode is None:
                process.terminate()
        for _, process, log in self.running:
            try:
                await asyncio.wait_for(process.wait(), 10.0)
            except TimeoutError:
                process.kill()
                await process.wait()
            log.close()
        self.running.clear()


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, processes: Processes
) -> float:
    """Seconds until ``check()`` is true; RuntimeError naming ``what`` after ``timeout``."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        processes.check_alive()
        with contextlib.suppress(httpx.TransportError):
            if await check():
                return time.perf_counter() - started
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{what} after {timeout:.0f} s")


def alive_workers(manager: FlowrraManager, wanted: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await manager.get_stats()
        return sum(1 for worker in stats["workers"] if worker["alive"]) >= wanted

    return check


def dashboard_answers(client: httpx.AsyncClient) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await client.get("/api/tasks")).status_code == 200

    return check


async def run_real_tasks(app: Flowrra, count: int) -> None:
    """Submit ``count`` tasks to the workers and wait for every result (names drawn with
    the stored records' weights, so a name filter meets the same density everywhere)."""
    rng = random.Random(7)
    ids = []
    for i in range(count):
        name = rng.choices(TASK_NAMES, NAME_WEIGHTS)[0]
        args, kwargs, _ = _payload(name, rng, i)
        ids.append(await app.submit_call(name, args, kwargs))
    await asyncio.gather(*(app.wait_for_result(task_id, timeout=60) for task_id in ids))


# -- measuring -------------------------------------------------------------------------


@dataclass
class Row:
    """One route's latencies (seconds, sorted) and the statuses it answered."""

    name: str
    times: list[float]
    statuses: set[int]
    kind: str = "json"

    def percentile(self, fraction: float) -> float:
        """The ``fraction`` percentile in milliseconds (nearest rank)."""
        index = min(len(self.times) - 1, max(0, round(fraction * len(self.times)) - 1))
        return self.times[index] * 1000

    @property
    def per_second(self) -> float:
        return len(self.times) / sum(self.times)


async def timed(
    call: Callable[[], Awaitable[int]], warmup: int, count: int
) -> tuple[list[float], set[int]]:
    """Latencies of ``count`` sequential calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        await call()
    times, statuses = [], set()
    for _ in range(count):
        started = time.perf_counter()
        statuses.add(await call())
        times.append(time.perf_counter() - started)
    return sorted(times), statuses


def routes(samples: Samples) -> list[tuple[str, str, str]]:
    """``(label, path, kind)`` of every measured route."""
    name = samples.rare_name
    return [
        ("/api/stats", "/api/stats", "json"),
        ("/api/health", "/api/health", "json"),
        ("/api/tasks", "/api/tasks", "json"),
        ("/api/results success", "/api/results?status=success&limit=50", "json"),
        ("/api/results failed", "/api/results?status=failed&limit=50", "json"),
        ("/api/results offset 5000", "/api/results?status=success&limit=50&offset=5000", "json"),
        (f"/api/results name={name}", f"/api/results?name={name}&status=success&limit=50", "json"),
        ("/api/results all statuses", "/api/results?limit=50", "json"),
        ("/api/results all, offset 5000", "/api/results?limit=50&offset=5000", "json"),
        ("/api/results/{id} failed", f"/api/results/{samples.failed_id}", "json"),
        ("/api/results/{id} success", f"/api/results/{samples.success_id}", "json"),
        ("/api/dead-letters", "/api/dead-letters", "json"),
        ("/api/schedules", "/api/schedules", "json"),
        ("/metrics", "/metrics", "text"),
        ("/ (overview page)", "/", "html"),
        ("/tasks?status=success", "/tasks?status=success", "html"),
        ("/tasks/{id} failed", f"/tasks/{samples.failed_id}", "html"),
    ]


async def measure(base: str, url: str, samples: Samples, args: argparse.Namespace) -> list[Row]:
    """Every route, then the two raw baselines, each with the same warm-up and count."""
    rows = []
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:

        def getter(path: str) -> Callable[[], Awaitable[int]]:
            async def get() -> int:
                return (await client.get(path)).status_code

            return get

        for label, path, kind in routes(samples):
            times, statuses = await timed(getter(path), args.warmup, args.requests)
            rows.append(Row(label, times, statuses, kind))
        times, statuses = await timed(getter("/static/flowrra.css"), args.warmup, args.requests)
        rows.append(Row("raw: static file, same server", times, statuses, "raw"))
    redis = aioredis.Redis.from_url(url)
    try:

        async def ping() -> int:
            return 200 if await redis.ping() else 0

        times, statuses = await timed(ping, args.warmup, args.requests)
        rows.append(Row("raw: redis-py PING", times, statuses, "raw"))
    finally:
        await redis.aclose()
    return rows


def print_table(rows: list[Row], counts: dict[str, int], args: argparse.Namespace) -> None:
    stored = sum(counts.values())
    print(
        f"\nDashboard ({args.url}): {stored:,} records ({counts}), {args.workers} alive "
        f"workers; {args.requests} sequential requests per route after {args.warmup} "
        "warm-up requests, one httpx.AsyncClient"
    )
    header = (
        f"{'route':<36} {'status':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'req/s':>8}  p95 < {TARGET_MS:.0f} ms"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        p95 = row.percentile(0.95)
        verdict = "-" if row.kind == "raw" else ("yes" if p95 < TARGET_MS else "NO")
        status = ",".join(str(s) for s in sorted(row.statuses))
        print(
            f"{row.name:<36} {status:>7} {row.percentile(0.5):>8.2f} {p95:>8.2f} "
            f"{row.percentile(0.99):>8.2f} {row.per_second:>8,.0f}  {verdict}"
        )


# -- the run ---------------------------------------------------------------------------


async def _delete_pass(client: aioredis.Redis, pattern: str) -> int:
    removed = 0
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            removed += int(await client.unlink(*batch))
            batch = []
    if batch:
        removed += int(await client.unlink(*batch))
    return removed


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` (found with SCAN, removed with UNLINK).

    Passes are repeated, half a second apart, until one finds nothing: a write that was
    in flight when the run was interrupted may land during a pass, which SCAN may miss.
    """
    client = aioredis.Redis.from_url(url)
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + ":*"
    removed = 0
    try:
        for _ in range(10):
            found = await _delete_pass(client, pattern)
            removed += found
            if not found:
                break
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    return removed


@contextlib.asynccontextmanager
async def producer(url: str, prefix: str) -> AsyncIterator[Flowrra]:
    """The benchmark's own app (submits and reads, runs nothing)."""
    app = build_app(url, prefix, None)
    await app.start(worker=False)
    try:
        yield app
    finally:
        await app.close()
        await app.broker.close()
        await app.backend.close()


async def prepare(
    app: Flowrra, url: str, prefix: str, schedule_db: str, args: argparse.Namespace
) -> Samples:
    """Records, dead letters and schedules; prints how long each took."""
    backend, broker = app.backend, app.broker
    assert isinstance(backend, RedisBackend)
    assert isinstance(broker, RedisBroker)
    started = time.perf_counter()
    samples = await fill(backend, args.results, args.batch)
    took = time.perf_counter() - started
    print(f"stored {args.results:,} records in {took:.1f} s ({args.results / took:,.0f}/s)")
    await bury_dead_letters(broker, DEAD_LETTERS)
    schedules = await add_schedules(url, prefix, schedule_db)
    print(f"buried {DEAD_LETTERS} dead letters, made {schedules} schedules", flush=True)
    return samples


async def start_processes(
    app: Flowrra, processes: Processes, port: int, schedule_db: str, args: argparse.Namespace
) -> None:
    """The workers (waited for until alive) and the dashboard (waited for until it answers)."""
    for n in range(args.workers):
        await processes.start(
            f"worker-{n}",
            "worker",
            "dashboard_bench_app:app",
            "--concurrency",
            "16",
            "--log-level",
            "WARNING",
        )
    took = await wait_until(
        alive_workers(FlowrraManager(app), args.workers),
        120.0,
        f"{args.workers} workers were not alive",
        processes,
    )
    print(f"{args.workers} workers alive after {took:.1f} s", flush=True)
    started = time.perf_counter()
    await run_real_tasks(app, REAL_TASKS)
    print(f"the workers ran {REAL_TASKS} tasks in {time.perf_counter() - started:.1f} s")
    ui_env = {**processes.env, SCHEDULE_DB_ENV: schedule_db}
    await processes.start(
        "ui",
        "ui",
        "dashboard_bench_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
        env=ui_env,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        took = await wait_until(
            dashboard_answers(client), 60.0, "the dashboard did not answer", processes
        )
    print(f"dashboard answering after {took:.1f} s", flush=True)


async def run(args: argparse.Namespace) -> None:
    prefix = f"flowrra-bench-dash-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, URL_ENV: args.url, PREFIX_ENV: prefix}
    with tempfile.TemporaryDirectory(prefix="flowrra-bench-dash-") as folder:
        schedule_db = f"sqlite:///{folder}/schedules.db"
        processes = Processes(env, Path(folder))
        port = free_port()
        try:
            async with producer(args.url, prefix) as app:
                samples = await prepare(app, args.url, prefix, schedule_db, args)
                await start_processes(app, processes, port, schedule_db, args)
                counts = {s.value: n for s, n in (await app.backend.count_by_status()).items() if n}
                processes.check_alive()
                rows = await measure(f"http://127.0.0.1:{port}", args.url, samples, args)
                processes.check_alive()
            print_table(rows, counts, args)
        finally:
            await processes.stop_all()
            removed = await delete_prefix(args.url, prefix)
            print(f"removed {removed:,} keys of {prefix}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5_000, help="records stored at once")
    args = parser.parse_args(argv)
    if args.results < 1000 or args.workers < 1 or args.requests < 1 or args.batch < 1:
        parser.error("need --results >= 1000 and positive --workers, --requests, --batch")
    return args


async def _main(args: argparse.Namespace) -> None:
    """``run`` that a SIGTERM cancels like Ctrl-C, so the clean-up always runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run(args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; processes stopped and keys removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
