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

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from flowrra.redis_keys import BrokerKeys
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


async def move_slot(cluster: PersistentCluster, slot: int, source: int, target: int) -> int:
    """Move ``slot`` with its keys from the node on port ``source`` to the one on ``target``,
    the way ``redis-cli --cluster reshard`` does (IMPORTING / MIGRATING, MIGRATE in
    batches, then the new owner announced to every node); the number of keys moved."""
    nodes = {port: RedisCluster(host="127.0.0.1", port=port) for port in cluster.ports}
    try:
        ids: dict[int, str] = {}
        for port, client in nodes.items():
            await client.initialize()
            node = client.get_node("127.0.0.1", port)
            ids[port] = (await client.execute_command("CLUSTER MYID", target_nodes=node)).decode()
        source_node = nodes[source].get_node("127.0.0.1", source)
        target_node = nodes[target].get_node("127.0.0.1", target)
        await nodes[target].execute_command(
            "CLUSTER SETSLOT", slot, "IMPORTING", ids[source], target_nodes=target_node
        )
        await nodes[source].execute_command(
            "CLUSTER SETSLOT", slot, "MIGRATING", ids[target], target_nodes=source_node
        )
        moved = 0
        while True:
            keys: list[bytes] = await nodes[source].execute_command(
                "CLUSTER GETKEYSINSLOT", slot, 2, target_nodes=source_node
            )
            if not keys:
                break
            await nodes[source].execute_command(
                "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys,
                target_nodes=source_node,
            )
            moved += len(keys)
            await asyncio.sleep(0.05)  # let the app's commands meet a half-moved slot
        for port, client in nodes.items():
            await client.execute_command(
                "CLUSTER SETSLOT", slot, "NODE", ids[target],
                target_nodes=client.get_node("127.0.0.1", port),
            )
        return moved
    finally:
        for client in nodes.values():
            await client.aclose()


async def test_moving_the_queue_slot_to_another_node_loses_nothing(
    persistent_cluster: PersistentCluster,
) -> None:
    queue_key = BrokerKeys("reshard").queue("default").messages
    source = await persistent_cluster.owner(queue_key)
    target = next(port for port in persistent_cluster.ports if port != source)

    async def move_the_queue() -> int:
        return await move_slot(persistent_cluster, key_slot(queue_key.encode()), source, target)

    url = persistent_cluster.url()
    ran_before, moved = await run_with_interruption(url, "reshard", move_the_queue, TASKS)
    assert moved > 0, "no key was moved: the test proved nothing"
    assert ran_before < TASKS, "every task ran before the slot moved: the test proved nothing"
    assert await persistent_cluster.owner(queue_key) == target
