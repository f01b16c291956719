"""The Redis result backend: JSON records, per-status indexes, pub/sub completions.

Needs ``pip install 'flowrra[redis]'``. Key layout in :mod:`flowrra.redis_keys`.

- A record is ``TaskResult.to_dict`` as JSON under its own key. Only finished records
  (success, failed, cancelled) get the TTL; storing an unfinished state removes any TTL,
  so a running task's record never expires.
- One script stores a batch of records, moves each id to its status index (a sorted set
  scored by time stored, so ``list_by_status`` reads newest first without scanning keys)
  and publishes each completion with its record. Concurrent ``store`` and ``get`` calls
  are coalesced: one round trip serves all of them.
- ``wait_for`` waits on a local future; one pub/sub connection per backend receives every
  completion and resolves the futures of that id. Ten thousand waiters cost ten thousand
  futures and one connection. After a reconnection the waited ids are re-read, since a
  completion may have been published while the subscription was down.
- ``store_fenced`` refuses a write whose claim token is older than the one that last
  wrote the record, so a worker that lost its lease cannot overwrite the new owner's
  result.
- Records are decoded as JSON only; a record that is not valid JSON raises
  :class:`~flowrra.exceptions.BackendError` and nothing is ever unpickled.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import json
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any

from flowrra import _lua
from flowrra.backends.base import LISTING_CHUNK, BaseResultBackend
from flowrra.backends.waiters import RecentSubmissions, ResultWaiters
from flowrra.config import BackendConfig
from flowrra.exceptions import BackendError, TaskNotFoundError
from flowrra.redis_cluster import open_subscription, open_wire
from flowrra.redis_connection import (
    REDIS_ERRORS,
    Client,
    Coalescer,
    Supervisor,
    check_connection,
    close_client,
    connect,
    is_cluster,
    safe_url,
)
from flowrra.redis_keys import DEFAULT_PREFIX, BackendKeys
from flowrra.redis_wire import Script
from flowrra.serialization import encode_record, loads
from flowrra.task import PENDING, TaskResult, TaskStatus, is_terminal

logger = logging.getLogger("flowrra.backends.redis")

_BATCH = 1000
_STATUSES = tuple(TaskStatus)

# a write: task id, record JSON, status, fence ('' for none), finished ('1'/'0')
_Write = tuple[str, str, str, str, str]


UpdateListener = Callable[[dict[str, Any]], Awaitable[None] | None]


def _nothing_missed() -> None:
    """Updates are at-most-once: nothing to re-read after a reconnection."""


async def _deliver(callback: UpdateListener, event: dict[str, Any]) -> None:
    try:
        outcome = callback(event)
        if inspect.isawaitable(outcome):
            await outcome
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("update listener %r failed", callback)


_FINISHED = frozenset(status.value for status in _STATUSES if is_terminal(status))


def _invalid(task_id: str, error: BaseException) -> BackendError:
    return BackendError(
        f"the stored record of task {task_id!r} is not a valid JSON record "
        f"({type(error).__name__})"
    )


def _parse_record(task_id: str, raw: bytes | str) -> dict[str, Any]:
    """The JSON object in ``raw``, with a string status; BackendError otherwise."""
    try:
        data = loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise TypeError("not a JSON object with a status")
    except (ValueError, TypeError, RecursionError) as error:
        raise _invalid(task_id, error) from None
    return data


_UNFINISHED = frozenset(
    status.value.encode() for status in _STATUSES if not is_terminal(status)
)


def _written_unfinished(task_id: str, raw: bytes | str) -> bool:
    """True when ``raw`` is a record as :meth:`RedisBackend.store` writes it for ``task_id``
    (``{"task_id":<id>,"status":"<status>",...}``) with an unfinished status: the check
    before waiting then needs no JSON decoding. Anything else (another layout, a finished
    status, not JSON) is False and goes through the full decoding and its checks."""
    if type(raw) is not bytes or not raw.endswith(b"}"):
        return False
    head = b'{"task_id":' + encode_basestring_ascii(task_id).encode() + b',"status":"'
    if not raw.startswith(head):
        return False
    end = raw.find(b'"', len(head))
    return raw[len(head) : end] in _UNFINISHED


def _record_of(task_id: str, data: dict[str, Any]) -> TaskResult:
    """The record ``data`` (a parsed JSON object) holds; BackendError if it is not one."""
    try:
        return TaskResult.from_dict(data)
    except (ValueError, TypeError, KeyError) as error:
        raise _invalid(task_id, error) from None


def decode_record(task_id: str, raw: bytes | str) -> TaskResult:
    """The record in ``raw`` (JSON only); BackendError if it is not a valid record."""
    try:
        data = loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return TaskResult.from_dict(data)
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise _invalid(task_id, error) from None


def _name_marker(task_name: str) -> bytes | None:
    """The bytes every JSON encoding of the string ``task_name`` holds, or ``None`` when
    an encoder may escape one of its characters (then no byte search can rule a record
    out)."""
    plain = task_name.isascii() and task_name.isprintable()
    if not plain or any(c in task_name for c in '"\\/'):
        return None
    return b'"' + task_name.encode() + b'"'


def _named(
    ids: list[str], raws: list[Any], status: TaskStatus, task_name: str
) -> Iterator[TaskResult]:
    """The records among ``raws`` in ``status`` of task ``task_name``, in order; one whose
    JSON does not hold the name is skipped without being decoded."""
    marker = _name_marker(task_name)
    for task_id, raw in zip(ids, raws, strict=True):
        if raw is None or (marker is not None and marker not in raw):
            continue  # expired since it was indexed, or another task's record
        record = decode_record(task_id, raw)
        if record.status == status and record.task_name == task_name:
            yield record


class RedisBackend(BaseResultBackend):
    """Task records in Redis, shared by every process of an app.

    ``url``: ``redis://``, ``rediss://``, ``unix://``, or ``redis+cluster://`` /
    ``rediss+cluster://`` naming any node of a Redis Cluster. ``ttl``: seconds a finished
    record is kept (``None``: for ever). ``prefix``: start of every key; ``clear`` removes
    only this prefix's records. ``publish_updates``: publish every stored record on the
    updates channel, which :meth:`listen_updates` relays to a callback in any process.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        ttl: float | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_connections: int = 50,
        socket_timeout: float = 5.0,
        retry_on_timeout: bool = True,
        publish_updates: bool = True,
    ) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds or None")
        self.ttl = ttl
        self.publish_updates = publish_updates
        self.keys = BackendKeys(prefix)
        self._socket_timeout = socket_timeout
        self._client: Client = connect(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            retry_on_timeout=retry_on_timeout,
        )
        self._wire = open_wire(self._client)
        # PUBSUB NUMSUB counts one node's subscribers: on a cluster, always publish
        self._publish_always = "1" if is_cluster(self._client) else "0"
        self._store_script = Script(_lua.STORE)
        self._delete_script = Script(_lua.DELETE)
        self._index_keys = [self.keys.status(status.value) for status in _STATUSES]
        self._writer: Coalescer[_Write, int] = Coalescer(self._write_batch, _BATCH)
        self._reader: Coalescer[str, bytes | None] = Coalescer(self._read_batch, _BATCH)
        self._waiters = ResultWaiters()
        self._recent = RecentSubmissions()
        self._supervisor = Supervisor("redis-backend")
        self._done = open_subscription(
            self._client, self.keys.done, self._on_done, self._on_subscribed
        )
        self._update_listeners: list[UpdateListener] = []
        self._update_buffer: deque[bytes] = deque()
        self._update_arrived: asyncio.Future[None] | None = None
        self._updates = open_subscription(
            self._client, self.keys.updates, self._on_update, _nothing_missed
        )
        self._started = False
        self._start_lock = asyncio.Lock()
        cls = type(self)
        self._own_writes = (
            cls.store is RedisBackend.store and cls.store_fenced is RedisBackend.store_fenced
        )

    @classmethod
    def from_config(cls, config: BackendConfig) -> RedisBackend:
        """A backend for ``config.url`` with the config's TTL and pool settings."""
        if not isinstance(config.url, str):
            raise BackendError("RedisBackend.from_config needs a URL, not a backend object")
        return cls(
            config.url,
            ttl=config.ttl,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            retry_on_timeout=config.retry_on_timeout,
        )

    def __repr__(self) -> str:
        return f"<RedisBackend {safe_url(self._client)} prefix={self.keys.prefix!r}>"

    async def _start(self) -> None:
        """Check the connection once (a wrong password fails here, at once)."""
        if self._started:
            return
        async with self._start_lock:
            if not self._started:
                await check_connection(self._client, "RedisBackend")
                self._started = True

    async def _listen(self) -> None:
        """Subscribe to completions (once; the supervisor keeps the loop alive)."""
        await self._start()
        self._supervisor.start("completions", self._done.run)
        await self._done.ready(max(self._socket_timeout, 1.0) * 2)

    async def listen_updates(self, callback: UpdateListener) -> None:
        """Call ``callback`` with a ``task.update`` event for every record any process stores.

        Events are ``{"type": "task.update", "task": TaskResult.to_dict}``, exactly what
        the recorder emits locally, in the order Redis stored the records; ``callback``
        may be sync or async (async ones are awaited one at a time, in order). Returns once
        the subscription is confirmed, so every record stored after that is delivered.
        Delivery is at-most-once: records stored while the connection is down are lost
        (pub/sub keeps nothing); read :meth:`get` for the current state. A callback that
        raises is logged and kept. Needs ``publish_updates=True`` on the writers.
        """
        await self._start()
        if callback not in self._update_listeners:
            self._update_listeners.append(callback)
        if not self._supervisor.running("updates"):
            self._update_buffer.clear()
            self._supervisor.start("updates", self._updates.run)
            self._supervisor.start("update-relay", self._relay_updates)
        await self._updates.ready(max(self._socket_timeout, 1.0) * 2)

    async def stop_listening(self, callback: UpdateListener) -> None:
        """Stop calling ``callback``; the subscription ends with the last listener."""
        if callback in self._update_listeners:
            self._update_listeners.remove(callback)
        if not self._update_listeners:
            await self._supervisor.stop_one("updates")
            await self._supervisor.stop_one("update-relay")

    def _on_update(self, data: bytes) -> None:
        self._update_buffer.append(data)
        arrived = self._update_arrived
        if arrived is not None:
            self._update_arrived = None
            if not arrived.done():
                arrived.set_result(None)

    async def _relay_updates(self) -> None:
        """Decode published records and hand them to the listeners, in order.

        Messages that arrived together are relayed in one pass (no queue round trip per
        message); an async listener is awaited before the next record is handed out.
        """
        buffer = self._update_buffer
        loop = asyncio.get_running_loop()
        while True:
            if not buffer:
                arrived = self._update_arrived = loop.create_future()
                await arrived
            while buffer:
                data = buffer.popleft()
                try:
                    task = json.loads(data)
                except ValueError:
                    logger.warning("ignoring an update that is not JSON")
                    continue
                event = {"type": "task.update", "task": task}
                for callback in tuple(self._update_listeners):
                    await _deliver(callback, event)

    async def connect(self) -> None:
        """Check the connection now: ``BackendError`` naming the cause (never the password)
        when Redis cannot be reached or refuses the credentials."""
        await self._start()

    async def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(await self._client.ping())
        except REDIS_ERRORS:
            return False

    async def close(self) -> None:
        """Stop listening and close the connections."""
        await self._supervisor.stop()
        await self._wire.close()
        await close_client(self._client)

    # -- writing ---------------------------------------------------------------------

    def _write(self, task_id: str, result: TaskResult, fence: str) -> _Write:
        status = result.status
        if type(status) is not TaskStatus:  # a plain string: the enum call is the slow path
            status = TaskStatus(status)
        finished = "1" if is_terminal(status) else "0"
        return (task_id, encode_record(result), str(status), fence, finished)

    async def store(self, task_id: str, result: TaskResult) -> None:
        """Save the record; a finished one gets the TTL and wakes waiters everywhere."""
        if not self._started:
            await self._start()
        if result.status is PENDING and self._done.subscribed:
            self._recent.watch(task_id)  # its completion cannot reach Redis before this
        await self._writer.submit(self._write(task_id, result, ""))

    async def store_fenced(self, task_id: str, result: TaskResult, fence: int) -> bool:
        """Save the record unless a claim newer than ``fence`` already wrote it.

        ``fence`` is the claim token of the delivery the worker holds (tokens grow with
        every claim of a queue). Returns False, storing nothing, when the record was
        written by a later claim: the caller lost its lease and must drop its outcome.
        """
        if not self._started:
            await self._start()
        return await self._writer.submit(self._write(task_id, result, str(fence))) == 1

    async def store_unless_finished(
        self, task_id: str, result: TaskResult, fence: int | None = None
    ) -> bool:
        """Store ``result`` unless the record is finished (or, with ``fence``, written by a
        newer claim), in one script call; a write fenced by claim ``fence`` cannot be
        changed to another outcome by that claim afterwards."""
        if not self._own_writes:  # a subclass stores its own way: read, then store
            return await super().store_unless_finished(task_id, result, fence)
        if not self._started:
            await self._start()
        mode = "open" if fence is None else f"open:{fence}"
        return await self._writer.submit(self._write(task_id, result, mode)) == 1

    def post_fenced(
        self, task_id: str, result: TaskResult, fence: int
    ) -> asyncio.Future[int] | None:
        """Start :meth:`store_fenced` without waiting: the future holds 1 (stored) or 0
        (refused: a newer claim wrote the record). Writes of this backend go out in the
        order they were started, on one connection, so later ones land after it. None
        before the backend was started or when a subclass stores records its own way
        (then await :meth:`store_fenced`)."""
        if not self._posts:
            return None
        return self._writer.post(self._write(task_id, result, str(fence)))

    @property
    def _posts(self) -> bool:
        """Whether writes may be posted: started, and ``store`` / ``store_fenced`` are
        this class's own (a subclass that overrides them gets them called instead)."""
        return self._started and self._own_writes

    def post_new(self, task_id: str, result: TaskResult) -> asyncio.Future[int] | None:
        """Start writing a submitted task's first record unless it has one (see the base
        class); None before the backend was started or when a subclass stores records
        its own way."""
        if not self._posts:
            return None
        if self._done.subscribed:
            # nothing of this task can have been published before now, unless it already
            # had a record: then the write is refused and _write_batch lets the id go
            self._recent.watch(task_id)
        return self._writer.post(self._write(task_id, result, "new"))

    async def _write_batch(self, batch: list[_Write]) -> list[int]:
        ttl = 0 if self.ttl is None else max(1, math.ceil(self.ttl * 1000))
        args: list[str | int] = [
            self.keys.record_prefix,
            self.keys.state_prefix,
            self.keys.status_prefix,
            self.keys.done,
            self.keys.updates if self.publish_updates else "",
            ttl,
            self._publish_always,
        ]
        for write in batch:
            args.extend(write)
        try:
            result: list[int] = await self._wire.evalsha(
                self._store_script, self._index_keys, args
            )
        except BaseException:
            self._let_go_of_new(batch, None)
            raise
        self._let_go_of_new(batch, result)
        return result

    def _let_go_of_new(self, batch: list[_Write], result: list[int] | None) -> None:
        """Stop holding the ids whose create-only pending record was refused (the task had
        a record: its completion may have been published before it was held) or whose
        outcome is unknown (``result`` None: the batch failed)."""
        recent = self._recent
        if not recent:
            return
        if result is None:
            for write in batch:
                if write[3] == "new":
                    recent.take(write[0])
            return
        for write, written in zip(batch, result, strict=True):
            if not written and write[3] == "new":
                recent.take(write[0])

    # -- reading ---------------------------------------------------------------------

    async def _read_batch(self, task_ids: list[str]) -> list[bytes | None]:
        record = self.keys.record_prefix
        values: list[Any] = await self._wire.call("MGET", *[record + t for t in task_ids])
        return values

    async def get(self, task_id: str) -> TaskResult | None:
        """The latest record, or None for an unknown or expired id."""
        if not self._started:
            await self._start()
        raw = await self._reader.submit(task_id)
        return None if raw is None else decode_record(task_id, raw)

    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        """Wait for completion, woken by the completion's pub/sub message (no polling).

        A task this process recorded as pending while subscribed needs no read: its
        completion, if any, already arrived on the subscription (see
        :class:`~flowrra.backends.waiters.RecentSubmissions`). Otherwise the record is read
        first; that check decodes nothing for an unfinished record in the layout
        :meth:`store` writes (its opening bytes give the status); any other record is
        parsed, a :class:`TaskResult` is built only when the task has finished, and
        BackendError is raised for a record that is not a JSON object with a status.
        """
        if not self._done.subscribed:
            await self._listen()
        held, done = self._recent.take(task_id)
        if done is not None:
            return decode_record(task_id, done)
        future = self._waiters.add(task_id)  # before the read: a completion can't slip by
        if held:
            return await self._waiters.until(task_id, future, timeout)
        try:
            raw = await self._reader.submit(task_id)
            unfinished = raw is not None and _written_unfinished(task_id, raw)
            data = None if raw is None or unfinished else _parse_record(task_id, raw)
        except BaseException:
            self._waiters.discard(task_id, future)
            raise
        if unfinished:
            return await self._waiters.until(task_id, future, timeout)
        if data is None or data["status"] in _FINISHED:
            self._waiters.discard(task_id, future)
            if data is None:
                raise TaskNotFoundError(task_id, f"Task id '{task_id}' is unknown (or expired)")
            return _record_of(task_id, data)
        return await self._waiters.until(task_id, future, timeout)

    def _on_done(self, data: bytes) -> None:
        """A completion: ``<len(id)>:<id><record JSON>``."""
        length, _, rest = data.partition(b":")
        size = int(length)
        task_id = rest[:size].decode()
        if task_id not in self._waiters:
            self._recent.arrived(task_id, rest[size:])
            return
        try:
            record = decode_record(task_id, rest[size:])
        except BackendError as error:
            self._waiters.fail(task_id, error)
            return
        self._waiters.resolve(task_id, record)

    def _on_subscribed(self) -> None:
        """Completions may have been missed while unsubscribed: re-read the waited ids."""
        self._recent.clear()
        if self._waiters:
            asyncio.get_running_loop().create_task(self._recheck(self._waiters.ids()))

    async def _recheck(self, task_ids: list[str]) -> None:
        try:
            raws = await asyncio.gather(*(self._reader.submit(t) for t in task_ids))
        except REDIS_ERRORS as error:
            logger.warning("re-reading waited records after reconnecting failed: %s", error)
            return
        for task_id, raw in zip(task_ids, raws, strict=True):
            if raw is None:
                continue
            try:
                record = decode_record(task_id, raw)
            except BackendError:
                continue
            if is_terminal(TaskStatus(record.status)):
                self._waiters.resolve(task_id, record)

    # -- management ------------------------------------------------------------------

    async def delete(self, task_id: str) -> bool:
        """Remove the record; True if there was one."""
        self._recent.take(task_id)  # a held id would wait for a completion that never comes
        await self._start()
        removed = await self._wire.evalsha(
            self._delete_script,
            self._index_keys,
            [self.keys.record_prefix, self.keys.state_prefix, task_id],
        )
        return bool(removed)

    async def clear(self) -> int:
        """Remove every record of this prefix (found through the status indexes)."""
        await self._start()
        removed = 0
        for index in self._index_keys:
            members: list[Any] = await self._client.zrange(index, 0, -1)
            for start in range(0, len(members), _BATCH):
                ids = [m.decode() for m in members[start : start + _BATCH]]
                removed += int(await self._client.delete(*(self.keys.record(i) for i in ids)))
                await self._client.delete(*(self.keys.state(i) for i in ids))
            await self._client.delete(index)
        return removed

    async def list_recent(self, limit: int | None = None, offset: int = 0) -> list[TaskResult]:
        """Records of every status, most recently stored first: the status indexes' ids
        and store times are merged, and only the page's records are read and decoded."""
        await self._start()
        stop = -1 if limit is None else offset + limit - 1
        async with self._client.pipeline(transaction=False) as pipe:
            for status in TaskStatus:
                pipe.zrevrange(self.keys.status(status.value), 0, stop, withscores=True)
            indexes: list[list[tuple[bytes, float]]] = await pipe.execute()
        newest_first = heapq.merge(*indexes, key=lambda entry: entry[1], reverse=True)
        ids = list(dict.fromkeys(member.decode() for member, _ in newest_first))  # a record
        # that changed status between two index reads may show in both: keep it once
        page = ids[offset : None if limit is None else offset + limit]
        raws = await self._read_batch(page) if page else []
        return [
            decode_record(task_id, raw)
            for task_id, raw in zip(page, raws, strict=True)
            if raw is not None
        ]

    async def count_by_status(self) -> dict[TaskStatus, int]:
        """Records per status: the sizes of the status indexes, in one round trip."""
        await self._start()
        async with self._client.pipeline(transaction=False) as pipe:
            for status in TaskStatus:
                pipe.zcard(self.keys.status(status.value))
            sizes: list[int] = await pipe.execute()
        return dict(zip(TaskStatus, sizes, strict=True))

    async def list_by_status(
        self, status: TaskStatus, limit: int | None = None, offset: int = 0
    ) -> list[TaskResult]:
        """Records in ``status``, most recently stored first (from the status index)."""
        await self._start()
        status = TaskStatus(status)
        stop = -1 if limit is None else offset + limit - 1
        members: list[Any] = await self._client.zrevrange(
            self.keys.status(status.value), offset, stop
        )
        if not members:
            return []
        ids = [m.decode() for m in members]
        raws = await self._read_batch(ids)
        records = []
        for task_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue  # expired since it was indexed
            record = decode_record(task_id, raw)
            if record.status == status:
                records.append(record)
        return records

    async def list_by_task_name(
        self, status: TaskStatus, task_name: str, limit: int | None = None, offset: int = 0
    ) -> list[TaskResult]:
        """Records in ``status`` of task ``task_name``, most recent first, paged after
        filtering: the status index is read in chunks of ``LISTING_CHUNK`` records (one
        ``ZREVRANGE`` and one ``MGET`` each) until the page is full.

        Only a record whose JSON holds the name as a string is decoded and checked; the
        others are skipped unread, so a rare name costs one byte search per record of
        the chunks read, not a JSON decoding.
        """
        await self._start()
        status = TaskStatus(status)
        index = self.keys.status(status.value)
        page: list[TaskResult] = []
        skip, read = offset, 0
        while limit is None or len(page) < limit:
            members: list[Any] = await self._client.zrevrange(
                index, read, read + LISTING_CHUNK - 1
            )
            ids = [m.decode() for m in members]
            raws = await self._read_batch(ids) if ids else []
            for record in _named(ids, raws, status, task_name):
                if skip:
                    skip -= 1
                    continue
                page.append(record)
                if limit is not None and len(page) >= limit:
                    break
            if len(ids) < LISTING_CHUNK:
                break
            read += len(ids)
        return page
