"""Persistent schedules: cron, interval and one-time runs, exactly once across instances.

``import flowrra`` never imports this package; it needs croniter, and its stores import
their database driver when built (``pip install 'flowrra[scheduler]'``).
"""

from __future__ import annotations

from flowrra.scheduler.cron import CronExpression
from flowrra.scheduler.models import ScheduledTask, ScheduleType
from flowrra.scheduler.scheduler import Scheduler
from flowrra.scheduler.submit import SubmitCallback
from flowrra.scheduler.timing import run_task_id

__all__ = [
    "CronExpression",
    "ScheduleType",
    "ScheduledTask",
    "Scheduler",
    "SubmitCallback",
    "run_task_id",
]
