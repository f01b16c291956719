"""LoopBridge: sync callers driving coroutines and async iterators on a background loop."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowrra import Flowrra
from flowrra.config import Config, ExecutorConfig
from flowrra.ui.bridge import AppLoopError, LoopBridge, default_bridge

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def bridge() -> Iterator[LoopBridge]:
    made = LoopBridge()
    yield made
    made.close()


@contextmanager
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own (like an ASGI server's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def run_script(script: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (with ``options``) on this checkout's sources."""
    return subprocess.run(
        [sys.executable, *options, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC)},
        check=False,
    )


def make_app() -> Flowrra:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=2, cpu_workers=1)))

    @app.task(name="double", max_retries=0)
    async def double(value: int) -> int:
        return value * 2

    return app


def in_loop(loop: asyncio.AbstractEventLoop, coro: object) -> object:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(10)  # type: ignore[arg-type]


# -- run -------------------------------------------------------------------------------


def test_run_returns_the_result_computed_on_the_bridge_thread(bridge: LoopBridge) -> None:
    async def where() -> tuple[str, asyncio.AbstractEventLoop]:
        return threading.current_thread().name, asyncio.get_running_loop()

    name, loop = bridge.run(where())
    assert name == "flowrra-loop-bridge"
    assert loop is bridge.loop
    assert name != threading.current_thread().name


def test_run_reraises_the_coroutine_exception(bridge: LoopBridge) -> None:
    async def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        bridge.run(fail())


def test_run_timeout_cancels_the_coroutine(bridge: LoopBridge) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match=r"0\.05 s"):
        bridge.run(forever(), timeout=0.05)
    assert cancelled.wait(5)


def test_run_serves_many_threads_at_once(bridge: LoopBridge) -> None:
    async def slow_square(value: int) -> int:
        await asyncio.sleep(0.05)
        return value * value

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda v: bridge.run(slow_square(v)), range(16)))
    assert results == [v * v for v in range(16)]


def test_a_call_from_the_target_loop_itself_is_refused(bridge: LoopBridge) -> None:
    async def inner() -> int:
        return 1

    async def reenter() -> int:
        return bridge.run(inner())  # would wait for itself forever

    with pytest.raises(AppLoopError, match="await the coroutine directly"):
        bridge.run(reenter())


def test_a_closed_bridge_refuses_work_and_closes_the_coroutine() -> None:
    closed = LoopBridge()
    closed.close()
    closed.close()  # idempotent
    assert closed.closed
    assert closed.loop.is_closed()

    async def never() -> int:
        return 1

    coro = never()
    with pytest.raises(RuntimeError, match="closed"):
        closed.run(coro)
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"  # no "never awaited" warning


# -- iterate ---------------------------------------------------------------------------


def test_iterate_yields_every_item_then_stops(bridge: LoopBridge) -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(5):
            await asyncio.sleep(0)
            yield n

    assert list(bridge.iterate(numbers())) == [0, 1, 2, 3, 4]


def test_closing_the_iterator_closes_the_source_on_the_loop(bridge: LoopBridge) -> None:
    closed_on: list[str] = []

    async def endless() -> AsyncIterator[int]:
        n = 0
        try:
            while True:
                await asyncio.sleep(0)
                yield n
                n += 1
        finally:
            closed_on.append(threading.current_thread().name)

    feed = bridge.iterate(endless())
    assert [next(feed), next(feed), next(feed)] == [0, 1, 2]
    feed.close()  # what a WSGI server does when the client goes away
    assert closed_on == ["flowrra-loop-bridge"]


def test_iterate_reraises_the_source_error(bridge: LoopBridge) -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise ValueError("feed broke")

    feed = bridge.iterate(broken())
    assert next(feed) == 1
    with pytest.raises(ValueError, match="feed broke"):
        next(feed)


async def test_aiterate_runs_each_step_on_the_target_loop(bridge: LoopBridge) -> None:
    async def threads() -> AsyncIterator[str]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield threading.current_thread().name

    seen = [name async for name in bridge.aiterate(threads())]
    assert seen == ["flowrra-loop-bridge"] * 3


async def test_closing_aiterate_closes_the_source_on_the_target_loop(bridge: LoopBridge) -> None:
    closed_on: list[str] = []

    async def endless() -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(0)
                yield 1
        finally:
            closed_on.append(threading.current_thread().name)

    feed = bridge.aiterate(endless())
    assert await anext(feed) == 1
    await feed.aclose()
    assert closed_on == ["flowrra-loop-bridge"]


async def test_cancelling_the_aiterate_consumer_cancels_the_pending_step(
    bridge: LoopBridge,
) -> None:
    waiting = threading.Event()
    cancelled = threading.Event()

    async def slow() -> AsyncIterator[int]:
        waiting.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield 1

    async def consume() -> list[int]:
        return [item async for item in bridge.aiterate(slow())]

    consumer = asyncio.create_task(consume())
    assert await asyncio.to_thread(waiting.wait, 5)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert await asyncio.to_thread(cancelled.wait, 5)


# -- the Flowrra app -------------------------------------------------------------------


def test_ensure_app_started_starts_a_client_once_and_close_stops_it() -> None:
    bridge = LoopBridge()
    app = make_app()
    with ThreadPoolExecutor(8) as pool:
        loops = list(pool.map(lambda _: bridge.ensure_app_started(app), range(16)))
    assert all(loop is bridge.loop for loop in loops)
    assert app.is_running
    assert app._worker is None  # a client: submits, runs nothing
    task_id = bridge.run_for(app, app.submit("double", 21))
    result = bridge.run_for(app, app.get_result(task_id))
    assert result is not None
    assert result.status == "pending"
    bridge.close()
    assert not app.is_running


def test_an_app_started_on_another_loop_is_served_on_that_loop(bridge: LoopBridge) -> None:
    app = make_app()
    with loop_thread() as server_loop:
        in_loop(server_loop, app.start())  # the worker's coroutines live on server_loop
        try:
            assert bridge.ensure_app_started(app) is server_loop

            async def submit_and_wait() -> tuple[object, asyncio.AbstractEventLoop]:
                task_id = await app.submit("double", 21)
                done = await app.wait_for_result(task_id, timeout=10)
                return done.result, asyncio.get_running_loop()

            value, ran_on = bridge.run_for(app, submit_and_wait())
            assert value == 42
            assert ran_on is server_loop
        finally:
            in_loop(server_loop, app.stop())
    bridge.close()
    assert not app.is_running  # not started by the bridge, and already stopped


def test_a_client_started_on_another_loop_is_served_on_that_loop(bridge: LoopBridge) -> None:
    app = make_app()
    with loop_thread() as server_loop:
        in_loop(server_loop, app.start(worker=False))  # no worker coroutines to show the loop
        try:
            assert bridge.ensure_app_started(app) is server_loop

            async def submit_where() -> tuple[str, asyncio.AbstractEventLoop]:
                return await app.submit("double", 1), asyncio.get_running_loop()

            task_id, ran_on = bridge.run_for(app, submit_where())
            assert ran_on is server_loop
            stored = bridge.run_for(app, app.get_result(task_id))
            assert stored is not None
            assert stored.status == "pending"
        finally:
            in_loop(server_loop, app.stop())
    bridge.close()
    assert not app.is_running


def test_an_app_whose_loop_stopped_is_refused(bridge: LoopBridge) -> None:
    app = make_app()
    with loop_thread() as server_loop:
        in_loop(server_loop, app.start(worker=False))
    # the loop was stopped and closed without stopping the app
    assert app.is_running
    assert app.loop is server_loop
    coro = app.submit("double", 1)
    with pytest.raises(AppLoopError, match="no longer running"):
        bridge.run_for(app, coro)
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"


def test_default_bridge_is_shared_and_remade_after_close() -> None:
    first = default_bridge()
    assert default_bridge() is first
    first.close()
    second = default_bridge()
    assert second is not first
    assert not second.closed


def test_the_started_app_is_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    script = tmp_path / "exit_check.py"
    script.write_text(
        textwrap.dedent(
            """
            import atexit
            from flowrra import Flowrra
            from flowrra.ui.bridge import LoopBridge

            app = Flowrra()
            # registered before the bridge's own handler, so it runs after it (LIFO)
            atexit.register(lambda: print("running at exit:", app.is_running))
            bridge = LoopBridge()
            bridge.ensure_app_started(app)
            print("running before exit:", app.is_running)
            """
        )
    )
    done = run_script(script, "-W", "error")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["running before exit: True", "running at exit: False"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_new_bridge_instead_of_hanging(tmp_path: Path) -> None:
    script = tmp_path / "fork_check.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, warnings
            from flowrra.ui.bridge import default_bridge

            async def pid() -> int:
                await asyncio.sleep(0)
                return os.getpid()

            parent = default_bridge()
            assert parent.run(pid()) == os.getpid()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                child = os.fork()
            if child == 0:
                try:
                    assert parent.closed
                    fresh = default_bridge()
                    assert fresh is not parent
                    assert fresh.run(pid(), timeout=10) == os.getpid()
                    fresh.close()
                except BaseException as error:
                    print("child failed:", repr(error), flush=True)
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(child, 0)
            print("child exit:", os.waitstatus_to_exitcode(status))
            print("parent still works:", parent.run(pid()) == os.getpid())
            """
        )
    )
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["child exit: 0", "parent still works: True"], done.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_refuses_an_app_left_on_the_parents_bridge(tmp_path: Path) -> None:
    script = tmp_path / "fork_app_check.py"
    script.write_text(
        textwrap.dedent(
            """
            import inspect, os, time, warnings
            from flowrra import Flowrra
            from flowrra.ui.bridge import AppLoopError, default_bridge

            app = Flowrra()
            default_bridge().ensure_app_started(app)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                child = os.fork()
            if child == 0:
                coro = app.submit("anything")
                began = time.monotonic()
                try:
                    default_bridge().run_for(app, coro, timeout=10)
                except AppLoopError as error:
                    quick = time.monotonic() - began < 1
                    closed = inspect.getcoroutinestate(coro) == "CORO_CLOSED"
                    ok = "no longer running" in str(error) and quick and closed
                    os._exit(0 if ok else 2)
                except BaseException as error:
                    print("child failed:", repr(error), flush=True)
                    os._exit(1)
                os._exit(3)
            _, status = os.waitpid(child, 0)
            print("child exit:", os.waitstatus_to_exitcode(status))
            print("parent app running:", app.is_running)
            """
        )
    )
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["child exit: 0", "parent app running: True"], done.stdout
