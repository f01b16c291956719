"""An app for the ``flowrra worker`` tests, configured from environment variables.

``FLOWRRA_TEST_REDIS_URL``, ``FLOWRRA_TEST_PREFIX`` (key prefix of broker and backend),
``FLOWRRA_TEST_OUTPUT`` (directory of the effect files), ``FLOWRRA_TEST_LEASE`` (s),
``FLOWRRA_TEST_PREFETCH`` and ``FLOWRRA_TEST_MAX_DELIVERIES``.

Every task records what it does outside Redis: one line ``<event> <key>`` appended to
``<output>/effects-<pid>.log`` with a single ``write`` on an ``O_APPEND`` descriptor, so a
line is either written whole or not at all, even when the process is killed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowrra import Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.config import BackendConfig, BrokerConfig, Config, ExecutorConfig

_descriptor: int | None = None


def record(event: str, key: str) -> None:
    """Append ``<event> <key>`` to this process's effect file."""
    global _descriptor  # noqa: PLW0603 - one descriptor per process, opened on first use
    if _descriptor is None:
        output = Path(os.environ.get("FLOWRRA_TEST_OUTPUT", "."))
        path = output / f"effects-{os.getpid()}.log"
        _descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_descriptor, f"{event} {key}\n".encode())


def read_effects(output: Path) -> list[tuple[str, str]]:
    """Every ``(event, key)`` recorded under ``output`` by any process."""
    effects: list[tuple[str, str]] = []
    for path in sorted(output.glob("effects-*.log")):
        for line in path.read_text().splitlines():
            event, _, key = line.partition(" ")
            effects.append((event, key))
    return effects


def make_app(
    url: str,
    prefix: str,
    *,
    lease: float = 2.0,
    prefetch: int = 16,
    max_deliveries: int = 3,
) -> Flowrra:
    """An app on Redis at ``url`` with keys under ``prefix``, with the test tasks."""
    broker = RedisBroker(
        url, prefix=prefix, lease=lease, prefetch=prefetch, max_deliveries=max_deliveries
    )
    backend = RedisBackend(url, prefix=prefix)
    app = Flowrra(
        Config(
            broker=BrokerConfig(url=broker),
            backend=BackendConfig(url=backend),
            executor=ExecutorConfig(io_workers=4, cpu_workers=1, max_retries=0),
        )
    )

    @app.task(name="work")
    async def work(key: str, milliseconds: int) -> str:
        """Sleep, then record ``done``."""
        await asyncio.sleep(milliseconds / 1000)
        record("done", key)
        return key

    @app.task(name="sleepy")
    async def sleepy(key: str, seconds: float) -> str:
        """Record ``start``, sleep ``seconds``, record ``done``."""
        record("start", key)
        await asyncio.sleep(seconds)
        record("done", key)
        return key

    @app.task(name="poison")
    async def poison(key: str) -> None:
        """Record ``start``, then kill the whole worker process."""
        record("start", key)
        await asyncio.sleep(0.5)  # lets the short tasks running beside it finish first
        os._exit(1)

    return app


app = make_app(
    os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("FLOWRRA_TEST_PREFIX", "flowrra-test"),
    lease=float(os.environ.get("FLOWRRA_TEST_LEASE", "2.0")),
    prefetch=int(os.environ.get("FLOWRRA_TEST_PREFETCH", "16")),
    max_deliveries=int(os.environ.get("FLOWRRA_TEST_MAX_DELIVERIES", "3")),
)
