"""The multiplexed wire against a Redis that stops answering for a while."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from flowrra.redis_connection import close_client, connect
from flowrra.redis_wire import ServerSettings, Wire
from integration.redis_support import redis_url

pytestmark = pytest.mark.service


async def test_commands_that_time_out_are_sent_again_until_redis_answers() -> None:
    """``CLIENT PAUSE`` holds every reply for 1 s; with a 0.3 s timeout each command times
    out, reconnects after a back-off and is sent again until Redis answers."""
    client = connect(redis_url(), socket_timeout=0.3)
    assert isinstance(client, aioredis.Redis)
    wire = Wire(ServerSettings.of_client(client))
    pauser = connect(redis_url())
    try:
        assert await wire.call("PING") == b"PONG"
        await pauser.execute_command("CLIENT PAUSE", 1000, "ALL")
        started = time.monotonic()
        replies = await asyncio.gather(*(wire.call("ECHO", str(n)) for n in range(5)))
        waited = time.monotonic() - started
    finally:
        await pauser.execute_command("CLIENT UNPAUSE")
        await wire.close()
        await close_client(pauser)
        await close_client(client)
    assert replies == [str(n).encode() for n in range(5)]
    assert waited > 0.9, "answered during the pause: the test proved nothing"
