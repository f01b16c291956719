"""Fixtures for the scheduler tests: one store per backend kind, a registry, a recorder."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg  # type: ignore[import-untyped]
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _services import require_mariadb, require_postgresql
from flowrra.registry import TaskRegistry
from flowrra.scheduler.backends import (
    BaseSchedulerBackend,
    SQLiteSchedulerBackend,
    get_scheduler_backend,
)
from flowrra.scheduler.backends.mysql import parse_mysql_url

STORE_KINDS = ["sqlite-file", "sqlite-memory", "postgresql", "mariadb"]
T0 = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


class SimClock:
    """A settable clock for :class:`Scheduler` (``clock=...``)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class Submission:
    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    task_id: str
    priority: int
    max_retries: int
    retry_delay: float
    at: datetime


@dataclass
class Recorder:
    """A submit callback that records every call (and can be told to fail)."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    calls: list[Submission] = field(default_factory=list)
    fail: bool = False

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
        if self.fail:
            raise ConnectionError("broker unavailable")
        self.calls.append(
            Submission(
                task_name, args, kwargs, task_id, priority, max_retries, retry_delay, self.clock()
            )
        )
        return task_id

    @property
    def task_ids(self) -> list[str]:
        return [call.task_id for call in self.calls]


class Store:
    """One schedule store under a table unique to the test; opens backends on it."""

    def __init__(self, kind: str, url: str, table: str) -> None:
        self.kind = kind
        self.url = url
        self.table = table
        self._opened: list[BaseSchedulerBackend] = []
        self._memory: SQLiteSchedulerBackend | None = None

    def open(self) -> BaseSchedulerBackend:
        """A backend on this store (for ``:memory:``, the one shared backend object)."""
        if self.kind == "sqlite-memory":
            if self._memory is None:
                self._memory = SQLiteSchedulerBackend(":memory:", table_name=self.table)
                self._opened.append(self._memory)
            return self._memory
        backend = get_scheduler_backend(self.url, table_name=self.table)
        self._opened.append(backend)
        return backend

    async def close_all(self) -> None:
        for backend in self._opened:
            await backend.close()

    async def drop(self) -> None:
        """Remove the test's tables from a server database."""
        tables = f"{self.table}, {self.table}_schema"
        if self.kind == "postgresql":
            conn = await asyncpg.connect(self.url)
            await conn.execute(f"DROP TABLE IF EXISTS {tables}")
            await conn.close()
        elif self.kind == "mariadb":
            conn = await aiomysql.connect(**parse_mysql_url(self.url), autocommit=True)
            async with conn.cursor() as cur:
                await cur.execute(f"DROP TABLE IF EXISTS {tables}")
            conn.close()


def store_url(kind: str, tmp_path: Path) -> str:
    """The URL of a store of ``kind`` (skips when its server is unreachable)."""
    if kind == "postgresql":
        return require_postgresql()
    if kind == "mariadb":
        return require_mariadb()
    if kind == "sqlite-file":
        return f"sqlite:///{tmp_path / 'schedules.db'}"
    return "sqlite:///:memory:"


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind: str = request.param
    if kind in ("postgresql", "mariadb"):
        request.applymarker(pytest.mark.service)
    result = Store(kind, store_url(kind, tmp_path), f"sched_{uuid.uuid4().hex[:12]}")
    try:
        yield result
    finally:
        await result.close_all()
        await result.drop()


@pytest.fixture
def backend(store: Store) -> BaseSchedulerBackend:
    return store.open()


@pytest.fixture
async def memory_backend() -> AsyncIterator[SQLiteSchedulerBackend]:
    backend = SQLiteSchedulerBackend(":memory:")
    yield backend
    await backend.close()


@pytest.fixture
def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task
    async def job(*args: Any, **kwargs: Any) -> None:
        return None

    @tasks.task(name="report")
    async def report(*args: Any, **kwargs: Any) -> None:
        return None

    return tasks


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def recorder(clock: SimClock) -> Recorder:
    return Recorder(clock)
