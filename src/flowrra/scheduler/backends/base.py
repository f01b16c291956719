"""The schedule store interface every backend implements.

Contract, for every implementation:

* Times go in and come out as timezone-aware UTC datetimes, with microsecond precision.
* ``args``, ``kwargs``, names and descriptions round-trip unchanged, whatever characters
  they hold (stores use parameterised queries only).
* At most one stored schedule per definition key (:attr:`ScheduledTask.definition_key`):
  :meth:`create` of a second schedule with the same definition stores nothing and returns
  the first, also when several processes race.
* :meth:`claim_due` is the only way a scheduler fires runs. Across every process sharing
  the store, each (schedule, nominal time) is handed to exactly one claim whose ``fire``
  callback then returns it; the row is advanced in the same transaction, so a scheduler
  that dies before its transaction commits leaves the run due for another instance.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from flowrra.scheduler.models import ScheduledTask, ScheduleType, definition_key
from flowrra.scheduler.timing import Claim

#: Builds the claim (runs to fire, next state) of one due schedule at ``now``.
Planner = Callable[[ScheduledTask, datetime], Claim]
#: Submits the runs of the given claims; returns the claims that were submitted in full.
Fire = Callable[[list[Claim]], Awaitable[list[Claim]]]

DEFAULT_TABLE = "flowrra_schedules"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")


def check_table_name(name: str) -> str:
    """Return ``name`` if it is a safe SQL identifier; ``ValueError`` otherwise.

    Table names cannot be passed as query parameters, so only letters, digits and
    underscores are accepted (at most 48 characters, not starting with a digit).
    """
    if not _TABLE_NAME.match(name):
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits and underscores "
            "(at most 48 characters, not starting with a digit)"
        )
    return name


class BaseSchedulerBackend(abc.ABC):
    """Persistent store of :class:`ScheduledTask` rows.

    Subclasses implement the abstract storage steps. :meth:`claim_due` and
    :meth:`next_due_at` have portable default implementations built on them; the default
    :meth:`claim_due` is **not** safe with several scheduler instances (it has no lock),
    so a store meant to be shared overrides it with an atomic version.
    """

    @abc.abstractmethod
    async def create(self, task: ScheduledTask) -> ScheduledTask:
        """Store a new schedule; return the stored one.

        If a schedule with the same definition key exists, store nothing and return the
        existing schedule. An ``id`` already used by another definition raises
        ``ValueError``.
        """

    @abc.abstractmethod
    async def update(self, task: ScheduledTask) -> bool:
        """Overwrite the mutable fields of ``task.id``; False if there is no such row."""

    @abc.abstractmethod
    async def delete(self, task_id: str) -> bool:
        """Remove a schedule; False if there was none."""

    @abc.abstractmethod
    async def get(self, task_id: str) -> ScheduledTask | None:
        """The schedule ``task_id``, or ``None``."""

    @abc.abstractmethod
    async def list_all(self) -> list[ScheduledTask]:
        """Every schedule, oldest first."""

    @abc.abstractmethod
    async def list_enabled(self) -> list[ScheduledTask]:
        """Every enabled schedule, oldest first."""

    @abc.abstractmethod
    async def list_due(self, now: datetime | None = None) -> list[ScheduledTask]:
        """Enabled schedules whose ``next_run_at`` is at or before ``now`` (default now),
        earliest first. Reading only: nothing is claimed."""

    @abc.abstractmethod
    async def update_run_times(
        self, task_id: str, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        """Set ``last_run_at`` and ``next_run_at``; False if there is no such row."""

    @abc.abstractmethod
    async def clear(self) -> int:
        """Remove every schedule; return how many there were."""

    @abc.abstractmethod
    async def find_by_definition_key(self, key: str) -> ScheduledTask | None:
        """The schedule whose definition key is ``key``, or ``None``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent; the backend reconnects if used again."""

    async def find_by_definition(
        self,
        task_name: str,
        schedule_type: ScheduleType | str,
        schedule: object,
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
        *,
        timezone: str | None = None,
    ) -> ScheduledTask | None:
        """The schedule with this definition, or ``None`` (see :func:`definition_key`)."""
        key = definition_key(task_name, schedule_type, schedule, args, kwargs, timezone=timezone)
        return await self.find_by_definition_key(key)

    async def set_enabled(
        self, task_id: str, enabled: bool, next_run_at: datetime | None = None
    ) -> bool:
        """Enable or disable a schedule without touching its run times.

        Disabling sets only the flag. Enabling applies only to a disabled row and sets
        ``next_run_at`` with it (so it cannot undo a claim made meanwhile). Returns True
        when a row changed.
        """
        task = await self.get(task_id)
        if task is None or task.enabled == enabled:
            return False
        task.enabled = enabled
        if enabled:
            task.next_run_at = next_run_at
        return await self.update(task)

    async def next_due_at(self) -> datetime | None:
        """The earliest ``next_run_at`` of an enabled schedule, or ``None``."""
        times = [t.next_run_at for t in await self.list_enabled() if t.next_run_at]
        return min(times, default=None)

    async def claim_due(self, now: datetime, limit: int, plan: Planner, fire: Fire) -> list[Claim]:
        """Claim up to ``limit`` due schedules, fire their runs, advance their rows.

        ``plan`` builds each claim; ``fire`` submits them and returns those submitted in
        full, which are the only ones advanced. Returns the advanced claims. This default
        is for single-instance custom stores (see the class docstring).
        """
        due = (await self.list_due(now))[:limit]
        done = await fire([plan(task, now) for task in due])
        for claim in done:
            claim.task.enabled = claim.enabled
            claim.task.last_run_at = claim.last_run_at
            claim.task.next_run_at = claim.next_run_at
            claim.task.updated_at = now
            await self.update(claim.task)
        return done

    async def __aenter__(self) -> BaseSchedulerBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def utc_now() -> datetime:
    """The current time in UTC (the default ``now`` of :meth:`list_due`)."""
    return datetime.now(UTC)
