"""Shared fixtures of the dashboard tests: a memory app with real finished tasks.

``ui_app`` is a fresh, unstarted app with registered tasks and a scheduler on SQLite in
``tmp_path``; ``populated`` starts it on the test's event loop, runs a few tasks (some
succeed, one fails) and creates a schedule. ``SECRET`` is an argument value that the
``redact_secret`` hook hides.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.ui.bridge import LoopBridge, default_bridge

SECRET = "hunter2-s3cr3t"
REDACTED = "***"
USER, PASSWORD = "admin", "correct horse"


def build_ui_app(tmp_path: Path) -> Flowrra:
    """A memory app with tasks ``add``, ``boom`` (always fails, no retries), ``login``
    (takes a ``password``), ``nap`` (sleeps) and ``flaky`` (fails once, then succeeds);
    its scheduler stores schedules in ``tmp_path/schedules.db``."""
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=4)))
    calls: list[int] = []

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(max_retries=0)
    async def boom(label: str) -> None:
        raise RuntimeError(f"boom {label}")

    @app.task
    async def login(user: str, password: str) -> str:
        return f"token-for-{user}"

    @app.task
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @app.task(max_retries=1, retry_delay=0)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    app.create_scheduler(f"sqlite:///{tmp_path / 'schedules.db'}", check_interval=3600)
    return app


def redact_secret(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """A redaction hook: hides ``login``'s password wherever it appears."""
    if name == "login":
        if isinstance(record.get("kwargs"), dict) and "password" in record["kwargs"]:
            record["kwargs"]["password"] = REDACTED
        record["args"] = [REDACTED if a == SECRET else a for a in record.get("args") or []]
    return record


def same_origin(host: str = "testserver") -> dict[str, str]:
    """The headers the dashboard's JavaScript sends with a state-changing request."""
    return {"origin": f"http://{host}", "x-flowrra-csrf": "1"}


def basic_header(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    """The ``Authorization`` header of HTTP basic auth."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@dataclass
class Populated:
    """What ``populated`` made: the running app and the ids of its records."""

    app: Flowrra
    succeeded: list[str] = field(default_factory=list)
    failed: str = ""
    secret: str = ""
    schedule_id: str = ""


@pytest.fixture
def ui_app(tmp_path: Path) -> Flowrra:
    """A fresh, unstarted app (see :func:`build_ui_app`)."""
    return build_ui_app(tmp_path)


async def populate(app: Flowrra) -> Populated:
    """Start ``app``, run three ``add``s, one ``boom`` and one ``login`` with
    :data:`SECRET`, and create an interval schedule."""
    await app.start()
    made = Populated(app)
    made.succeeded = [await app.submit("add", i, i) for i in range(3)]
    made.failed = await app.submit("boom", "bad")
    made.secret = await app.submit("login", "ann", password=SECRET)
    await app.run_until_idle(timeout=10)
    assert app.scheduler is not None
    made.schedule_id = await app.scheduler.schedule_interval("add", 3600, args=(1, 2))
    return made


async def shutdown(app: Flowrra) -> None:
    """Close ``app`` and its scheduler's store."""
    await app.close()
    if app.scheduler is not None:
        await app.scheduler.close()


@pytest.fixture
async def populated(ui_app: Flowrra) -> AsyncIterator[Populated]:
    """``ui_app`` started on this test's loop with finished records and a schedule."""
    try:
        made = await populate(ui_app)
        yield made
    finally:
        await shutdown(ui_app)


# -- the sync frameworks (Flask, Django): the app runs on the bridge's loop ------------

LINK = re.compile(r'(?:href|src|action)="([^"]*)"')
"""Links, sources and form actions of a rendered page."""


def make_app() -> Flowrra:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=2, cpu_workers=1)))

    @app.task(name="double", max_retries=0)
    async def double(value: int) -> int:
        return value * 2

    @app.task(name="explode", max_retries=0)
    async def explode(reason: str) -> None:
        raise RuntimeError(reason)

    return app


@pytest.fixture
def bridge() -> LoopBridge:
    return default_bridge()


@pytest.fixture
def app(bridge: LoopBridge) -> Iterator[Flowrra]:
    """A memory app whose worker runs on the bridge loop, as the dashboard's requests do."""
    made = make_app()
    bridge.run(made.start())
    yield made
    bridge.run(made.stop())
