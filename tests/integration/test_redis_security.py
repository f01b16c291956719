"""Nothing from Redis is unpickled; passwords work and never leak into errors or logs."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from flowrra.backends.redis import RedisBackend
from flowrra.brokers.base import lane_of
from flowrra.brokers.redis import RedisBroker
from flowrra.exceptions import BackendError
from flowrra.redis_keys import BackendKeys
from flowrra.task import Task, TaskResult, TaskStatus
from integration.redis_support import redis_url
from integration.test_redis_broker import inject

pytestmark = pytest.mark.service

IO = lane_of("default", "io")
PASSWORD = "s3cret-Pa55word"


class _CreatesFile:
    """Unpickling this object creates ``path`` (what a malicious payload could do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def evil_payload(path: Path) -> bytes:
    return pickle.dumps(_CreatesFile(path))


def test_the_payload_would_create_its_file_if_unpickled(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    pickle.loads(evil_payload(canary)).close()
    assert canary.exists()


async def test_a_pickle_in_the_queue_is_never_unpickled(
    make_broker: Callable[..., RedisBroker], raw: aioredis.Redis, prefix: str, tmp_path: Path
) -> None:
    target = tmp_path / "pwned-by-queue"
    broker = make_broker()
    await inject(raw, prefix, "evil", evil_payload(target))
    await broker.enqueue(Task("good", "job", (), {}))
    delivery = await asyncio.wait_for(broker.claim([IO]), 2)
    assert delivery.task.id == "good"
    assert await broker.ack(delivery)
    letters = await broker.dead_letters()
    assert [(letter.task.id, letter.reason) for letter in letters] == [
        ("evil", "malformed message: message is not JSON")
    ]
    assert not target.exists()


async def test_a_pickle_in_a_result_key_is_never_unpickled(
    make_backend: Callable[..., RedisBackend], raw: aioredis.Redis, prefix: str, tmp_path: Path
) -> None:
    target = tmp_path / "pwned-by-result"
    backend = make_backend()
    await backend.store("evil", TaskResult("evil", TaskStatus.RUNNING))
    await raw.set(BackendKeys(prefix).record("evil"), evil_payload(target))
    with pytest.raises(BackendError, match="not a valid JSON record"):
        await backend.get("evil")
    with pytest.raises(BackendError):
        await backend.wait_for("evil", 0.5)
    assert not target.exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def protected_redis() -> Iterator[int]:
    """A second redis-server that requires a password; stopped after the tests."""
    redis_url()  # skip (or fail in CI) without the main Redis
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)


async def test_password_protected_redis_works(protected_redis: int) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{protected_redis}/0"
    broker = RedisBroker(url, prefix="pw")
    backend = RedisBackend(url, prefix="pw")
    try:
        assert PASSWORD not in repr(broker)
        assert PASSWORD not in repr(backend)
        await broker.enqueue(Task("t", "job", (), {}))
        delivery = await asyncio.wait_for(broker.claim([IO]), 2)
        assert await broker.ack(delivery)
        await backend.store("t", TaskResult("t", TaskStatus.SUCCESS, result=1))
        loaded = await backend.wait_for("t", 1)
        assert loaded.result == 1
        assert await broker.ping()
    finally:
        await backend.clear()
        await broker.close()
        await backend.close()


async def test_a_wrong_password_fails_fast_without_leaking_it(
    protected_redis: int, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-Right-one"
    url = f"redis://user:{wrong}@127.0.0.1:{protected_redis}/0"
    caplog.set_level(logging.DEBUG)
    broker = RedisBroker(url, prefix="pw")
    backend = RedisBackend(url, prefix="pw")
    attempts: list[tuple[RedisBroker | RedisBackend, Callable[[], Awaitable[object]]]] = [
        (broker, lambda: broker.enqueue(Task("t", "job", (), {}))),
        (backend, lambda: backend.get("t")),
    ]
    for client, attempt in attempts:
        started = time.monotonic()
        try:
            with pytest.raises(BackendError) as caught:
                await attempt()
            assert time.monotonic() - started < 2, "a wrong password must not be retried"
            assert wrong not in str(caught.value)
            assert "credentials" in str(caught.value) or "password" in str(caught.value)
            assert not await client.ping()
        finally:
            await client.close()
    assert wrong not in caplog.text


def test_without_redis_the_import_error_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"redis", "hiredis"}:
                    raise ImportError(name + " is blocked")
                return None

        sys.meta_path.insert(0, Block())
        import flowrra
        assert "redis" not in sys.modules
        try:
            import flowrra.brokers.redis
        except ImportError as error:
            print(error)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'flowrra[redis]'" in done.stdout
