"""The application object: task registration, submission, results and lifecycle.

``Flowrra`` wires the parts together: a registry, a broker, a result backend, executors and
(when started) a worker that drives them. With no configuration everything runs in this
process; every part can be swapped through :class:`~flowrra.config.Config`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack, overload

from flowrra.backends import get_backend
from flowrra.backends.base import BaseResultBackend
from flowrra.brokers import get_broker
from flowrra.brokers.adapter import MinimalBrokerAdapter
from flowrra.brokers.base import BaseBroker, QueueBroker
from flowrra.config import BackendConfig, BrokerConfig, Config
from flowrra.events import event_bus
from flowrra.exceptions import (
    BackendError,
    ExecutorNotRunningError,
    TaskCancelledError,
    TaskNotFoundError,
)
from flowrra.executors.base import BaseTaskExecutor
from flowrra.executors.cpu import CPUExecutor
from flowrra.executors.io import IOExecutor
from flowrra.ids import new_task_id
from flowrra.recording import TaskRecorder
from flowrra.registry import (
    P2,
    R2,
    TaskDecorator,
    TaskDecoratorOptions,
    TaskFunction,
    TaskRegistry,
    check_priority,
)
from flowrra.serialization import SCALAR_TYPES, prepare_arguments
from flowrra.task import CANCELLED, FAILED, PENDING, Task, TaskResult
from flowrra.telemetry import Heartbeat, TelemetryStore, store_for_broker
from flowrra.worker import Worker

if TYPE_CHECKING:
    from flowrra.scheduler import Scheduler
    from flowrra.scheduler.backends import BaseSchedulerBackend

_now = datetime.now
P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("flowrra")


def _due_time(countdown: float | None, eta: datetime | None) -> float | None:
    """The UNIX time a delayed submission is due, or ``None`` for "now"."""
    if countdown is not None and eta is not None:
        raise ValueError("pass either countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float) or countdown < 0:
            raise ValueError(f"countdown must be a number of seconds >= 0, got {countdown!r}")
        return time.time() + countdown if countdown > 0 else None
    if eta is not None:
        if not isinstance(eta, datetime):
            raise TypeError(f"eta must be a datetime, got {type(eta).__name__}")
        if eta.tzinfo is None:
            eta = eta.replace(tzinfo=UTC)  # naive datetimes are read as UTC
        return eta.timestamp()
    return None


def _check_queues(queues: Sequence[str]) -> tuple[str, ...]:
    if isinstance(queues, str) or not queues or not all(isinstance(q, str) and q for q in queues):
        raise ValueError(f"queues must be a non-empty sequence of queue names, got {queues!r}")
    return tuple(queues)


class Flowrra:
    """An asyncio task queue.

    ``Flowrra()`` runs everything in this process; ``Flowrra.from_urls(broker=..., backend=...)``
    or a :class:`~flowrra.config.Config` points it elsewhere. Use ``async with app:`` (or
    ``start``/``stop``) around submissions.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        executor_config = self.config.executor
        self._registry = TaskRegistry()
        self._broker: BaseBroker = get_broker(
            self.config.broker, max_size=executor_config.max_queue_size
        )
        self._backend: BaseResultBackend = get_backend(self.config.backend)
        self._recorder = TaskRecorder(self._backend, event_bus)
        self._memory_backend = self._recorder.memory
        self._executors: dict[str, BaseTaskExecutor] = {
            "io": IOExecutor(executor_config.io_workers),
            "cpu": CPUExecutor(executor_config.cpu_workers),
        }
        self._worker: Worker | None = None
        self._telemetry: TelemetryStore | None = None  # made on first use, for the broker
        self._heartbeat: Heartbeat | None = None
        self._queue: QueueBroker | None = None  # the broker, once start() checked its kind
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening = False  # relaying the backend's published updates
        self._subscription_lock = asyncio.Lock()
        self._subscription_changes: set[asyncio.Future[None]] = set()
        event_bus.watch(self._on_subscribers_changed)
        self._lifecycle = asyncio.Lock()
        self._scheduler: Scheduler | None = None

    @classmethod
    def from_urls(
        cls,
        broker: str | BaseBroker | None = None,
        backend: str | BaseResultBackend | None = None,
    ) -> Flowrra:
        """An app on the broker and backend these URLs (or objects) name; ``None``: memory."""
        return cls(
            Config(
                broker=BrokerConfig(url=broker) if broker is not None else None,
                backend=BackendConfig(url=backend) if backend is not None else None,
            )
        )

    # -- registration ----------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def task(self, **options: Unpack[TaskDecoratorOptions]) -> TaskDecorator: ...

    def task(
        self, fn: Callable[P, R] | None = None, **options: Unpack[TaskDecoratorOptions]
    ) -> TaskFunction[P, R] | TaskDecorator:
        """Register a task (``@app.task`` or ``@app.task(...)``), bound to this app.

        Takes the options of :meth:`TaskRegistry.task`; ``max_retries`` and
        ``retry_delay`` default to the app's ``ExecutorConfig``.
        """
        options.setdefault("max_retries", self.config.executor.max_retries)
        options.setdefault("retry_delay", self.config.executor.retry_delay)
        decorate = self._registry.task(**options)

        def register(func: Callable[P2, R2]) -> TaskFunction[P2, R2]:
            task = decorate(func)
            task.app = self
            return task

        if fn is not None:
            return register(fn)
        return register

    def register_executor(self, name: str, executor: BaseTaskExecutor) -> None:
        """Make ``executor`` available to tasks declared with ``@app.task(executor=name)``.

        Call before ``start()``. ``"io"`` and ``"cpu"`` may be replaced.
        """
        if not isinstance(executor, BaseTaskExecutor):
            raise TypeError("executors must subclass flowrra.executors.BaseTaskExecutor")
        if self._running:
            raise RuntimeError("register executors before start()")
        self._executors[name] = executor

    # -- properties ------------------------------------------------------------------

    @property
    def registry(self) -> TaskRegistry:
        """The registered tasks."""
        return self._registry

    @property
    def broker(self) -> BaseBroker:
        """The broker tasks are queued in."""
        return self._broker

    @property
    def backend(self) -> BaseResultBackend:
        """The result backend."""
        return self._backend

    @property
    def executors(self) -> dict[str, BaseTaskExecutor]:
        """Executors by name (a copy)."""
        return dict(self._executors)

    @property
    def running_tasks(self) -> int:
        """How many tasks this process's worker is running now (0 without a worker)."""
        worker = self._worker
        return 0 if worker is None else worker.running

    @property
    def telemetry(self) -> TelemetryStore:
        """Where workers publish presence and counts: Redis with a Redis broker (every
        process of the app sees every worker), else this process's memory."""
        if self._telemetry is None:
            self._telemetry = store_for_broker(self._broker)
        return self._telemetry

    @property
    def heartbeat(self) -> Heartbeat | None:
        """The heartbeat of this process's worker, or ``None`` without a worker."""
        return self._heartbeat

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop :meth:`start` ran on, while the app runs (else ``None``).

        The app's connections and coroutines belong to that loop: code in other threads
        (a sync web view, say) must hand its calls to it, for instance with
        ``asyncio.run_coroutine_threadsafe(coro, app.loop)``.
        """
        return self._loop

    @property
    def is_running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._running

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler made by :meth:`create_scheduler` (or from the config), or ``None``."""
        return self._scheduler

    def create_scheduler(
        self,
        backend: BaseSchedulerBackend | str | None = None,
        check_interval: float = 60.0,
    ) -> Scheduler:
        """Make the app's persistent scheduler (it needs ``pip install 'flowrra[scheduler]'``).

        ``backend``: a schedule store, a database URL (``sqlite:///``, ``postgresql://``,
        ``mysql://``) or ``None`` for the SQLite file ``.flowrra_schedule.db``. Runs are
        submitted through this app. ``start()`` starts the scheduler and ``stop()`` stops
        it; one made while the app runs is started with ``await app.scheduler.start()``.
        """
        from flowrra.scheduler import Scheduler  # noqa: PLC0415 - optional extra
        from flowrra.scheduler.backends import (  # noqa: PLC0415 - optional extra
            BaseSchedulerBackend,
            get_scheduler_backend,
        )

        if self._scheduler is not None and self._scheduler.is_running:
            raise RuntimeError("the app's scheduler is running: stop it before replacing it")
        store = backend if isinstance(backend, BaseSchedulerBackend) else None
        if store is None:
            store = get_scheduler_backend(backend)  # type: ignore[arg-type]
        self._scheduler = Scheduler(
            store, self._registry, check_interval, submit=self._submit_scheduled
        )
        return self._scheduler

    async def _submit_scheduled(
        self,
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_id: str,
        priority: int,
        max_retries: int,
        retry_delay: float,
    ) -> str:
        """The scheduler's submit callback: one run, with the schedule's stored options."""
        return await self.submit_call(
            task_name,
            args,
            kwargs,
            priority=priority,
            task_id=task_id,
            max_retries=max_retries,
            retry_delay=retry_delay,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, *, worker: bool = True, queues: Sequence[str] = ("default",)) -> None:
        """Start the app (idempotent): accept submissions, and run tasks when ``worker``.

        ``worker=False`` makes a producer-only process (a web server that submits tasks
        which ``flowrra worker`` processes run). ``queues``: the queues this process's
        worker serves, earlier ones first. A scheduler made with :meth:`create_scheduler`,
        or enabled by ``SchedulerConfig(enabled=True)``, starts too.
        """
        async with self._lifecycle:
            if self._running:
                return
            self._check_routes()
            if not isinstance(self._broker, QueueBroker):
                logger.warning(
                    "%s implements only push/pop/size: tasks held by this process are lost "
                    "if it dies (see docs/guarantees.md)",
                    type(self._broker).__name__,
                )
                self._broker = MinimalBrokerAdapter(self._broker)
            queue = self._queue = self._broker
            queue.dead_letter_listener = self._record_dead_letter
            await queue.connect()
            await self._backend.connect()
            self._running = True
            self._loop = asyncio.get_running_loop()
            try:
                if worker:
                    await self._start_worker(queue, _check_queues(queues))
                if self._recorder.publishes_updates:
                    await self._follow_subscribers()
                await self._start_scheduler()
            except BaseException:
                await self._stop_parts(wait=False, timeout=0)  # a failed start leaves nothing
                raise

    async def _record_dead_letter(
        self, task: Task, reason: str, deliveries: int, fence: int | None
    ) -> None:
        """Record a task the broker dead-lettered on its own (its workers kept dying) as
        failed with the reason, which wakes whoever waits for it. A record that is already
        finished (the last delivery stored its outcome, then died before its ack) stays;
        the write is fenced by the buried claim, so a worker of that claim that was only
        stalled cannot turn it into a success later. Tried three times, then logged."""
        for attempt in range(3):
            try:
                recorded = await self._recorder.ended(
                    task, FAILED, reason, None, deliveries, fence=fence, keep_finished=True
                )
            except Exception as error:
                if attempt == 2:
                    logger.error("could not record dead-lettered task %s: %s", task.id, error)
                    return
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            worker = self._worker
            if recorded and worker is not None:
                worker.telemetry.failed(task.name)
            return

    async def _start_worker(self, queue: QueueBroker, queues: tuple[str, ...]) -> None:
        self._worker = Worker(
            queue,
            self._recorder,
            self._registry,
            self._executors,
            queues=queues,
            max_deliveries=self.config.executor.max_deliveries,
        )
        await self._worker.start()
        self._heartbeat = Heartbeat(
            self._worker,
            self.telemetry,
            queues=queues,
            concurrency={n: e.concurrency for n, e in self._executors.items()},
            interval=self.config.executor.heartbeat_interval,
        )
        await self._heartbeat.start()

    def _on_subscribers_changed(self) -> None:
        """Event-bus watcher: (un)subscribe to published updates in the background, on the
        app's own loop (the subscriber may have been added from any thread)."""
        loop = self._loop
        if loop is not None and self._recorder.publishes_updates and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule_follow)

    def _schedule_follow(self) -> None:
        change = asyncio.ensure_future(self._follow_subscribers())
        self._subscription_changes.add(change)
        change.add_done_callback(self._subscription_changes.discard)

    async def _follow_subscribers(self) -> None:
        """Relay the backend's published updates only while the app runs and the event bus
        has subscribers: a process nobody listens in decodes no other process's records.

        A subscriber added while the app runs gets every update stored once the
        backend's subscription is confirmed (a round trip later). Never raises: a failed
        (un)subscription is logged and tried again at the next change.
        """
        backend: Any = self._backend
        async with self._subscription_lock:
            wanted = self._running and event_bus.has_subscribers
            try:
                if wanted and not self._listening:
                    await backend.listen_updates(self._relay_update)
                elif self._listening and not wanted:
                    await backend.stop_listening(self._relay_update)
            except Exception:
                logger.exception("could not change the subscription to published task updates")
                return
            self._listening = wanted

    async def _relay_update(self, event: dict[str, Any]) -> None:
        """Hand a ``task.update`` published by any process to this process's subscribers."""
        if event_bus.subscribers:
            await event_bus.emit(event)

    async def _start_scheduler(self) -> None:
        settings = self.config.scheduler
        if self._scheduler is None and settings is not None and settings.enabled:
            self.create_scheduler(settings.database_url, settings.check_interval)
        if self._scheduler is not None and not self._scheduler.is_running:
            await self._scheduler.start()

    def _check_routes(self) -> None:
        for name in self._registry:
            task = self._registry.get_or_raise(name)
            if task.options_.executor not in self._executors:
                raise BackendError(
                    f"task '{name}' runs on executor '{task.options_.executor}', which is not "
                    "registered: call app.register_executor() first"
                )

    async def stop(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop the worker. Idempotent.

        ``wait=True``: running tasks get up to ``timeout`` seconds to finish; the rest are
        stopped and put back in the queue, never lost. Results stay readable afterwards.
        """
        async with self._lifecycle:
            if self._running:
                await self._stop_parts(wait, timeout)

    async def _stop_parts(self, wait: bool, timeout: float) -> None:
        """Stop whatever runs (scheduler, subscription, worker, heartbeat, pump)."""
        if self._scheduler is not None and self._scheduler.is_running:
            await self._scheduler.stop()
        self._running = False
        self._loop = None
        if self._recorder.publishes_updates:
            await self._follow_subscribers()
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop(grace=timeout if wait else 0)
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            await heartbeat.stop()
        if isinstance(self._queue, MinimalBrokerAdapter):
            await self._queue.stop_pump()

    async def close(self) -> None:
        """Stop the app, then close the broker's and the backend's connections.

        Call it once at shutdown of a process that uses Redis (the scheduler's store, if
        any, is closed too). The app cannot be started
        again afterwards (``stop()`` alone keeps it restartable and its results readable).
        """
        await self.stop()
        await self._broker.close()
        await self._backend.close()
        if self._scheduler is not None:
            await self._scheduler.close()

    async def __aenter__(self) -> Flowrra:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- submitting ------------------------------------------------------------------

    async def submit(
        self,
        task: TaskFunction[..., Any] | str,
        *args: Any,
        priority: int | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Queue ``task(*args, **kwargs)``; returns the task id.

        ``task``: the registered function or its name. ``priority`` (higher runs first)
        defaults to the task's. ``countdown`` (seconds) or ``eta`` (a datetime; naive means
        UTC) delay the start. ``task_id`` makes the submission idempotent: an id already
        queued, running or with a stored result is returned without queueing again.
        Waits while the queue is full. For a call checked against the task's signature,
        use ``await task.submit(...)`` / ``task.options(...).submit(...)``.
        """
        if task_id is not None and await self._is_known(task_id):
            return task_id
        message, queued = self._submit_nowait(
            task,
            args,
            kwargs,
            priority=priority,
            countdown=countdown,
            eta=eta,
            task_id=task_id,
            max_retries=None,
            retry_delay=None,
        )
        if not queued:
            await self._enqueue(message)
        return message.id

    async def submit_call(
        self,
        task: TaskFunction[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        priority: int | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
    ) -> str:
        """Queue one call with explicit options (:meth:`submit` with every option spelled
        out, plus per-call ``max_retries`` / ``retry_delay`` as the scheduler uses them)."""
        if task_id is not None and await self._is_known(task_id):
            return task_id
        message, queued = self._submit_nowait(
            task,
            args,
            kwargs,
            priority=priority,
            countdown=countdown,
            eta=eta,
            task_id=task_id,
            max_retries=max_retries,
            retry_delay=retry_delay,
        )
        if not queued:
            await self._enqueue(message)
        return message.id

    def _resolve(self, task: TaskFunction[..., Any] | str) -> TaskFunction[..., Any]:
        if type(task) is TaskFunction and self._registry.get(task.options_.name) is task:
            return task  # the common case, first
        if isinstance(task, TaskFunction):
            registered = self._registry.get(task.task_name)
            if registered is not task:
                raise TaskNotFoundError(task.task_name)
            return task
        if not isinstance(task, str):
            raise TypeError(f"submit takes a task or a task name, got {type(task).__name__}")
        return self._registry.get_or_raise(task)

    async def _is_known(self, task_id: str) -> bool:
        """True when ``task_id`` already has a record (queued, running or finished)."""
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("task_id must be a non-empty string")
        return await self._backend.get(task_id) is not None

    def _submit_nowait(
        self,
        task: TaskFunction[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        priority: int | None,
        countdown: float | None,
        eta: datetime | None,
        task_id: str | None,
        max_retries: int | None,
        retry_delay: float | None,
    ) -> tuple[Task, bool]:
        """Check a submission, build its message, and record and queue it if neither needs
        to wait. Returns the message and whether it was queued; raises for invalid input."""
        if not self._running:
            raise ExecutorNotRunningError()
        options = self._resolve(task).options_
        priority = options.priority if priority is None else check_priority(priority)
        due = None if countdown is None and eta is None else _due_time(countdown, eta)
        for value in args:  # the common case, all scalars, needs no copy
            if type(value) not in SCALAR_TYPES:
                args, kwargs = prepare_arguments(options.name, args, kwargs)
                break
        else:
            if kwargs:
                args, kwargs = prepare_arguments(options.name, args, kwargs)
        message = Task(
            new_task_id() if task_id is None else task_id,
            options.name,
            args,
            kwargs,
            options.max_retries if max_retries is None else max_retries,
            options.retry_delay if retry_delay is None else retry_delay,
            0,
            priority,
            options.cpu_bound,
            options.queue,
            options.executor,
            options.timeout,
            due,
            _now(UTC),
        )
        queue = self._queue
        queued = (
            queue is not None
            and self._recorder.live_nowait(message, PENDING, None, 0)
            and queue.enqueue_nowait(message) is not None
        )
        return message, queued

    async def _enqueue(self, message: Task) -> None:
        """Record ``message`` as pending and queue it, waiting for room if needed.

        Where the backend can post the pending record (Redis), the record and the queueing
        go out together; the record is written only if no worker wrote a newer one first.
        If queueing fails, the record is removed. If only the record fails, the task is
        queued all the same (a worker writes its records): that is logged, not raised,
        since a caller that submits again would run it twice.
        """
        queue = self._queue
        if queue is None:
            raise ExecutorNotRunningError()
        recorded = self._recorder.post_submitted(message)
        if recorded is None:
            await self._recorder.live(message, PENDING, None, 0)
        try:
            posted = queue.post_enqueue(message)
            if posted is None or await posted < 0:  # not posted, or the queue is full
                await queue.enqueue(message)
        except BaseException:
            ours = True  # the record is this submit's, or its write's outcome is unknown
            if recorded is not None:
                await asyncio.wait([recorded])
                # exception() retrieves it: the queueing error is the one raised
                if not recorded.cancelled() and recorded.exception() is None:
                    ours = recorded.result() == 1  # 0: another submit of this id wrote it
            if ours:
                await self._backend.delete(message.id)
            raise
        if recorded is not None:
            try:
                await recorded
            except Exception as error:
                logger.warning(
                    "task %s[%s] is queued but its pending record could not be written: %s",
                    message.name,
                    message.id,
                    error,
                )

    # -- results ---------------------------------------------------------------------

    async def wait_for_result(self, task_id: str, timeout: float | None = None) -> TaskResult:
        """Wait until the task is complete and return its record.

        Raises :class:`TaskTimeoutError` (a ``TimeoutError``) after ``timeout`` seconds and
        :class:`TaskNotFoundError` (a ``ValueError``) for an unknown id.
        """
        if self._memory_backend is not None:
            done = self._memory_backend.finished_now(task_id)
            if done is not None:
                return done
        return await self._backend.wait_for(task_id, timeout)

    async def get_result(self, task_id: str) -> TaskResult | None:
        """The task's current record, or ``None`` for an unknown id. Works after ``stop()``."""
        return await self._backend.get(task_id)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a queued, delayed, retry-waiting or running task; True if it was cancelled.

        A waiting task is removed from the queue; a running one is stopped (IO: its
        coroutine is cancelled; CPU: its child process is stopped). Its record ends with
        status ``cancelled``. False when the task already finished or is unknown.
        """
        if isinstance(self._broker, QueueBroker):
            removed = await self._broker.cancel(task_id)
            if removed is not None:
                error = TaskCancelledError(f"task '{task_id}' was cancelled before it ran")
                # keep_finished: a run that stored its outcome but lost its ack came back
                await self._recorder.ended(removed, CANCELLED, error, None, 0, keep_finished=True)
                return True
        worker = self._worker
        return worker is not None and worker.cancel_running(task_id)

    async def run_until_idle(self, timeout: float | None = None) -> None:
        """Let the worker run until nothing is queued, delayed or running.

        The real worker loop does the work (there is no eager mode): use it in tests to
        wait for everything submitted, including retries and delayed tasks. Raises
        ``TimeoutError`` if the app is still busy after ``timeout`` seconds.
        """
        if not self._running or not isinstance(self._broker, QueueBroker):
            raise ExecutorNotRunningError()
        async with asyncio.timeout(timeout):
            await self._broker.wait_idle()
