"""Redis Cluster support, and the choice between a single server's and a cluster's links.

Every script of the broker and backend touches the keys of one hash slot only (see
:mod:`flowrra.redis_keys`), so on a cluster each script runs on the primary that owns its
slot. :class:`ClusterWire` sends it there over a :class:`~flowrra.redis_wire.Wire` of that
node (one multiplexed connection per node, as on a single server), reading the slot map
from redis-py's cluster client. What the fast path cannot handle goes through that client,
which follows ``MOVED`` and ``ASK`` redirections, refreshes its slot map, and reconnects
and retries with back-off when a node is lost or the cluster is failing over.

Pub/sub is cluster-wide: a message published on any node reaches subscribers on every
node. A subscriber connects to the node serving its channel's slot (where the backend's
scripts publish) and tries another node when it loses that one.

:func:`open_wire` and :func:`open_subscription` pick the right kind for a client built by
:func:`~flowrra.redis_connection.connect`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from itertools import count

from flowrra.redis_connection import (
    RETRIES,
    Client,
    ClusterError,
    NoScriptError,
    RedisCluster,
    RedisClusterException,
    RedisConnectionError,
    RedisTimeoutError,
    ResponseError,
    TryAgainError,
    safe_url,
)
from flowrra.redis_wire import (
    Arg,
    CommandWire,
    Reply,
    Script,
    ServerSettings,
    Wire,
    WireSubscription,
    pack,
)

__all__ = ["ClusterWire", "open_subscription", "open_wire"]

# error replies after which the cluster client must route the command (its node does not
# serve the slot now, or the cluster is changing)
_REROUTE = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")
# failures of a node's wire: the node may be gone for good, let the cluster client find out
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# what the cluster client raises while a slot is being moved or the cluster is failing over
_CHANGING = (TryAgainError, ClusterError)


def _rerouted(error: ResponseError) -> bool:
    return str(error).startswith(_REROUTE)


class ClusterWire:
    """The :class:`~flowrra.redis_wire.CommandWire` calls on a Redis Cluster.

    A command goes to the primary owning the slot of its first key (``EVALSHA``: of its
    first key argument) over that node's :class:`~flowrra.redis_wire.Wire`, so commands to
    one node keep their order as on a single server. A command the node redirects or
    refuses while the cluster changes, or that fails to reach its node, is sent again at
    once through the cluster client (which follows redirections and, for a lost node,
    reloads the slot map and retries with back-off); later commands then go to the slot's
    new owner. While a slot is being moved (``TRYAGAIN``) or the cluster is failing over
    (``CLUSTERDOWN``), the command is tried again with a capped, jittered back-off for up
    to ``socket_timeout * RETRIES`` seconds (see :data:`~flowrra.redis_connection.RETRIES`)
    before the error is raised. Like a wire's own retries this is at-least-once: a command
    whose reply was lost may run twice, which the scripts allow. Blocking commands need a
    ClusterWire of their own (see :meth:`call_blocking`).
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._url = safe_url(client)
        self._wires: dict[str, Wire] = {}
        timeout = client.get_connection_kwargs().get("socket_timeout") or 5.0
        self._patience = float(timeout) * RETRIES
        self._closed = False

    def _wire_for(self, key: Arg) -> Wire | None:
        """The wire of the primary serving ``key``; None while the slot map is unknown."""
        try:
            node = self._client.get_node_from_key(key)  # type: ignore[arg-type]
        except RedisClusterException:
            return None
        if node is None:
            return None
        wire = self._wires.get(node.name)
        if wire is None:
            settings = ServerSettings(node.connection_class, node.connection_kwargs, self._url)
            # no retries of its own: a node that fails is the cluster client's to handle
            wire = self._wires[node.name] = Wire(settings, retries=0)
        return wire

    def _check_open(self) -> None:
        if self._closed:
            raise RedisConnectionError("the Redis connection was closed")

    async def _send(
        self,
        key: Arg,
        on_wire: Callable[[Wire], Awaitable[Reply]],
        on_client: Callable[[], Awaitable[Reply]],
    ) -> Reply:
        """Run a command on the wire of ``key``'s node, else through the cluster client;
        wait out a slot move or a failover (see the class doc)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience
        delay = 0.05
        while True:
            self._check_open()
            try:
                wire = self._wire_for(key)
                if wire is not None:
                    try:
                        return await on_wire(wire)
                    except ResponseError as error:
                        if not _rerouted(error):
                            raise
                    except _UNREACHABLE:
                        self._check_open()
                return await on_client()
            except _CHANGING:
                if loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    async def call(self, *args: Arg) -> Reply:
        """Run one command on the node owning its key (``args[1]``); a command without a key
        goes where the cluster client sends it."""

        async def on_client() -> Reply:
            return await self._client.execute_command(*args)

        if len(args) < 2:
            self._check_open()
            return await on_client()
        payload = pack(args)
        return await self._send(args[1], lambda wire: wire.execute(payload), on_client)

    async def call_blocking(self, seconds: float, *args: Arg) -> Reply:
        """Run a command that blocks in Redis for up to ``seconds`` (``BLPOP``) on the node
        owning its first key. Use a ClusterWire of its own for it, as for a
        :class:`~flowrra.redis_wire.Wire`: the commands behind a blocked one wait for it.
        Cancelling it drops the connection it blocks on. Through the cluster client (after
        a redirection) the reply timeout does not include ``seconds``: keep it below the
        socket timeout."""
        payload = pack(args)

        async def on_client() -> Reply:
            return await self._client.execute_command(*args)

        return await self._send(
            args[1], lambda wire: wire.execute_blocking(payload, seconds), on_client
        )

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        """Run ``script`` on the node owning ``keys`` (all in one slot), loading it there
        first if the node does not know it."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)

        async def on_client() -> Reply:
            try:
                return await self._client.execute_command(*command)
            except NoScriptError:
                pass
            await self._client.script_load(script.source)  # redis-py sends it to every primary
            return await self._client.execute_command(*command)

        return await self._send(keys[0], lambda wire: wire.evalsha(script, keys, args), on_client)

    async def close(self) -> None:
        """Close the nodes' wires and refuse later calls (the cluster client's own
        connections close with the client)."""
        self._closed = True
        wires, self._wires = list(self._wires.values()), {}
        for wire in wires:
            await wire.close()


def open_wire(client: Client) -> CommandWire:
    """A :class:`~flowrra.redis_wire.Wire` for a single server's client, a
    :class:`ClusterWire` for a cluster client."""
    if isinstance(client, RedisCluster):
        return ClusterWire(client)
    return Wire(ServerSettings.of_client(client))


def open_subscription(
    client: Client,
    channel: str,
    handler: Callable[[bytes], None],
    on_subscribed: Callable[[], None],
) -> WireSubscription:
    """A subscriber to ``channel`` on the server of ``client``.

    On a cluster, on the primary serving the slot of the channel's name: the result
    backend's channels carry its records' hash tag, so its messages are published on the
    node the subscriber listens on and never depend on the cluster bus. When a subscription
    is lost the next one tries another node, the one after that the slot's owner again
    (the slot map may have changed meanwhile)."""
    url = safe_url(client)
    if not isinstance(client, RedisCluster):
        settings = ServerSettings.of_client(client)
        return WireSubscription(lambda: settings, url, channel, handler, on_subscribed)
    return WireSubscription(_owner_first(client, channel), url, channel, handler, on_subscribed)


def _owner_first(client: RedisCluster, channel: str) -> Callable[[], ServerSettings]:
    """Settings of the node serving ``channel``'s slot, and of the other nodes in turn on
    every second call (the client must be initialised: the broker and backend check their
    connection before they subscribe)."""
    turn = count()
    url = safe_url(client)

    def next_node() -> ServerSettings:
        number = next(turn)
        try:
            owner = client.get_node_from_key(channel)
        except RedisClusterException:
            owner = None
        others = [node for node in client.get_nodes() if owner is None or node.name != owner.name]
        if owner is not None and (number % 2 == 0 or not others):
            node = owner
        elif others:
            node = others[(number // 2) % len(others)]
        else:
            raise RedisConnectionError("the Redis Cluster client knows no node yet")
        return ServerSettings(node.connection_class, node.connection_kwargs, url)

    return next_node
