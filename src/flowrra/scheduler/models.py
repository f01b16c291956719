"""What a schedule is: :class:`ScheduleType`, :class:`ScheduledTask` and its definition key.

A schedule's *definition* is what it runs and when: task name, schedule type, schedule
text, time zone, args and kwargs. Two calls that describe the same definition (``60`` and
``60.0`` seconds, kwargs in another order, a cron with extra spaces) get the same
:func:`definition_key`, which every store keeps unique; that is what makes the
``schedule_*`` calls idempotent across processes.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowrra.exceptions import SerializationError


class ScheduleType(enum.StrEnum):
    """How a schedule's fire times are produced. Compares equal to its string value."""

    CRON = "cron"
    INTERVAL = "interval"
    ONE_TIME = "one_time"


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def canonical_schedule(schedule_type: ScheduleType, schedule: object) -> str:
    """The stored text of a schedule, identical for equivalent inputs.

    Cron: fields joined by single spaces. Interval: ``repr(float(seconds))``, so ``60``
    and ``60.0`` agree. One-time: the UTC ISO timestamp (a naive datetime is UTC).
    """
    if schedule_type is ScheduleType.CRON:
        return " ".join(str(schedule).split())
    if schedule_type is ScheduleType.INTERVAL:
        if isinstance(schedule, bool) or not isinstance(schedule, int | float | str):
            raise ValueError(f"interval must be a number of seconds, got {schedule!r}")
        return repr(float(schedule))
    if isinstance(schedule, datetime):
        return as_utc(schedule).isoformat()
    return as_utc(datetime.fromisoformat(str(schedule))).isoformat()


def dump_json(value: Any, what: str) -> str:
    """Canonical JSON (sorted keys, no spaces); :class:`SerializationError` if impossible."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}") from None


def definition_key(
    task_name: str,
    schedule_type: ScheduleType | str,
    schedule: object,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    timezone: str | None = None,
) -> str:
    """SHA-256 hex digest of the canonical JSON of a schedule definition."""
    kind = ScheduleType(schedule_type)
    body = {
        "task": task_name,
        "type": kind.value,
        "schedule": canonical_schedule(kind, schedule),
        "timezone": timezone,
        "args": list(args),
        "kwargs": kwargs or {},
    }
    return hashlib.sha256(dump_json(body, "schedule definition").encode()).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ScheduledTask:
    """One stored schedule.

    ``schedule`` is text: the cron expression, the interval in seconds (``"60.0"``) or
    the UTC ISO time of a one-time run. All datetimes are timezone-aware UTC.
    ``next_run_at`` is the next *nominal* fire time (``None`` once a one-time schedule has
    run). ``catch_up`` is the misfire policy: ``False`` (default) fires once for any
    number of runs missed while no scheduler was running; ``True`` fires every missed run.
    ``timezone`` is the IANA zone a cron expression is read in (``None``: UTC).
    """

    id: str
    task_name: str
    schedule_type: ScheduleType
    schedule: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    description: str | None = None
    max_retries: int = 3
    retry_delay: float = 1.0
    priority: int = 0
    timezone: str | None = None
    catch_up: bool = False

    @property
    def definition_key(self) -> str:
        """The key shared by every schedule with the same definition."""
        return definition_key(
            self.task_name,
            self.schedule_type,
            self.schedule,
            self.args,
            self.kwargs,
            timezone=self.timezone,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ISO datetimes, the type as its string, args as a list."""
        return {
            "id": self.id,
            "task_name": self.task_name,
            "schedule_type": str(self.schedule_type),
            "schedule": self.schedule,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "enabled": self.enabled,
            "last_run_at": _iso(self.last_run_at),
            "next_run_at": _iso(self.next_run_at),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "description": self.description,
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "priority": self.priority,
            "timezone": self.timezone,
            "catch_up": self.catch_up,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduledTask:
        """Rebuild a schedule from :meth:`to_dict` output. Unknown keys are ignored."""
        return cls(
            id=str(data["id"]),
            task_name=str(data["task_name"]),
            schedule_type=ScheduleType(data["schedule_type"]),
            schedule=str(data["schedule"]),
            args=tuple(data.get("args") or ()),
            kwargs=dict(data.get("kwargs") or {}),
            enabled=bool(data.get("enabled", True)),
            last_run_at=_parse(data.get("last_run_at")),
            next_run_at=_parse(data.get("next_run_at")),
            created_at=_parse(data.get("created_at")) or _now(),
            updated_at=_parse(data.get("updated_at")) or _now(),
            description=data.get("description"),
            max_retries=int(data.get("max_retries", 3)),
            retry_delay=float(data.get("retry_delay", 1.0)),
            priority=int(data.get("priority", 0)),
            timezone=data.get("timezone"),
            catch_up=bool(data.get("catch_up", False)),
        )
