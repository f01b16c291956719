"""Task-record listings of the management API: paging and the name / time filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flowrra.backends.base import BaseResultBackend, filtered_page, latest_time
from flowrra.task import TaskResult, TaskStatus


def parse_time(value: object, what: str) -> datetime | None:
    """``value`` (``None``, a datetime or an ISO string) as an aware datetime (naive: UTC).

    Raises ``ValueError`` naming ``what`` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what} must be an ISO datetime, got {value!r}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime or an ISO string, got {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which records a listing keeps: task name (exact) and submission time.

    ``since`` is inclusive, ``until`` exclusive; a record without a submission time is
    left out when either is set.
    """

    name: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, name: object, since: object, until: object) -> RecordFilter:
        """The filter for these arguments; ``ValueError`` for a bad one."""
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start is not None and end is not None and start > end:
            raise ValueError(f"since ({start.isoformat()}) is after until ({end.isoformat()})")
        return cls(name, start, end)

    @property
    def active(self) -> bool:
        """True when the filter leaves anything out."""
        return self.name is not None or self.since is not None or self.until is not None

    def keeps(self, record: TaskResult) -> bool:
        """True when ``record`` passes the filter."""
        if self.name is not None and record.task_name != self.name:
            return False
        if self.since is None and self.until is None:
            return True
        submitted = record.submitted_at
        if submitted is None:
            return False
        if submitted.tzinfo is None:
            submitted = submitted.replace(tzinfo=UTC)
        if self.since is not None and submitted < self.since:
            return False
        return self.until is None or submitted < self.until


async def list_records(
    backend: BaseResultBackend,
    status: TaskStatus,
    limit: int | None,
    offset: int,
    keep: RecordFilter,
) -> list[TaskResult]:
    """Records in ``status`` that ``keep`` passes, most recent first, paged after filtering.

    Without a time filter the backend pages itself (``list_by_status``, or
    ``list_by_task_name`` for a name alone, which a backend may answer without decoding
    other tasks' records); with one, :func:`~flowrra.backends.base.filtered_page` reads
    them in chunks until the page is full or the status runs out.
    """
    if keep.since is None and keep.until is None:
        if keep.name is None:
            return await backend.list_by_status(status, limit, offset)
        return await backend.list_by_task_name(status, keep.name, limit, offset)
    return await filtered_page(backend, status, keep.keeps, limit, offset)


async def list_recent_records(
    backend: BaseResultBackend, limit: int | None, offset: int, keep: RecordFilter
) -> list[TaskResult]:
    """Records of every status that ``keep`` passes, most recently changed first, paged
    after filtering. Unfiltered, the backend pages itself (``list_recent``); filtered,
    the first ``offset + limit`` matches of each status are merged by their latest time.
    """
    if not keep.active:
        return await backend.list_recent(limit, offset)
    wanted = None if limit is None else offset + limit
    merged: list[TaskResult] = []
    for status in TaskStatus:
        merged += await list_records(backend, status, wanted, 0, keep)
    merged.sort(key=latest_time, reverse=True)
    return merged[offset : None if limit is None else offset + limit]
