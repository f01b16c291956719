"""The worker app of ``bench_redis.py``, run by the real worker command:

    FLOWRRA_BENCH_URL=redis://127.0.0.1:6379/9 FLOWRRA_BENCH_PREFIX=... \\
        python -m flowrra worker redis_worker_app:app --concurrency 256

(from the ``benchmarks`` folder, or with it on ``PYTHONPATH``). The app serves the no-op
task on Redis at ``FLOWRRA_BENCH_URL`` under the key prefix ``FLOWRRA_BENCH_PREFIX``.
"""

from __future__ import annotations

import os

from flowrra import Config, Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.config import BackendConfig, BrokerConfig


async def noop(value: int) -> int:
    """The benchmark's task: returns its argument."""
    return value


def build_app(url: str, prefix: str) -> Flowrra:
    """An app on Redis at ``url`` under ``prefix`` serving the no-op task."""
    app = Flowrra(
        Config(
            broker=BrokerConfig(url=RedisBroker(url, prefix=prefix)),
            backend=BackendConfig(url=RedisBackend(url, prefix=prefix)),
        )
    )
    app.task(name="noop")(noop)
    return app


app = build_app(
    os.environ.get("FLOWRRA_BENCH_URL", "redis://127.0.0.1:6379/9"),
    os.environ.get("FLOWRRA_BENCH_PREFIX", "flowrra-bench"),
)
