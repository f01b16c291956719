"""Schedule management over the app's scheduler (:meth:`Flowrra.create_scheduler`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowrra.exceptions import SerializationError
from flowrra.management._checks import check_arguments, check_id, is_id
from flowrra.registry import TaskRegistry

if TYPE_CHECKING:
    from flowrra.scheduler import Scheduler


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class ScheduleManager:
    """Reads and changes the schedules of one app. Every method is async.

    ``scheduler`` returns the app's current scheduler (or ``None``), so a scheduler made
    after the manager is still found.
    """

    def __init__(self, registry: TaskRegistry, scheduler: Any) -> None:
        self._registry = registry
        self._scheduler_of = scheduler

    def _current(self) -> Scheduler | None:
        current: Scheduler | None = self._scheduler_of()
        return current

    def _require(self) -> Scheduler:
        scheduler = self._current()
        if scheduler is None:
            raise ValueError("the app has no scheduler: call app.create_scheduler() first")
        return scheduler

    def _check_task(self, task_name: object) -> str:
        name = check_id(task_name, "task_name")
        if not self._registry.is_registered(name):
            raise ValueError(f"task '{name}' is not registered")
        return name

    async def list_schedules(self, enabled_only: bool = False) -> list[dict[str, Any]]:
        """Every schedule (or only enabled ones) as ``ScheduledTask.to_dict``; ``[]`` with
        no scheduler."""
        scheduler = self._current()
        if scheduler is None:
            return []
        schedules = await scheduler.list_scheduled_tasks(enabled_only=bool(enabled_only))
        return [schedule.to_dict() for schedule in schedules]

    async def get_schedule(self, schedule_id: object) -> dict[str, Any] | None:
        """One schedule as a dict, or ``None`` (unknown id, bad id or no scheduler)."""
        scheduler = self._current()
        if scheduler is None or not is_id(schedule_id):
            return None
        schedule = await scheduler.get_scheduled_task(str(schedule_id))
        return None if schedule is None else schedule.to_dict()

    async def get_scheduler_stats(self) -> dict[str, Any]:
        """Whether a scheduler exists and runs, and how many schedules it holds."""
        scheduler = self._current()
        if scheduler is None:
            return {
                "configured": False,
                "running": False,
                "message": "no scheduler: call app.create_scheduler() to add one",
                "total_schedules": 0,
                "enabled_schedules": 0,
                "disabled_schedules": 0,
                "next_run_at": None,
            }
        schedules = await scheduler.list_scheduled_tasks()
        enabled = sum(1 for schedule in schedules if schedule.enabled)
        return {
            "configured": True,
            "running": scheduler.is_running,
            "check_interval": scheduler.check_interval,
            "total_schedules": len(schedules),
            "enabled_schedules": enabled,
            "disabled_schedules": len(schedules) - enabled,
            "next_run_at": _iso(await scheduler.backend.next_due_at()),
        }

    async def create(
        self,
        kind: str,
        task_name: object,
        when: Any,
        *,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """Create (or find the identical) schedule of ``kind`` and return it as a dict."""
        scheduler = self._require()
        name = self._check_task(task_name)
        call_args, call_kwargs = check_arguments(args, kwargs)
        try:
            if kind == "cron":
                if not isinstance(when, str):
                    raise ValueError(f"cron must be a string, got {when!r}")
                schedule_id = await scheduler.schedule_cron(
                    name, when, call_args, call_kwargs, **options
                )
            elif kind == "interval":
                schedule_id = await scheduler.schedule_interval(
                    name, when, call_args, call_kwargs, **options
                )
            else:
                schedule_id = await scheduler.schedule_once(
                    name, when, call_args, call_kwargs, **options
                )
        except (SerializationError, TypeError) as error:
            raise ValueError(str(error)) from None
        created = await scheduler.get_scheduled_task(schedule_id)
        if created is None:  # deleted by another process in between
            raise ValueError(f"schedule '{schedule_id}' was deleted while being created")
        return created.to_dict()

    async def set_enabled(self, schedule_id: object, enabled: bool) -> dict[str, Any] | None:
        """Enable or disable a schedule; its new state, or ``None`` for an unknown id."""
        scheduler = self._current()
        if scheduler is None or not is_id(schedule_id):
            return None
        key = str(schedule_id)
        if await scheduler.get_scheduled_task(key) is None:
            return None
        try:
            if enabled:
                await scheduler.enable_task(key)
            else:
                await scheduler.disable_task(key)
        except ValueError:  # deleted in between
            return None
        return await self.get_schedule(key)

    async def delete(self, schedule_id: object) -> bool:
        """Delete a schedule; False for an unknown id, a bad id or no scheduler."""
        scheduler = self._current()
        if scheduler is None or not is_id(schedule_id):
            return False
        return await scheduler.unschedule(str(schedule_id))
