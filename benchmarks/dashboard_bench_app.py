"""The app of ``bench_dashboard.py``, configured from environment variables.

    FLOWRRA_BENCH_REDIS_URL=redis://127.0.0.1:6379/9 FLOWRRA_BENCH_PREFIX=flowrra-bench-x \
        flowrra worker dashboard_bench_app:app
    FLOWRRA_BENCH_SCHEDULE_DB=sqlite:////tmp/x/schedules.db ... flowrra ui dashboard_bench_app:app

``FLOWRRA_BENCH_PREFIX`` is required (every key of a run is under it); the Redis URL
defaults to db 9 of the local server. When ``FLOWRRA_BENCH_SCHEDULE_DB`` names a
scheduler store, the app gets a scheduler on it (the benchmark gives one only to the
dashboard process, so the workers do not all run the schedule loop). The tasks are a
small web shop's: their names are :data:`TASK_NAMES`, each returns quickly.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.config import BackendConfig, BrokerConfig

URL_ENV = "FLOWRRA_BENCH_REDIS_URL"
PREFIX_ENV = "FLOWRRA_BENCH_PREFIX"
SCHEDULE_DB_ENV = "FLOWRRA_BENCH_SCHEDULE_DB"
DEFAULT_URL = "redis://127.0.0.1:6379/9"

#: Registered task names, in the order the benchmark's records cycle through them.
TASK_NAMES = ("send_email", "resize_image", "sync_account", "generate_report", "charge_card")


async def send_email(to: str, subject: str, body: str, **headers: Any) -> dict[str, Any]:
    """Pretend to send a message; returns its delivery receipt."""
    await asyncio.sleep(0)
    return {"to": to, "subject": subject, "bytes": len(body), "headers": sorted(headers)}


async def resize_image(path: str, sizes: list[int], **options: Any) -> list[str]:
    """Pretend to resize an image; returns the paths of the thumbnails."""
    return [f"{path}.{size}.webp" for size in sizes]


async def sync_account(account_id: int, since: str, **options: Any) -> dict[str, Any]:
    """Pretend to sync an account; returns how many items changed."""
    return {"account_id": account_id, "since": since, "changed": account_id % 17}


async def generate_report(kind: str, rows: list[dict[str, Any]], **options: Any) -> str:
    """Pretend to render a report; returns where it was written."""
    return f"/reports/{kind}-{len(rows)}.pdf"


async def charge_card(order_id: str, amount_cents: int, **options: Any) -> dict[str, Any]:
    """Pretend to charge a card; returns the charge."""
    return {"order_id": order_id, "amount_cents": amount_cents, "charge": f"ch_{order_id}"}


def build_app(url: str, prefix: str, schedule_db: str | None) -> Flowrra:
    """The benchmark's app on Redis at ``url`` under ``prefix``; with a scheduler on
    ``schedule_db`` when it is given. Records are kept for ever (no TTL)."""
    app = Flowrra(
        Config(
            broker=BrokerConfig(url=RedisBroker(url, prefix=prefix)),
            backend=BackendConfig(url=RedisBackend(url, prefix=prefix)),
            executor=ExecutorConfig(io_workers=16, cpu_workers=1),
        )
    )
    for function in (send_email, resize_image, sync_account, generate_report, charge_card):
        app.task(name=function.__name__)(function)
    if schedule_db:
        app.create_scheduler(schedule_db, check_interval=30.0)
    return app


def app_from_environment() -> Flowrra:
    """:func:`build_app` with the settings of the environment; ``SystemExit`` without a
    prefix."""
    prefix = os.environ.get(PREFIX_ENV)
    if not prefix:
        raise SystemExit(f"dashboard_bench_app: set {PREFIX_ENV} (the run's key prefix)")
    url = os.environ.get(URL_ENV, DEFAULT_URL)
    return build_app(url, prefix, os.environ.get(SCHEDULE_DB_ENV) or None)


app = app_from_environment() if os.environ.get(PREFIX_ENV) else None
