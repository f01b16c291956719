"""Fire-time arithmetic: first run, the runs a claim fires, and the task id of each run.

Everything here is a pure function of a stored schedule and "now", so every scheduler
instance computes the same nominal times from the same row.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flowrra.scheduler.cron import cron_for
from flowrra.scheduler.models import ScheduledTask, ScheduleType, as_utc

#: Most missed runs one claim of a ``catch_up`` schedule fires; the rest follow at once
#: in the next pass.
MAX_FIRES_PER_CLAIM = 1000
_RUN_NAMESPACE = uuid.UUID("6f1c2a52-34d3-4c6e-9a59-5be7c0a4f1d3")


@dataclass(slots=True)
class Claim:
    """A due schedule taken by one scheduler, with the runs it must submit.

    ``task`` is the row as read (its ``next_run_at`` is the claimed nominal time);
    ``fire_times`` are the nominal times to submit, oldest first; ``next_run_at`` and
    ``enabled`` are the row's state once the claim is persisted.
    """

    task: ScheduledTask
    fire_times: list[datetime] = field(default_factory=list)
    next_run_at: datetime | None = None
    enabled: bool = True

    @property
    def last_run_at(self) -> datetime | None:
        """The newest nominal time this claim fires (the row's new ``last_run_at``)."""
        return self.fire_times[-1] if self.fire_times else self.task.last_run_at


def run_task_id(schedule_id: str, fire_time: datetime) -> str:
    """The task id of one run: a UUID derived from the schedule id and nominal time.

    Submitting the same run twice (a retry after a crash) gives the same id, which the
    app treats as already known.
    """
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{schedule_id}@{as_utc(fire_time).isoformat()}"))


def interval_seconds(task: ScheduledTask) -> float:
    """The interval of an ``INTERVAL`` schedule, in seconds."""
    return float(task.schedule)


def following(task: ScheduledTask, nominal: datetime) -> datetime:
    """The nominal time after ``nominal`` for a recurring schedule."""
    if task.schedule_type is ScheduleType.CRON:
        return cron_for(task.schedule, task.timezone).next_run(nominal)
    return nominal + timedelta(seconds=interval_seconds(task))


def first_run(task: ScheduledTask, now: datetime) -> datetime:
    """The first nominal time of a new schedule.

    Cron: the first match after ``now``. Interval: ``now + interval`` (later runs are
    anchored to it). One-time: its ``run_at``, even if past (it then fires at once).
    """
    if task.schedule_type is ScheduleType.ONE_TIME:
        return datetime.fromisoformat(task.schedule)
    if task.schedule_type is ScheduleType.CRON:
        return cron_for(task.schedule, task.timezone).next_run(now)
    return now + timedelta(seconds=interval_seconds(task))


def next_after(task: ScheduledTask, anchor: datetime, now: datetime) -> datetime:
    """The first nominal time strictly after ``now``, on the grid through ``anchor``."""
    if task.schedule_type is ScheduleType.CRON:
        return cron_for(task.schedule, task.timezone).next_run(now)
    step = interval_seconds(task)
    behind = (now - anchor).total_seconds()
    steps = math.floor(behind / step) + 1 if behind >= 0 else 0
    candidate = anchor + timedelta(seconds=step * steps)
    return candidate if candidate > now else candidate + timedelta(seconds=step)


def _latest_missed(task: ScheduledTask, due: datetime, now: datetime) -> datetime:
    if task.schedule_type is ScheduleType.CRON:
        return max(due, cron_for(task.schedule, task.timezone).prev_run(now))
    step = interval_seconds(task)
    steps = math.floor((now - due).total_seconds() / step)
    latest = due + timedelta(seconds=step * steps)
    return latest if latest <= now else due + timedelta(seconds=step * (steps - 1))


def plan_claim(task: ScheduledTask, now: datetime) -> Claim:
    """The runs to fire for a schedule due at ``now`` and the row's next state.

    One-time: its one run, then disabled with no next time. Recurring, default policy
    (coalesce): one run at the latest missed nominal time. ``catch_up``: every missed
    nominal time up to ``now`` (at most :data:`MAX_FIRES_PER_CLAIM` per claim).
    """
    due = task.next_run_at
    if due is None:
        return Claim(task, [], None, False)
    if task.schedule_type is ScheduleType.ONE_TIME:
        return Claim(task, [due], None, False)
    if not task.catch_up:
        latest = _latest_missed(task, due, now)
        return Claim(task, [latest], next_after(task, due, latest), True)
    fires = [due]
    upcoming = following(task, due)
    while upcoming <= now and len(fires) < MAX_FIRES_PER_CLAIM:
        fires.append(upcoming)
        upcoming = following(task, upcoming)
    return Claim(task, fires, upcoming, True)
