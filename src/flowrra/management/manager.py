"""``FlowrraManager``: read and operate a running app through plain, JSON-ready values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowrra.app import Flowrra
from flowrra.brokers.base import DeadLetter, QueueBroker
from flowrra.management import _dead_letters
from flowrra.management._checks import check_id, check_limit, check_offset, is_id
from flowrra.management._health import health_check
from flowrra.management._records import RecordFilter, list_recent_records, list_records
from flowrra.management._schedules import ScheduleManager
from flowrra.registry import TaskFunction
from flowrra.task import FAILED, TaskResult, TaskStatus
from flowrra.telemetry.report import task_stats, telemetry_stats


def _task_info(task: TaskFunction[..., Any]) -> dict[str, Any]:
    options = task.options_
    return {
        "name": options.name,
        "executor": options.executor,
        "cpu_bound": options.cpu_bound,
        "priority": options.priority,
        "max_retries": options.max_retries,
        "retry_delay": options.retry_delay,
        "timeout": options.timeout,
        "queue": options.queue,
    }


def _dead_letter(letter: DeadLetter) -> dict[str, Any]:
    return {
        "task_id": letter.task.id,
        "task_name": letter.task.name,
        "reason": letter.reason,
        "buried_at": datetime.fromtimestamp(letter.buried_at, UTC).isoformat(),
        "task": letter.task.to_message(),
    }


def _parse_run_at(run_at: object) -> datetime:
    if isinstance(run_at, datetime):
        return run_at
    if isinstance(run_at, str):
        try:
            return datetime.fromisoformat(run_at)
        except ValueError:
            raise ValueError(f"run_at must be an ISO datetime, got {run_at!r}") from None
    raise ValueError(f"run_at must be a datetime or an ISO string, got {run_at!r}")


class FlowrraManager:
    """The management API of one :class:`~flowrra.app.Flowrra` app.

    Every method is async and returns plain dicts, lists, strings, numbers, booleans or
    ``None`` (datetimes as ISO strings), ready for ``json.dumps``. Bad input raises
    ``ValueError`` (actions) or answers ``None`` / ``False`` (lookups); nothing else is
    raised for it. Task records have the shape of ``TaskResult.to_dict``, schedules of
    ``ScheduledTask.to_dict``.
    """

    def __init__(self, app: Flowrra) -> None:
        if not isinstance(app, Flowrra):
            raise TypeError(f"FlowrraManager takes a Flowrra app, got {type(app).__name__}")
        self.app = app
        self._schedules = ScheduleManager(app.registry, lambda: app.scheduler)

    # -- overview ----------------------------------------------------------------------

    async def get_stats(self) -> dict[str, Any]:
        """Queue sizes, task counts, records by status and the scheduler's state.

        ``queues``: ``ready``/``delayed``/``in_flight``/``dead`` from the broker (only
        ``ready`` for a minimal broker; ``None`` with ``queues_error`` when the broker
        cannot be read). ``tasks``: ``registered`` and ``running`` (in this process).
        ``results``: records per status (``backend.count_by_status``), or ``None`` when
        the backend cannot count them. ``queue_details``: one dict per queue (``queue``,
        ``ready``, ``by_priority``, ``delayed``, ``in_flight``, ``dead``, ``oldest_age``);
        ``[]`` for a broker that cannot tell. ``workers``: every worker heard from in the
        last 10 minutes (presence, counts, ``alive``); ``throughput``: tasks ended per
        minute over the last 15 minutes, oldest first, summed over workers (both ``[]``
        with ``telemetry_error`` when the store cannot be read; see docs/management.md).
        """
        queues, queues_error = await self._queue_counts()
        results, results_error = await self._result_counts()
        telemetry = await telemetry_stats(self.app)
        return {
            "app": {"running": self.app.is_running},
            "queues": queues,
            "queues_error": queues_error,
            "tasks": {"registered": len(self.app.registry), "running": self._running_here()},
            "results": results,
            "results_error": results_error,
            "scheduler": await self._schedules.get_scheduler_stats(),
            "queue_details": await _dead_letters.queue_details(self.app),
            **telemetry,
        }

    async def _queue_counts(self) -> tuple[dict[str, Any] | None, str | None]:
        broker = self.app.broker
        try:
            if isinstance(broker, QueueBroker):
                counts = await broker.counts()
                return {
                    "ready": counts.ready,
                    "delayed": counts.delayed,
                    "in_flight": counts.in_flight,
                    "dead": counts.dead,
                }, None
            return {
                "ready": await broker.size(),
                "delayed": None,
                "in_flight": None,
                "dead": None,
            }, None
        except Exception as error:  # stats report an unreadable broker instead of failing
            return None, f"{type(error).__name__}: {error}"

    async def _result_counts(self) -> tuple[dict[str, int] | None, str | None]:
        backend = self.app.backend
        try:
            counts = await backend.count_by_status()
        except NotImplementedError:
            return None, f"{type(backend).__name__} cannot list records by status"
        except Exception as error:  # stats report an unreadable backend instead of failing
            return None, f"{type(error).__name__}: {error}"
        return {status.value: count for status, count in counts.items()}, None

    def _running_here(self) -> int:
        return self.app.running_tasks

    async def health_check(self, timeout: float = 5.0) -> dict[str, Any]:
        """Whether the app can work now, checked part by part; never raises for a failure.

        Returns ``healthy`` (bool), ``status`` (``"healthy"``/``"unhealthy"``),
        ``reasons`` (one string per failed check), ``checked_at`` and ``checks``:
        ``broker``, ``backend``, ``app``, ``scheduler`` and ``workers``, each with
        ``healthy``, ``reason`` (why not) and ``detail``. Redis parts must answer ``PING``
        within ``timeout`` seconds; the app must be running; a scheduler, if any, must run
        while the app runs; every queue of the app's tasks needs an alive worker (or this
        process runs one), and no worker seen in the last 10 minutes may have a stale
        heartbeat.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        report = await health_check(self.app, float(timeout))
        report["checked_at"] = datetime.now(UTC).isoformat()
        return report

    async def get_task_stats(self) -> list[dict[str, Any]]:
        """Outcomes and run durations per task name, over every worker and restart, by name.

        Each: ``name``, ``outcomes`` (``success``, ``failed``, ``retried``,
        ``cancelled``) and ``duration`` of successful runs (``count``, ``sum``, ``avg``,
        estimated ``p50``/``p95``/``p99`` in seconds, and cumulative ``buckets`` as
        ``{"le": seconds or None, "count"}``). Raises what the telemetry store raises.
        """
        return await task_stats(self.app)

    # -- registered tasks --------------------------------------------------------------

    async def list_registered_tasks(self) -> list[dict[str, Any]]:
        """Every registered task, by name: ``name``, ``executor``, ``cpu_bound``,
        ``priority``, ``max_retries``, ``retry_delay``, ``timeout``, ``queue``."""
        registry = self.app.registry
        return [_task_info(registry.get_or_raise(name)) for name in sorted(registry)]

    async def get_task_info(self, name: object) -> dict[str, Any] | None:
        """One registered task as in :meth:`list_registered_tasks`, or ``None``."""
        if not is_id(name) or not self.app.registry.is_registered(str(name)):
            return None
        return _task_info(self.app.registry.get_or_raise(str(name)))

    # -- task records ------------------------------------------------------------------

    async def list_tasks(
        self,
        status: object,
        limit: int | None = None,
        offset: int = 0,
        *,
        name: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Records in ``status``, most recent first, skipping ``offset`` and returning at
        most ``limit`` (``None``: all) of those that pass the filters: ``name`` (the task
        name, exact), ``since`` (inclusive) and ``until`` (exclusive) on ``submitted_at``,
        each a datetime or an ISO string (naive: UTC). ``ValueError`` for an unknown
        status, a bad ``limit``/``offset`` or filter, or ``since`` after ``until``; a
        backend that cannot list raises ``NotImplementedError``."""
        if not isinstance(status, str):
            raise ValueError(f"status must be a string, got {status!r}")
        try:
            wanted = TaskStatus(status)
        except ValueError:
            choices = ", ".join(s.value for s in TaskStatus)
            raise ValueError(f"status must be one of {choices}, got {status!r}") from None
        keep = RecordFilter.parse(name, since, until)
        records = await list_records(
            self.app.backend, wanted, check_limit(limit), check_offset(offset), keep
        )
        return [record.to_dict for record in records]

    async def list_recent_tasks(
        self,
        limit: int | None = None,
        offset: int = 0,
        *,
        name: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Records of every status, the most recently changed first (a feed of activity),
        paged and filtered as in :meth:`list_tasks`. Unfiltered pages read only their own
        records from the Redis backend, however deep the page."""
        keep = RecordFilter.parse(name, since, until)
        records = await list_recent_records(
            self.app.backend, check_limit(limit), check_offset(offset), keep
        )
        return [record.to_dict for record in records]

    async def list_pending_tasks(
        self,
        limit: int | None = None,
        offset: int = 0,
        *,
        name: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Records waiting to run (status ``pending``); see :meth:`list_tasks`."""
        return await self.list_tasks(
            TaskStatus.PENDING, limit, offset, name=name, since=since, until=until
        )

    async def list_running_tasks(
        self,
        limit: int | None = None,
        offset: int = 0,
        *,
        name: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Records being run by any worker (status ``running``); see :meth:`list_tasks`."""
        return await self.list_tasks(
            TaskStatus.RUNNING, limit, offset, name=name, since=since, until=until
        )

    async def list_completed_tasks(
        self,
        limit: int | None = None,
        offset: int = 0,
        *,
        name: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Records that succeeded (status ``success``); see :meth:`list_tasks`."""
        return await self.list_tasks(
            TaskStatus.SUCCESS, limit, offset, name=name, since=since, until=until
        )

    async def list_failed_tasks(
        self,
        limit: int | None = None,
        offset: int = 0,
        *,
        name: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> list[dict[str, Any]]:
        """Records that failed for good (status ``failed``); see :meth:`list_tasks`."""
        return await self.list_tasks(
            TaskStatus.FAILED, limit, offset, name=name, since=since, until=until
        )

    async def get_task_result(self, task_id: object) -> dict[str, Any] | None:
        """The record of ``task_id`` (``TaskResult.to_dict``), or ``None`` if unknown."""
        if not is_id(task_id):
            return None
        record: TaskResult | None = await self.app.get_result(str(task_id))
        return None if record is None else record.to_dict

    # -- actions -----------------------------------------------------------------------

    async def retry_task(self, task_id: object) -> dict[str, Any]:
        """Submit a failed task's name, args and kwargs again, under a new id.

        Returns ``{"task_id": <new id>, "original_task_id": ..., "task_name": ...}``.
        ``ValueError`` for an unknown id, a record not in status ``failed`` or a task name
        no longer registered. The app must be running (else ``ExecutorNotRunningError``).
        """
        key = check_id(task_id, "task_id")
        record = await self.app.get_result(key)
        if record is None:
            raise ValueError(f"no task with id '{key}'")
        if record.status != FAILED:
            raise ValueError(f"task '{key}' is {record.status}, only failed tasks can be retried")
        name = record.task_name
        if name is None or not self.app.registry.is_registered(name):
            raise ValueError(f"task '{key}' ran '{name}', which is not registered")
        new_id = await self.app.submit_call(name, tuple(record.args), dict(record.kwargs))
        return {"task_id": new_id, "original_task_id": key, "task_name": name}

    async def cancel_task(self, task_id: object) -> dict[str, Any]:
        """Cancel a waiting, delayed, retry-waiting or running task (``app.cancel``).

        Returns ``{"task_id": ..., "cancelled": bool}``; False when the task already
        finished or is unknown. ``ValueError`` for an id that is not a non-empty string.
        """
        key = check_id(task_id, "task_id")
        return {"task_id": key, "cancelled": await self.app.cancel(key)}

    async def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks the broker gave up on, newest first: ``task_id``, ``task_name``,
        ``reason``, ``buried_at`` (ISO) and ``task`` (the queued message). ``[]`` for a
        minimal broker, which keeps none. ``ValueError`` for a bad ``limit``."""
        count = check_limit(limit, allow_none=False)
        broker = self.app.broker
        if not isinstance(broker, QueueBroker) or not count:
            return []
        return [_dead_letter(letter) for letter in await broker.dead_letters(count)]

    async def requeue_dead_letter(self, task_id: object) -> dict[str, Any]:
        """Put a dead-lettered task back in its queue: it keeps its id, priority, arguments
        and attempt history, its deliveries start afresh, and its record turns ``pending``.

        Returns ``{"task_id": ..., "requeued": True}``. ``ValueError`` for an id that is
        not dead-lettered (or that a queued or running task holds), a malformed dead
        message, or a broker without dead letters.
        """
        key = check_id(task_id, "task_id")
        await _dead_letters.requeue(self.app, key)
        return {"task_id": key, "requeued": True}

    async def delete_dead_letter(self, task_id: object) -> bool:
        """Drop one dead letter (its record stays as it is); False for an id that is not
        dead-lettered. ``ValueError`` for an id that is not a non-empty string."""
        return await _dead_letters.delete(self.app, check_id(task_id, "task_id"))

    async def purge_dead_letters(self) -> dict[str, Any]:
        """Drop every dead letter (records stay); returns ``{"removed": <how many>}``."""
        return {"removed": await _dead_letters.purge(self.app)}

    async def purge_queue(self) -> dict[str, Any]:
        """Delete everything the broker holds (ready, delayed, in flight, dead), where it
        supports that (the Redis broker does).

        Returns ``{"purged": True, "removed": <queue counts before>}``, or
        ``{"purged": False, "reason": ...}`` for a broker without ``purge()``. The records
        of purged tasks stay in the backend with the status they had.
        """
        purge = getattr(self.app.broker, "purge", None)
        if purge is None:
            name = type(self.app.broker).__name__
            return {"purged": False, "reason": f"{name} does not support purge()"}
        before, _ = await self._queue_counts()
        await purge()
        return {"purged": True, "removed": before}

    # -- schedules ---------------------------------------------------------------------

    async def list_schedules(self, enabled_only: bool = False) -> list[dict[str, Any]]:
        """Every schedule (or only enabled ones), oldest first; ``[]`` with no scheduler."""
        return await self._schedules.list_schedules(enabled_only)

    async def get_schedule(self, schedule_id: object) -> dict[str, Any] | None:
        """One schedule, or ``None`` (unknown or bad id, no scheduler)."""
        return await self._schedules.get_schedule(schedule_id)

    async def get_scheduler_stats(self) -> dict[str, Any]:
        """``configured``, ``running``, ``total_schedules``, ``enabled_schedules``,
        ``disabled_schedules``, ``next_run_at`` (and ``check_interval``, or a ``message``
        saying there is no scheduler)."""
        return await self._schedules.get_scheduler_stats()

    async def create_schedule_cron(
        self,
        task_name: str,
        cron: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
        timezone: str | None = None,
        catch_up: bool = False,
    ) -> dict[str, Any]:
        """Run ``task_name`` at the times of a 5-field ``cron`` expression (in
        ``timezone``, default UTC); returns the schedule. An identical definition returns
        the existing schedule. ``ValueError`` for an unregistered task, a bad expression,
        zone or argument, or no scheduler."""
        options = {
            "enabled": enabled,
            "description": description,
            "max_retries": max_retries,
            "retry_delay": retry_delay,
            "priority": priority,
            "timezone": timezone,
            "catch_up": catch_up,
        }
        return await self._schedules.create(
            "cron", task_name, cron, args=args, kwargs=kwargs, options=options
        )

    async def create_schedule_interval(
        self,
        task_name: str,
        interval: float,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
        catch_up: bool = False,
    ) -> dict[str, Any]:
        """Run ``task_name`` every ``interval`` seconds; returns the schedule.
        ``ValueError`` as for :meth:`create_schedule_cron`, or for a non-positive
        interval."""
        options = {
            "enabled": enabled,
            "description": description,
            "max_retries": max_retries,
            "retry_delay": retry_delay,
            "priority": priority,
            "catch_up": catch_up,
        }
        return await self._schedules.create(
            "interval", task_name, interval, args=args, kwargs=kwargs, options=options
        )

    async def create_schedule_once(
        self,
        task_name: str,
        run_at: datetime | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        description: str | None = None,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
    ) -> dict[str, Any]:
        """Run ``task_name`` once at ``run_at`` (a datetime or ISO string; naive is UTC);
        returns the schedule. ``ValueError`` as for :meth:`create_schedule_cron`."""
        options = {
            "description": description,
            "max_retries": max_retries,
            "retry_delay": retry_delay,
            "priority": priority,
        }
        when = _parse_run_at(run_at)
        return await self._schedules.create(
            "once", task_name, when, args=args, kwargs=kwargs, options=options
        )

    async def enable_schedule(self, schedule_id: object) -> dict[str, Any] | None:
        """Enable a schedule; returns it, or ``None`` for an unknown id."""
        return await self._schedules.set_enabled(schedule_id, True)

    async def disable_schedule(self, schedule_id: object) -> dict[str, Any] | None:
        """Disable a schedule; returns it, or ``None`` for an unknown id."""
        return await self._schedules.set_enabled(schedule_id, False)

    async def delete_schedule(self, schedule_id: object) -> bool:
        """Delete a schedule; False for an unknown id."""
        return await self._schedules.delete(schedule_id)
