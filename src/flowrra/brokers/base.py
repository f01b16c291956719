"""Broker interfaces.

:class:`BaseBroker` is the minimal protocol a user may implement (push, pop, size): a task
popped from it is gone, so a worker that dies while running it loses it (at-most-once).

:class:`QueueBroker` is the contract flowrra's own worker drives and its brokers implement:
claims are leases, a claimed task stays owned by the broker until it is acked, retried,
released or buried, delayed tasks live in the broker, and deliveries are counted. Every
implementation passes ``tests/contract/test_broker_contract.py``.

Lanes: a lane names one ready queue, ``"<queue>:<executor>"``. Tasks that different
executors run wait in different lanes, so a full CPU pool never blocks IO work.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from flowrra.task import Task


def lane_of(queue: str, executor: str) -> str:
    """The lane key for tasks of ``queue`` that run on ``executor``."""
    return f"{queue}:{executor}"


def task_lane(task: Task) -> str:
    """The lane ``task`` waits in."""
    return f"{task.queue}:{task.executor_name}"


class BaseBroker(ABC):
    """The minimal broker protocol: push, pop, size (at-most-once)."""

    @abstractmethod
    async def push(self, task: Task) -> None:
        """Add ``task`` to the queue."""

    @abstractmethod
    async def pop(self, timeout: float | None = None) -> Task | None:
        """Remove and return the next task; wait up to ``timeout`` s (``None``: forever).

        Returns ``None`` when the timeout elapses with nothing to return.
        """

    @abstractmethod
    async def size(self) -> int:
        """How many tasks are waiting."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections; the broker is not used afterwards."""


class Delivery:
    """One claim of one task: what a worker holds while it runs the task.

    ``deliveries`` counts the claims of the current attempt (1 on the first claim; a
    redelivery after a worker died adds one). ``token`` identifies this claim: the broker
    refuses acks and state changes from a claim that is no longer the owner.
    """

    __slots__ = ("deliveries", "lane", "task", "token")

    def __init__(self, task: Task, lane: str, token: str | int, deliveries: int) -> None:
        self.task = task
        self.lane = lane
        self.token = token
        self.deliveries = deliveries

    def __repr__(self) -> str:
        return f"<Delivery {self.task.name}[{self.task.id}] #{self.deliveries}>"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task the broker gave up on, with the reason and when (UNIX time)."""

    task: Task
    reason: str
    buried_at: float


@dataclass(frozen=True, slots=True)
class BrokerCounts:
    """Sizes of a broker's structures."""

    ready: int
    delayed: int
    in_flight: int
    dead: int

    @property
    def busy(self) -> bool:
        """True while anything is waiting, delayed or running."""
        return bool(self.ready or self.delayed or self.in_flight)


@dataclass(frozen=True, slots=True)
class QueueDetail:
    """What one queue holds now (every lane of it).

    ``by_priority`` maps each priority that has ready tasks to how many; ``ready`` is their
    sum. ``oldest_age`` is the queue's latency: seconds since the submission of the longest
    waiting task among those next in line (the head of each priority level of each lane),
    or None when nothing is ready or no such task records its submission time.
    """

    queue: str
    ready: int
    by_priority: dict[int, int]
    delayed: int
    in_flight: int
    dead: int
    oldest_age: float | None


DeadLetterListener = Callable[[Task, str, int, int | None], Awaitable[None]]
"""Called with (task, reason, deliveries, claim token or None) for a task a broker
dead-lettered on its own."""


class QueueBroker(BaseBroker):
    """The full broker contract flowrra's worker relies on.

    - Priority: higher ``task.priority`` first, FIFO among equal priorities.
    - ``enqueue`` is idempotent on ``task.id``: a task id that is waiting, delayed or in
      flight is not queued twice. It waits for room when the broker is full.
    - ``claim`` blocks (never polls) until a task is ready in one of the lanes, moves it in
      flight and returns a :class:`Delivery`. Exactly one claimer gets each delivery.
    - A delivery ends with exactly one of ``ack`` (done), ``retry`` (back to the delayed set
      for ``delay`` s), ``release`` (back to the ready queue at once, e.g. on shutdown or
      after the process running it died) or ``bury`` (dead-lettered). Each returns False
      when the delivery no longer owns the task (it was cancelled, or its lease expired and
      the task was claimed again); the caller must then drop its outcome.
    - A broker that dead-letters tasks on its own (a lease that expired ``max_deliveries``
      times: the processes running it kept dying) calls :attr:`dead_letter_listener`
      for each, so the app can record the task as failed and wake whoever waits for it.
    """

    dead_letter_listener: DeadLetterListener | None = None
    """Set by the app; called once per task this broker buries without a ``bury`` call."""

    @abstractmethod
    async def enqueue(self, task: Task) -> bool:
        """Queue ``task`` (delayed until ``task.eta`` if set). False if its id is known."""

    @abstractmethod
    async def claim(self, lanes: Sequence[str]) -> Delivery:
        """Wait for the next ready task in ``lanes`` (earlier lanes preferred) and claim it."""

    def claim_nowait(self, lanes: Sequence[str]) -> Delivery | None:
        """Claim a task that is ready now without waiting, or return None.

        An optional fast path: the worker tries it before :meth:`claim`. The default
        returns None (always take the waiting path).
        """
        return None

    def enqueue_nowait(self, task: Task) -> bool | None:
        """Queue ``task`` at once if that needs no waiting or I/O; None otherwise.

        An optional fast path with :meth:`enqueue`'s result; on None the caller awaits
        :meth:`enqueue`. The default always returns None.
        """
        return None

    def ack_nowait(self, delivery: Delivery) -> bool | None:
        """Ack at once if that needs no I/O (:meth:`ack`'s result); None otherwise.

        An optional fast path; on None the caller awaits :meth:`ack`. The default always
        returns None.
        """
        return None

    def post_enqueue(self, task: Task) -> asyncio.Future[int] | None:
        """Start :meth:`enqueue` without waiting for it, or ``None`` if not possible now.

        The future holds 1 when the task was queued, 0 when its id is already waiting or
        in flight, and -1 when the queue is full and nothing was queued (the caller then
        awaits :meth:`enqueue`, which waits for room). The default returns ``None``: the
        caller awaits :meth:`enqueue`.
        """
        return None

    def post_ack(self, delivery: Delivery) -> asyncio.Future[int] | None:
        """Start :meth:`ack` without waiting for it, or ``None`` if not supported.

        The future holds 1 when the task was acked, 0 for a stale claim. A broker that
        returns one sends it in order with its later operations and before its
        :meth:`close` returns; the caller must not stop the event loop before the future
        is done. The default returns ``None``: the caller then awaits :meth:`ack`.
        """
        return None

    @abstractmethod
    async def ack(self, delivery: Delivery) -> bool:
        """Finish ``delivery``: the task leaves the broker."""

    @abstractmethod
    async def retry(self, delivery: Delivery, delay: float) -> bool:
        """Move the delivered task (already updated for its next attempt) to the delayed set."""

    @abstractmethod
    async def release(self, delivery: Delivery) -> bool:
        """Put the delivered task back in its ready lane at once, ahead of its priority."""

    @abstractmethod
    async def bury(self, delivery: Delivery, reason: str) -> bool:
        """Move the delivered task to the dead-letter set with ``reason``."""

    @abstractmethod
    async def cancel(self, task_id: str) -> Task | None:
        """Remove a waiting or delayed task; returns it, or None if it was not waiting."""

    async def connect(self) -> None:
        """Check that the broker can be reached, raising a clear error when it cannot.
        ``Flowrra.start`` calls it before anything else."""

    @abstractmethod
    async def counts(self) -> BrokerCounts:
        """Current sizes."""

    @abstractmethod
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recently buried tasks, newest first."""

    async def requeue_dead(self, task_id: str) -> bool:
        """Put a dead-lettered task back in its ready lane (keeping its priority, behind
        the tasks of that priority already waiting) with a fresh delivery count.

        Returns False, changing nothing, when ``task_id`` is not dead-lettered, when a
        waiting or running task holds the same id, or when the dead-lettered message is
        malformed (it cannot run; delete it instead). The default raises
        ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support requeue_dead()")

    async def delete_dead(self, task_id: str) -> bool:
        """Drop one dead letter; False when ``task_id`` is not dead-lettered.

        The default raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support delete_dead()")

    async def purge_dead(self) -> int:
        """Drop every dead letter; returns how many were dropped.

        The default raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support purge_dead()")

    async def queue_details(self) -> list[QueueDetail]:
        """One :class:`QueueDetail` per queue this broker knows, sorted by queue name.

        The default raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support queue_details()")

    @abstractmethod
    async def wait_idle(self) -> None:
        """Return once nothing is waiting, delayed or in flight (without polling)."""

    async def size(self) -> int:
        """Tasks waiting to run now (ready lanes only)."""
        return (await self.counts()).ready

    async def push(self, task: Task) -> None:
        """Queue ``task`` (the minimal protocol's name for :meth:`enqueue`)."""
        await self.enqueue(task)
