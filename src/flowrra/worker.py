"""The worker loop: claim, run on an executor, record, settle.

Each executor gets ``concurrency`` slot coroutines; a slot claims one task at a time from
the executor's lanes and runs it start to finish, so there is no per-task ``create_task``
and no dispatcher in between. Retries, timeouts, cancellation and redelivery are decided
here, once, for every executor and broker. Where the backend posts writes in order
(Redis), a slot does not wait for the running record before it runs the task, nor for the
final record and the ack after it (:mod:`flowrra.settling`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowrra._aio import cancel_until_done
from flowrra.brokers.base import Delivery, QueueBroker, lane_of
from flowrra.exceptions import (
    SerializationError,
    TaskCancelledError,
    TaskTimeoutError,
    WorkerLostError,
)
from flowrra.executors.base import BaseTaskExecutor
from flowrra.executors.io import IOExecutor
from flowrra.ids import new_worker_id
from flowrra.recording import TaskRecorder, add_attempt
from flowrra.registry import TaskFunction, TaskRegistry
from flowrra.serialization import SCALAR_TYPES, json_roundtrip
from flowrra.settling import BackgroundSettlements
from flowrra.task import CANCELLED, FAILED, RETRYING, RUNNING, SUCCESS, Task, TaskResult
from flowrra.telemetry.accumulator import WorkerTelemetry

logger = logging.getLogger("flowrra.worker")

_now = datetime.now  # a local name: read for every task
_FAIRNESS_STREAK = 100  # tasks a slot runs back to back before it yields to the event loop
_CLAIM_BACKOFF = 1.0  # seconds a slot waits after the broker failed a claim
_SETTLE_BACKOFF = 1.0  # seconds a slot waits after it could not settle a task
_SETTLING_PER_SLOT = 4  # background settlements per slot before slots stop claiming


class _Interrupt(enum.Enum):
    """Why the worker itself cancelled a running call."""

    CANCEL = "cancel"  # app.cancel(task_id)
    SHUTDOWN = "shutdown"  # the grace period of stop() ran out


def _fence(delivery: Delivery) -> int | None:
    """The claim token that fences this delivery's result writes (brokers with int tokens)."""
    token = delivery.token
    return token if isinstance(token, int) else None


class _Slot:
    """One slot coroutine and what it is doing."""

    __slots__ = ("coroutine", "delivery", "in_call")

    def __init__(self) -> None:
        self.coroutine: asyncio.Task[None] | None = None
        self.delivery: Delivery | None = None
        self.in_call = False


class Worker:
    """Runs tasks claimed from ``broker`` on ``executors`` (by executor name).

    ``queues``: the queues served, earlier ones first. ``max_deliveries``: deliveries of one
    attempt (each ends by the death of the process running it) before the task is
    dead-lettered. ``worker_id``: this worker's id (default: :func:`~flowrra.ids.new_worker_id`).
    """

    def __init__(
        self,
        broker: QueueBroker,
        recorder: TaskRecorder,
        registry: TaskRegistry,
        executors: Mapping[str, BaseTaskExecutor],
        *,
        queues: Iterable[str] = ("default",),
        max_deliveries: int = 3,
        worker_id: str | None = None,
    ) -> None:
        self.id = worker_id or new_worker_id()
        """This worker's id, as it appears in task records and the worker list."""
        self.telemetry = WorkerTelemetry()
        """This worker's outcome counts and durations (one cheap call per finished task)."""
        self._succeeded = self.telemetry.succeeded
        self._broker = broker
        self._recorder = recorder
        self._registry = registry
        self._executors = dict(executors)
        self._queues = tuple(queues)
        self._max_deliveries = max_deliveries
        self._slots: list[_Slot] = []
        self._interrupts: dict[str, _Interrupt] = {}
        self._settlements = BackgroundSettlements(
            broker, recorder, self._succeeded, self._hand_back
        )
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    @property
    def running(self) -> int:
        """How many tasks this worker is running now."""
        return sum(1 for slot in self._slots if slot.delivery is not None)

    async def start(self) -> None:
        """Start the executors and one coroutine per slot."""
        self._stopping = False
        for name, executor in self._executors.items():
            await executor.start()
            lanes = [lane_of(queue, name) for queue in self._queues]
            for _ in range(executor.concurrency):
                slot = _Slot()
                slot.coroutine = asyncio.create_task(
                    self._serve(slot, executor, lanes), name=f"flowrra-{name}-slot"
                )
                self._slots.append(slot)

    async def stop(self, grace: float | None = 30.0) -> None:
        """Stop claiming; let running tasks finish within ``grace`` seconds; hand the rest back.

        Tasks still running after ``grace`` are stopped and put back in the queue at once
        (``grace=0``: at once, ``None``: wait for them however long they run).
        """
        self._stopping = True
        idle = [s.coroutine for s in self._slots if s.delivery is None and s.coroutine]
        for coroutine in idle:
            coroutine.cancel()
        busy = [s.coroutine for s in self._slots if s.delivery is not None and s.coroutine]
        if busy and grace != 0:
            await asyncio.wait(busy, timeout=grace)
        for slot in self._slots:
            if slot.delivery is not None and slot.in_call and slot.coroutine is not None:
                self._interrupts[slot.delivery.task.id] = _Interrupt.SHUTDOWN
                slot.coroutine.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        await cancel_until_done(idle)
        self._slots.clear()
        await self._settlements.drain()
        for executor in self._executors.values():
            await executor.stop()

    def cancel_running(self, task_id: str) -> bool:
        """Stop the call of ``task_id`` if this worker is running it; True if it was."""
        slot = next(
            (s for s in self._slots if s.delivery is not None and s.delivery.task.id == task_id),
            None,
        )  # a scan: cancelling is rare, and the hot path then keeps no index
        if slot is None or not slot.in_call or slot.coroutine is None:
            return False
        self._interrupts[task_id] = _Interrupt.CANCEL
        slot.coroutine.cancel()
        return True

    async def _serve(self, slot: _Slot, executor: BaseTaskExecutor, lanes: list[str]) -> None:
        claim_nowait = self._broker.claim_nowait
        claim = self._broker.claim
        worker_id = self.id
        settlements = self._settlements
        settling_limit = max(1000, _SETTLING_PER_SLOT * len(self._slots))
        streak = 0
        while not self._stopping:
            if len(settlements) > settling_limit:  # results are not being stored: hold on
                await settlements.room(settling_limit)
                continue
            if streak == _FAIRNESS_STREAK:
                # a run of tasks that never waited: let the rest of the app run
                streak = 0
                await asyncio.sleep(0)
                continue
            delivery = claim_nowait(lanes)
            if delivery is None:
                streak = 0
                delivery = await self._claim_or_back_off(claim, lanes)
                if delivery is None:
                    continue
                if self.stopping:  # stop() began while this slot waited
                    await self._hand_back(delivery)
                    return
            else:
                streak += 1
            slot.delivery = delivery
            delivery.task.worker = worker_id
            function = self._registry.get(delivery.task.name)
            try:
                if function is None:
                    await self._unknown(delivery)
                else:
                    await self._handle(slot, executor, function, delivery)
            except Exception:
                logger.exception(
                    "worker slot failed to settle task %s; handing it back", delivery.task.id
                )
                await self._hand_back(delivery)
                slot.delivery = None
                # a failing backend must not turn into a busy loop of runs and hand-backs
                await asyncio.sleep(_SETTLE_BACKOFF)
            finally:
                slot.delivery = None

    async def _claim_or_back_off(
        self, claim: Callable[[Sequence[str]], Awaitable[Delivery]], lanes: list[str]
    ) -> Delivery | None:
        """Wait for a delivery; on a broker error, log it, wait a moment and answer None,
        so the slot lives on and claims again (a slot never dies of a broker outage)."""
        try:
            return await claim(lanes)
        except Exception:
            logger.exception("worker slot could not claim; trying again in %.1f s", _CLAIM_BACKOFF)
            await asyncio.sleep(_CLAIM_BACKOFF)
            return None

    async def _hand_back(self, delivery: Delivery) -> None:
        """Release ``delivery`` to the queue; if the broker cannot be reached, log it and
        leave the task to its lease, which returns it to the queue when it expires."""
        try:
            await self._broker.release(delivery)
        except Exception:
            logger.exception(
                "could not hand task %s back; its lease will return it to the queue",
                delivery.task.id,
            )

    async def _handle(
        self,
        slot: _Slot,
        executor: BaseTaskExecutor,
        function: TaskFunction[..., Any],
        delivery: Delivery,
    ) -> None:
        task = delivery.task
        recorder = self._recorder
        started_at = _now(UTC)
        if not recorder.live_nowait(task, RUNNING, started_at, delivery.deliveries):
            fence = _fence(delivery)
            # the running record goes out while the task runs: later writes land after it
            if (
                fence is None
                or not recorder.post_live(task, RUNNING, started_at, delivery.deliveries, fence)
            ) and not await recorder.live(
                task, RUNNING, started_at, delivery.deliveries, fence=fence
            ):
                return  # a newer claim owns the task: this delivery is stale
        slot.in_call = True
        try:
            if task.timeout is None and type(executor) is IOExecutor:
                result = await function.fn(*task.args, **task.kwargs)  # IOExecutor.run, inlined
            else:
                result = await self._call(executor, function, task)
            if type(result) not in SCALAR_TYPES:
                result = json_roundtrip(result, f"the result of task '{task.name}'")
        except asyncio.CancelledError:
            slot.in_call = False
            if not await self._cancelled(delivery, started_at):
                raise
            return
        except WorkerLostError as lost:
            slot.in_call = False
            await self._lost(delivery, lost, started_at)
            return
        except Exception as error:
            slot.in_call = False
            await self._failed(function, delivery, error, started_at)
            return
        slot.in_call = False
        finished_at = _now(UTC)
        record = TaskResult(
            task.id,
            SUCCESS,
            task.name,
            result,
            None,
            task.submitted_at,
            started_at,
            finished_at,
            task.current_retry,
            task.args,
            task.kwargs,
            delivery.deliveries,
            None,
            task.worker,
            task.attempts,
        )
        if self._interrupts or not self._settle_without_waiting(
            delivery, record, started_at, finished_at
        ):
            await self._succeed(delivery, record, started_at, finished_at)

    def _settle_without_waiting(
        self, delivery: Delivery, record: TaskResult, started_at: datetime, finished_at: datetime
    ) -> bool:
        """Settle a success without holding the slot: at once where that needs no I/O (in
        memory), or by posting the final record and acking once it is stored (Redis).
        False when the caller must await :meth:`_succeed` instead."""
        if (
            self._recorder.store_nowait(record.task_id, record)
            and self._broker.ack_nowait(delivery) is not None
        ):
            self._succeeded(delivery.task.name, started_at, finished_at)
            return True
        fence = _fence(delivery)
        stored = None if fence is None else self._recorder.post_record(record, fence)
        if stored is None:
            return False
        self._settlements.success(stored, delivery, record, started_at, finished_at)
        return True

    async def _succeed(
        self, delivery: Delivery, record: TaskResult, started_at: datetime, finished_at: datetime
    ) -> None:
        if self._interrupts and delivery.task.id in self._interrupts:
            # the call swallowed its cancellation: honour the request all the same
            await self._cancelled(delivery, started_at)
            return
        if await self._recorder.record(record, fence=_fence(delivery)):
            self._succeeded(delivery.task.name, started_at, finished_at)
            await self._ack(delivery)

    async def _ack(self, delivery: Delivery) -> None:
        """Ack a task whose final record is stored, without waiting when the broker can
        post it (:meth:`stop` waits for those); a lost ack only redelivers the task."""
        if not self._settlements.ack(delivery):
            await self._broker.ack(delivery)

    async def _unknown(self, delivery: Delivery) -> None:
        task = delivery.task
        reason = f"task '{task.name}' is not registered in this worker"
        if await self._recorder.ended(
            task, FAILED, reason, None, delivery.deliveries, fence=_fence(delivery)
        ):
            self.telemetry.failed(task.name)
            await self._broker.bury(delivery, reason)

    async def _cancelled(self, delivery: Delivery, started_at: datetime) -> bool:
        """Settle a call that was cancelled; False if the cancellation was not the worker's.

        The worker cancels a call for ``cancel_running`` and for the end of ``stop``'s grace
        period; any other cancellation (the event loop closing) hands the task back and
        must propagate.
        """
        interrupt = self._interrupts.pop(delivery.task.id, None)
        if interrupt is None:
            await self._broker.release(delivery)
            return False
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        await self._interrupted(delivery, interrupt, started_at)
        return True

    async def _call(
        self, executor: BaseTaskExecutor, function: TaskFunction[..., Any], task: Task
    ) -> Any:
        if task.timeout is None:
            return await executor.run(function.fn, task.args, task.kwargs)
        try:
            async with asyncio.timeout(task.timeout) as scope:
                return await executor.run(function.fn, task.args, task.kwargs)
        except TimeoutError:
            if scope.expired():
                raise TaskTimeoutError(task.id, task.timeout) from None
            raise

    async def _failed(
        self,
        function: TaskFunction[..., Any],
        delivery: Delivery,
        error: Exception,
        started_at: datetime,
    ) -> None:
        task = delivery.task
        policy = function.options_.retry_policy
        retryable = not isinstance(error, SerializationError) and policy.is_retryable(error)
        if retryable and task.current_retry < task.max_retries:
            task.current_retry += 1
            add_attempt(task, started_at, error)
            delay = policy.delay(task.current_retry, task.retry_delay)
            if await self._recorder.ended(
                task, RETRYING, error, started_at, delivery.deliveries, fence=_fence(delivery)
            ):
                self.telemetry.retried(task.name)
                await self._broker.retry(delivery, delay)
            return
        if await self._recorder.ended(
            task, FAILED, error, started_at, delivery.deliveries, fence=_fence(delivery)
        ):
            self.telemetry.failed(task.name)
            await self._ack(delivery)

    async def _lost(self, delivery: Delivery, lost: WorkerLostError, started_at: datetime) -> None:
        task = delivery.task
        if delivery.deliveries >= self._max_deliveries:
            reason = f"{lost}; dead-lettered after {delivery.deliveries} deliveries"
            if await self._recorder.ended(
                task,
                FAILED,
                WorkerLostError(reason),
                started_at,
                delivery.deliveries,
                fence=_fence(delivery),
            ):
                self.telemetry.failed(task.name)
                await self._broker.bury(delivery, reason)
            return
        logger.warning(
            "task %s[%s] lost its process (%s); delivering it again", task.name, task.id, lost
        )
        if await self._recorder.pending(task, delivery.deliveries, fence=_fence(delivery)):
            await self._broker.release(delivery)

    async def _interrupted(
        self, delivery: Delivery, interrupt: _Interrupt, started_at: datetime
    ) -> None:
        task = delivery.task
        if interrupt is _Interrupt.SHUTDOWN:
            if await self._recorder.pending(task, delivery.deliveries, fence=_fence(delivery)):
                await self._broker.release(delivery)
            return
        error = TaskCancelledError(f"task '{task.id}' was cancelled while running")
        if await self._recorder.ended(
            task, CANCELLED, error, started_at, delivery.deliveries, fence=_fence(delivery)
        ):
            self.telemetry.cancelled(task.name)
            await self._ack(delivery)
