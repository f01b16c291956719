"""In-process throughput and latency: flowrra beside a raw asyncio baseline.

Throughput: submit N no-op async tasks, then wait for every result; tasks/s from the first
submit to the last result. Latency: one task at a time, submit to result in the caller.
The baseline is the least any in-process queue must do: an ``asyncio.PriorityQueue``,
the same number of worker coroutines and one future per task, measured in the same run.

    python benchmarks/bench_inprocess.py [--tasks 20000] [--workers 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowrra import Config, ExecutorConfig, Flowrra


@dataclass
class Figures:
    """One benchmark's outcome."""

    tasks_per_second: float
    p50_ms: float
    p99_ms: float


async def noop(value: int) -> int:
    return value


# -- raw baseline ---------------------------------------------------------------------


class RawQueue:
    """A priority queue, worker coroutines and a future per task: nothing else."""

    def __init__(self, workers: int) -> None:
        self.queue: asyncio.PriorityQueue[tuple[int, int, Any, int, asyncio.Future[Any]]]
        self.queue = asyncio.PriorityQueue()
        self.sequence = itertools.count()
        self.workers = [asyncio.create_task(self._work()) for _ in range(workers)]

    async def _work(self) -> None:
        while True:
            _, _, fn, arg, future = await self.queue.get()
            future.set_result(await fn(arg))

    async def submit(self, value: int) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((0, next(self.sequence), noop, value, future))
        return future

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


async def raw_throughput(tasks: int, workers: int) -> float:
    raw = RawQueue(workers)
    started = time.perf_counter()
    futures = [await raw.submit(i) for i in range(tasks)]
    for future in futures:
        await future
    elapsed = time.perf_counter() - started
    await raw.close()
    return tasks / elapsed


async def raw_latency(samples: int, workers: int) -> list[float]:
    raw = RawQueue(workers)
    latencies = []
    for i in range(samples):
        started = time.perf_counter()
        await (await raw.submit(i))
        latencies.append(time.perf_counter() - started)
    await raw.close()
    return latencies


# -- flowrra ----------------------------------------------------------------------------


def make_app(workers: int, queue_size: int) -> tuple[Flowrra, Any]:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=workers, max_queue_size=queue_size)))
    task = app.task(name="noop")(noop)
    return app, task


async def flowrra_throughput(tasks: int, workers: int, queue_size: int) -> float:
    app, task = make_app(workers, queue_size)
    async with app:
        started = time.perf_counter()
        ids = [await app.submit(task, i) for i in range(tasks)]
        for task_id in ids:
            await app.wait_for_result(task_id)
        elapsed = time.perf_counter() - started
    return tasks / elapsed


async def flowrra_latency(samples: int, workers: int) -> list[float]:
    app, task = make_app(workers, 1000)
    latencies = []
    async with app:
        for i in range(samples):
            started = time.perf_counter()
            await app.wait_for_result(await app.submit(task, i))
            latencies.append(time.perf_counter() - started)
    return latencies


# -- reporting --------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def best_of(repeat: int, run: Callable[[], Awaitable[float]]) -> float:
    return max([await run() for _ in range(repeat)])


async def measure(args: argparse.Namespace) -> dict[str, Figures]:
    figures: dict[str, Figures] = {}
    n, w, r = args.tasks, args.workers, args.repeat
    raw_tps = await best_of(r, lambda: raw_throughput(n, w))
    unbounded = await best_of(r, lambda: flowrra_throughput(n, w, n))
    bounded = await best_of(r, lambda: flowrra_throughput(n, w, 1000))
    raw_lat = await raw_latency(args.samples, w)
    app_lat = await flowrra_latency(args.samples, w)
    ms = 1000.0
    figures["raw asyncio baseline"] = Figures(
        raw_tps, percentile(raw_lat, 0.5) * ms, percentile(raw_lat, 0.99) * ms
    )
    figures["flowrra (queue bound = N)"] = Figures(
        unbounded, percentile(app_lat, 0.5) * ms, percentile(app_lat, 0.99) * ms
    )
    figures["flowrra (default bound 1000)"] = Figures(bounded, float("nan"), float("nan"))
    return figures


def print_table(figures: dict[str, Figures], args: argparse.Namespace) -> None:
    baseline = figures["raw asyncio baseline"]
    print(
        f"\nIn-process: {args.tasks:,} no-op tasks, {args.workers} worker coroutines, "
        f"best of {args.repeat}; latency over {args.samples} sequential tasks"
    )
    header = f"{'mode':<30} {'tasks/s':>10} {'vs raw':>7} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    for name, fig in figures.items():
        ratio = fig.tasks_per_second / baseline.tasks_per_second
        print(
            f"{name:<30} {fig.tasks_per_second:>10,.0f} {ratio:>7.2f} "
            f"{fig.p50_ms:>8.3f} {fig.p99_ms:>8.3f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2_000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print_table(asyncio.run(measure(args)), args)


if __name__ == "__main__":
    main()
