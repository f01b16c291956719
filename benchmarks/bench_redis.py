"""Redis broker and backend: flowrra end to end beside raw Redis round trips.

Raw limits, measured with redis-py asyncio in the same run: one ``PING`` at a time, one
``LPUSH`` + ``BRPOP`` at a time, and pipelines of 100 ``LPUSH`` / 100 ``RPOP`` per round
trip. flowrra: one worker process (``python -m flowrra worker redis_worker_app:app``, the
real worker command) and the producer here, an app made with
``Flowrra.from_urls(broker=RedisBroker, backend=RedisBackend)`` started with
``start(worker=False)``:

- burst: N no-op tasks submitted by N concurrent coroutines, wall time from the first
  submit until every result was read (``wait_for_result``);
- sequential: the same N submitted one after another, then every result awaited;
- latency: one task at a time, submit to result in the caller.

Below the table: the CPU time (user + system) the producer, the worker and Redis each
spent per task in the leanest burst, a figure that varies less than the rates on a shared
machine. Each run uses a fresh key prefix on the chosen database and deletes its keys
afterwards.

With a cluster URL (``--url redis+cluster://127.0.0.1:7001``) flowrra runs on the Redis
Cluster; the raw rows then use redis-py's cluster client (the key's node; ``PING`` to one
node) and the Redis CPU is that of every primary.

    python benchmarks/bench_redis.py [--url redis://127.0.0.1:6379/9] [--tasks 10000]
                                     [--no-gc-tuning]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from flowrra import Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.redis_connection import CLUSTER_SCHEMES

HERE = Path(__file__).parent
Plain = aioredis.Redis | RedisCluster
NAN = float("nan")
WAIT = 120.0  # seconds a wait may take before the run is given up (a dead worker)


@dataclass
class Row:
    """One line of the table: a rate (per second) and, for latency rows, percentiles."""

    name: str
    per_second: float
    unit: str
    p50_ms: float = NAN
    p99_ms: float = NAN


@dataclass
class CpuPerTask:
    """CPU time (user + system) each process spent per task during the best burst, in µs."""

    producer: float = NAN
    worker: float = NAN
    redis: float = NAN

    @property
    def total(self) -> float:
        return self.producer + self.worker + self.redis


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return NAN
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_client(url: str) -> Plain:
    """A redis-py client for ``url``; a cluster client for a cluster URL."""
    scheme, _, rest = url.partition("://")
    cluster_scheme = CLUSTER_SCHEMES.get(scheme.lower())
    if cluster_scheme is not None:
        return RedisCluster.from_url(f"{cluster_scheme}://{rest}")
    return aioredis.Redis.from_url(url)


async def redis_cpu_seconds(client: Plain) -> float:
    """User + system CPU seconds of the Redis server, or of every primary of a cluster
    (``INFO cpu``)."""
    if isinstance(client, RedisCluster):
        per_node = await client.info("cpu", target_nodes=RedisCluster.PRIMARIES)
        infos = list(per_node.values())
    else:
        infos = [await client.info("cpu")]
    return sum(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]) for info in infos)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def best_of(repeat: int, run: Callable[[], Awaitable[float]]) -> float:
    return max([await run() for _ in range(repeat)])


# -- raw Redis ------------------------------------------------------------------------


async def raw_ping(client: Plain, count: int) -> list[float]:
    if isinstance(client, RedisCluster):  # one node, not every one
        node = client.get_default_node()
        ping: Callable[[], Awaitable[object]] = lambda: client.ping(target_nodes=node)  # noqa: E731
    else:
        ping = client.ping
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await ping()
        times.append(time.perf_counter() - started)
    return times


async def raw_push_pop(client: Plain, key: str, count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        await client.lpush(key, i)
        await client.brpop([key], timeout=1)
        times.append(time.perf_counter() - started)
    return times


async def raw_pipelined(client: Plain, key: str, items: int, width: int) -> float:
    started = time.perf_counter()
    for _ in range(items // width):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(width):
                pipe.lpush(key, i)
            await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(width):
                pipe.rpop(key)
            await pipe.execute()
    return items / (time.perf_counter() - started)


async def measure_raw(url: str, prefix: str, args: argparse.Namespace) -> list[Row]:
    client = plain_client(url)
    key = f"{prefix}:raw"
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()
        pings = await raw_ping(client, args.samples)
        best_ping = await best_of(args.repeat, lambda: _rate(raw_ping(client, args.samples)))
        trips = await raw_push_pop(client, key, args.samples)
        best_trip = await best_of(args.repeat, lambda: _rate(raw_push_pop(client, key, 2000)))
        piped = await best_of(args.repeat, lambda: raw_pipelined(client, key, args.tasks, 100))
    finally:
        await client.delete(key)
        await client.aclose()
    return [
        Row("raw PING, one at a time", best_ping, "trips/s", *_ms(pings)),
        Row("raw LPUSH+BRPOP, one at a time", best_trip, "tasks/s", *_ms(trips)),
        Row("raw LPUSH/RPOP pipelines of 100", piped, "items/s"),
    ]


async def _rate(run: Awaitable[list[float]]) -> float:
    times = await run
    return len(times) / sum(times)


def _ms(times: list[float]) -> tuple[float, float]:
    return percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000


# -- flowrra ------------------------------------------------------------------------


async def noop(value: int) -> int:
    return value


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


class Bench:
    """A worker process and a producer app on one fresh prefix."""

    def __init__(
        self, url: str, prefix: str, concurrency: int, worker_options: tuple[str, ...] = ()
    ) -> None:
        self.url, self.prefix, self.concurrency = url, prefix, concurrency
        self.worker_options = worker_options
        self._drain: asyncio.Future[None] | None = None
        self.app = Flowrra.from_urls(
            broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix)
        )
        self.task = self.app.task(name="noop")(noop)
        self.worker: asyncio.subprocess.Process | None = None
        self.monitor = plain_client(url)
        self.burst_cpu = CpuPerTask()

    async def __aenter__(self) -> Bench:
        environment = dict(
            os.environ,
            FLOWRRA_BENCH_URL=self.url,
            FLOWRRA_BENCH_PREFIX=self.prefix,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        )
        self.worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowrra",
            "worker",
            "redis_worker_app:app",
            "--concurrency",
            str(self.concurrency),
            *self.worker_options,
            env=environment,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await self._until_worker_started()
            await self.app.start(worker=False)
            await self.warm_up()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _until_worker_started(self) -> None:
        """Wait for the worker's "worker started" log line (its log then goes on to
        stderr, read and dropped so the pipe never fills)."""
        assert self.worker is not None
        stderr = self.worker.stderr
        assert stderr is not None
        async with asyncio.timeout(30):
            while b"worker started" not in (line := await stderr.readline()):
                if not line:
                    raise RuntimeError("the worker process exited before it started")
        self._drain = asyncio.ensure_future(_drain(stderr))

    async def warm_up(self) -> None:
        ids = await asyncio.gather(*(self.app.submit(self.task, i) for i in range(200)))
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(self.app.wait_for_result(task_id) for task_id in ids))

    async def __aexit__(self, *exc: object) -> None:
        if self.worker is not None:
            if self.worker.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it died on its own
                    self.worker.terminate()
            await self.worker.wait()
        if self._drain is not None:
            await self._drain
        await self.app.stop()
        broker, backend = self.app.broker, self.app.backend
        assert isinstance(broker, RedisBroker)
        assert isinstance(backend, RedisBackend)
        await backend.clear()
        await broker.purge()
        await broker.close()
        await backend.close()
        leftovers = [key async for key in self.monitor.scan_iter(match=f"{self.prefix}:*")]
        if leftovers:  # the worker's telemetry
            await self.monitor.delete(*leftovers)
        await self.monitor.aclose()

    async def cpu_seconds(self) -> tuple[float, float, float]:
        assert self.worker is not None
        return (
            time.process_time(),
            process_cpu_seconds(self.worker.pid),
            await redis_cpu_seconds(self.monitor),
        )

    async def burst(self, tasks: int) -> float:
        app, task = self.app, self.task
        cpu_before = await self.cpu_seconds()
        started = time.perf_counter()
        ids = await asyncio.gather(*(app.submit(task, i) for i in range(tasks)))
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(app.wait_for_result(task_id) for task_id in ids))
        rate = tasks / (time.perf_counter() - started)
        cpu_after = await self.cpu_seconds()
        used = [
            (after - before) * 1e6 / tasks
            for before, after in zip(cpu_before, cpu_after, strict=True)
        ]
        if not self.burst_cpu.total <= sum(used):  # keep the leanest run (NaN: the first)
            self.burst_cpu = CpuPerTask(*used)
        return rate

    async def sequential(self, tasks: int) -> float:
        app, task = self.app, self.task
        started = time.perf_counter()
        ids = [await app.submit(task, i) for i in range(tasks)]
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(app.wait_for_result(task_id) for task_id in ids))
        return tasks / (time.perf_counter() - started)

    async def latency(self, samples: int) -> list[float]:
        app, task = self.app, self.task
        times = []
        async with asyncio.timeout(WAIT):
            for i in range(samples):
                started = time.perf_counter()
                await app.wait_for_result(await app.submit(task, i))
                times.append(time.perf_counter() - started)
        return times


async def measure_flowrra(
    url: str, prefix: str, args: argparse.Namespace
) -> tuple[list[Row], CpuPerTask]:
    worker_options = () if args.gc_tuning else ("--no-gc-tuning",)
    async with Bench(url, prefix, args.concurrency, worker_options) as bench:
        burst = await best_of(args.repeat, lambda: bench.burst(args.tasks))
        sequential = await best_of(args.repeat, lambda: bench.sequential(args.tasks))
        best: list[float] | None = None
        for _ in range(args.repeat):
            times = await bench.latency(args.latency_samples)
            if best is None or percentile(times, 0.5) < percentile(best, 0.5):
                best = times
        assert best is not None
    rows = [
        Row("flowrra burst (gather N submits)", burst, "tasks/s"),
        Row("flowrra sequential submits", sequential, "tasks/s"),
        Row("flowrra one task at a time", len(best) / sum(best), "tasks/s", *_ms(best)),
    ]
    return rows, bench.burst_cpu


# -- reporting ------------------------------------------------------------------------


def print_table(rows: list[Row], cpu: CpuPerTask, args: argparse.Namespace) -> None:
    print(
        f"\nRedis ({args.url}): {args.tasks:,} no-op tasks, one worker process with "
        f"{args.concurrency} IO slots, best of {args.repeat}; latency over "
        f"{args.latency_samples} sequential tasks (raw: {args.samples} round trips)"
    )
    header = f"{'mode':<36} {'per second':>11} {'unit':<8} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:<36} {row.per_second:>11,.0f} {row.unit:<8} "
            f"{row.p50_ms:>8.3f} {row.p99_ms:>8.3f}"
        )
    print(
        f"\nCPU per task in the leanest burst (user + system, µs): producer {cpu.producer:.0f}, "
        f"worker {cpu.worker:.0f}, Redis {cpu.redis:.0f}, total {cpu.total:.0f}"
    )


async def measure(args: argparse.Namespace) -> tuple[list[Row], CpuPerTask]:
    prefix = f"flowrra-bench-{uuid.uuid4().hex[:12]}"
    rows = await measure_raw(args.url, prefix, args)
    flowrra_rows, cpu = await measure_flowrra(args.url, prefix, args)
    return rows + flowrra_rows, cpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="run the worker with Python's garbage-collector defaults",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, cpu = asyncio.run(measure(args))
    print_table(rows, cpu, args)


if __name__ == "__main__":
    main()
