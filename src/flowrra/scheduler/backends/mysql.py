"""MySQL and MariaDB schedule store (aiomysql).

Claiming locks due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` (MySQL 8.0+, MariaDB
10.6+) in a READ COMMITTED transaction that also advances them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

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

_TYPES = {
    "id": "VARCHAR(191) NOT NULL",
    "definition_key": "CHAR(64) NOT NULL",
    "task_name": "TEXT NOT NULL",
    "schedule_type": "VARCHAR(16) NOT NULL",
    "schedule": "TEXT NOT NULL",
    "timezone": "VARCHAR(64)",
    "args": "LONGTEXT NOT NULL",
    "kwargs": "LONGTEXT NOT NULL",
    "enabled": "BOOLEAN NOT NULL",
    "catch_up": "BOOLEAN NOT NULL",
    "last_run_at": "DOUBLE",
    "next_run_at": "DOUBLE",
    "created_at": "DOUBLE NOT NULL",
    "updated_at": "DOUBLE NOT NULL",
    "description": "TEXT",
    "max_retries": "INT NOT NULL",
    "retry_delay": "DOUBLE NOT NULL",
    "priority": "INT NOT NULL",
}
_TABLE_OPTIONS = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
_DUPLICATE_KEY = 1062
_DEADLOCK = 1213
_CREATE_ATTEMPTS = 5
#: pymysql.constants.CLIENT.FOUND_ROWS: UPDATE reports matched rows, not changed rows.
_CLIENT_FOUND_ROWS = 2


def _import_driver() -> Any:
    try:
        import aiomysql  # noqa: PLC0415 (optional driver, imported on use)
    except ImportError as exc:
        raise ImportError(
            "the MySQL/MariaDB schedule store needs aiomysql: pip install 'flowrra[mysql]'"
        ) from exc
    return aiomysql


def parse_mysql_url(url: str) -> dict[str, Any]:
    """Connection arguments from ``mysql://user:password@host:port/database``."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    if not database:
        raise ValueError(f"MySQL URL {url!r} names no database (mysql://user@host/dbname)")
    return {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else "",
        "db": unquote(database),
    }


class MySQLSchedulerBackend(BaseSchedulerBackend):
    """Schedules in MySQL or MariaDB, at ``database_url`` (``mysql://`` or ``mariadb://``).

    ``table_name`` names the schedule table (schema version in ``<table_name>_schema``);
    ``min_size``/``max_size`` bound the connection pool.
    """

    def __init__(
        self,
        database_url: str,
        *,
        table_name: str = DEFAULT_TABLE,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        self._driver = _import_driver()
        self._connect_args = parse_mysql_url(database_url)
        self._pool_size = (min_size, max_size)
        self._sql = Statements(check_table_name(table_name), lambda _: "%s")
        self._pool: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"MySQLSchedulerBackend(table_name={self._sql.table!r})"

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = await self._driver.create_pool(
                        minsize=self._pool_size[0],
                        maxsize=self._pool_size[1],
                        charset="utf8mb4",
                        autocommit=True,
                        client_flag=_CLIENT_FOUND_ROWS,
                        **self._connect_args,
                    )
                    try:
                        await self._migrate(pool)
                    except BaseException:
                        pool.close()
                        await pool.wait_closed()
                        raise
                    self._pool = pool
        return self._pool

    async def _migrate(self, pool: Any) -> None:
        """Create the tables once, under a named lock (DDL commits implicitly)."""
        sql = self._sql
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SELECT GET_LOCK(%s, 60)", (sql.version_table,))
            try:
                # Only when absent: MySQL warns on CREATE TABLE IF NOT EXISTS of a table.
                await cur.execute(
                    "SELECT COUNT(*) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = %s",
                    (sql.version_table,),
                )
                (exists,) = await cur.fetchone()
                if not exists:
                    await cur.execute(
                        f"CREATE TABLE {sql.version_table} (version INT NOT NULL){_TABLE_OPTIONS}"
                    )
                await cur.execute(f"SELECT MAX(version) FROM {sql.version_table}")
                (found,) = await cur.fetchone()
                if found is not None:
                    check_schema_version(int(found), sql.table)
                    return
                extra = f",\n  INDEX {sql.table}_due (enabled, next_run_at)"
                await cur.execute(create_table_sql(sql.table, _TYPES, _TABLE_OPTIONS, extra))
                await cur.execute(
                    f"INSERT INTO {sql.version_table} (version) VALUES (%s)", (SCHEMA_VERSION,)
                )
            finally:
                await cur.execute("SELECT RELEASE_LOCK(%s)", (sql.version_table,))

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[Any]:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.cursor() as cur:
            yield cur

    async def _fetch(self, query: str, params: tuple[Any, ...] = ()) -> list[ScheduledTask]:
        async with self._cursor() as cur:
            await cur.execute(query, params)
            return [row_to_task(row) for row in await cur.fetchall()]

    async def _fetch_one(self, query: str, params: tuple[Any, ...]) -> ScheduledTask | None:
        found = await self._fetch(query, params)
        return found[0] if found else None

    async def _execute(self, query: str, params: tuple[Any, ...] = ()) -> int:
        async with self._cursor() as cur:
            await cur.execute(query, params)
            return int(cur.rowcount)

    async def _insert(self, row: tuple[Any, ...]) -> bool:
        """Insert ``row``; False on a duplicate key. Retries a deadlock between racers."""
        query = f"INSERT INTO {self._sql.table} {self._sql.insert_values}"
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                await self._execute(query, row)
            except self._driver.IntegrityError as exc:
                if exc.args[0] != _DUPLICATE_KEY:
                    raise
                return False
            except self._driver.OperationalError as exc:
                if exc.args[0] != _DEADLOCK or attempt == _CREATE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
            else:
                return True
        return False

    async def create(self, task: ScheduledTask) -> ScheduledTask:
        """See :meth:`BaseSchedulerBackend.create`."""
        row = task_to_row(task)
        if await self._insert(row):
            return task
        existing = await self.find_by_definition_key(row[1])
        if existing is None:
            raise ValueError(f"schedule id {task.id!r} is already used by another schedule")
        return existing

    async def update(self, task: ScheduledTask) -> bool:
        """See :meth:`BaseSchedulerBackend.update`."""
        return await self._execute(self._sql.update, update_params(task, utc_now())) > 0

    async def set_enabled(
        self, task_id: str, enabled: bool, next_run_at: datetime | None = None
    ) -> bool:
        """See :meth:`BaseSchedulerBackend.set_enabled`."""
        query, params = set_enabled_query(self._sql, task_id, enabled, next_run_at)
        return await self._execute(query, params) > 0

    async def delete(self, task_id: str) -> bool:
        """See :meth:`BaseSchedulerBackend.delete`."""
        return await self._execute(self._sql.delete, (task_id,)) > 0

    async def get(self, task_id: str) -> ScheduledTask | None:
        """See :meth:`BaseSchedulerBackend.get`."""
        return await self._fetch_one(self._sql.get, (task_id,))

    async def find_by_definition_key(self, key: str) -> ScheduledTask | None:
        """See :meth:`BaseSchedulerBackend.find_by_definition_key`."""
        return await self._fetch_one(self._sql.by_key, (key,))

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
        async with self._cursor() as cur:
            await cur.execute(self._sql.next_due)
            (value,) = await cur.fetchone()
        return None if value is None else epoch_to_datetime(value)

    async def update_run_times(
        self, task_id: str, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        """See :meth:`BaseSchedulerBackend.update_run_times`."""
        params = (to_epoch(last_run_at), to_epoch(next_run_at), to_epoch(utc_now()), task_id)
        return await self._execute(self._sql.update_run_times, params) > 0

    async def clear(self) -> int:
        """See :meth:`BaseSchedulerBackend.clear`."""
        return await self._execute(self._sql.clear)

    async def claim_due(self, now: datetime, limit: int, plan: Planner, fire: Fire) -> list[Claim]:
        """Atomic claim: ``FOR UPDATE SKIP LOCKED``, fire, advance, in one transaction."""
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            await conn.begin()
            try:
                await cur.execute(
                    f"{self._sql.claim} FOR UPDATE SKIP LOCKED", (to_epoch(now), limit)
                )
                rows = await cur.fetchall()
                done = await fire([plan(row_to_task(row), now) for row in rows])
                if done:
                    await cur.executemany(self._sql.advance, [claim_row(c, now) for c in done])
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
        return done

    async def close(self) -> None:
        """Close the pool. The backend reconnects if used again."""
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()
