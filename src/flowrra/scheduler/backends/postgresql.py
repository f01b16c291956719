"""PostgreSQL schedule store (asyncpg).

Claiming locks due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside a transaction
that also advances them, so concurrent schedulers split due schedules between them and
never take the same one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

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
    "id": "TEXT NOT NULL",
    "definition_key": "TEXT NOT NULL",
    "task_name": "TEXT NOT NULL",
    "schedule_type": "TEXT NOT NULL",
    "schedule": "TEXT NOT NULL",
    "timezone": "TEXT",
    "args": "TEXT NOT NULL",
    "kwargs": "TEXT NOT NULL",
    "enabled": "BOOLEAN NOT NULL",
    "catch_up": "BOOLEAN NOT NULL",
    "last_run_at": "DOUBLE PRECISION",
    "next_run_at": "DOUBLE PRECISION",
    "created_at": "DOUBLE PRECISION NOT NULL",
    "updated_at": "DOUBLE PRECISION NOT NULL",
    "description": "TEXT",
    "max_retries": "INTEGER NOT NULL",
    "retry_delay": "DOUBLE PRECISION NOT NULL",
    "priority": "INTEGER NOT NULL",
}


def _import_driver() -> Any:
    try:
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 (optional driver)
    except ImportError as exc:
        raise ImportError(
            "the PostgreSQL schedule store needs asyncpg: pip install 'flowrra[postgresql]'"
        ) from exc
    return asyncpg


class PostgreSQLSchedulerBackend(BaseSchedulerBackend):
    """Schedules in PostgreSQL, at ``database_url`` (``postgresql://`` or ``postgres://``).

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
        self.database_url = database_url
        self._pool_size = (min_size, max_size)
        self._sql = Statements(check_table_name(table_name), lambda n: f"${n}")
        self._pool: Any = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgreSQLSchedulerBackend(table_name={self._sql.table!r})"

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = await self._driver.create_pool(
                        self.database_url, min_size=self._pool_size[0], max_size=self._pool_size[1]
                    )
                    try:
                        await self._migrate(pool)
                    except BaseException:
                        await pool.close()
                        raise
                    self._pool = pool
        return self._pool

    async def _migrate(self, pool: Any) -> None:
        """Create the tables once, under an advisory lock (concurrent DDL would collide)."""
        sql = self._sql
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", sql.version_table)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {sql.version_table} (version INTEGER NOT NULL)"
            )
            found = await conn.fetchval(f"SELECT MAX(version) FROM {sql.version_table}")
            if found is not None:
                check_schema_version(int(found), sql.table)
                return
            await conn.execute(create_table_sql(sql.table, _TYPES))
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {sql.table}_due ON {sql.table} (next_run_at) "
                "WHERE enabled"
            )
            await conn.execute(
                f"INSERT INTO {sql.version_table} (version) VALUES ($1)", SCHEMA_VERSION
            )

    async def _fetch(self, query: str, *params: Any) -> list[ScheduledTask]:
        pool = await self._get_pool()
        return [row_to_task(row) for row in await pool.fetch(query, *params)]

    async def _fetch_one(self, query: str, *params: Any) -> ScheduledTask | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(query, *params)
        return None if row is None else row_to_task(row)

    async def _execute(self, query: str, *params: Any) -> int:
        """Run a statement; return the number of rows it touched."""
        pool = await self._get_pool()
        status: str = await pool.execute(query, *params)
        return int(status.rsplit(" ", 1)[-1])

    async def create(self, task: ScheduledTask) -> ScheduledTask:
        """See :meth:`BaseSchedulerBackend.create`."""
        pool = await self._get_pool()
        row = task_to_row(task)
        inserted = await pool.fetchval(
            f"INSERT INTO {self._sql.table} {self._sql.insert_values} "
            "ON CONFLICT DO NOTHING RETURNING id",
            *row,
        )
        if inserted is not None:
            return task
        existing = await self.find_by_definition_key(row[1])
        if existing is None:
            raise ValueError(f"schedule id {task.id!r} is already used by another schedule")
        return existing

    async def update(self, task: ScheduledTask) -> bool:
        """See :meth:`BaseSchedulerBackend.update`."""
        return await self._execute(self._sql.update, *update_params(task, utc_now())) > 0

    async def set_enabled(
        self, task_id: str, enabled: bool, next_run_at: datetime | None = None
    ) -> bool:
        """See :meth:`BaseSchedulerBackend.set_enabled`."""
        query, params = set_enabled_query(self._sql, task_id, enabled, next_run_at)
        return await self._execute(query, *params) > 0

    async def delete(self, task_id: str) -> bool:
        """See :meth:`BaseSchedulerBackend.delete`."""
        return await self._execute(self._sql.delete, task_id) > 0

    async def get(self, task_id: str) -> ScheduledTask | None:
        """See :meth:`BaseSchedulerBackend.get`."""
        return await self._fetch_one(self._sql.get, task_id)

    async def find_by_definition_key(self, key: str) -> ScheduledTask | None:
        """See :meth:`BaseSchedulerBackend.find_by_definition_key`."""
        return await self._fetch_one(self._sql.by_key, key)

    async def list_all(self) -> list[ScheduledTask]:
        """See :meth:`BaseSchedulerBackend.list_all`."""
        return await self._fetch(self._sql.list_all)

    async def list_enabled(self) -> list[ScheduledTask]:
        """See :meth:`BaseSchedulerBackend.list_enabled`."""
        return await self._fetch(self._sql.list_enabled)

    async def list_due(self, now: datetime | None = None) -> list[ScheduledTask]:
        """See :meth:`BaseSchedulerBackend.list_due`."""
        return await self._fetch(self._sql.list_due, to_epoch(now or utc_now()))

    async def next_due_at(self) -> datetime | None:
        """See :meth:`BaseSchedulerBackend.next_due_at`."""
        pool = await self._get_pool()
        value = await pool.fetchval(self._sql.next_due)
        return None if value is None else epoch_to_datetime(value)

    async def update_run_times(
        self, task_id: str, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        """See :meth:`BaseSchedulerBackend.update_run_times`."""
        params = (to_epoch(last_run_at), to_epoch(next_run_at), to_epoch(utc_now()), task_id)
        return await self._execute(self._sql.update_run_times, *params) > 0

    async def clear(self) -> int:
        """See :meth:`BaseSchedulerBackend.clear`."""
        return await self._execute(self._sql.clear)

    async def claim_due(self, now: datetime, limit: int, plan: Planner, fire: Fire) -> list[Claim]:
        """Atomic claim: ``FOR UPDATE SKIP LOCKED``, fire, advance, in one transaction."""
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"{self._sql.claim} FOR UPDATE SKIP LOCKED", to_epoch(now), limit
            )
            done = await fire([plan(row_to_task(row), now) for row in rows])
            if done:
                columns = list(zip(*(claim_row(c, now) for c in done), strict=True))
                await conn.execute(
                    f"UPDATE {self._sql.table} AS t SET last_run_at = u.last_run, "
                    "next_run_at = u.next_run, enabled = u.enabled, updated_at = u.updated "
                    "FROM unnest($1::float8[], $2::float8[], $3::bool[], $4::float8[], "
                    "$5::text[], $6::float8[]) AS u(last_run, next_run, enabled, updated, id, "
                    "expected) WHERE t.id = u.id AND t.next_run_at = u.expected",
                    *(list(column) for column in columns),
                )
        return done

    async def close(self) -> None:
        """Close the pool. The backend reconnects if used again."""
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
