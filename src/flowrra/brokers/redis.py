"""The Redis broker: priority lanes, a delayed set, leases, dead letters, all in Redis.

Needs ``pip install 'flowrra[redis]'``. Guarantee: at-least-once. A task reaches a final
state (acked, dead-lettered) even if the processes running it are killed, as long as Redis
keeps its data.

How it works (key layout in :mod:`flowrra.redis_keys`, scripts in :mod:`flowrra._lua`):

- ``enqueue`` stores the message and puts the id in its lane's ready zset (or the delayed
  zset) with one script; concurrent calls share one script call per queue.
- ``claim`` is a lease: a script pops up to N ids, gives each a fresh token, counts a
  delivery and records a deadline in the lease zset. One fetcher per set of lanes claims
  for every local claimer at once (plus ``prefetch`` spares that ``claim_nowait`` serves);
  with nothing ready it blocks on the lanes' wake-up lists (``BLPOP``), which the scripts
  that make a task ready push to. Nothing polls.
- This broker renews the leases of every delivery it holds (heartbeat every third of the
  lease) until the delivery is settled; a reaper returns expired leases to their lane, or
  dead-letters the task once ``max_deliveries`` claims of it expired (and hands it to
  :attr:`dead_letter_listener`, so the app records it as failed).
- ``ack``/``retry``/``release``/``bury`` run one script that checks the claim token (False
  for a stale claim); concurrent settlements of a queue share one script call.
  ``post_enqueue`` and ``post_ack`` start an enqueue or an ack without waiting for it;
  :meth:`close` sends every settlement started before it.
- Delayed tasks are promoted by a script run by a timer set for the earliest due time; a
  producer that adds an earlier one publishes an event that re-arms every broker's timer.
  A promotion and reaping pass also runs every ``maintenance_interval`` as a safety net.
- Malformed messages (not JSON, wrong shape or field types, over ``max_message_bytes``)
  are dead-lettered with the reason when claimed. Nothing read from Redis is unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flowrra import _lua, _lua_admin
from flowrra._aio import cancel_until_done
from flowrra.brokers.base import (
    BrokerCounts,
    DeadLetter,
    Delivery,
    QueueBroker,
    QueueDetail,
    task_lane,
)
from flowrra.brokers.redis_claimers import Claimer
from flowrra.brokers.redis_messages import (
    MalformedMessageError,
    decode_message,
    placeholder,
    text,
)
from flowrra.config import BrokerConfig
from flowrra.exceptions import BackendError, SerializationError
from flowrra.redis_cluster import open_subscription, open_wire
from flowrra.redis_connection import (
    REDIS_ERRORS,
    TRANSIENT_ERRORS,
    Client,
    Coalescer,
    Signal,
    Supervisor,
    check_connection,
    close_client,
    connect,
    is_cluster,
    safe_url,
)
from flowrra.redis_keys import DEFAULT_PREFIX, BrokerKeys, QueueKeys, split_lane
from flowrra.redis_wire import CommandWire, Script
from flowrra.serialization import encode_message
from flowrra.task import Task

logger = logging.getLogger("flowrra.brokers.redis")

MAX_PRIORITY = 1000
_BATCH = 1000  # items per script call
_ROOM_SAFETY = 5.0  # s: waits for room or idleness re-check this often if events are lost
# a settlement: op, task id, token, and three op-specific arguments (see _lua.SETTLE)
_Op = tuple[str, str, str, str, str, str]
# an enqueue: task id, message, "<executor>|<priority>", eta in ms (0: now)
_Entry = tuple[str, bytes, str, int]


def _popped(wait: asyncio.Task[Any]) -> bool:
    """True when the BLPOP ``wait`` has ended with a token."""
    return (
        wait.done() and not wait.cancelled() and wait.exception() is None
        and wait.result() is not None
    )


class RedisBroker(QueueBroker):
    """A :class:`QueueBroker` in Redis (at-least-once, shared by any number of processes).

    ``url``: ``redis://``, ``rediss://``, ``unix://``, or ``redis+cluster://`` /
    ``rediss+cluster://`` naming any node of a Redis Cluster. ``prefix``: start of every key (a
    unique prefix isolates apps and tests). ``max_size``: most tasks waiting (ready or
    delayed) per queue before ``enqueue`` waits for room (``None``: no bound; retries and
    releases are always accepted). ``max_deliveries``: claims of one attempt whose lease
    expired before the task is dead-lettered. ``lease``: seconds a claim lasts without a
    heartbeat (this broker renews it every ``lease / 3`` while it holds the delivery).
    ``prefetch``: spare deliveries claimed ahead for ``claim_nowait`` (they are leased, so
    a higher-priority task arriving later may run after up to ``prefetch`` of them).
    ``max_message_bytes``: larger messages are refused by ``enqueue`` and dead-lettered
    when claimed. ``max_dead``: dead letters kept per queue (oldest dropped first).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        max_size: int | None = None,
        max_deliveries: int = 3,
        lease: float = 30.0,
        prefetch: int = 16,
        max_message_bytes: int = 1_048_576,
        max_dead: int = 10_000,
        maintenance_interval: float = 1.0,
        max_connections: int = 50,
        socket_timeout: float = 5.0,
        retry_on_timeout: bool = True,
    ) -> None:
        if max_size is not None and max_size < 1:
            raise ValueError("max_size must be >= 1 or None")
        if max_deliveries < 1 or max_dead < 1 or prefetch < 0:
            raise ValueError("max_deliveries and max_dead must be >= 1, prefetch >= 0")
        if lease <= 0 or maintenance_interval <= 0:
            raise ValueError("lease and maintenance_interval must be > 0 seconds")
        self.max_size = max_size
        self.max_deliveries = max_deliveries
        self.lease = lease
        self.prefetch = prefetch
        self.max_message_bytes = max_message_bytes
        self.max_dead = max_dead
        self.keys = BrokerKeys(prefix)
        self._interval = min(maintenance_interval, lease / 4)
        self._socket_timeout = socket_timeout
        self._client: Client = connect(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            retry_on_timeout=retry_on_timeout,
        )
        self._wire = open_wire(self._client)
        self._scripts = {
            name: Script(source)
            for name, source in {
                "enqueue": _lua.ENQUEUE,
                "claim": _lua.CLAIM,
                "settle": _lua.SETTLE,
                "extend": _lua.EXTEND,
                "reap": _lua.REAP,
                "promote": _lua.PROMOTE,
                "cancel": _lua.CANCEL,
            }.items()
        }
        self._queues: dict[str, QueueKeys] = {}
        self._frames: dict[str, tuple[list[str], list[str | int]]] = {}
        self._lanes_known: set[str] = set()
        self._lanes_registering: dict[str, asyncio.Future[None]] = {}
        self._enqueuers: dict[str, Coalescer[_Entry, int]] = {}
        self._settlers: dict[str, Coalescer[_Op, int]] = {}
        self._claimers: dict[tuple[str, ...], Claimer] = {}
        self._blockers: dict[str, CommandWire] = {}
        self._slot_waits: set[asyncio.Task[Any]] = set()  # BLPOPs of _first_token
        self._held: dict[str, dict[str, str]] = {}
        self._supervisor = Supervisor("redis-broker")
        self._idle = Signal()
        self._room = Signal()
        self._wake = Signal()
        self._events = open_subscription(
            self._client, self.keys.events, self._on_event, self._on_subscribed
        )
        self._started = False
        self._start_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: BrokerConfig) -> RedisBroker:
        """A broker for ``config.url``; ``config.queue_key`` (if set) is the key prefix."""
        if not isinstance(config.url, str):
            raise BackendError("RedisBroker.from_config needs a URL, not a broker object")
        return cls(
            config.url,
            prefix=config.queue_key or DEFAULT_PREFIX,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            retry_on_timeout=config.retry_on_timeout,
        )

    def __repr__(self) -> str:
        return f"<RedisBroker {safe_url(self._client)} prefix={self.keys.prefix!r}>"

    # -- lifecycle -------------------------------------------------------------------

    async def _start(self) -> None:
        """Check the connection (a wrong password fails here) and subscribe to events."""
        if self._started:
            return
        async with self._start_lock:
            if not self._started:
                await check_connection(self._client, "RedisBroker")
                self._supervisor.start("events", self._events.run)
                await self._events.ready(max(self._socket_timeout, 1.0) * 2)
                self._started = True

    def _start_consuming(self) -> None:
        self._supervisor.start("maintenance", self._maintain)
        self._supervisor.start("heartbeat", self._heartbeat)

    async def connect(self) -> None:
        """Check the connection and subscribe to the broker's events now: ``BackendError``
        naming the cause (never the password) when Redis cannot be reached."""
        await self._start()

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self._client.ping())
        except REDIS_ERRORS:
            return False

    async def close(self) -> None:
        """Send the settlements started so far, hand prefetched claims back, stop the
        background loops, close the connections.

        Deliveries handed to callers and not yet settled stay leased; without a heartbeat
        their leases expire and the reaper of another broker redelivers them.
        """
        for settler in list(self._settlers.values()):
            await settler.drain()  # acks posted without waiting are sent first
        try:
            if self._started:
                await self._return_spares(None)
        except REDIS_ERRORS as error:
            logger.warning("could not hand prefetched tasks back on close: %s", error)
        finally:
            await self._supervisor.stop()
            await cancel_until_done(self._slot_waits)  # no BLPOP may outlive the client
            for blocker in self._blockers.values():
                await blocker.close()
            await self._wire.close()
            await close_client(self._client)

    # -- helpers ---------------------------------------------------------------------

    def _queue(self, name: str) -> QueueKeys:
        keys = self._queues.get(name)
        if keys is None:
            keys = self._queues[name] = self.keys.queue(name)
        return keys

    def _frame(self, queue: str) -> tuple[list[str], list[str | int]]:
        """The fixed keys and common arguments every script call on ``queue`` starts with."""
        frame = self._frames.get(queue)
        if frame is None:
            keys = self._queue(queue)
            common: list[str | int] = [
                keys.ready_prefix,
                keys.notify_prefix,
                self.keys.events,
                keys.queue,
                self.max_dead,
            ]
            frame = self._frames[queue] = (keys.fixed(), common)
        return frame

    async def _run(self, script: str, queue: str, *args: Any) -> Any:
        keys, common = self._frame(queue)
        return await self._wire.evalsha(self._scripts[script], keys, [*common, *args])

    async def _all_queues(self) -> list[str]:
        members = await self._client.smembers(self.keys.queues)
        return sorted({text(m) for m in members} | set(self._queues))

    async def _register_lane(self, lane: str, queue: str) -> None:
        """List ``lane`` and its queue in Redis once; concurrent first submits of a lane
        share one registration (a failed one is tried again by the next submit)."""
        if lane in self._lanes_known:
            return
        registering = self._lanes_registering.get(lane)
        if registering is None:
            registering = asyncio.ensure_future(self._add_lane(lane, queue))
            self._lanes_registering[lane] = registering
            registering.add_done_callback(self._lane_registered)
        await asyncio.shield(registering)

    def _lane_registered(self, registering: asyncio.Future[None]) -> None:
        for lane, future in list(self._lanes_registering.items()):
            if future is registering:
                del self._lanes_registering[lane]
        if not registering.cancelled():
            registering.exception()  # retrieved here too: its waiters may all be gone

    async def _add_lane(self, lane: str, queue: str) -> None:
        self._queue(queue)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.queues, queue)
            pipe.sadd(self.keys.lanes, lane)
            await pipe.execute()
        self._lanes_known.add(lane)

    # -- events ----------------------------------------------------------------------

    def _on_event(self, data: bytes) -> None:
        kind = text(data).partition(":")[0]
        if kind == "idle":
            self._idle.fire()
        elif kind == "room":
            self._room.fire()
        elif kind == "delayed":
            self._wake.fire()

    def _on_subscribed(self) -> None:
        """Events may have been missed while unsubscribed: make every waiter re-check."""
        self._idle.fire()
        self._room.fire()
        self._wake.fire()

    # -- producing -------------------------------------------------------------------

    def _encode(self, task: Task) -> bytes:
        body = encode_message(task).encode()
        if len(body) > self.max_message_bytes:
            raise SerializationError(
                f"the message of task '{task.name}' [{task.id}] is {len(body)} bytes, over "
                f"the broker's {self.max_message_bytes}-byte limit"
            )
        return body

    @staticmethod
    def _meta(task: Task) -> str:
        priority = max(-MAX_PRIORITY, min(MAX_PRIORITY, task.priority))
        return f"{task.executor_name}|{priority}"

    async def enqueue(self, task: Task) -> bool:
        """Queue ``task`` (delayed until ``task.eta``); False if its id is waiting or in flight.

        With ``max_size`` set, waits (without polling: a claim publishes ``room``) while
        the task's queue holds ``max_size`` waiting tasks.
        """
        if not self._started:
            await self._start()
        queue = task.queue
        lane = task_lane(task)
        if lane not in self._lanes_known:
            await self._register_lane(lane, queue)
        entry = self._entry(task)
        enqueuer = self._enqueuer(queue)
        while True:
            mark = self._room.mark()
            outcome = await enqueuer.submit(entry)
            if outcome >= 0:
                return outcome == 1
            await self._room.wait(mark, _ROOM_SAFETY)

    def post_enqueue(self, task: Task) -> asyncio.Future[int] | None:
        """Start :meth:`enqueue` without waiting: the future holds 1 (queued), 0 (the id is
        already waiting or in flight) or -1 (the queue is full and nothing was queued:
        await :meth:`enqueue` to wait for room). None until the broker is started and the
        task's lane registered (then await :meth:`enqueue`)."""
        if not self._started or task_lane(task) not in self._lanes_known:
            return None
        return self._enqueuer(task.queue).post(self._entry(task))

    def _entry(self, task: Task) -> _Entry:
        return (
            task.id,
            self._encode(task),
            self._meta(task),
            math.ceil(task.eta * 1000) if task.eta else 0,
        )

    def _enqueuer(self, queue: str) -> Coalescer[_Entry, int]:
        enqueuer = self._enqueuers.get(queue)
        if enqueuer is None:
            enqueuer = self._enqueuers[queue] = Coalescer(
                lambda batch: self._enqueue_batch(queue, batch), _BATCH
            )
        return enqueuer

    async def _enqueue_batch(self, queue: str, batch: list[_Entry]) -> list[int]:
        args: list[Any] = [self.max_size or 0]
        for entry in batch:
            args.extend(entry)
        result: list[int] = await self._run("enqueue", queue, *args)
        return [int(r) for r in result]

    # -- claiming --------------------------------------------------------------------

    def _claimer(self, lanes: Sequence[str]) -> Claimer:
        key = tuple(lanes)
        claimer = self._claimers.get(key)
        if claimer is None:
            claimer = self._claimers[key] = Claimer(key)
        return claimer

    def claim_nowait(self, lanes: Sequence[str]) -> Delivery | None:
        """A prefetched delivery of ``lanes``, or None (no round trip is made)."""
        claimer = self._claimers.get(tuple(lanes))
        if claimer is not None and claimer.buffer:
            return claimer.buffer.popleft()
        return None

    async def claim(self, lanes: Sequence[str]) -> Delivery:
        """Claim the next ready task of ``lanes``; blocks on Redis while all are empty."""
        claimer = self._claimer(lanes)
        if claimer.buffer:
            return claimer.buffer.popleft()
        await self._start()
        self._start_consuming()
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        claimer.waiters.append(future)
        self._supervisor.start(claimer.name, lambda: self._fetch(claimer))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                claimer.buffer.appendleft(future.result())  # not lost: the next claim gets it
            raise

    async def _fetch(self, claimer: Claimer) -> None:
        """Claim for every waiting local claimer in one script call; block when empty."""
        while True:
            claimer.prune()
            if not claimer.waiters:
                return
            want = len(claimer.waiters) + self.prefetch - len(claimer.buffer)
            claimed, exhausted = await self._claim_batch(claimer, want)
            claimer.buffer.extend(claimed)
            claimer.hand_out()
            if claimer.waiters and exhausted:
                await self._block(claimer)

    async def _block(self, claimer: Claimer) -> None:
        """Wait on the lanes' wake-up lists until a token arrives or the wait times out.

        The BLPOP runs on a connection of the claimer's own (a blocked command holds up its
        connection). On a single server one BLPOP waits on every lane.
        On a cluster each queue's lanes are in their own slot, so each queue gets a BLPOP
        of its own; the first token wakes the claimer and the other waits are dropped.
        """
        seconds = max(1.0, self._socket_timeout - 1.0)
        if is_cluster(self._client):  # a wait re-sent through the cluster client must end
            seconds = min(seconds, 0.8 * self._socket_timeout)  # within its reply timeout
        groups = [
            [self._queue(queue).notify(executor) for executor in executors]
            for queue, executors in claimer.groups
        ]
        if len(groups) > 1 and not is_cluster(self._client):
            groups = [[key for group in groups for key in group]]
        if len(groups) == 1:
            popped = await self._wait_for_token(claimer.name, groups[0], seconds)
        else:
            popped = await self._first_token(claimer.name, groups, seconds)
        if popped is not None and not claimer.waiters:
            await self._wire.call("RPUSH", popped[0], popped[1])

    async def _wait_for_token(self, owner: str, wait_keys: list[str], seconds: float) -> Any:
        """BLPOP on ``wait_keys`` (one slot) over the connection kept for them."""
        name = f"{owner}|{','.join(wait_keys)}"
        wire = self._blockers.get(name)
        if wire is None:
            wire = self._blockers[name] = open_wire(self._client)
        return await wire.call_blocking(seconds, "BLPOP", *wait_keys, seconds)

    async def _first_token(self, owner: str, groups: list[list[str]], seconds: float) -> Any:
        """One BLPOP per slot at once; the first token popped (None if none came).

        Once a token arrives the other BLPOPs are cancelled, which drops their connections;
        any other token popped meanwhile is pushed back for other claimers. A BLPOP that
        fails counts as no token while another one still waits; if all fail, the first
        error is raised. A token popped by a cancelled BLPOP in the instant of its
        cancellation is lost, which only delays the claimer it was meant for by one wait at
        most (claimers re-check every lane after each wait).
        """
        loop = asyncio.get_running_loop()
        waits = [loop.create_task(self._wait_for_token(owner, keys, seconds)) for keys in groups]
        for wait in waits:  # close() ends any left behind by a cancellation of this cleanup
            self._slot_waits.add(wait)
            wait.add_done_callback(self._slot_waits.discard)
        pending: set[asyncio.Task[Any]] = set(waits)
        try:
            while pending and not any(_popped(wait) for wait in waits):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_until_done(pending)
        tokens: list[Any] = []
        errors: list[BaseException] = []
        for wait in waits:  # all done now
            if wait.cancelled():
                continue
            error = wait.exception()
            if error is not None:
                errors.append(error)
            elif wait.result() is not None:
                tokens.append(wait.result())
        for key, token in tokens[1:]:  # popped too: another claimer's
            with contextlib.suppress(*REDIS_ERRORS):  # lost: a wake-up is only delayed
                await self._wire.call("RPUSH", key, token)
        if tokens:
            return tokens[0]
        if len(errors) == len(waits):
            raise errors[0]
        return None

    async def _claim_batch(self, claimer: Claimer, want: int) -> tuple[list[Delivery], bool]:
        """Claim up to ``want`` deliveries; also True when the lanes ran out before that.

        Lanes that ran out are empty at the moment of the claim, so the fetcher may block:
        any task made ready afterwards pushes a wake-up token.
        """
        claimed: list[Delivery] = []
        for queue, executors in claimer.groups:
            if want <= 0:
                break
            raw = await self._run("claim", queue, int(self.lease * 1000), want, *executors)
            want -= len(raw) // 5
            claimed.extend(await self._accept(queue, raw))
        return claimed, want > 0

    async def _accept(self, queue: str, raw: list[Any]) -> list[Delivery]:
        """Build deliveries from a claim's reply; dead-letter malformed messages."""
        held = self._held.setdefault(queue, {})
        deliveries: list[Delivery] = []
        rejects: list[_Op] = []
        for index in range(0, len(raw), 5):
            task_id, executor, token, count, body = raw[index : index + 5]
            task_id = text(task_id)
            token = int(token)
            try:
                task = decode_message(task_id, body, self.max_message_bytes)
            except MalformedMessageError as error:
                logger.warning("dead-lettering task %s of queue %s: %s", task_id, queue, error)
                rejects.append(("bury", task_id, str(token), f"malformed message: {error}", "", ""))
                continue
            task.eta = None
            held[task_id] = str(token)
            lane = f"{queue}:{text(executor)}"
            deliveries.append(Delivery(task, lane, int(token), int(count)))
        if rejects:
            await self._settler(queue).submit_all(rejects)
        return deliveries

    async def pop(self, timeout: float | None = None) -> Task | None:
        """Take the next task of any known lane outside the lease protocol (at-most-once)."""
        await self._start()
        members = await self._client.smembers(self.keys.lanes)
        lanes = sorted(text(m) for m in members) or ["default:io"]
        try:
            async with asyncio.timeout(timeout):
                delivery = await self.claim(lanes)
        except TimeoutError:
            return None
        await self.ack(delivery)
        return delivery.task

    # -- settling --------------------------------------------------------------------

    def _settler(self, queue: str) -> Coalescer[_Op, int]:
        settler = self._settlers.get(queue)
        if settler is None:
            settler = self._settlers[queue] = Coalescer(
                lambda batch: self._settle_batch(queue, batch), _BATCH
            )
        return settler

    async def _settle_batch(self, queue: str, batch: list[_Op]) -> list[int]:
        args: list[str] = []
        for op in batch:
            args.extend(op)
        result: list[int] = await self._run("settle", queue, *args)
        return [int(r) for r in result]

    def _post_settle(self, delivery: Delivery, op: _Op) -> asyncio.Future[int]:
        queue = split_lane(delivery.lane)[0]
        held = self._held.get(queue)
        if held is not None and held.get(delivery.task.id) == op[2]:
            del held[delivery.task.id]
        return self._settler(queue).post(op)

    async def _settle(self, delivery: Delivery, op: _Op) -> bool:
        return await self._post_settle(delivery, op) == 1

    def post_ack(self, delivery: Delivery) -> asyncio.Future[int]:
        """Start :meth:`ack` without waiting: the future holds 1 (acked) or 0 (a stale
        claim). Settlements of a queue go out in the order they were started, and
        :meth:`close` sends every one started before it."""
        op: _Op = ("ack", delivery.task.id, str(delivery.token), "", "", "")
        return self._post_settle(delivery, op)

    async def ack(self, delivery: Delivery) -> bool:
        """Done: the task leaves Redis. False for a stale claim."""
        return await self.post_ack(delivery) == 1

    async def retry(self, delivery: Delivery, delay: float) -> bool:
        """Store the updated task and put it in the delayed set for ``delay`` s (ready if <= 0)."""
        task = delivery.task
        task.eta = time.time() + delay if delay > 0 else None
        op: _Op = (
            "retry",
            task.id,
            str(delivery.token),
            self._encode(task).decode(),
            self._meta(task),
            str(max(0, math.ceil(delay * 1000))),
        )
        return await self._settle(delivery, op)

    async def release(self, delivery: Delivery) -> bool:
        """Back to the front of its priority at once; the next claim counts a delivery.

        Prefetched spares of the same queue are handed back first, so the released task
        keeps its place ahead of them.
        """
        queue = split_lane(delivery.lane)[0]
        await self._return_spares(queue)
        return await self._settle(
            delivery, ("release", delivery.task.id, str(delivery.token), "", "", "")
        )

    async def bury(self, delivery: Delivery, reason: str) -> bool:
        """Dead-letter the task with ``reason``."""
        return await self._settle(
            delivery, ("bury", delivery.task.id, str(delivery.token), reason, "", "")
        )

    async def _return_spares(self, queue: str | None) -> None:
        """Hand prefetched deliveries (of ``queue``, or all) back without counting a delivery."""
        by_queue: dict[str, list[Delivery]] = {}
        for claimer in self._claimers.values():
            keep: deque[Delivery] = deque()
            for delivery in claimer.buffer:
                owner = split_lane(delivery.lane)[0]
                if queue is None or owner == queue:
                    by_queue.setdefault(owner, []).append(delivery)
                else:
                    keep.append(delivery)
            claimer.buffer = keep
        for owner, spares in by_queue.items():
            ops: list[_Op] = []
            held = self._held.get(owner, {})
            for delivery in reversed(spares):
                held.pop(delivery.task.id, None)
                ops.append(("unclaim", delivery.task.id, str(delivery.token), "", "", ""))
            await self._settler(owner).submit_all(ops)

    # -- background ------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Promote due delayed tasks (timer at the earliest due time) and reap leases."""
        next_reap = 0.0
        loop = asyncio.get_running_loop()
        while True:
            mark = self._wake.mark()
            queues = await self._all_queues()
            if loop.time() >= next_reap:
                for queue in queues:
                    await self._reap(queue)
                next_reap = loop.time() + self._interval
            wait = self._interval
            for queue in queues:
                due_in = await self._promote(queue)
                if due_in is not None:
                    wait = min(wait, due_in)
            await self._wake.wait(mark, max(wait, 0.001))

    async def _reap(self, queue: str) -> None:
        while True:
            reaped, buried = await self._run("reap", queue, self.max_deliveries, _BATCH)
            if reaped:
                logger.warning(
                    "queue %s: %d expired lease(s) returned, %d dead-lettered",
                    queue,
                    reaped - len(buried) // 5,
                    len(buried) // 5,
                )
            for index in range(0, len(buried), 5):
                task_id, reason, body, deliveries, token = buried[index : index + 5]
                fence = int(token) if token else None
                await self._report_dead(text(task_id), text(reason), body, int(deliveries), fence)
            if reaped < _BATCH:
                return

    async def _report_dead(
        self, task_id: str, reason: str, body: bytes, deliveries: int, fence: int | None
    ) -> None:
        """Tell :attr:`dead_letter_listener` about a task the reaper buried (its errors are
        logged: the task is dead-lettered either way)."""
        listener = self.dead_letter_listener
        if listener is None:
            return
        try:
            task = decode_message(task_id, body, self.max_message_bytes)
        except MalformedMessageError:
            task = placeholder(task_id)
        try:
            await listener(task, reason, deliveries, fence)
        except Exception:
            logger.exception("recording dead-lettered task %s failed", task_id)

    async def _promote(self, queue: str) -> float | None:
        """Promote due tasks of ``queue``; seconds until the next one is due (None: none)."""
        while True:
            promoted, following, now = await self._run("promote", queue, _BATCH)
            if int(promoted) < _BATCH:
                break
        due = float(following)
        if due < 0:
            return None
        return max(0.0, (due - float(now)) / 1000)

    async def _heartbeat(self) -> None:
        """Renew the lease of every delivery this broker holds, every third of a lease."""
        while True:
            await asyncio.sleep(self.lease / 3)
            for queue, held in list(self._held.items()):
                if held:
                    await self._extend(queue, held)

    async def _extend(self, queue: str, held: dict[str, str]) -> None:
        items = list(held.items())
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            args: list[str] = [str(int(self.lease * 1000))]
            for task_id, token in chunk:
                args.extend((task_id, token))
            renewed = await self._run("extend", queue, *args)
            for (task_id, token), ok in zip(chunk, renewed, strict=True):
                if not ok and held.get(task_id) == token:
                    del held[task_id]
                    logger.warning("task %s lost its lease (claimed again elsewhere)", task_id)

    # -- inspection and control ------------------------------------------------------

    async def cancel(self, task_id: str) -> Task | None:
        """Remove a waiting or delayed task; None if it is in flight or unknown."""
        await self._start()
        for queue in await self._all_queues():
            body = await self._run("cancel", queue, task_id)
            if body is not None:
                try:
                    return decode_message(task_id, body, self.max_message_bytes)
                except MalformedMessageError:
                    return placeholder(task_id)
        return None

    async def counts(self) -> BrokerCounts:
        """Sizes summed over every queue of this prefix."""
        queues = await self._all_queues()
        if not queues:
            return BrokerCounts(0, 0, 0, 0)
        async with self._client.pipeline(transaction=False) as pipe:
            for queue in queues:
                keys = self._queue(queue)
                pipe.hlen(keys.messages)
                pipe.zcard(keys.delayed)
                pipe.zcard(keys.leases)
                pipe.zcard(keys.dead)
            replies = [int(r) for r in await pipe.execute()]
        live, delayed, in_flight, dead = (sum(replies[i::4]) for i in range(4))
        return BrokerCounts(live - delayed - in_flight, delayed, in_flight, dead)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recently buried tasks over every queue, newest first."""
        letters: list[DeadLetter] = []
        for queue in await self._all_queues():
            letters.extend(await self._dead_of(queue, limit))
        letters.sort(key=lambda letter: letter.buried_at, reverse=True)
        return letters[:limit]

    async def _dead_of(self, queue: str, limit: int) -> list[DeadLetter]:
        keys = self._queue(queue)
        entries: list[Any] = await self._client.zrevrange(keys.dead, 0, limit - 1, withscores=True)
        if not entries:
            return []
        ids = [text(member) for member, _ in entries]
        reasons: list[Any] = await self._client.hmget(keys.dead_reasons, ids)
        bodies: list[Any] = await self._client.hmget(keys.dead_messages, ids)
        letters = []
        for task_id, (_, score), reason, body in zip(ids, entries, reasons, bodies, strict=True):
            try:
                task = decode_message(task_id, body or b"", self.max_message_bytes)
            except MalformedMessageError:
                task = placeholder(task_id)
            letters.append(DeadLetter(task, text(reason or b""), float(score) / 1000))
        return letters

    async def wait_idle(self) -> None:
        """Return once no queue of this prefix has a waiting, delayed or in-flight task.

        Woken by the ``idle`` event the scripts publish when a queue empties; the counts are
        also read again every 5 s in case an event was lost (on a cluster, events cross
        the cluster bus).
        """
        await self._start()
        while True:
            mark = self._idle.mark()
            if not (await self.counts()).busy:
                return
            await self._idle.wait(mark, _ROOM_SAFETY)

    async def purge(self) -> None:
        """Delete every key of this prefix's queues (tests and resets; not atomic)."""
        for queue in await self._all_queues():
            keys = self._queue(queue)
            lanes = [text(m) for m in await self._client.smembers(self.keys.lanes)]
            executors = [split_lane(lane)[1] for lane in lanes if split_lane(lane)[0] == queue]
            doomed = [*keys.fixed(), *(keys.ready(e) for e in executors)]
            doomed.extend(keys.notify(e) for e in executors)
            await self._client.delete(*doomed)
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self._client.delete(self.keys.queues, self.keys.lanes)

    # -- dead letters and queue details (scripts in flowrra._lua_admin) ---------------

    async def _run_admin(self, script: str, queue: str, *args: Any) -> Any:
        keys, common = self._frame(queue)
        source = Script(_lua_admin.SOURCES[script])  # rare calls: hashing it each time is fine
        return await self._wire.evalsha(source, keys, [*common, *args])

    async def requeue_dead(self, task_id: str) -> bool:
        """Back to the end of its priority in its ready lane, with no delivery counted.

        False when ``task_id`` is not dead-lettered in any queue, a live task holds the
        id, or the dead-lettered message is malformed.
        """
        await self._start()
        for queue in await self._all_queues():
            found = await self._client.hget(self._queue(queue).dead_messages, task_id)
            if found is None:
                continue
            body = found if isinstance(found, bytes) else found.encode()
            try:
                task = decode_message(task_id, body, self.max_message_bytes)
            except MalformedMessageError:
                return False
            await self._register_lane(task_lane(task), queue)
            moved = await self._run_admin("requeue_dead", queue, task_id, body, self._meta(task))
            return bool(moved)
        return False

    async def delete_dead(self, task_id: str) -> bool:
        """Drop one dead letter; False when ``task_id`` is not dead-lettered."""
        await self._start()
        for queue in await self._all_queues():
            if await self._run_admin("delete_dead", queue, task_id):
                return True
        return False

    async def purge_dead(self) -> int:
        """Drop every dead letter of every queue (one script per queue); returns how many."""
        await self._start()
        removed = 0
        for queue in await self._all_queues():
            removed += int(await self._run_admin("purge_dead", queue))
        return removed

    async def queue_details(self) -> list[QueueDetail]:
        """Per queue: ready by priority (counted per score band), delayed, in flight, dead,
        and the latency from the submission time in the messages of the heads."""
        lanes = [split_lane(text(m)) for m in await self._client.smembers(self.keys.lanes)]
        details = []
        for queue in await self._all_queues():
            executors = sorted(executor for owner, executor in lanes if owner == queue)
            reply = await self._run_admin("details", queue, *executors)
            details.append(_lua_admin.parse_details(queue, reply, datetime.now(UTC)))
        return details
