"""The scheduler: turns stored schedules into submissions, once per due run.

Any number of :class:`Scheduler` instances, in any processes, may share one store. Each
pass claims due schedules through :meth:`BaseSchedulerBackend.claim_due`, which locks
them, so each (schedule, nominal fire time) is submitted by one instance. The run is
submitted with a task id derived from the schedule id and the nominal time, *before* the
claim commits: if the instance dies in between, another instance submits the run again
with the same id, which the app treats as already known. Each run is therefore queued
exactly once while at least one instance is alive.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from flowrra.registry import TaskRegistry, check_priority
from flowrra.scheduler.backends.base import BaseSchedulerBackend
from flowrra.scheduler.cron import CronExpression, load_zone
from flowrra.scheduler.models import ScheduledTask, ScheduleType, as_utc, dump_json
from flowrra.scheduler.submit import SubmitCallback
from flowrra.scheduler.timing import Claim, first_run, next_after, plan_claim, run_task_id
from flowrra.task import utcnow

logger = logging.getLogger("flowrra.scheduler")

#: Longest the loop sleeps, whatever ``check_interval`` says: changes made by other
#: processes are seen within this many seconds.
MAX_SLEEP = 1.0
#: Pause before looking again at runs that are due but held by another instance.
BUSY_PAUSE = 0.1
#: How long :meth:`Scheduler.stop` lets the current pass finish before cancelling it.
STOP_GRACE = 30.0

Clock = Callable[[], datetime]


class Scheduler:
    """Fires stored cron, interval and one-time schedules through a submit callback.

    ``backend`` is the schedule store, ``registry`` the tasks that may be scheduled.
    ``check_interval`` is the longest the loop sleeps between passes; it is capped at
    :data:`MAX_SLEEP` (1 s) so that changes from other processes take effect within a
    second, and the loop also wakes at the next due time and at once on changes made
    through this instance. ``io_executor``/``cpu_executor`` are accepted for
    compatibility with 0.1.x and not used: runs go through ``submit`` (see
    :class:`SubmitCallback`), which an app passes for you. ``clock`` returns the current
    time (default: UTC now); tests inject one and drive passes with :meth:`tick`.
    ``batch_size`` bounds how many schedules one store transaction claims.
    """

    def __init__(
        self,
        backend: BaseSchedulerBackend,
        registry: TaskRegistry,
        check_interval: float = 60.0,
        io_executor: Any = None,
        cpu_executor: Any = None,
        *,
        submit: SubmitCallback | None = None,
        clock: Clock | None = None,
        batch_size: int = 500,
    ) -> None:
        if not check_interval > 0:
            raise ValueError(f"check_interval must be > 0 seconds, got {check_interval!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.backend = backend
        self.registry = registry
        self.check_interval = float(check_interval)
        self.io_executor = io_executor
        self.cpu_executor = cpu_executor
        self.batch_size = batch_size
        self._submit = submit
        self._clock: Clock = clock or utcnow
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failed = 0
        self._submitted = 0
        self._warned: set[str] = set()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def poll_interval(self) -> float:
        """The longest sleep between passes: ``min(check_interval, MAX_SLEEP)``."""
        return min(self.check_interval, MAX_SLEEP)

    def set_submit_callback(self, callback: SubmitCallback) -> None:
        """Submit runs through ``callback`` from now on (see :class:`SubmitCallback`)."""
        self._submit = callback

    def now(self) -> datetime:
        """The scheduler's current time, aware UTC (from the injected clock, if any)."""
        return as_utc(self._clock())

    async def start(self) -> None:
        """Connect to the store and start the loop. Idempotent.

        Raises ``RuntimeError`` when no submit callback is set.
        """
        self._require_submit()
        if self.is_running:
            return
        await self.backend.next_due_at()
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="flowrra-scheduler")

    async def stop(self) -> None:
        """Stop the loop, letting a pass in progress finish. Idempotent.

        The store stays open (see :meth:`close`). A pass still running after
        :data:`STOP_GRACE` seconds is cancelled; its claim rolls back and the runs it had
        submitted are submitted again, with the same ids, by the next instance.
        """
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE)
        except TimeoutError:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """:meth:`stop`, then close the store."""
        await self.stop()
        await self.backend.close()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- the loop -------------------------------------------------------------------------

    def _require_submit(self) -> SubmitCallback:
        if self._submit is None:
            raise RuntimeError(
                "the scheduler has no submit callback: pass submit=... or call "
                "set_submit_callback() (Flowrra.create_scheduler() does this for you)"
            )
        return self._submit

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            delay = await self._pass()
            if self._stopping:
                return
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()

    async def _pass(self) -> float:
        """One :meth:`tick`; returns how long to sleep before the next one."""
        try:
            submitted = await self.tick()
            return await self._sleep_time(progressed=submitted > 0)
        except Exception:
            logger.exception("scheduler pass failed; retrying in %.1fs", self.poll_interval)
            return self.poll_interval

    async def _sleep_time(self, progressed: bool) -> float:
        """Until the next due time, at most :attr:`poll_interval`.

        A run already due again means it fell due during the pass (go on at once when
        the pass made progress) or another instance holds it (look again shortly).
        """
        if self._failed:
            return self.poll_interval
        due = await self.backend.next_due_at()
        if due is None:
            return self.poll_interval
        wait = (due - self.now()).total_seconds()
        if wait <= 0:
            return 0.0 if progressed else BUSY_PAUSE
        return min(wait, self.poll_interval)

    async def tick(self, now: datetime | None = None) -> int:
        """Run one pass at ``now`` (default: the clock); return the runs submitted.

        Claims due schedules in batches of ``batch_size`` until none is left, submits
        each claimed run and advances its schedule. A run whose submission raises stays
        due and is tried again by a later pass. Raises ``RuntimeError`` without a submit
        callback.
        """
        self._require_submit()
        when = as_utc(now) if now is not None else self.now()
        self._failed = 0
        self._submitted = 0
        while True:
            claims = await self.backend.claim_due(when, self.batch_size, plan_claim, self._fire)
            if len(claims) < self.batch_size:
                return self._submitted

    async def _fire(self, claims: list[Claim]) -> list[Claim]:
        return [claim for claim in claims if await self._fire_claim(claim)]

    async def _fire_claim(self, claim: Claim) -> bool:
        """Submit every run of ``claim``; False (the claim is not advanced) on failure."""
        task = claim.task
        if not self.registry.is_registered(task.task_name):
            if task.id not in self._warned:
                self._warned.add(task.id)
                logger.warning(
                    "schedule %s: task %r is not registered in this process; "
                    "leaving its runs to an instance that has it",
                    task.id,
                    task.task_name,
                )
            self._failed += 1
            return False
        submit = self._require_submit()
        try:
            for fire_time in claim.fire_times:
                await submit(
                    task.task_name,
                    tuple(task.args),
                    dict(task.kwargs),
                    task_id=run_task_id(task.id, fire_time),
                    priority=task.priority,
                    max_retries=task.max_retries,
                    retry_delay=task.retry_delay,
                )
        except Exception:
            logger.exception("schedule %s: submitting a run failed; it stays due", task.id)
            self._failed += 1
            return False
        self._submitted += len(claim.fire_times)
        return True

    # -- defining schedules -----------------------------------------------------------

    async def schedule_cron(  # noqa: PLR0917 (0.1.x signature)
        self,
        task_name: str,
        cron: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        enabled: bool = True,
        description: str | None = None,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
        task_id: str | None = None,
        *,
        timezone: str | None = None,
        catch_up: bool = False,
    ) -> str:
        """Run ``task_name`` at the times of the 5-field ``cron`` expression.

        ``timezone`` is the IANA zone the expression is read in (default UTC; see
        :mod:`flowrra.scheduler.cron` for daylight saving time). ``catch_up=True`` fires
        every run missed while no scheduler ran, instead of one. Returns the schedule
        id; the same definition returns the existing id. Raises ``ValueError`` for an
        unregistered task, a malformed expression or an unknown zone.
        """
        expression = CronExpression(cron, timezone)
        return await self._register(
            ScheduledTask(
                id=task_id or str(uuid.uuid4()),
                task_name=task_name,
                schedule_type=ScheduleType.CRON,
                schedule=expression.expression,
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                enabled=enabled,
                description=description,
                max_retries=max_retries,
                retry_delay=retry_delay,
                priority=priority,
                timezone=timezone,
                catch_up=catch_up,
            )
        )

    async def schedule_interval(  # noqa: PLR0917 (0.1.x signature)
        self,
        task_name: str,
        interval: float,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        enabled: bool = True,
        description: str | None = None,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
        task_id: str | None = None,
        *,
        catch_up: bool = False,
    ) -> str:
        """Run ``task_name`` every ``interval`` seconds, first ``interval`` from now.

        Runs are anchored to their nominal times (no drift). Returns the schedule id; the
        same definition returns the existing id (``60`` and ``60.0`` are the same).
        Raises ``ValueError`` for an unregistered task or an interval that is not a
        positive number.
        """
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise ValueError(f"interval must be a number of seconds, got {interval!r}")
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        return await self._register(
            ScheduledTask(
                id=task_id or str(uuid.uuid4()),
                task_name=task_name,
                schedule_type=ScheduleType.INTERVAL,
                schedule=repr(float(interval)),
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                enabled=enabled,
                description=description,
                max_retries=max_retries,
                retry_delay=retry_delay,
                priority=priority,
                catch_up=catch_up,
            )
        )

    async def schedule_once(  # noqa: PLR0917 (0.1.x signature)
        self,
        task_name: str,
        run_at: datetime,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        description: str | None = None,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
        task_id: str | None = None,
    ) -> str:
        """Run ``task_name`` once at ``run_at``; a naive datetime is taken as UTC.

        A time in the past fires at the next pass. After its run the schedule is kept,
        disabled, with no next run. Returns the schedule id (the same definition returns
        the existing id). Raises ``ValueError`` for an unregistered task or a ``run_at``
        that is not a datetime.
        """
        if not isinstance(run_at, datetime):
            raise ValueError(f"run_at must be a datetime, got {type(run_at).__name__}")
        return await self._register(
            ScheduledTask(
                id=task_id or str(uuid.uuid4()),
                task_name=task_name,
                schedule_type=ScheduleType.ONE_TIME,
                schedule=as_utc(run_at).isoformat(),
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                description=description,
                max_retries=max_retries,
                retry_delay=retry_delay,
                priority=priority,
            )
        )

    def _validate(self, task: ScheduledTask) -> None:
        if not self.registry.is_registered(task.task_name):
            raise ValueError(
                f"Task '{task.task_name}' is not registered: register it before scheduling it"
            )
        if isinstance(task.max_retries, bool) or task.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {task.max_retries!r}")
        if not task.retry_delay >= 0:
            raise ValueError(f"retry_delay must be >= 0, got {task.retry_delay!r}")
        check_priority(task.priority)
        if task.timezone is not None:
            load_zone(task.timezone)
        dump_json(list(task.args), "schedule args")
        dump_json(task.kwargs, "schedule kwargs")

    async def _register(self, task: ScheduledTask) -> str:
        """Store ``task`` unless its definition exists; return the stored id."""
        self._validate(task)
        existing = await self.backend.find_by_definition_key(task.definition_key)
        if existing is not None:
            return existing.id
        now = self.now()
        task.created_at = task.updated_at = now
        task.next_run_at = first_run(task, now)
        stored = await self.backend.create(task)
        self._wakeup.set()
        return stored.id

    # -- managing schedules -----------------------------------------------------------

    async def _get_or_raise(self, schedule_id: str) -> ScheduledTask:
        task = await self.backend.get(schedule_id)
        if task is None:
            raise ValueError(f"Scheduled task '{schedule_id}' not found")
        return task

    async def unschedule(self, schedule_id: str) -> bool:
        """Delete a schedule; False if there was none."""
        deleted = await self.backend.delete(schedule_id)
        self._wakeup.set()
        return deleted

    async def enable_task(self, schedule_id: str) -> None:
        """Enable a schedule; it next fires at its first nominal time after now.

        Runs that fell while it was disabled are not fired. An interval schedule stays on
        its original grid. ``ValueError`` for an unknown id.
        """
        task = await self._get_or_raise(schedule_id)
        if task.enabled:
            return
        now = self.now()
        await self.backend.set_enabled(schedule_id, True, self._resume_at(task, now))
        self._wakeup.set()

    async def disable_task(self, schedule_id: str) -> None:
        """Disable a schedule (no runs until enabled). ``ValueError`` for an unknown id."""
        await self._get_or_raise(schedule_id)
        await self.backend.set_enabled(schedule_id, False)
        self._wakeup.set()

    @staticmethod
    def _resume_at(task: ScheduledTask, now: datetime) -> datetime | None:
        if task.schedule_type is ScheduleType.ONE_TIME:
            return first_run(task, now) if task.last_run_at is None else None
        return next_after(task, task.next_run_at or now, now)

    async def get_scheduled_task(self, schedule_id: str) -> ScheduledTask | None:
        """The schedule ``schedule_id``, or ``None``."""
        return await self.backend.get(schedule_id)

    async def list_scheduled_tasks(self, enabled_only: bool = False) -> list[ScheduledTask]:
        """Every schedule (or only enabled ones), oldest first."""
        if enabled_only:
            return await self.backend.list_enabled()
        return await self.backend.list_all()
