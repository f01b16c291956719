"""A background event loop that lets synchronous web frameworks drive async code.

Flask, and Django under WSGI, call views in plain threads with no event loop; the dashboard
(:class:`flowrra.ui.core.Dashboard`) and the Flowrra app are asyncio code. A
:class:`LoopBridge` owns one daemon thread that runs one event loop forever; any thread
hands it a coroutine with :meth:`LoopBridge.run` and blocks until the result comes back, or
walks an async iterator with :meth:`LoopBridge.iterate` (the server-sent events feed).

Flowrra objects are bound to the event loop their app was started on: the worker's
coroutines, the memory broker's wake-up futures, Redis connections and the event bus's
subscribers all live on that loop, and touching them from another loop (or thread) breaks
them in ways that are hard to diagnose. So every dashboard call runs **on the app's own
loop**, :attr:`Flowrra.loop <flowrra.app.Flowrra.loop>`
(:meth:`LoopBridge.ensure_app_started` returns it):

* the app is not running: the bridge starts it on the bridge loop as a client
  (``await app.start(worker=False)``), once, and stops it at interpreter exit or
  :meth:`LoopBridge.close`;
* the app is running, on the bridge loop or any other, with or without a worker: calls go
  to ``app.loop`` with :func:`asyncio.run_coroutine_threadsafe`. This is the case of Django
  under ASGI where the user started the app in the server's loop: the sync view runs in a
  worker thread and the call is carried over to the server's loop, where the app lives;
* the app is marked running but ``app.loop`` is closed or no longer running (in a forked
  child, or a loop stopped without stopping the app): :class:`AppLoopError`. Running the
  call on another loop would corrupt the app's state, so the bridge refuses.

A forked child (a pre-forking server) inherits no bridge thread: the bridges of the parent
refuse work there, :func:`default_bridge` makes a new one, and an app the parent started on
a bridge loop is refused with :class:`AppLoopError` (its loop is dead in the child).

The end of the module holds what the Flask and Django adapters share:
:func:`call_for_view` (a dashboard call whose failures become JSON errors) and the
server-sent events encoders.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from flowrra.ui.messages import UIResponse, dump_json, error_response

if TYPE_CHECKING:
    from flowrra.app import Flowrra

T = TypeVar("T")

logger = logging.getLogger("flowrra.ui")

STOP_TIMEOUT: Final = 10.0
"""Seconds an app started by the bridge gets to stop at exit or :meth:`LoopBridge.close`."""

START_TIMEOUT: Final = 30.0
"""Seconds an app started by the bridge gets to start (to reach Redis, for instance)."""

class AppLoopError(RuntimeError):
    """The app runs on an event loop the bridge cannot use (closed or not running), or a
    blocking call was made from the loop it targets."""


async def _next_or_end(iterator: AsyncIterator[T], end: object) -> T | object:
    """The iterator's next item, or ``end`` once it is exhausted."""
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return end


async def _await_on(target: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` run on ``target``: directly when it is this loop, else carried over
    with :func:`asyncio.run_coroutine_threadsafe` (cancelling the wait cancels it there)."""
    if asyncio.get_running_loop() is target:
        return await coro
    try:
        future = asyncio.run_coroutine_threadsafe(coro, target)
    except BaseException:
        coro.close()
        raise
    return await asyncio.wrap_future(future)


class LoopBridge:
    """One daemon thread running one asyncio event loop, for callers without a loop.

    Thread-safe: any number of threads may call :meth:`run`, :meth:`iterate` and
    :meth:`ensure_app_started` at once. Calling them from the loop they target raises
    :class:`AppLoopError` (it would wait for itself forever). After :meth:`close` every
    call raises ``RuntimeError``.
    """

    def __init__(self, name: str = "flowrra-loop-bridge") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._lock = threading.Lock()
        self._started_apps: list[Flowrra] = []
        self._closed = False
        self._thread.start()
        self._ready.wait()
        atexit.register(self.close)
        _bridges.add(self)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The bridge's own event loop (running in the bridge thread until :meth:`close`)."""
        return self._loop

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    # -- running coroutines ----------------------------------------------------------

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> T:
        """Run ``coro`` on ``loop`` (default: the bridge loop) and return its result.

        Blocks the calling thread until the coroutine ends and re-raises its exception.
        ``timeout`` (seconds): after it the coroutine is cancelled and ``TimeoutError``
        raised. ``coro`` is closed unrun when it cannot be scheduled (bridge closed, loop not
        running, or called from the target loop's own thread: :class:`AppLoopError`).
        """
        target = self._loop if loop is None else loop
        try:
            self._check_target(target)
            future = asyncio.run_coroutine_threadsafe(coro, target)
        except BaseException:
            coro.close()
            raise
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the coroutine did not finish within {timeout} s") from None
        except BaseException:
            future.cancel()  # the caller was interrupted: do not leave the coroutine running
            raise

    def _check_target(self, target: asyncio.AbstractEventLoop) -> None:
        if self._closed:
            raise RuntimeError("the loop bridge is closed")
        if target.is_closed() or not target.is_running():
            raise AppLoopError("the target event loop is not running (was it stopped?)")
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            return
        if current is target:
            raise AppLoopError(
                "a blocking bridge call was made from the event loop it targets: "
                "await the coroutine directly instead"
            )

    def iterate(
        self,
        source: AsyncIterator[T],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Generator[T, None, None]:
        """A synchronous iterator over ``source``, whose steps run on ``loop`` (default:
        the bridge loop).

        Each ``next()`` blocks until the async iterator yields. When the consumer closes the
        iterator (``close()``, ``GeneratorExit`` on a dropped client, garbage collection)
        or ``source`` raises, ``source.aclose()`` runs on the loop (if it has one), so its
        ``finally`` blocks and unsubscriptions happen there.
        """
        target = self._loop if loop is None else loop
        return self._iterate(source, target)

    def _iterate(
        self, source: AsyncIterator[T], target: asyncio.AbstractEventLoop
    ) -> Generator[T, None, None]:
        end = object()
        try:
            while True:
                item = self.run(_next_or_end(source, end), loop=target)
                if item is end:
                    return
                yield cast(T, item)
        finally:
            self._close_source(source, target)

    def _close_source(self, source: AsyncIterator[Any], target: asyncio.AbstractEventLoop) -> None:
        aclose = getattr(source, "aclose", None)
        if aclose is None or target.is_closed() or not target.is_running():
            return
        closing = aclose()
        try:
            on_target = asyncio.get_running_loop() is target
        except RuntimeError:
            on_target = False
        if on_target:  # dropped by the loop's own thread: close it there, without waiting
            target.create_task(closing)
            return
        try:
            self.run(closing, STOP_TIMEOUT, loop=target)
        except Exception:
            logger.exception("closing a live feed failed")

    async def aiterate(
        self,
        source: AsyncIterator[T],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> AsyncGenerator[T, None]:
        """``source`` re-yielded to a consumer running on any event loop, each step run on
        ``loop`` (default: the bridge loop).

        For servers that stream from their own loop (Django under ASGI): the consumer's
        loop never touches ``source``'s loop-bound state. Cancelling or closing the
        consumer cancels the pending step and closes ``source`` on ``loop``.
        """
        target = self._loop if loop is None else loop
        end = object()
        try:
            while True:
                item = await _await_on(target, _next_or_end(source, end))
                if item is end:
                    return
                yield cast(T, item)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None and target.is_running():
                await _await_on(target, aclose())

    # -- the Flowrra app -------------------------------------------------------------

    def ensure_app_started(self, app: Flowrra) -> asyncio.AbstractEventLoop:
        """Make sure ``app`` is running and return the event loop its calls must run on.

        Not running: started on the bridge loop with ``app.start(worker=False)`` (once,
        however many threads ask), stopped again by :meth:`close` and at interpreter exit;
        returns the bridge loop. Already running: returns ``app.loop``, the loop it was
        started on, wherever that was. Raises :class:`AppLoopError` when that loop is
        closed or not running or the app does not start within :data:`START_TIMEOUT`, and
        whatever ``app.start`` raises.
        """
        with self._lock:
            if app.is_running:
                return self._loop_of_running(app)
            try:
                self.run(app.start(worker=False), START_TIMEOUT)
            except TimeoutError:
                self._undo_failed_start(app)
                raise AppLoopError(
                    f"the Flowrra app did not start within {START_TIMEOUT:g} s"
                ) from None
            except BaseException:
                self._undo_failed_start(app)
                raise
            if app not in self._started_apps:
                self._started_apps.append(app)
            return self._loop

    def _undo_failed_start(self, app: Flowrra) -> None:
        """Stop an app whose start failed part way (it may be marked running with half its
        parts up), so the next request tries a clean start again."""
        if not app.is_running:
            return
        try:
            self.run(app.stop(wait=False), STOP_TIMEOUT)
        except Exception:
            logger.exception("stopping the Flowrra app after a failed start failed")

    @staticmethod
    def _loop_of_running(app: Flowrra) -> asyncio.AbstractEventLoop:
        """``app.loop`` of a running app; :class:`AppLoopError` when it cannot take calls."""
        loop = app.loop
        if loop is None or loop.is_closed() or not loop.is_running() or loop in _forked_loops:
            raise AppLoopError(
                "the Flowrra app runs on an event loop that is no longer running (stopped "
                "without stopping the app, or left in the parent process by a fork): stop "
                "the app in the loop that started it, or start it again where it is used"
            )
        return loop

    def run_for(
        self, app: Flowrra, coro: Coroutine[Any, Any, T], timeout: float | None = None
    ) -> T:
        """Run ``coro`` on ``app``'s loop (starting the app first if needed); its result.

        The form views use: ``bridge.run_for(app, app.submit("name", 1))``. ``coro`` is
        closed unrun if the app cannot be started or its loop is not running.
        """
        try:
            loop = self.ensure_app_started(app)
        except BaseException:
            coro.close()
            raise
        return self.run(coro, timeout, loop=loop)

    def iterate_for(self, app: Flowrra, source: AsyncIterator[T]) -> Generator[T, None, None]:
        """:meth:`iterate` on ``app``'s loop, starting the app first if needed."""
        return self.iterate(source, loop=self.ensure_app_started(app))

    def aiterate_for(self, app: Flowrra, source: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """:meth:`aiterate` on ``app``'s loop, starting the app first if needed (blocks the
        calling thread while it starts: call it from a sync view, consume it anywhere)."""
        return self.aiterate(source, loop=self.ensure_app_started(app))

    # -- shutting down ---------------------------------------------------------------

    def close(self) -> None:
        """Stop the apps this bridge started, then the loop and its thread. Idempotent.

        Each app gets :data:`STOP_TIMEOUT` seconds (errors are logged, not raised). Tasks
        still pending on the bridge loop are cancelled and async generators finalized
        before the loop is closed.
        """
        with self._lock:
            if self._closed:
                return
            apps, self._started_apps = self._started_apps, []
            for app in apps:
                self._stop_app(app)
            self._closed = True
        atexit.unregister(self.close)
        if self._loop.is_running():
            shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                shutdown.result(STOP_TIMEOUT)
            except Exception:
                logger.exception("shutting the loop bridge down failed")
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def _stop_app(self, app: Flowrra) -> None:
        """Stop ``app`` if it still runs on the bridge loop (not stopped and restarted
        elsewhere since)."""
        if not app.is_running or app.loop is not self._loop:
            return
        try:
            self.run(app.stop(timeout=STOP_TIMEOUT), STOP_TIMEOUT * 2)
        except Exception:
            logger.exception("stopping the Flowrra app started by the loop bridge failed")

    def _forget_after_fork(self) -> None:
        """In a forked child: the bridge thread does not exist there, so refuse work
        (``closed``) instead of queueing coroutines no thread will ever run."""
        self._lock = threading.Lock()
        self._started_apps = []
        self._closed = True
        atexit.unregister(self.close)

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._loop.shutdown_asyncgens()


_default_bridge: LoopBridge | None = None
_default_lock = threading.Lock()
_bridges: weakref.WeakSet[LoopBridge] = weakref.WeakSet()
_forked_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
"""Bridge loops of the parent process, in a forked child: they still say they are running
(their thread id was copied) but no thread runs them, so an app inherited running on one
is refused instead of waited on."""


def _reset_after_fork() -> None:
    """A forked child inherits no thread but the forking one: every bridge loop is dead
    there. Forget them, so the child's first request makes a new default bridge instead of
    waiting forever on a loop nobody runs (an app inherited running has a dead ``app.loop``:
    :class:`AppLoopError`)."""
    global _default_lock, _default_bridge  # noqa: PLW0603
    for bridge in list(_bridges):
        _forked_loops.add(bridge.loop)
        bridge._forget_after_fork()
    _default_lock = threading.Lock()
    _default_bridge = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def default_bridge() -> LoopBridge:
    """The process's shared bridge, made on first use (and again after it was closed).

    The Flask and Django adapters use it, so all of them share one background thread.
    """
    global _default_bridge  # noqa: PLW0603 - one bridge per process, made lazily
    with _default_lock:
        if _default_bridge is None or _default_bridge.closed:
            _default_bridge = LoopBridge()
        return _default_bridge


# -- what the sync adapters (Flask, Django) share -------------------------------------

REQUEST_TIMEOUT: Final = 60.0
"""Seconds a dashboard request may take before a sync view answers 504."""

MAX_BODY: Final = 1024 * 1024
"""The largest request body the sync adapters accept (a schedule is far smaller): 413."""

SSE_RETRY: Final = b"retry: 3000\n\n"
"""The first frame of the server-sent events feed: reconnect after 3 s."""


def call_for_view(
    app: Flowrra,
    coro: Coroutine[Any, Any, T],
    *,
    bridge: LoopBridge | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> T | UIResponse:
    """Run a dashboard coroutine for a sync view on ``app``'s loop (starting the app as a
    client first if it is not running); its result, or the JSON error to answer instead.

    Never raises for a failure of the bridge or the app: 504 after ``timeout`` seconds,
    503 when the app cannot be started or its loop used (:class:`AppLoopError`; both
    logged), 500 for anything else (logged). ``bridge``: default :func:`default_bridge`.
    """
    used = default_bridge() if bridge is None else bridge
    try:
        return used.run_for(app, coro, timeout)
    except TimeoutError:
        logger.warning("a dashboard request took over %s s", timeout)
        return error_response(504, f"the dashboard did not answer within {timeout:g} s")
    except AppLoopError as error:
        logger.exception("the dashboard cannot reach the Flowrra app")
        return error_response(503, str(error))
    except Exception as error:
        logger.exception("the dashboard failed to run a request")
        status = 500 if app.is_running else 503
        return error_response(status, f"{type(error).__name__}: {error}")


def sse_frame(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``event`` as JSON."""
    return b"data: " + dump_json(event) + b"\n\n"


def sse_stream(feed: Generator[dict[str, Any], None, None]) -> Generator[bytes, None, None]:
    """The bytes of a server-sent events response of ``feed`` (from :meth:`LoopBridge.iterate`).

    Closing the stream (the WSGI server does when the client goes away) closes ``feed``,
    which closes the dashboard's feed on its loop.
    """
    try:
        yield SSE_RETRY
        for event in feed:
            yield sse_frame(event)
    finally:
        feed.close()


async def async_sse_stream(
    feed: AsyncGenerator[dict[str, Any], None],
) -> AsyncGenerator[bytes, None]:
    """:func:`sse_stream` for a server streaming from its own loop (:meth:`LoopBridge.aiterate`)."""
    try:
        yield SSE_RETRY
        async for event in feed:
            yield sse_frame(event)
    finally:
        await feed.aclose()
