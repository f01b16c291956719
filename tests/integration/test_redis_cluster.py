"""flowrra on a three-node Redis Cluster: queues on several nodes, completions and record
updates published on one node reaching subscribers on another, telemetry, and a clear
error for a refused login. (The contract suites also run every broker and backend check
against the cluster.)"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster

from flowrra import Flowrra, TaskStatus
from flowrra.backends.redis import RedisBackend
from flowrra.brokers.redis import RedisBroker
from flowrra.exceptions import BackendError
from flowrra.management import FlowrraManager
from flowrra.redis_keys import BackendKeys, BrokerKeys
from flowrra.task import Task, TaskResult
from integration.redis_support import (
    cluster_url,
    scratch_backend,
    scratch_broker,
    unique_prefix,
    wait_until,
)

pytestmark = pytest.mark.service


async def square(value: int) -> int:
    return value * value


@pytest.fixture
async def cluster() -> AsyncIterator[RedisCluster]:
    """A plain cluster client (to see where keys and subscriptions are)."""
    client = RedisCluster.from_url(cluster_url().replace("redis+cluster://", "redis://"))
    await client.initialize()
    yield client
    await client.aclose()


def queues_on_different_nodes(client: RedisCluster, count: int) -> list[str]:
    """``count`` queue names whose keys live on ``count`` different primaries."""
    chosen: dict[str, str] = {}
    for number in itertools.count():
        name = f"q{number}"
        node = client.get_node_from_key(BrokerKeys("any").queue(name).messages)
        assert node is not None
        chosen.setdefault(node.name, name)
        if len(chosen) == count:
            return sorted(chosen.values())
    raise AssertionError("unreachable")


async def subscribers_by_node(client: RedisCluster, channel: str) -> dict[str, int]:
    """Node name -> subscribers of ``channel`` connected to that node (PUBSUB NUMSUB is
    counted per node)."""
    counts: dict[str, int] = {}
    for node in client.get_primaries():
        reply: list[Any] = await client.execute_command("PUBSUB NUMSUB", channel, target_nodes=node)
        counts[node.name] = int(reply[0][1])
    return counts


async def move_subscriptions_off(client: RedisCluster, node: ClusterNode) -> None:
    """Drop every pub/sub connection of ``node``; their owners resubscribe on the next node."""
    await client.execute_command("CLIENT KILL", "TYPE", "pubsub", target_nodes=node)


async def test_an_app_serves_queues_on_several_nodes(cluster: RedisCluster) -> None:
    url = cluster_url()
    prefix = unique_prefix("cluster-app")
    queues = queues_on_different_nodes(cluster, 3)

    def build() -> Flowrra:
        app = Flowrra.from_urls(
            broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix)
        )
        for queue in queues:  # one task per queue: "square-<queue>"
            app.task(name=f"square-{queue}", queue=queue)(square)
        return app

    producer, worker = build(), build()
    seen: list[dict[str, Any]] = []
    backend = producer.backend
    assert isinstance(backend, RedisBackend)
    try:
        await backend.listen_updates(seen.append)
        await producer.start(worker=False)
        await worker.start(queues=queues)
        await asyncio.sleep(0.3)  # the worker blocks on every queue's node now
        ids = [
            await producer.submit(f"square-{queues[number % len(queues)]}", number)
            for number in range(60)
        ]
        results = [await producer.wait_for_result(task_id, timeout=10) for task_id in ids]
        assert [result.result for result in results] == [n * n for n in range(60)]
        assert {result.status for result in results} == {TaskStatus.SUCCESS}
        # pending, running and success of each task, published on the records' node
        assert await wait_until(lambda: len(seen) >= 3 * 60, 10), len(seen)
        assert sum(1 for event in seen if event["task"]["status"] == "success") == 60
        manager = FlowrraManager(producer)
        assert worker.heartbeat is not None
        await worker.heartbeat.flush()
        stats = await manager.get_stats()
        [described] = stats["workers"]
        assert described["processed"] == 60
        assert sorted(described["queues"]) == queues
        broker = producer.broker
        assert isinstance(broker, RedisBroker)
        counts = await broker.counts()
        assert (counts.ready, counts.delayed, counts.in_flight) == (0, 0, 0)
    finally:
        await worker.close()
        await producer.stop()
        broker = producer.broker
        assert isinstance(broker, RedisBroker)
        await broker.purge()
        await backend.clear()
        await producer.close()
        leftovers = [key async for key in cluster.scan_iter(match=f"{prefix}:*")]
        if leftovers:
            await cluster.delete(*leftovers)


async def test_a_waiter_subscribed_on_another_node_is_woken(cluster: RedisCluster) -> None:
    writer = scratch_backend(cluster_url())
    waiter = scratch_backend(cluster_url(), prefix=writer.keys.prefix)
    keys = BackendKeys(waiter.keys.prefix)
    records_node = cluster.get_node_from_key(keys.record("x"))
    assert records_node is not None
    try:
        await writer.store("x", TaskResult("x", TaskStatus.RUNNING, "job"))
        await waiter.connect()
        first = asyncio.ensure_future(waiter.wait_for("x", 5))
        await asyncio.sleep(0.1)
        where = await subscribers_by_node(cluster, keys.done)
        assert where[records_node.name] == 1, f"not subscribed on the records' node: {where}"
        # lose that subscription: the waiter resubscribes on another node
        await move_subscriptions_off(cluster, records_node)
        moved = await wait_until_async(
            lambda: subscribers_by_node(cluster, keys.done), records_node.name
        )
        assert moved, "the waiter did not resubscribe on another node"
        assert not first.done()
        await writer.store("x", TaskResult("x", TaskStatus.SUCCESS, "job", result=7))
        assert (await asyncio.wait_for(first, 3)).result == 7
    finally:
        await writer.clear()
        await writer.close()
        await waiter.close()


async def wait_until_async(read: Any, away_from: str, timeout: float = 10.0) -> bool:
    """Wait until the subscription counts ``read()`` returns show one subscriber, on a
    node other than ``away_from``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        where = await read()
        if where.get(away_from) == 0 and sum(where.values()) == 1:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_ten_thousand_waiters_are_woken_on_the_cluster() -> None:
    backend = scratch_backend(cluster_url(), ttl=60)
    ids = [f"w{index}" for index in range(10_000)]
    try:
        await asyncio.gather(
            *(backend.store(i, TaskResult(i, TaskStatus.RUNNING, "job")) for i in ids)
        )
        waiters = [asyncio.ensure_future(backend.wait_for(i, 30)) for i in ids]
        await asyncio.sleep(0.3)
        assert not any(waiter.done() for waiter in waiters)
        await asyncio.gather(
            *(
                backend.store(i, TaskResult(i, TaskStatus.SUCCESS, "job", result=n))
                for n, i in enumerate(ids)
            )
        )
        results = await asyncio.wait_for(asyncio.gather(*waiters), 30)
        assert [result.result for result in results] == list(range(10_000))
    finally:
        await backend.clear()
        await backend.close()


async def test_a_refused_login_fails_at_once_without_the_password() -> None:
    node = cluster_url().removeprefix("redis+cluster://")
    broker = RedisBroker(f"redis+cluster://someone:s3cret-word@{node}")
    try:
        with pytest.raises(BackendError) as caught:
            await asyncio.wait_for(broker.connect(), 10)
    finally:
        await broker.close()
    message = str(caught.value)
    assert "refused the credentials" in message
    assert "s3cret-word" not in message + repr(broker)
    assert "someone:***@" in message


def test_a_cluster_url_naming_a_database_is_refused() -> None:
    node = cluster_url().removeprefix("redis+cluster://")
    with pytest.raises(BackendError, match="invalid Redis URL"):
        RedisBackend(f"redis+cluster://:pw@{node}/3")


def job(task_id: str, queue: str) -> Task:
    return Task(id=task_id, name="job", args=(), kwargs={}, queue=queue)


async def test_a_claimer_of_queues_on_several_nodes_blocks_and_wakes(
    cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    queues = queues_on_different_nodes(cluster, 3)
    broker = scratch_broker(cluster_url())
    try:
        for queue in queues:  # list every lane, as a first submit does
            await broker.enqueue(job(f"warm-{queue}", queue))
        lanes = [f"{queue}:io" for queue in queues]
        warm = [await broker.claim(lanes) for _ in queues]
        for delivery in warm:
            await broker.ack(delivery)
        with caplog.at_level(logging.WARNING, logger="flowrra"):
            for queue in reversed(queues):
                claiming = asyncio.ensure_future(broker.claim(lanes))
                await asyncio.sleep(0.3)
                assert not claiming.done(), "claimed from empty queues"
                await broker.enqueue(job(f"late-{queue}", queue))
                delivery = await asyncio.wait_for(claiming, 2)
                assert delivery.task.id == f"late-{queue}"
                await broker.ack(delivery)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    finally:
        await broker.close()
