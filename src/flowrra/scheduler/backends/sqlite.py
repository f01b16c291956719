"""SQLite schedule store (aiosqlite).

Several processes may share one database file: every write runs in a
``BEGIN IMMEDIATE`` transaction, which SQLite serialises across processes, and the file
is switched to WAL mode so readers do not block. ``:memory:`` is private to one backend
object (share that object between schedulers in one process to share the store).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowrra.scheduler.backends._sql import (
    SCHEMA_VERSION,
    Statements,
    check_schema_version,
    claim_row,
    create_table_sql,
    epoch_to_datetime,
    row_to_task,
    set_enabled_query,
    task_to_row,
    to_epoch,
    update_params,
)
from flowrra.scheduler.backends.base import (
    DEFAULT_TABLE,
    BaseSchedulerBackend,
    Fire,
    Planner,
    check_table_name,
    utc_now,
)
from flowrra.scheduler.models import ScheduledTask
from flowrra.scheduler.timing import Claim

if TYPE_CHECKING:
    import aiosqlite

DEFAULT_DATABASE = ".flowrra_schedule.db"
_TYPES = {
    "id": "TEXT NOT NULL",
    "definition_key": "TEXT NOT NULL",
    "task_name": "TEXT NOT NULL",
    "schedule_type": "TEXT NOT NULL",
    "schedule": "TEXT NOT NULL",
    "timezone": "TEXT",
    "args": "TEXT NOT NULL",
    "kwargs": "TEXT NOT NULL",
    "enabled": "INTEGER NOT NULL",
    "catch_up": "INTEGER NOT NULL",
    "last_run_at": "REAL",
    "next_run_at": "REAL",
    "created_at": "REAL NOT NULL",
    "updated_at": "REAL NOT NULL",
    "description": "TEXT",
    "max_retries": "INTEGER NOT NULL",
    "retry_delay": "REAL NOT NULL",
    "priority": "INTEGER NOT NULL",
}


def _import_driver() -> Any:
    try:
        import aiosqlite  # noqa: PLC0415 (optional driver, imported on use)
    except ImportError as exc:
        raise ImportError(
            "the SQLite schedule store needs aiosqlite: pip install 'flowrra[scheduler]'"
        ) from exc
    return aiosqlite


class SQLiteSchedulerBackend(BaseSchedulerBackend):
    """Schedules in a SQLite file (default ``.flowrra_schedule.db``) or ``:memory:``.

    ``table_name`` names the schedule table (its schema version lives in
    ``<table_name>_schema``). ``busy_timeout`` is how long a write waits for another
    process holding the database lock, in seconds.
    """

    def __init__(
        self,
        database: str = DEFAULT_DATABASE,
        *,
        table_name: str = DEFAULT_TABLE,
        busy_timeout: float = 30.0,
    ) -> None:
        self._driver = _import_driver()
        self.database = database
        self.busy_timeout = busy_timeout
        self._sql = Statements(check_table_name(table_name), lambda _: "?")
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SQLiteSchedulerBackend({self.database!r}, table_name={self._sql.table!r})"

    async def _connection(self) -> aiosqlite.Connection:
        """The open connection (caller holds ``_lock``); connects and migrates once.

        SQLite can answer "database is locked" without waiting while another process
        switches the file to WAL mode, so opening is retried until ``busy_timeout``.
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.01
        while self._conn is None:
            try:
                self._conn = await self._open()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
        return self._conn

    async def _open(self) -> aiosqlite.Connection:
        conn: aiosqlite.Connection = await self._driver.connect(
            self.database, timeout=self.busy_timeout, isolation_level=None
        )
        try:
            if self.database != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL never corrupts the file; a power cut may undo the
                # last commits, which at worst fires those runs again with the same ids.
                await conn.execute("PRAGMA synchronous=NORMAL")
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        sql = self._sql
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {sql.version_table} (version INTEGER NOT NULL)"
            )
            async with conn.execute(f"SELECT MAX(version) FROM {sql.version_table}") as cur:
                row = await cur.fetchone()
            if row is None or row[0] is None:
                await conn.execute(create_table_sql(sql.table, _TYPES))
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {sql.table}_due ON {sql.table} "
                    "(enabled, next_run_at)"
                )
                await conn.execute(
                    f"INSERT INTO {sql.version_table} (version) VALUES (?)", (SCHEMA_VERSION,)
                )
            else:
                check_schema_version(int(row[0]), sql.table)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield await self._connection()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        async with self._lock:
            conn = await self._connection()
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def _fetch(self, query: str, params: tuple[Any, ...] = ()) -> list[ScheduledTask]:
        async with self._read() as conn, conn.execute(query, params) as cur:
            return [row_to_task(row) for row in await cur.fetchall()]

    async def _fetch_one(
        self, conn: aiosqlite.Connection, query: str, params: tuple[Any, ...]
    ) -> ScheduledTask | None:
        async with conn.execute(query, params) as cur:
            row = await cur.fetchone()
        return None if row is None else row_to_task(row)

    async def create(self, task: ScheduledTask) -> ScheduledTask:
        """See :meth:`BaseSchedulerBackend.create`."""
        row = task_to_row(task)
        async with self._write() as conn:
            existing = await self._fetch_one(conn, self._sql.by_key, (row[1],))
            if existing is not None:
                return existing
            if await self._fetch_one(conn, self._sql.get, (task.id,)) is not None:
                raise ValueError(f"schedule id {task.id!r} is already used by another schedule")
            await conn.execute(f"INSERT INTO {self._sql.table} {self._sql.insert_values}", row)
        return task

    async def update(self, task: ScheduledTask) -> bool:
        """See :meth:`BaseSchedulerBackend.update`."""
        async with self._write() as conn:
            cur = await conn.execute(self._sql.update, update_params(task, utc_now()))
            return cur.rowcount > 0

    async def set_enabled(
        self, task_id: str, enabled: bool, next_run_at: datetime | None = None
    ) -> bool:
        """See :meth:`BaseSchedulerBackend.set_enabled`."""
        query, params = set_enabled_query(self._sql, task_id, enabled, next_run_at)
        async with self._write() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount > 0

    async def delete(self, task_id: str) -> bool:
        """See :meth:`BaseSchedulerBackend.delete`."""
        async with self._write() as conn:
            cur = await conn.execute(self._sql.delete, (task_id,))
            return cur.rowcount > 0

    async def get(self, task_id: str) -> ScheduledTask | None:
        """See :meth:`BaseSchedulerBackend.get`."""
        async with self._read() as conn:
            return await self._fetch_one(conn, self._sql.get, (task_id,))

    async def find_by_definition_key(self, key: str) -> ScheduledTask | None:
        """See :meth:`BaseSchedulerBackend.find_by_definition_key`."""
        async with self._read() as conn:
            return await self._fetch_one(conn, self._sql.by_key, (key,))

    async def list_all(self) -> list[ScheduledTask]:
        """See :meth:`BaseSchedulerBackend.list_all`."""
        return await self._fetch(self._sql.list_all)

    async def list_enabled(self) -> list[ScheduledTask]:
        """See :meth:`BaseSchedulerBackend.list_enabled`."""
        return await self._fetch(self._sql.list_enabled)

    async def list_due(self, now: datetime | None = None) -> list[ScheduledTask]:
        """See :meth:`BaseSchedulerBackend.list_due`."""
        return await self._fetch(self._sql.list_due, (to_epoch(now or utc_now()),))

    async def next_due_at(self) -> datetime | None:
        """See :meth:`BaseSchedulerBackend.next_due_at`."""
        async with self._read() as conn, conn.execute(self._sql.next_due) as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else epoch_to_datetime(row[0])

    async def update_run_times(
        self, task_id: str, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        """See :meth:`BaseSchedulerBackend.update_run_times`."""
        params = (to_epoch(last_run_at), to_epoch(next_run_at), to_epoch(utc_now()), task_id)
        async with self._write() as conn:
            cur = await conn.execute(self._sql.update_run_times, params)
            return cur.rowcount > 0

    async def clear(self) -> int:
        """See :meth:`BaseSchedulerBackend.clear`."""
        async with self._write() as conn:
            cur = await conn.execute(self._sql.clear)
            return max(cur.rowcount, 0)

    async def claim_due(self, now: datetime, limit: int, plan: Planner, fire: Fire) -> list[Claim]:
        """Atomic claim: the whole pass runs inside one ``BEGIN IMMEDIATE`` transaction."""
        async with self._write() as conn:
            async with conn.execute(self._sql.claim, (to_epoch(now), limit)) as cur:
                rows = await cur.fetchall()
            done = await fire([plan(row_to_task(row), now) for row in rows])
            await conn.executemany(self._sql.advance, [claim_row(c, now) for c in done])
        return done

    async def close(self) -> None:
        """Close the connection (an in-memory database is lost)."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
