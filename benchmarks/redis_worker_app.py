"""The worker process of ``bench_redis.py``: one app serving the no-op task until SIGTERM.

    python benchmarks/redis_worker_app.py URL PREFIX CONCURRENCY

Prints ``ready`` once the worker runs; on SIGTERM or SIGINT it stops and exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.config import BackendConfig, BrokerConfig


async def noop(value: int) -> int:
    """The benchmark's task: returns its argument."""
    return value


def build_app(url: str, prefix: str, concurrency: int) -> Flowrra:
    """An app on Redis at ``url`` under ``prefix`` with ``concurrency`` IO slots."""
    app = Flowrra(
        Config(
            broker=BrokerConfig(url=RedisBroker(url, prefix=prefix)),
            backend=BackendConfig(url=RedisBackend(url, prefix=prefix)),
            executor=ExecutorConfig(io_workers=concurrency),
        )
    )
    app.task(name="noop")(noop)
    return app


async def serve(url: str, prefix: str, concurrency: int) -> None:
    """Run the worker until a signal arrives."""
    app = build_app(url, prefix, concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    print("ready", flush=True)
    await stop.wait()
    await app.stop(timeout=5.0)
    await app.broker.close()
    await app.backend.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
