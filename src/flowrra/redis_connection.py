"""Connections to Redis shared by the Redis broker and the Redis result backend.

This module (and the Redis broker and backend modules) are the only ones that import
``redis``; ``import flowrra`` never does. A missing package raises :class:`ImportError`
naming ``pip install 'flowrra[redis]'``.

URLs: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` (TLS),
``unix://[user:password@]/path/to/socket?db=N``, and for a Redis Cluster
``redis+cluster://[user:password@]host[:port]`` (``rediss+cluster://`` with TLS), naming
any one node: the client learns the others from it. Passwords never appear in logs, reprs
or error messages: everything shown goes through :func:`~flowrra.config.redact_url`.

Failure handling:

- commands are retried by redis-py on connection errors and timeouts with a capped,
  jittered exponential back-off (:data:`RETRIES` attempts);
- :func:`check_connection` runs once before first use: a wrong password raises
  :class:`~flowrra.exceptions.BackendError` at once (authentication is not retried);
- :class:`Supervisor` runs background loops: a loop that raises is logged and restarted
  after a capped back-off, so no background coroutine dies silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from flowrra._aio import cancel_until_done
from flowrra.config import redact_url
from flowrra.exceptions import BackendError

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
    from redis.exceptions import (
        AuthenticationError,
        AuthorizationError,
        ClusterError,
        NoScriptError,
        RedisClusterException,
        RedisError,
        ResponseError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as missing:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "the Redis broker and backend need the redis package: pip install 'flowrra[redis]'"
    ) from missing

Client = aioredis.Redis | RedisCluster

# cluster URL scheme -> the scheme redis-py's cluster client reads
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

logger = logging.getLogger("flowrra.redis")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

RETRIES = 5
BACKOFF_CAP = 5.0  # seconds: the longest wait between reconnection attempts
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    RedisClusterException,  # what redis-py raises when no cluster node can be reached
    ClusterError,  # a cluster that is down or failing over (CLUSTERDOWN, retries exhausted)
    TryAgainError,  # a slot being moved between nodes
)
REDIS_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, RedisError)

__all__ = [
    "BACKOFF_CAP",
    "CLUSTER_SCHEMES",
    "REDIS_ERRORS",
    "RETRIES",
    "TRANSIENT_ERRORS",
    "AuthenticationError",
    "Client",
    "ClusterError",
    "Coalescer",
    "NoScriptError",
    "RedisCluster",
    "RedisClusterException",
    "RedisConnectionError",
    "RedisError",
    "RedisTimeoutError",
    "ResponseError",
    "Signal",
    "Supervisor",
    "TryAgainError",
    "check_connection",
    "connect",
    "describe_error",
    "is_cluster",
]


def connect(
    url: str,
    *,
    max_connections: int = 50,
    socket_timeout: float | None = 5.0,
    retry_on_timeout: bool = True,
) -> Client:
    """A client on a pool of at most ``max_connections`` connections to ``url`` (per node,
    for a cluster URL).

    The pool of a single server blocks (up to ``socket_timeout``) for a free connection
    instead of failing when all are busy. Responses stay bytes: nothing read from Redis is
    decoded before flowrra checks it. Raises :class:`BackendError` (password redacted) for
    a malformed URL.
    """
    safe = redact_url(url)
    retry_errors: tuple[type[RedisError], ...] = (RedisConnectionError,)
    if retry_on_timeout:
        retry_errors = (RedisConnectionError, RedisTimeoutError)
    retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), RETRIES, retry_errors)
    scheme, _, rest = url.partition("://")
    cluster_scheme = CLUSTER_SCHEMES.get(scheme.lower())
    client: Client
    try:
        if cluster_scheme is not None:
            client = RedisCluster.from_url(
                f"{cluster_scheme}://{rest}",
                max_connections=max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=retry,
                decode_responses=False,
            )
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=socket_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=retry,
                retry_on_timeout=retry_on_timeout,
                health_check_interval=30,
                decode_responses=False,
            )
            client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool
    except (ValueError, TypeError, RedisClusterException) as error:
        raise BackendError(f"invalid Redis URL {safe!r}: {scrub(str(error), url)}") from None
    client.flowrra_url = safe  # type: ignore[union-attr]
    return client


def is_cluster(client: Client) -> bool:
    """True when ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def safe_url(client: Client) -> str:
    """The redacted URL ``client`` was built from."""
    return str(getattr(client, "flowrra_url", "redis://<unknown>"))


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (if any) replaced by ``***``."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if not password:
        return text
    return text.replace(password, "***").replace(unquote(password), "***")


def describe_error(error: BaseException) -> str:
    """A one-line description of ``error`` safe for logs (type and message)."""
    return f"{type(error).__name__}: {error}"


async def check_connection(client: Client, what: str) -> None:
    """PING once; raise :class:`BackendError` with the redacted URL if that fails.

    Authentication and authorisation errors are raised at once, not retried: a wrong
    password is a configuration error, not an outage.
    """
    safe = safe_url(client)
    try:
        await _ping_once(client)
    except (AuthenticationError, AuthorizationError):
        raise BackendError(
            f"{what}: Redis at {safe} refused the credentials (wrong username or password)"
        ) from None
    except ResponseError as error:
        if "NOAUTH" in str(error) or "WRONGPASS" in str(error):
            raise BackendError(
                f"{what}: Redis at {safe} requires a password (none or a wrong one given)"
            ) from None
        raise BackendError(f"{what}: Redis at {safe} answered an error: {error}") from None
    except REDIS_ERRORS as error:
        raise BackendError(
            f"{what}: cannot reach Redis at {safe} ({type(error).__name__})"
        ) from None


async def _ping_once(client: Client) -> None:
    """PING on a fresh connection that is not retried (so bad credentials fail at once).

    A cluster client reads the cluster's layout from the node its URL names instead (a
    refused login fails it the same way), then pings one node.
    """
    if isinstance(client, RedisCluster):
        try:
            await client.initialize()
        except RedisClusterException as error:
            cause = error.__cause__ or error.__context__
            refused = isinstance(cause, AuthenticationError | AuthorizationError)
            if refused or "NOAUTH" in str(error) or "WRONGPASS" in str(error):
                raise AuthenticationError("the cluster refused the credentials") from None
            raise
        await client.ping()
        return
    connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    connection.retry = Retry(NoBackoff(), 0)
    try:
        await connection.connect()
        await connection.send_command("PING")
        await connection.read_response()
    finally:
        await connection.disconnect()


class Supervisor:
    """Runs named background loops; a loop that fails is logged and restarted.

    A loop returns normally only when its owner is stopping. Transient connection errors
    are logged at WARNING, anything else with its traceback at ERROR; either way the loop
    is started again after a back-off that doubles up to :data:`BACKOFF_CAP` seconds and
    resets once the loop has run for a while without failing.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` under supervision unless a loop called ``name`` already runs."""
        running = self._tasks.get(name)
        if running is not None and not running.done():
            return
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._guard(name, loop), name=f"flowrra-{self._owner}-{name}"
        )

    def running(self, name: str) -> bool:
        """True while the loop called ``name`` runs."""
        task = self._tasks.get(name)
        return task is not None and not task.done()

    async def _guard(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        delay = 0.05
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as error:
                logger.warning(
                    "%s %s loop lost Redis (%s); retrying in %.2fs",
                    self._owner,
                    name,
                    describe_error(error),
                    delay,
                )
            except Exception:
                logger.exception("%s %s loop failed; restarting in %.2fs", self._owner, name, delay)
            else:
                return
            if asyncio.get_running_loop().time() - started > 10 * BACKOFF_CAP:
                delay = 0.05
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    async def stop_one(self, name: str) -> None:
        """Cancel the loop called ``name`` (if it runs) and wait for it to end."""
        task = self._tasks.pop(name, None)
        if task is not None:
            await cancel_until_done([task])

    async def stop(self) -> None:
        """Cancel every loop and wait for them to end."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_until_done(tasks)


async def close_client(client: Client) -> None:
    """Close ``client`` and its pool, ignoring errors of an already broken connection."""
    try:
        await client.aclose()
    except REDIS_ERRORS:  # pragma: no cover - closing a dead connection
        logger.debug("closing a Redis client failed", exc_info=True)


class Coalescer(Generic[ItemT, ResultT]):
    """Coalesces concurrent calls into batches: one round trip serves many callers.

    :meth:`submit` queues an item and waits for its result. Items submitted in the same
    event-loop pass form one batch (at most ``max_batch`` items). While a batch is on the
    wire the next one collects; only when ``max_batch`` items are waiting does another
    batch go out before the first returns, up to ``max_in_flight`` batches at once, so a
    burst keeps Redis and this process busy at the same time while an idle caller still
    pays one round trip with no added delay. Batches are started in submission order (on
    a :class:`~flowrra.redis_wire.Wire` they also run in that order, even when re-sent
    after a reconnection). ``run`` receives a batch and returns one result per item, in
    order; if it raises, every caller of that batch gets the exception.
    """

    def __init__(
        self,
        run: Callable[[list[ItemT]], Awaitable[list[ResultT]]],
        max_batch: int = 1000,
        max_in_flight: int = 4,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        # items waiting for a batch and their futures, side by side (no pair per item)
        self._pending: list[ItemT] = []
        self._futures: list[asyncio.Future[ResultT]] = []
        self._in_flight = 0
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def post(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Queue ``item`` for the next batch without waiting; the future of its result.

        Items posted or submitted later go out in the same or a later batch, so on an
        ordered connection they run after this one. Whoever posts owns the future: it
        should retrieve its result or exception (a done callback will do).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._pending.append(item)
        self._futures.append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._pump)
        return future

    async def submit(self, item: ItemT) -> ResultT:
        """Queue ``item`` for the next batch and return its result."""
        return await self.post(item)

    async def submit_all(self, items: list[ItemT]) -> list[ResultT]:
        """Queue ``items`` in this order (they go out in one batch when they fit)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[ResultT]] = [loop.create_future() for _ in items]
        self._pending.extend(items)
        self._futures.extend(futures)
        if futures and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._pump)
        return list(await asyncio.gather(*futures))

    async def drain(self) -> None:
        """Wait until every item posted or submitted so far has its result or error (its
        callers get those; nothing is raised here)."""
        waiting: list[asyncio.Future[Any]] = [*self._futures, *self._sending]
        if waiting:
            await asyncio.wait(waiting)

    def _pump(self) -> None:
        """Start the batches the limits allow (called after submits and after each batch)."""
        self._scheduled = False
        pending, futures, size = self._pending, self._futures, self._max_batch
        loop = asyncio.get_running_loop()
        while pending and (
            self._in_flight == 0
            or (len(pending) >= size and self._in_flight < self._max_in_flight)
        ):
            batch, waiting = pending[:size], futures[:size]
            del pending[:size], futures[:size]
            self._in_flight += 1
            sending = loop.create_task(self._send(batch, waiting))
            self._sending.add(sending)
            sending.add_done_callback(self._sent)

    def _sent(self, sending: asyncio.Task[None]) -> None:
        self._sending.discard(sending)
        self._in_flight -= 1
        if self._pending:
            self._pump()

    async def _send(self, batch: list[ItemT], futures: list[asyncio.Future[ResultT]]) -> None:
        try:
            results = await self._run(batch)
        except BaseException as error:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)


class Signal:
    """A wake-up that cannot be missed: a generation counter plus waiting futures.

    Take :meth:`mark` *before* checking a condition; :meth:`wait` returns at once if
    :meth:`fire` was called since that mark, else when it is next called (or after
    ``timeout`` seconds).
    """

    def __init__(self) -> None:
        self._generation = 0
        self._waiters: list[asyncio.Future[None]] = []

    def mark(self) -> int:
        """The current generation."""
        return self._generation

    def fire(self) -> None:
        """Wake every waiter."""
        self._generation += 1
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def wait(self, since: int, timeout: float | None = None) -> bool:
        """Wait for a :meth:`fire` after generation ``since``; False on timeout."""
        if self._generation != since:
            return True
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            return False
        finally:
            if future in self._waiters:
                self._waiters.remove(future)
        return True
