"""Pieces the SQL stores share: the column list, row conversion and common statements.

Times are stored as float seconds since the epoch (UTC); a double keeps microseconds
exactly for the dates a scheduler sees, and compares the same in every database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from flowrra.exceptions import BackendError
from flowrra.scheduler.models import ScheduledTask, ScheduleType, dump_json
from flowrra.scheduler.timing import Claim

#: Version of the tables this flowrra creates; a store records it in ``<table>_schema``
#: so that a later version can migrate.
SCHEMA_VERSION = 1

COLUMNS = (
    "id",
    "definition_key",
    "task_name",
    "schedule_type",
    "schedule",
    "timezone",
    "args",
    "kwargs",
    "enabled",
    "catch_up",
    "last_run_at",
    "next_run_at",
    "created_at",
    "updated_at",
    "description",
    "max_retries",
    "retry_delay",
    "priority",
)
COLUMN_LIST = ", ".join(COLUMNS)


def to_epoch(value: datetime | None) -> float | None:
    """A datetime as float epoch seconds (naive means UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def epoch_to_datetime(value: float) -> datetime:
    """Float epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(float(value), UTC)


def from_epoch(value: float | None) -> datetime | None:
    """Like :func:`epoch_to_datetime`, passing ``None`` through."""
    return None if value is None else epoch_to_datetime(value)


def task_to_row(task: ScheduledTask) -> tuple[Any, ...]:
    """The values of :data:`COLUMNS` for ``task``."""
    return (
        task.id,
        task.definition_key,
        task.task_name,
        task.schedule_type.value,
        task.schedule,
        task.timezone,
        dump_json(list(task.args), "schedule args"),
        dump_json(task.kwargs, "schedule kwargs"),
        bool(task.enabled),
        bool(task.catch_up),
        to_epoch(task.last_run_at),
        to_epoch(task.next_run_at),
        to_epoch(task.created_at),
        to_epoch(task.updated_at),
        task.description,
        int(task.max_retries),
        float(task.retry_delay),
        int(task.priority),
    )


def row_to_task(row: Sequence[Any]) -> ScheduledTask:
    """A :class:`ScheduledTask` from a row of :data:`COLUMNS` (any sequence)."""
    return ScheduledTask(
        id=str(row[0]),
        task_name=str(row[2]),
        schedule_type=ScheduleType(row[3]),
        schedule=str(row[4]),
        timezone=row[5],
        args=tuple(json.loads(row[6])),
        kwargs=dict(json.loads(row[7])),
        enabled=bool(row[8]),
        catch_up=bool(row[9]),
        last_run_at=from_epoch(row[10]),
        next_run_at=from_epoch(row[11]),
        created_at=epoch_to_datetime(row[12]),
        updated_at=epoch_to_datetime(row[13]),
        description=row[14],
        max_retries=int(row[15]),
        retry_delay=float(row[16]),
        priority=int(row[17]),
    )


def claim_row(claim: Claim, now: datetime) -> tuple[Any, ...]:
    """Parameters of :attr:`Statements.advance`, in order."""
    return (
        to_epoch(claim.last_run_at),
        to_epoch(claim.next_run_at),
        claim.enabled,
        to_epoch(now),
        claim.task.id,
        to_epoch(claim.task.next_run_at),
    )


class Statements:
    """SQL text shared by the stores, for ``table`` and a placeholder style.

    ``param(n)`` returns the placeholder of the n-th parameter (1-based): ``$n`` for
    PostgreSQL, ``?`` for SQLite, ``%s`` for MySQL.
    """

    def __init__(self, table: str, param: Callable[[int], str]) -> None:
        p = param
        self.table = table
        self.version_table = f"{table}_schema"
        select = f"SELECT {COLUMN_LIST} FROM {table}"
        values = ", ".join(p(i + 1) for i in range(len(COLUMNS)))
        self.insert_values = f"({COLUMN_LIST}) VALUES ({values})"
        self.get = f"{select} WHERE id = {p(1)}"
        self.by_key = f"{select} WHERE definition_key = {p(1)}"
        self.list_all = f"{select} ORDER BY created_at, id"
        self.list_enabled = f"{select} WHERE enabled = TRUE ORDER BY created_at, id"
        self.due_where = f"enabled = TRUE AND next_run_at <= {p(1)}"
        self.list_due = f"{select} WHERE {self.due_where} ORDER BY next_run_at, id"
        self.claim = f"{self.list_due} LIMIT {p(2)}"
        self.next_due = f"SELECT MIN(next_run_at) FROM {table} WHERE enabled = TRUE"
        self.delete = f"DELETE FROM {table} WHERE id = {p(1)}"
        self.clear = f"DELETE FROM {table}"
        self.update = (
            f"UPDATE {table} SET enabled = {p(1)}, catch_up = {p(2)}, "
            f"last_run_at = {p(3)}, next_run_at = {p(4)}, updated_at = {p(5)}, "
            f"description = {p(6)}, max_retries = {p(7)}, retry_delay = {p(8)}, "
            f"priority = {p(9)} WHERE id = {p(10)}"
        )
        self.update_run_times = (
            f"UPDATE {table} SET last_run_at = {p(1)}, next_run_at = {p(2)}, "
            f"updated_at = {p(3)} WHERE id = {p(4)}"
        )
        self.disable = f"UPDATE {table} SET enabled = FALSE, updated_at = {p(1)} WHERE id = {p(2)}"
        self.enable = (
            f"UPDATE {table} SET enabled = TRUE, next_run_at = {p(1)}, updated_at = {p(2)} "
            f"WHERE id = {p(3)} AND enabled = FALSE"
        )
        self.advance = (
            f"UPDATE {table} SET last_run_at = {p(1)}, next_run_at = {p(2)}, "
            f"enabled = {p(3)}, updated_at = {p(4)} WHERE id = {p(5)} AND next_run_at = {p(6)}"
        )


def set_enabled_query(
    statements: Statements, task_id: str, enabled: bool, next_run_at: datetime | None
) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters of ``set_enabled`` (see the base class)."""
    now = to_epoch(datetime.now(UTC))
    if enabled:
        return statements.enable, (to_epoch(next_run_at), now, task_id)
    return statements.disable, (now, task_id)


def update_params(task: ScheduledTask, now: datetime) -> tuple[Any, ...]:
    """Parameters of :attr:`Statements.update`, in order (definition fields never change)."""
    return (
        bool(task.enabled),
        bool(task.catch_up),
        to_epoch(task.last_run_at),
        to_epoch(task.next_run_at),
        to_epoch(now),
        task.description,
        int(task.max_retries),
        float(task.retry_delay),
        int(task.priority),
        task.id,
    )


def create_table_sql(table: str, types: dict[str, str], suffix: str = "", extra: str = "") -> str:
    """``CREATE TABLE IF NOT EXISTS`` for :data:`COLUMNS` with per-dialect ``types``.

    ``id`` is the primary key and ``definition_key`` is unique (that enforces idempotent
    registration across processes). ``extra`` adds table constraints or indexes.
    """
    body = ",\n  ".join(f"{name} {types[name]}" for name in COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n  {body},\n  PRIMARY KEY (id),\n"
        f"  UNIQUE (definition_key){extra}\n){suffix}"
    )


def check_schema_version(found: int, table: str) -> None:
    """Raise ``BackendError`` when the store was created by a newer flowrra."""
    if found > SCHEMA_VERSION:
        raise BackendError(
            f"schedule table {table!r} has schema version {found}, newer than this "
            f"flowrra understands ({SCHEMA_VERSION}); upgrade flowrra"
        )
