"""The app behind the browser tests: Redis broker and backend, a SQLite schedule store.

The worker process and the dashboard process import ``app``, configured from the
environment: ``FLOWRRA_TEST_REDIS_URL``, ``FLOWRRA_TEST_PREFIX`` (key prefix of broker and
backend), ``FLOWRRA_TEST_SCHEDULE_DB`` (the SQLite file of the schedules) and
``FLOWRRA_TEST_OUTPUT`` (a directory the tasks leave marks in). The tests build their
producer with :func:`make_app` and the same settings.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowrra import Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.config import BackendConfig, BrokerConfig, Config, ExecutorConfig


def make_app(url: str, prefix: str, schedules: str, output: Path) -> Flowrra:
    """An app on Redis at ``url`` under ``prefix`` with the tasks the dashboard shows."""
    app = Flowrra(
        Config(
            broker=BrokerConfig(url=RedisBroker(url, prefix=prefix, lease=5.0)),
            backend=BackendConfig(url=RedisBackend(url, prefix=prefix)),
            executor=ExecutorConfig(
                io_workers=4, cpu_workers=1, max_retries=0, heartbeat_interval=1.0
            ),
        )
    )
    app.create_scheduler(f"sqlite:///{schedules}", check_interval=1.0)

    @app.task(name="send_report")
    async def send_report(recipient: str, seconds: float = 0.0) -> str:
        """Wait ``seconds`` (a report being built), then answer who got it."""
        await asyncio.sleep(seconds)
        return f"report sent to {recipient}"

    @app.task(name="charge_card", max_retries=0)
    async def charge_card(order: int) -> str:
        """Declined the first time an order is charged, accepted the next time."""
        mark = output / f"declined-{order}"
        if not mark.exists():
            mark.touch()
            raise RuntimeError(f"card declined for order {order}")
        return f"order {order} charged"

    return app


app = make_app(
    os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("FLOWRRA_TEST_PREFIX", "flowrra-browser"),
    os.environ.get("FLOWRRA_TEST_SCHEDULE_DB", "browser-schedules.db"),
    Path(os.environ.get("FLOWRRA_TEST_OUTPUT", ".")),
)
