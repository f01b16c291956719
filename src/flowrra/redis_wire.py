"""A lean, multiplexed Redis connection for the broker's and backend's hot paths.

redis-py spends most of a round trip in Python (pool checkout, retry wrapper, argument
encoding, response callbacks): about twice the wire time of a bare ``PING``. The scripts
the broker and backend run for every batch do not need any of that, so they go through
:class:`Wire` instead:

- one connection carries any number of commands in flight (requests are written at once,
  replies are matched to callers in order), so concurrent callers pipeline by themselves;
- commands are packed straight to RESP bytes and replies parsed by ``hiredis``;
- ``EVALSHA`` falls back to ``SCRIPT LOAD`` once when the server does not know a script;
- a lost connection fails the commands in flight with ``ConnectionError``; the next call
  reconnects, and a call that failed that way is retried with a capped, jittered
  exponential back-off (:data:`~flowrra.redis_connection.RETRIES` attempts), like
  redis-py's own retries: at-least-once, so scripts must tolerate a repeated batch;
- a command that gets no reply within ``socket_timeout`` closes the connection (its
  state is unknown) and raises ``TimeoutError``.

Connection settings (host, port or unix path, TLS context, username, password, database)
are taken from the redis-py pool that :func:`~flowrra.redis_connection.connect` built, so
both speak to the same server the same way. A blocking command (``BLPOP``) gets a Wire of
its own: a blocked command holds up everything behind it.

:class:`WireSubscription` is a pub/sub subscriber on its own connection of this kind. On a
Redis Cluster the same calls go through :class:`~flowrra.redis_cluster.ClusterWire`
(see :mod:`flowrra.redis_cluster`, which picks one or the other).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError

from flowrra.exceptions import BackendError
from flowrra.redis_connection import (
    RETRIES,
    RedisConnectionError,
    RedisTimeoutError,
    ResponseError,
    safe_url,
)

logger = logging.getLogger("flowrra.redis")

Arg = bytes | str | int | float
Reply = Any

_CRLF = b"\r\n"


_hiredis_pack = getattr(hiredis, "pack_command", None)  # hiredis >= 2.1


def pack(args: Sequence[Arg]) -> bytes:
    """``args`` as one RESP command (bytes as they are, str UTF-8, numbers in decimal).

    hiredis packs it in C; a value it refuses (a bool, say) takes the Python path, which
    writes ``str(value)``.
    """
    if _hiredis_pack is not None:
        try:
            return _hiredis_pack(args if type(args) is tuple else tuple(args))  # type: ignore[no-any-return]
        except TypeError:
            pass
    return _pack_in_python(args)


def _pack_in_python(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        if type(arg) is bytes:
            data = arg
        elif type(arg) is str:
            data = arg.encode()
        elif type(arg) is int:
            data = b"%d" % arg
        else:
            data = repr(arg).encode() if isinstance(arg, float) else str(arg).encode()
        append(b"$%d\r\n" % len(data))
        append(data)
        append(_CRLF)
    return b"".join(parts)


class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Protocol(asyncio.Protocol):
    """Feeds bytes to hiredis and hands each reply to the oldest waiting caller.

    With ``on_push`` set (pub/sub mode) every reply goes to it instead.
    """

    def __init__(self, on_push: Callable[[Reply], None] | None = None) -> None:
        self.reader = hiredis.Reader(notEnoughData=_MISSING)
        self.waiters: deque[asyncio.Future[Reply]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_push = on_push

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.waiters
        push = self.on_push
        while True:
            reply = reader.gets()
            if reply is _MISSING:
                return
            if push is not None and not waiters:
                push(reply)
                continue
            future = waiters.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})")
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def usable(self) -> bool:
        """True while commands can be sent (not closed, and not closing: an aborted
        transport reports its loss only on the next pass of the loop)."""
        transport = self.transport
        return transport is not None and not transport.is_closing() and not self.closed.done()

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise RedisConnectionError("connection to Redis is closed")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        transport.write(payload)
        return future

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


_MISSING = object()


def _reply_error(message: str) -> ResponseError | BusyLoadingError:
    """The exception for an error reply; ``LOADING`` (a restarting server) is transient."""
    if message.startswith("LOADING"):
        return BusyLoadingError(message)
    return ResponseError(message)


class ServerSettings:
    """How to reach and log in to one Redis server, as redis-py's connections would.

    ``connection_class`` and ``options`` are a redis-py pool's (or cluster node's)
    connection class and keyword arguments; ``url`` is the redacted URL shown in errors.
    """

    def __init__(self, connection_class: type[Any], options: dict[str, Any], url: str) -> None:
        self.path: str | None = options.get("path") or None
        self.host: str = options.get("host", "127.0.0.1")
        self.port: int = int(options.get("port", 6379))
        self.ssl = None
        if issubclass(connection_class, aioredis.SSLConnection):
            probe = connection_class(**options)
            self.ssl = probe.ssl_context.get()
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.db = int(options.get("db", 0) or 0)
        timeout = options.get("socket_timeout")
        self.timeout: float | None = float(timeout) if timeout else None
        self.url = url

    @classmethod
    def of_client(cls, client: aioredis.Redis) -> ServerSettings:
        """The settings of the server a single-server client points at."""
        pool = client.connection_pool
        return cls(pool.connection_class, pool.connection_kwargs, safe_url(client))

    def login(self) -> list[tuple[Arg, ...]]:
        """The commands that prepare a new connection (AUTH, SELECT)."""
        commands: list[tuple[Arg, ...]] = []
        if self.password is not None:
            if self.username:
                commands.append(("AUTH", self.username, self.password))
            else:
                commands.append(("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


class CommandWire(Protocol):
    """What the broker and backend send their commands through: a :class:`Wire` to one
    server, or :class:`~flowrra.redis_cluster.ClusterWire` to a cluster."""

    async def call(self, *args: Arg) -> Reply:
        """Run one command given as arguments."""

    async def call_blocking(self, seconds: float, *args: Arg) -> Reply:
        """Run a command that blocks in Redis for up to ``seconds`` (``BLPOP``)."""

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        """Run ``script`` (loading it first if the server does not know it)."""

    async def close(self) -> None:
        """Release the connections; later calls raise."""


async def _open(settings: ServerSettings, on_push: Callable[[Reply], None] | None) -> _Protocol:
    """A new connection, logged in (AUTH, SELECT), within ``settings.timeout``; a connection
    whose login fails or times out is dropped, never left open."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(settings.timeout):
        if settings.path:
            _, protocol = await loop.create_unix_connection(
                lambda: _Protocol(on_push), settings.path
            )
        else:
            _, protocol = await loop.create_connection(
                lambda: _Protocol(on_push), settings.host, settings.port, ssl=settings.ssl
            )
        try:
            for command in settings.login():
                reply = await protocol.send(pack(command))
                if isinstance(reply, hiredis.ReplyError):
                    raise BackendError(
                        f"Redis at {settings.url} refused the connection setup "
                        f"({command[0]!s}): {str(reply).split(' ', 1)[0]}"
                    )
        except BaseException:
            protocol.abort()
            raise
    return protocol


class Wire:
    """Commands to one Redis server over one multiplexed connection (see module doc)."""

    def __init__(self, settings: ServerSettings, retries: int = RETRIES) -> None:
        self._settings = settings
        self._retries = retries
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._retrying: asyncio.Lock | None = None
        self._connects = 0  # connection attempts so far
        self._connect_error: str | None = None  # why the last attempt failed
        self._closed = False

    async def _connection(self) -> _Protocol:
        """The open connection, or a new one. A caller that waited while another caller's
        attempt failed gets that failure at once instead of queueing a timeout of its own."""
        protocol = self._protocol
        if protocol is not None and protocol.usable():
            return protocol
        if self._closed:
            raise RedisConnectionError("the Redis connection was closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        attempts_seen = self._connects
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and protocol.usable():
                return protocol
            if self._connects != attempts_seen and self._connect_error is not None:
                raise RedisConnectionError(self._connect_error)
            self._connects += 1
            self._connect_error = None
            try:
                protocol = await _open(self._settings, None)
            except (OSError, TimeoutError, RedisConnectionError) as error:
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                self._connect_error = f"cannot connect to Redis at {self._settings.url} ({reason})"
                raise RedisConnectionError(self._connect_error) from None
            self._connect_error = None
            self._protocol = protocol
            return protocol

    async def _once(self, payload: bytes, blocks: float) -> Reply:
        protocol = self._protocol
        if protocol is None or not protocol.usable():
            protocol = await self._connection()
        return await self._reply(protocol, protocol.send(payload), blocks)

    async def _again(self, payload: bytes, blocks: float, delay: float) -> Reply:
        """Send a command again after its connection failed, in the order they failed.

        Commands in flight fail in the order they were sent and queue here in that order
        (the lock is first come, first served), so a batch sent after another is never
        re-sent before it: pipelined batches keep their order across a reconnection.
        """
        if self._retrying is None:
            self._retrying = asyncio.Lock()
        async with self._retrying:
            protocol = self._protocol
            if protocol is None or not protocol.usable():
                await asyncio.sleep(delay * (0.5 + random.random()))
                protocol = await self._connection()
            future = protocol.send(payload)
        return await self._reply(protocol, future, blocks)

    async def _reply(
        self, protocol: _Protocol, future: asyncio.Future[Reply], blocks: float
    ) -> Reply:
        timeout = self._settings.timeout
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout + blocks):
                return await future
        except TimeoutError:
            protocol.abort()  # replies may still come for it: the connection is unusable
            raise RedisTimeoutError(f"no reply from Redis within {timeout}s") from None

    async def execute(self, payload: bytes, blocks: float = 0.0) -> Reply:
        """Send one packed command and return its reply (retried if the connection fails).

        ``blocks``: seconds the command may block in Redis, added to the reply timeout.
        Commands re-sent after a lost connection go out in the order they were first sent.
        A Redis error reply raises :class:`redis.exceptions.ResponseError`.
        """
        delay = 0.05
        retries = self._retries
        for attempt in range(retries + 1):
            try:
                if attempt == 0:
                    reply = await self._once(payload, blocks)
                else:
                    reply = await self._again(payload, blocks, delay)
                if isinstance(reply, hiredis.ReplyError):
                    raise _reply_error(str(reply))
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                if attempt == retries or self._closed:
                    raise
                if isinstance(error, BusyLoadingError):  # the connection is fine: wait here
                    await asyncio.sleep(delay * (0.5 + random.random()))
                if attempt > 0:
                    delay = min(delay * 2, 1.0)
                continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(self, *args: Arg) -> Reply:
        """Run one command given as arguments."""
        return await self.execute(pack(args))

    async def call_blocking(self, seconds: float, *args: Arg) -> Reply:
        """Run a command that blocks in Redis for up to ``seconds`` (``BLPOP``).

        Use a Wire of its own for it: the commands behind a blocked one wait for it. If the
        caller is cancelled while the command blocks, the connection is dropped, so Redis
        stops serving the abandoned command (the next call reconnects).
        """
        return await self.execute_blocking(pack(args), seconds)

    async def execute_blocking(self, payload: bytes, seconds: float) -> Reply:
        """:meth:`call_blocking` of a packed command."""
        try:
            return await self.execute(payload, seconds)
        except asyncio.CancelledError:
            if self._protocol is not None:
                self._protocol.abort()
            raise

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        """Run ``script`` (loading it first if the server does not know it)."""
        payload = pack(("EVALSHA", script.sha, len(keys), *keys, *args))
        try:
            return await self.execute(payload)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        await self.call("SCRIPT", "LOAD", script.source)
        return await self.execute(payload)

    async def close(self) -> None:
        """Close the connection; commands in flight fail, later calls raise."""
        self._closed = True
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed


class WireSubscription:
    """A subscriber to one channel on its own :class:`Wire`-style connection.

    ``server`` names the server to subscribe on; it is asked again at every
    (re)subscription, so a cluster subscriber can move to another node (``url``, redacted,
    is what errors show). ``handler`` gets
    each message's payload (bytes; it must not raise, errors are logged). ``on_subscribed``
    runs after every (re)subscription, since messages published while the connection was
    down are lost. :meth:`run` is meant for a
    :class:`~flowrra.redis_connection.Supervisor`: it returns never, and raises when the
    connection is lost so the supervisor reconnects.
    """

    def __init__(
        self,
        server: Callable[[], ServerSettings],
        url: str,
        channel: str,
        handler: Callable[[bytes], None],
        on_subscribed: Callable[[], None],
    ) -> None:
        self._server = server
        self._url = url
        self._channel = channel.encode()
        self._handler = handler
        self._on_subscribed = on_subscribed
        self._subscribed = asyncio.Event()

    @property
    def subscribed(self) -> bool:
        """True while the subscription is confirmed and its connection is up."""
        return self._subscribed.is_set()

    async def ready(self, timeout: float) -> None:
        """Wait until subscribed; BackendError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        except TimeoutError:
            raise BackendError(
                f"could not subscribe to Redis at {self._url} within {timeout}s"
            ) from None

    async def run(self) -> None:
        """Subscribe, dispatch messages until the connection ends, then raise."""
        protocol = await _open(self._server(), self._dispatch)
        try:
            protocol.transport.write(pack(("SUBSCRIBE", self._channel)))  # type: ignore[union-attr]
            await protocol.closed
        finally:
            self._subscribed.clear()
            protocol.abort()
        raise RedisConnectionError("the pub/sub connection to Redis was lost")

    def _dispatch(self, reply: Reply) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind = reply[0]
        if kind == b"message":
            try:
                self._handler(reply[2])
            except Exception:
                logger.exception("handling a message on %s failed", self._channel.decode())
        elif kind == b"subscribe":
            self._subscribed.set()
            self._on_subscribed()
