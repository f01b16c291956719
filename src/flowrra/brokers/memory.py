"""The in-process broker: priority lanes, a delayed set, in-flight claims, dead letters.

Everything is event driven: a claimer with nothing to do waits on a future that the next
``enqueue`` into its lane resolves; delayed tasks are moved by one loop timer set for the
earliest due time. Nothing polls, so an idle app costs no CPU.

A lane keeps one FIFO deque per priority level and a small heap of the levels in use, so
queueing and claiming are O(1) whatever the queue depth (a heap of every task would cost
a dozen comparisons per operation at 20,000 waiting tasks). Waiting tasks are also kept in
one dict by id; a deque entry whose task is no longer in that dict (cancelled) is skipped
when it surfaces, which makes cancel O(1).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from flowrra.brokers.base import (
    BrokerCounts,
    DeadLetter,
    Delivery,
    QueueBroker,
    QueueDetail,
    task_lane,
)
from flowrra.task import Task


class _Lane:
    """Ready tasks of one lane: FIFO per priority, highest priority first.

    ``top`` is the deque of the highest priority in use (claimers pop from it directly);
    when it runs empty, :meth:`pop` drops it and finds the next one.
    """

    __slots__ = ("levels", "order", "top", "top_priority")

    def __init__(self) -> None:
        self.levels: dict[int, deque[Task]] = {}
        self.order: list[int] = []  # heap of negated priorities that have a deque
        self.top: deque[Task] | None = None
        self.top_priority = 0

    def push(self, task: Task, *, front: bool = False) -> None:
        priority = task.priority
        level = self.levels.get(priority)
        if level is None:
            level = self.levels[priority] = deque()
            heapq.heappush(self.order, -priority)
        if self.top is None or priority > self.top_priority:
            self.top, self.top_priority = level, priority
        if front:
            level.appendleft(task)
        else:
            level.append(task)

    def pop(self) -> Task | None:
        """The next task, or None when the lane is empty."""
        order = self.order
        while order:
            priority = -order[0]
            level = self.levels[priority]
            if level:
                self.top, self.top_priority = level, priority
                return level.popleft()
            heapq.heappop(order)
            del self.levels[priority]
        self.top = None
        return None

    def __bool__(self) -> bool:
        return any(self.levels.values())


class _Detail:
    """A :class:`QueueDetail` being counted."""

    __slots__ = ("by_priority", "dead", "delayed", "in_flight", "oldest")

    def __init__(self) -> None:
        self.by_priority: dict[int, int] = {}
        self.delayed = self.in_flight = self.dead = 0
        self.oldest: float | None = None

    def count(self, priority: int, ready: int, head: datetime | None, now: datetime) -> None:
        """Add ``ready`` tasks of ``priority``, the first of them submitted at ``head``."""
        self.by_priority[priority] = self.by_priority.get(priority, 0) + ready
        if head is not None:
            if head.tzinfo is None:
                head = head.replace(tzinfo=UTC)  # a naive submission time is UTC
            age = max(0.0, (now - head).total_seconds())
            if self.oldest is None or age > self.oldest:
                self.oldest = age

    def freeze(self, queue: str) -> QueueDetail:
        by_priority = dict(sorted(self.by_priority.items(), reverse=True))
        return QueueDetail(
            queue,
            sum(by_priority.values()),
            by_priority,
            self.delayed,
            self.in_flight,
            self.dead,
            self.oldest,
        )


_ANY_LANE = "*"  # claimers of any lane (``pop``) wait here


class MemoryBroker(QueueBroker):
    """A :class:`QueueBroker` held in this process's memory.

    ``max_size`` bounds the tasks waiting (ready or delayed) that producers add:
    ``enqueue`` waits for room. Retries and releases of tasks already owned by the broker
    are always accepted, so a worker never blocks on its own queue. ``max_dead`` bounds the
    dead-letter set (oldest dropped first).

    Guarantee: a task reaches a final state within the life of this process, even when a
    child process running it dies; nothing survives the process itself.
    """

    def __init__(self, max_size: int = 1000, max_dead: int = 10_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self._sequence = itertools.count()
        self._ready: dict[str, _Lane] = {}
        self._delayed: list[tuple[float, int, Task]] = []
        self._waiting: dict[str, Task] = {}
        self._delayed_count = 0
        self._in_flight: dict[str, Delivery] = {}
        self._redeliveries: dict[str, int] = {}
        self._dead: deque[DeadLetter] = deque(maxlen=max_dead)
        self._claimers: dict[str, deque[asyncio.Future[None]]] = {}
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._timer_due = 0.0
        self._tokens = itertools.count(1)
        self._popping = 0  # pop() calls waiting on any lane
        self._lane_names: dict[str, dict[str, str]] = {}  # queue -> executor -> lane

    # -- producing -------------------------------------------------------------------

    async def enqueue(self, task: Task) -> bool:
        """Queue ``task``; waits while ``max_size`` tasks are waiting."""
        while (admitted := self.enqueue_nowait(task)) is None:
            await self._wait_for_room()
        return admitted

    def enqueue_nowait(self, task: Task) -> bool | None:
        """Queue ``task`` unless the broker is full (then None: await :meth:`enqueue`)."""
        waiting = self._waiting
        task_id = task.id
        if task_id in waiting or task_id in self._in_flight:
            return False
        if len(waiting) >= self.max_size:
            return None
        waiting[task_id] = task
        if task.eta is not None and task.eta > time.time():
            self._delay(task, task.eta)
        else:
            self._make_ready(task)
        return True

    async def _wait_for_room(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._room_waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._wake_room()
            raise

    def _wake_room(self) -> None:
        waiters = self._room_waiters
        while waiters and len(self._waiting) < self.max_size:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return

    def _lane(self, task: Task) -> str:
        """The lane name of ``task``, the same string object every time (its hash is cached)."""
        names = self._lane_names.get(task.queue)
        if names is None:
            names = self._lane_names[task.queue] = {}
        lane = names.get(task.executor_name)
        if lane is None:
            lane = names[task.executor_name] = task_lane(task)
        return lane

    def _make_ready(self, task: Task, *, front: bool = False) -> None:
        names = self._lane_names.get(task.queue)
        lane = names.get(task.executor) if names is not None and task.executor else None
        if lane is None:
            lane = self._lane(task)
        ready = self._ready.get(lane)
        if ready is None:
            ready = self._ready[lane] = _Lane()
        level = ready.levels.get(task.priority)
        if level is None or front:
            ready.push(task, front=front)
        else:
            level.append(task)
        claimers = self._claimers.get(lane)
        while claimers:
            future = claimers.popleft()
            if not future.done():
                future.set_result(None)
                return
        if self._popping:
            self._pass_on_wakeup([_ANY_LANE])

    # -- delayed set -----------------------------------------------------------------

    def _delay(self, task: Task, due: float) -> None:
        heapq.heappush(self._delayed, (due, next(self._sequence), task))
        self._delayed_count += 1
        if self._timer is None or due < self._timer_due:
            self._arm_timer(due)

    def _arm_timer(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_due = due
        self._timer = loop.call_later(max(0.0, due - time.time()), self._promote_due)
        self._timer_loop = loop

    def _ensure_timer(self) -> None:
        """Re-arm the delayed-set timer if it is missing or belongs to another event loop
        (after ``close()``, or when an app is stopped in one loop and started in another)."""
        if self._delayed and (
            self._timer is None or self._timer_loop is not asyncio.get_running_loop()
        ):
            self._arm_timer(self._delayed[0][0])

    def _promote_due(self) -> None:
        self._timer = None
        now = time.time()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, task = heapq.heappop(delayed)
            if self._waiting.get(task.id) is task:
                self._delayed_count -= 1
                task.eta = None
                self._make_ready(task)
        while delayed and self._waiting.get(delayed[0][2].id) is not delayed[0][2]:
            heapq.heappop(delayed)
        if delayed:
            self._arm_timer(delayed[0][0])

    # -- consuming -------------------------------------------------------------------

    async def claim(self, lanes: Sequence[str]) -> Delivery:
        """Claim the next ready task of ``lanes``; waits without polling when all are empty."""
        while True:
            delivery = self.claim_nowait(lanes)
            if delivery is not None:
                return delivery
            await self._wait_for_work(lanes)

    def claim_nowait(self, lanes: Sequence[str]) -> Delivery | None:
        """Claim a ready task of ``lanes`` at once, or return None."""
        waiting = self._waiting
        for lane in lanes:
            ready = self._ready.get(lane)
            if ready is None:
                continue
            while True:
                top = ready.top
                task = top.popleft() if top else ready.pop()
                if task is None:
                    break
                task_id = task.id
                if waiting.get(task_id) is not task:
                    continue  # cancelled while it waited
                del waiting[task_id]
                redelivered = self._redeliveries.pop(task_id, 0) if self._redeliveries else 0
                delivery = Delivery(task, lane, next(self._tokens), redelivered + 1)
                self._in_flight[task_id] = delivery
                if self._room_waiters:
                    self._wake_room()
                return delivery
        return None

    async def _wait_for_work(self, lanes: Sequence[str]) -> None:
        self._ensure_timer()
        future = asyncio.get_running_loop().create_future()
        for lane in lanes:
            queue = self._claimers.get(lane)
            if queue is None:
                queue = self._claimers[lane] = deque()
            queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._pass_on_wakeup(lanes)
            raise
        finally:
            if len(lanes) > 1:
                for lane in lanes:
                    with contextlib.suppress(ValueError):
                        self._claimers[lane].remove(future)

    def _pass_on_wakeup(self, lanes: Sequence[str]) -> None:
        """A woken claimer was cancelled: wake another so the ready task is not stranded."""
        for lane in lanes:
            claimers = self._claimers.get(lane)
            while claimers and (lane == _ANY_LANE or self._ready.get(lane)):
                future = claimers.popleft()
                if not future.done():
                    future.set_result(None)
                    break

    async def pop(self, timeout: float | None = None) -> Task | None:
        """Take the next task of any lane, outside the lease protocol (at-most-once).

        Returns ``None`` when nothing became ready within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    lanes = sorted(self._ready) or [""]
                    delivery = self.claim_nowait(lanes)
                    if delivery is not None:
                        break
                    self._popping += 1
                    try:
                        await self._wait_for_work([*lanes, _ANY_LANE])
                    finally:
                        self._popping -= 1
        except TimeoutError:
            return None
        await self.ack(delivery)
        return delivery.task

    # -- settling a delivery ---------------------------------------------------------

    def _settle(self, delivery: Delivery) -> bool:
        if self._in_flight.get(delivery.task.id) is not delivery:
            return False
        del self._in_flight[delivery.task.id]
        return True

    async def ack(self, delivery: Delivery) -> bool:
        """Done: the task leaves the broker."""
        return self.ack_nowait(delivery)

    def ack_nowait(self, delivery: Delivery) -> bool:
        """:meth:`ack` without awaiting (it never waits)."""
        in_flight = self._in_flight
        task_id = delivery.task.id
        if in_flight.get(task_id) is not delivery:
            return False
        del in_flight[task_id]
        if self._idle_waiters:
            self._notify_if_idle()
        return True

    async def retry(self, delivery: Delivery, delay: float) -> bool:
        """Back to the delayed set (or ready at once for ``delay <= 0``)."""
        if not self._settle(delivery):
            return False
        task = delivery.task
        self._waiting[task.id] = task
        if delay > 0:
            task.eta = time.time() + delay
            self._delay(task, task.eta)
        else:
            task.eta = None
            self._make_ready(task)
        return True

    async def release(self, delivery: Delivery) -> bool:
        """Back to the front of its priority in the ready lane; the next claim counts a delivery."""
        if not self._settle(delivery):
            return False
        task = delivery.task
        self._waiting[task.id] = task
        self._redeliveries[task.id] = delivery.deliveries
        self._make_ready(task, front=True)
        return True

    async def bury(self, delivery: Delivery, reason: str) -> bool:
        """Dead-letter the task with ``reason``."""
        if not self._settle(delivery):
            return False
        self._dead.append(DeadLetter(delivery.task, reason, time.time()))
        if self._idle_waiters:
            self._notify_if_idle()
        return True

    async def cancel(self, task_id: str) -> Task | None:
        """Remove a waiting or delayed task (O(1); its heap entry is skipped later)."""
        task = self._waiting.pop(task_id, None)
        if task is None:
            return None
        self._redeliveries.pop(task_id, None)
        if task.eta is not None:
            self._delayed_count -= 1
        if self._room_waiters:
            self._wake_room()
        if self._idle_waiters:
            self._notify_if_idle()
        return task

    # -- inspection ------------------------------------------------------------------

    async def counts(self) -> BrokerCounts:
        """Current sizes."""
        return self.counts_now()

    def counts_now(self) -> BrokerCounts:
        """Current sizes, without awaiting."""
        delayed = self._delayed_count
        return BrokerCounts(
            ready=len(self._waiting) - delayed,
            delayed=delayed,
            in_flight=len(self._in_flight),
            dead=len(self._dead),
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        return list(itertools.islice(reversed(self._dead), limit))

    async def queue_details(self) -> list[QueueDetail]:
        """Per queue: ready tasks by priority, delayed, in flight, dead and the latency.

        Walks the waiting tasks once (a management read, not a hot path).
        """
        now = datetime.now(UTC)
        details: dict[str, _Detail] = {}

        def detail(queue: str) -> _Detail:
            found = details.get(queue)
            if found is None:
                found = details[queue] = _Detail()
            return found

        for queue in self._lane_names:
            detail(queue)  # a queue that had ready tasks is listed, even when empty now
        for ready in self._ready.values():
            self._count_lane(ready, detail, now)
        for task in self._delayed_tasks():
            detail(task.queue).delayed += 1
        for delivery in self._in_flight.values():
            detail(delivery.task.queue).in_flight += 1
        for letter in self._dead:
            detail(letter.task.queue).dead += 1
        return [details[queue].freeze(queue) for queue in sorted(details)]

    def _count_lane(self, ready: _Lane, detail: Callable[[str], _Detail], now: datetime) -> None:
        waiting = self._waiting
        for priority, level in ready.levels.items():
            live = [task for task in level if waiting.get(task.id) is task]
            if live:
                found = detail(live[0].queue)
                found.count(priority, len(live), live[0].submitted_at, now)

    def _delayed_tasks(self) -> Iterator[Task]:
        """The tasks of the delayed heap still waiting (cancelled entries skipped)."""
        waiting = self._waiting
        seen: set[str] = set()
        for _, _, task in self._delayed:
            if waiting.get(task.id) is task and task.id not in seen:
                seen.add(task.id)
                yield task

    # -- dead letters ----------------------------------------------------------------

    def _find_dead(self, task_id: str) -> DeadLetter | None:
        return next((letter for letter in self._dead if letter.task.id == task_id), None)

    async def requeue_dead(self, task_id: str) -> bool:
        """Back to the end of its priority in its ready lane, with a fresh delivery count."""
        letter = self._find_dead(task_id)
        if letter is None or task_id in self._waiting or task_id in self._in_flight:
            return False
        self._dead.remove(letter)
        task = letter.task
        task.eta = None
        self._redeliveries.pop(task_id, None)
        self._waiting[task_id] = task
        self._make_ready(task)
        return True

    async def delete_dead(self, task_id: str) -> bool:
        """Drop one dead letter; False when ``task_id`` is not dead-lettered."""
        letter = self._find_dead(task_id)
        if letter is None:
            return False
        self._dead.remove(letter)
        return True

    async def purge_dead(self) -> int:
        """Drop every dead letter; returns how many."""
        count = len(self._dead)
        self._dead.clear()
        return count

    def is_idle(self) -> bool:
        """True when nothing is waiting, delayed or in flight."""
        return not self._waiting and not self._in_flight

    async def wait_idle(self) -> None:
        """Return once nothing is waiting, delayed or in flight."""
        if self.is_idle():
            return
        future = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(future)
        await future

    def _notify_if_idle(self) -> None:
        if self.is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        """Stop the delayed-set timer; waiting tasks are dropped with the broker."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
