"""Redis Cluster support, and the choice between a single server's and a cluster's links.

Every script of the broker and backend touches the keys of one hash slot only (see
:mod:`flowrra.redis_keys`), so on a cluster each script runs on the primary that owns its
slot. :class:`ClusterWire` sends them there through redis-py's cluster client, which
keeps the slot map, follows ``MOVED`` and ``ASK`` redirections, and reconnects and
retries with back-off when a node is lost or the cluster is failing over. Its calls go out
on the node's pooled connections, so, unlike a :class:`~flowrra.redis_wire.Wire`, batches
in flight at the same time may land in any order; the scripts do not depend on it (see
``docs/redis.md``).

Pub/sub is cluster-wide: a message published on any node reaches subscribers on every
node, so a subscriber connects to one node and moves to the next one when it loses it.

:func:`open_wire` and :func:`open_subscription` pick the right kind for a client built by
:func:`~flowrra.redis_connection.connect`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from itertools import count

from flowrra.redis_connection import (
    Client,
    NoScriptError,
    RedisCluster,
    RedisConnectionError,
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
)

__all__ = ["ClusterWire", "open_subscription", "open_wire"]


class ClusterWire:
    """The :class:`~flowrra.redis_wire.CommandWire` calls over a cluster client.

    Each command goes to the primary owning the slot of its first key (``EVALSHA``: of its
    first key argument). A script the node does not know is loaded on every primary and
    run again. ``call_blocking`` holds one pooled connection for as long as the command
    blocks; cancelling it drops that connection, so Redis stops serving the command.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._closed = False

    async def call(self, *args: Arg) -> Reply:
        """Run one command given as arguments on the node owning its key."""
        if self._closed:
            raise RedisConnectionError("the Redis connection was closed")
        return await self._client.execute_command(*args)

    async def call_blocking(self, seconds: float, *args: Arg) -> Reply:
        """Run a command that blocks in Redis for up to ``seconds`` (less than the socket
        timeout, as on a :class:`~flowrra.redis_wire.Wire`)."""
        return await self.call(*args)

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        """Run ``script`` on the node owning ``keys`` (all in one slot)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.call(*command)
        except NoScriptError:
            pass
        await self._client.script_load(script.source)  # redis-py sends it to every primary
        return await self.call(*command)

    async def close(self) -> None:
        """Refuse later calls (the client's connections close with the client)."""
        self._closed = True


def open_wire(client: Client) -> CommandWire:
    """A :class:`~flowrra.redis_wire.Wire` for a single server's client, a
    :class:`ClusterWire` for a cluster client."""
    if isinstance(client, RedisCluster):
        return ClusterWire(client)
    return Wire(client)


def open_subscription(
    client: Client,
    channel: str,
    handler: Callable[[bytes], None],
    on_subscribed: Callable[[], None],
) -> WireSubscription:
    """A subscriber to ``channel`` on the server of ``client``; on a cluster, on one node at
    a time (a random one first, so the processes' subscriptions spread over the nodes), the
    next one in turn at each resubscription."""
    if not isinstance(client, RedisCluster):
        settings = ServerSettings.of_client(client)
        return WireSubscription(lambda: settings, settings.url, channel, handler, on_subscribed)
    url = safe_url(client)
    return WireSubscription(_node_in_turn(client), url, channel, handler, on_subscribed)


def _node_in_turn(client: RedisCluster) -> Callable[[], ServerSettings]:
    """Settings of the cluster's nodes, one after another (the client must be initialised:
    the broker and backend check their connection before they subscribe)."""
    turn = count(random.randrange(1 << 16))
    url = safe_url(client)

    def next_node() -> ServerSettings:
        nodes = client.get_nodes()
        if not nodes:
            raise RedisConnectionError("the Redis Cluster client knows no node yet")
        node = nodes[next(turn) % len(nodes)]
        return ServerSettings(node.connection_class, node.connection_kwargs, url)

    return next_node
