"""A Redis Cluster that changes in the middle of a run: a node restarted, and the queue's
slot moved to another node while tasks run. Nothing is lost and the worker goes on.

The cluster is each test's own: three primaries with append-only persistence on free
ports, so restarting one of them or moving slots disturbs no other test.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from flowrra.brokers.redis import RedisBroker
from flowrra.redis_keys import BrokerKeys
from flowrra.task import Task
from integration.redis_support import PERSISTENCE_OPTIONS, cluster_url, run_with_interruption

pytestmark = [pytest.mark.service, pytest.mark.slow]

TASKS = 300


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_node_ports(count: int) -> list[int]:
    """``count`` ports that are free along with their cluster-bus ports (port + 10000)."""
    ports: list[int] = []
    for port in random.sample(range(20_000, 40_000), 200):
        if _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise AssertionError("no free ports for a test cluster")


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class PersistentCluster:
    """Three cluster-enabled redis-servers of this test only, each persisting to its own
    folder, joined into one cluster (slots split evenly, no replicas)."""

    def __init__(self, folder: Path) -> None:
        cluster_url()  # skip (or fail in CI) without the shared cluster's tools
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            pytest.skip("redis-server and redis-cli are needed")
        self.server, self.cli = server, cli
        self.ports = _free_node_ports(3)
        self.folder = folder
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int) -> None:
        """Start the node on ``port`` (again, after :meth:`stop`: it reads its cluster
        configuration and data back) and wait until it accepts connections."""
        data = self.folder / str(port)
        data.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                *PERSISTENCE_OPTIONS,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers(port):
            assert time.monotonic() < deadline, f"node {port} did not start"
            time.sleep(0.05)

    def stop(self, port: int) -> None:
        """SIGTERM the node on ``port``: it flushes its append-only file, then exits."""
        process = self.processes.pop(port, None)
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)

    def form(self) -> None:
        """Join the three nodes into a cluster and wait until it serves every slot."""
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not all(self.state(port) == "ok" for port in self.ports):
            assert time.monotonic() < deadline, "the cluster did not reach state ok"
            time.sleep(0.1)

    def state(self, port: int) -> str:
        info = subprocess.run(
            [self.cli, "-p", str(port), "cluster", "info"],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
        for line in info.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    async def owner(self, key: str) -> int:
        """The port of the node serving ``key``."""
        client = RedisCluster(host="127.0.0.1", port=self.ports[0])
        try:
            await client.initialize()
            node = client.get_node_from_key(key)
            assert node is not None
            return int(node.port)
        finally:
            await client.aclose()

    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"


@pytest.fixture
def persistent_cluster(tmp_path: Path) -> Iterator[PersistentCluster]:
    cluster = PersistentCluster(tmp_path)
    try:
        for port in cluster.ports:
            cluster.start(port)
        cluster.form()
        yield cluster
    finally:
        for port in list(cluster.processes):
            cluster.stop(port)


async def test_a_node_restart_loses_nothing(persistent_cluster: PersistentCluster) -> None:
    queue_node = await persistent_cluster.owner(BrokerKeys("restart").queue("default").messages)

    async def restart_the_queue_node() -> None:
        await asyncio.to_thread(persistent_cluster.stop, queue_node)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(persistent_cluster.start, queue_node)

    url = persistent_cluster.url()
    ran_before, _ = await run_with_interruption(url, "restart", restart_the_queue_node, TASKS)
    assert ran_before < TASKS, "every task ran before the node stopped: the test proved nothing"


class SlotMove:
    """Moves one slot with its keys from one node to another, in the steps ``redis-cli
    --cluster reshard`` takes: :meth:`begin` (IMPORTING / MIGRATING), :meth:`migrate`
    (MIGRATE in small batches), :meth:`end` (the new owner announced to every node)."""

    def __init__(self, cluster: PersistentCluster, slot: int, source: int, target: int) -> None:
        self.cluster, self.slot, self.source, self.target = cluster, slot, source, target
        self.nodes = {port: RedisCluster(host="127.0.0.1", port=port) for port in cluster.ports}
        self.ids: dict[int, str] = {}

    async def on(self, port: int, *command: str | int | bytes) -> Any:
        """Run ``command`` on the node on ``port``."""
        client = self.nodes[port]
        return await client.execute_command(
            *command, target_nodes=client.get_node("127.0.0.1", port)
        )

    async def begin(self) -> None:
        for port, client in self.nodes.items():
            await client.initialize()
            self.ids[port] = (await self.on(port, "CLUSTER MYID")).decode()
        source, target = self.source, self.target
        await self.on(target, "CLUSTER SETSLOT", self.slot, "IMPORTING", self.ids[source])
        await self.on(source, "CLUSTER SETSLOT", self.slot, "MIGRATING", self.ids[target])

    async def migrate(self, pause: float = 0.0) -> int:
        """Move every key of the slot, two at a time, ``pause`` seconds apart; how many."""
        moved = 0
        while keys := await self.on(self.source, "CLUSTER GETKEYSINSLOT", self.slot, 2):
            await self.on(
                self.source, "MIGRATE", "127.0.0.1", self.target, "", 0, 5000, "KEYS", *keys
            )
            moved += len(keys)
            await asyncio.sleep(pause)
        return moved

    async def end(self) -> None:
        for port in self.nodes:
            await self.on(port, "CLUSTER SETSLOT", self.slot, "NODE", self.ids[self.target])

    async def close(self) -> None:
        for client in self.nodes.values():
            await client.aclose()


async def queue_move(cluster: PersistentCluster, prefix: str) -> SlotMove:
    """A :class:`SlotMove` of the slot of queue ``default`` of ``prefix`` to another node."""
    queue_key = BrokerKeys(prefix).queue("default").messages
    source = await cluster.owner(queue_key)
    target = next(port for port in cluster.ports if port != source)
    return SlotMove(cluster, key_slot(queue_key.encode()), source, target)


def job(task_id: str) -> Task:
    return Task(id=task_id, name="job", args=(), kwargs={})


async def test_a_script_follows_its_slot_to_the_new_node(
    persistent_cluster: PersistentCluster,
) -> None:
    """The broker's slot map is stale after the move: its next script meets MOVED on the
    old node and is sent on to the new one."""
    broker = RedisBroker(persistent_cluster.url(), prefix="moved")
    move = await queue_move(persistent_cluster, "moved")
    try:
        assert await broker.enqueue(job("before"))
        await move.begin()
        assert await move.migrate() > 0
        await move.end()
        assert await broker.enqueue(job("after"))
        counts = await broker.counts()
        claimed = [await broker.claim(["default:io"]) for _ in range(2)]
    finally:
        await move.close()
        await broker.close()
    assert counts.ready == 2
    assert sorted(delivery.task.id for delivery in claimed) == ["after", "before"]
    assert await persistent_cluster.owner(BrokerKeys("moved").queue("default").messages) == (
        move.target
    )


async def test_a_script_waits_while_its_slot_is_half_moved(
    persistent_cluster: PersistentCluster,
) -> None:
    """While the queue's keys are split between two nodes its scripts get TRYAGAIN (or ASK,
    then TRYAGAIN on the new node); an enqueue waits until the move ends, then lands."""
    broker = RedisBroker(persistent_cluster.url(), prefix="halfway")
    move = await queue_move(persistent_cluster, "halfway")
    try:
        for n in range(4):
            assert await broker.enqueue(job(f"early-{n}"))
        await move.begin()
        keys = await move.on(move.source, "CLUSTER GETKEYSINSLOT", move.slot, 1)
        await move.on(move.source, "MIGRATE", "127.0.0.1", move.target, "", 0, 5000, "KEYS", *keys)
        late = asyncio.ensure_future(broker.enqueue(job("late")))
        await asyncio.sleep(1.5)  # longer than redis-py's own TRYAGAIN retries last
        assert not late.done(), "the enqueue ran on a half-moved slot"
        await move.migrate()
        await move.end()
        assert await asyncio.wait_for(late, 10)
        counts = await broker.counts()
    finally:
        await move.close()
        await broker.close()
    assert counts.ready == 5


async def test_moving_the_queue_slot_to_another_node_loses_nothing(
    persistent_cluster: PersistentCluster,
) -> None:
    queue_key = BrokerKeys("reshard").queue("default").messages
    source = await persistent_cluster.owner(queue_key)
    target = next(port for port in persistent_cluster.ports if port != source)

    async def move_the_queue() -> int:
        move = SlotMove(persistent_cluster, key_slot(queue_key.encode()), source, target)
        try:
            await move.begin()
            moved = await move.migrate(pause=0.05)  # the app's commands meet a half-moved slot
            await move.end()
        finally:
            await move.close()
        return moved

    url = persistent_cluster.url()
    ran_before, moved = await run_with_interruption(url, "reshard", move_the_queue, TASKS)
    assert moved > 0, "no key was moved: the test proved nothing"
    assert ran_before < TASKS, "every task ran before the slot moved: the test proved nothing"
    assert await persistent_cluster.owner(queue_key) == target
