"""The ``flowrra`` command: run the processes of a flowrra deployment.

    flowrra worker myproject.tasks:app [--concurrency N] [--cpu-workers N] [--processes N]
                                       [--queues a,b] [--grace S] [--log-level L]
    flowrra scheduler myproject.tasks:app [--database-url URL] [--check-interval S]
    flowrra ui myproject.tasks:app [--host H] [--port P] [--basic-auth USER:PASSWORD]
    flowrra dlq list|requeue|purge myproject.tasks:app ...   (see flowrra.dlq_cli)

``APP`` names a :class:`~flowrra.app.Flowrra` instance as ``module:attribute`` (the module
is imported from the current directory as well as from ``sys.path``).

Exit codes: 0 after a clean stop, 1 on a failure at run time (the broker does not answer,
an immediate stop after a second signal, a worker process that did not exit cleanly), 2
for a usage or configuration error (bad options, an app ``flowrra worker`` cannot serve).
See ``docs/worker.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowrra.app import Flowrra
from flowrra.brokers import MemoryBroker
from flowrra.config import redact_url
from flowrra.dlq_cli import run_dlq
from flowrra.executors.cpu import CPUExecutor
from flowrra.executors.io import IOExecutor
from flowrra.inspection import add_commands, inspect_report, status_report
from flowrra.supervisor import USAGE_ERROR, supervise
from flowrra.ui.cli import add_ui_command, ui_command

logger = logging.getLogger("flowrra.cli")


def load_app(spec: str) -> Flowrra:
    """Import ``module:attribute`` and return the app it names.

    Raises ``SystemExit`` with a readable message when the spec is malformed, the module
    cannot be imported, or the attribute is not a ``Flowrra`` app.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"flowrra: APP must look like 'module:attribute', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"flowrra: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, Flowrra):
        raise SystemExit(f"flowrra: {spec!r} is not a Flowrra app (got {type(app).__name__})")
    return app


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)


async def run_scheduler(app: Flowrra, database_url: str | None, check_interval: float) -> None:
    """Run ``app``'s scheduler until SIGTERM or SIGINT, then stop cleanly.

    With an in-process broker the runs also execute in this process; with a shared broker
    (Redis) this process only submits them.
    """
    if database_url is not None or app.scheduler is None:
        app.create_scheduler(database_url, check_interval)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    runs_here = isinstance(app.broker, MemoryBroker)
    await app.start(worker=runs_here)
    logger.info("scheduler running (tasks run %s)", "here" if runs_here else "on the workers")
    try:
        await stop.wait()
    finally:
        await app.close()
        if app.scheduler is not None:
            await app.scheduler.close()
    logger.info("scheduler stopped")


class UsageError(Exception):
    """A usage or configuration error: reported on stderr, exit code 2."""


@dataclass(frozen=True)
class WorkerOptions:
    """What ``flowrra worker`` runs with (after the command line was checked)."""

    app_spec: str
    concurrency: int | None = None
    cpu_workers: int | None = None
    queues: tuple[str, ...] | None = None
    grace: float = 30.0
    parent_fd: int | None = None
    gc_tuning: bool = True


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation in a worker process
(Python's default is 700)."""


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector cheaper for a long-running worker process.

    Objects that exist now (modules, the app, its connections) are moved out of the
    collector's reach with :func:`gc.freeze`: they live as long as the process, and
    without this every full collection walks them all again. The youngest generation is
    collected every :data:`GC_YOUNG_THRESHOLD` allocations instead of 700, so the
    short-lived objects of a task are mostly freed by reference counting before any
    collection looks at them. Garbage in reference cycles is still collected, a little
    later. ``flowrra worker --no-gc-tuning`` keeps Python's defaults.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:  # a higher setting (or a disabled one) is kept
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _describe(configured: object, part: object) -> str:
    if isinstance(configured, str):
        return redact_url(configured)
    if type(part).__module__.startswith("flowrra."):
        return repr(part)  # flowrra's reprs redact their URLs
    return type(part).__name__  # a user's repr might show a password


def describe_broker(app: Flowrra) -> str:
    """The app's broker for a log line, never with a password in it."""
    configured = app.config.broker.url if app.config.broker is not None else "memory://"
    return _describe(configured, app.broker)


def describe_backend(app: Flowrra) -> str:
    """The app's result backend for a log line, never with a password in it."""
    configured = app.config.backend.url if app.config.backend is not None else "memory://"
    return _describe(configured, app.backend)


class UnreachableError(Exception):
    """The broker or the result backend does not answer; the text names it (redacted)."""


def check_worker_app(app: Flowrra, queues: tuple[str, ...] | None) -> None:
    """Raise :class:`UsageError` if a separate worker process cannot serve ``app``.

    The in-process memory broker lives in the memory of the process that submits, so a
    worker process would never see those tasks. ``queues`` needs ``Flowrra.start`` to
    accept a ``queues`` argument.
    """
    if isinstance(app.broker, MemoryBroker):
        raise UsageError(
            "the app uses the in-process memory broker: a separate worker process cannot "
            "see the tasks queued in another process's memory. Configure a shared broker "
            "(e.g. Flowrra.from_urls(broker='redis://...', backend='redis://...'))"
        )
    if queues is not None and "queues" not in inspect.signature(app.start).parameters:
        raise UsageError(
            "--queues is not supported by this version of Flowrra.start(); "
            "run without --queues to serve the 'default' queue"
        )


def configure_worker_app(app: Flowrra, options: WorkerOptions) -> None:
    """Replace the app's ``io`` / ``cpu`` executors as ``--concurrency`` / ``--cpu-workers`` ask."""
    if options.concurrency is not None:
        app.register_executor("io", IOExecutor(options.concurrency))
    if options.cpu_workers is not None:
        app.register_executor("cpu", CPUExecutor(options.cpu_workers))


async def _check_reachable(app: Flowrra) -> None:
    """Raise :class:`UnreachableError` if the broker or backend does not answer.

    Parts without a ``ping()`` are not checked.
    """
    parts = (
        ("broker", app.broker, describe_broker(app)),
        ("result backend", app.backend, describe_backend(app)),
    )
    for what, part, shown in parts:
        ping: Callable[[], Any] | None = getattr(part, "ping", None)
        if ping is not None and not await ping():
            raise UnreachableError(
                f"the {what} {shown} does not answer (is it running? are the address and "
                "password right?)"
            )


class EarlySignals:
    """Records a SIGTERM/SIGINT that arrives while the worker is still starting up.

    Installed before the app module is imported, so that a worker stopped during its
    start-up exits cleanly (code 0, nothing claimed) instead of dying from the signal.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._record)

    def _record(self, number: int, frame: object) -> None:
        self.received = number


class _Signals:
    """SIGTERM/SIGINT: the first sets ``stop``; a second one exits the process at once."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._on_signal, number)

    def _on_signal(self, number: int) -> None:
        name = signal.Signals(number).name
        if not self._stop.is_set():
            logger.info("%s: stopping gracefully (a second signal exits at once)", name)
            self._stop.set()
            return
        logger.warning(
            "second %s: exiting at once; unfinished tasks return when their leases expire", name
        )
        _flush_logs()
        os._exit(1)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


def _watch_parent(fd: int, stop: asyncio.Event) -> None:
    """Set ``stop`` when the supervisor's end of the pipe ``fd`` closes (it died)."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        if os.read(fd, 64):
            return
        loop.remove_reader(fd)
        if not stop.is_set():
            logger.warning("the supervisor is gone: stopping gracefully")
            stop.set()

    loop.add_reader(fd, readable)


async def _start_worker(app: Flowrra, queues: tuple[str, ...] | None) -> None:
    if queues is None:
        await app.start(worker=True)
    else:
        start: Callable[..., Any] = app.start
        await start(worker=True, queues=queues)


async def run_worker(
    app: Flowrra, options: WorkerOptions, early: EarlySignals | None = None
) -> int:
    """Run ``app``'s worker until SIGTERM/SIGINT (or the supervisor's death), then stop.

    A signal ``early`` recorded before this coroutine ran makes it return 0 at once.

    Stopping: no new task is claimed; running tasks get ``options.grace`` seconds; the ones
    still running are interrupted and handed back to the queue at once, and so are the
    claimed-ahead spares (``broker.close()``). A second signal exits at once (code 1): the
    broker's leases then return that process's tasks. Returns the exit code, 0.
    """
    stop = asyncio.Event()
    _Signals(stop)
    if early is not None and early.received is not None:
        logger.info("%s before the worker started: exiting", signal.Signals(early.received).name)
        return 0
    if options.parent_fd is not None:
        _watch_parent(options.parent_fd, stop)
    await _check_reachable(app)
    await _start_worker(app, options.queues)
    if options.gc_tuning:
        tune_garbage_collector()
    executors = app.executors
    logger.info(
        "worker started: app=%s broker=%s concurrency=%d cpu_workers=%d queues=%s pid=%d",
        options.app_spec,
        describe_broker(app),
        executors["io"].concurrency if "io" in executors else 0,
        executors["cpu"].concurrency if "cpu" in executors else 0,
        ",".join(options.queues or ("default",)),
        os.getpid(),
    )
    try:
        await stop.wait()
    finally:
        logger.info("worker stopping: running tasks get %.1f s", options.grace)
        try:
            await app.stop(wait=True, timeout=options.grace)
        finally:
            await app.close()  # hands claimed-ahead spares back, closes connections
    logger.info("worker stopped: app=%s pid=%d", options.app_spec, os.getpid())
    return 0


def _child_command(args: argparse.Namespace) -> list[str]:
    """The command line of one worker process of a ``--processes N`` supervisor."""
    command = [sys.executable, "-m", "flowrra", "--log-level", args.log_level, "worker", args.app]
    command += ["--processes", "1", "--grace", repr(args.grace)]
    if not args.gc_tuning:
        command.append("--no-gc-tuning")
    if args.concurrency is not None:
        command += ["--concurrency", str(args.concurrency)]
    if args.cpu_workers is not None:
        command += ["--cpu-workers", str(args.cpu_workers)]
    if args.queues is not None:
        command += ["--queues", args.queues]
    return command


def parse_queues(text: str | None) -> tuple[str, ...] | None:
    """``"a,b"`` -> ``("a", "b")``; ``None`` stays ``None``; raises UsageError if empty."""
    if text is None:
        return None
    queues = tuple(name.strip() for name in text.split(",") if name.strip())
    if not queues:
        raise UsageError("--queues needs at least one queue name")
    return queues


def worker_command(args: argparse.Namespace) -> int:
    """``flowrra worker``: check the app, then run one worker or a supervisor of N."""
    early = EarlySignals()
    queues = parse_queues(args.queues)
    app = load_app(args.app)
    check_worker_app(app, queues)
    if args.processes > 1:
        if early.received is not None:
            return 0
        return supervise(_child_command(args), args.processes)
    options = WorkerOptions(
        app_spec=args.app,
        concurrency=args.concurrency,
        cpu_workers=args.cpu_workers,
        queues=queues,
        grace=args.grace,
        parent_fd=args.parent_fd,
        gc_tuning=args.gc_tuning,
    )
    configure_worker_app(app, options)
    try:
        return asyncio.run(run_worker(app, options, early))
    except UnreachableError as error:
        logger.error("worker cannot start: %s", error)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flowrra`` command."""
    parser = argparse.ArgumentParser(prog="flowrra", description="Run flowrra processes.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)
    scheduler = commands.add_parser("scheduler", help="run the persistent scheduler")
    scheduler.add_argument("app", help="the app, as module:attribute")
    scheduler.add_argument(
        "--database-url",
        default=None,
        help="schedule store: sqlite:///file.db, postgresql://..., mysql://... "
        "(default: the app's scheduler, else .flowrra_schedule.db)",
    )
    scheduler.add_argument(
        "--check-interval", type=float, default=60.0, help="longest sleep between passes (s)"
    )
    _add_worker_parser(commands)
    add_ui_command(commands)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def _add_worker_parser(commands: Any) -> None:
    add_commands(commands)
    worker = commands.add_parser("worker", help="run tasks from a shared broker (Redis)")
    worker.add_argument("app", help="the app, as module:attribute")
    worker.add_argument(
        "--concurrency", type=_positive_int, default=None, help="IO task slots (default: the app's)"
    )
    worker.add_argument(
        "--cpu-workers",
        type=_positive_int,
        default=None,
        help="child processes for cpu_bound tasks (default: the app's)",
    )
    worker.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        help="worker processes; above 1 a supervisor runs and restarts them (default 1)",
    )
    worker.add_argument("--queues", default=None, help="queues to serve, comma-separated")
    worker.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        help="seconds running tasks get to finish on SIGTERM/SIGINT (default 30)",
    )
    worker.add_argument(
        "--log-level", default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING or ERROR"
    )
    worker.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="keep Python's garbage-collector settings (by default the worker freezes the "
        "objects that exist once it started and collects young objects less often)",
    )
    worker.add_argument("--parent-fd", type=int, default=None, help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowrra`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    if args.command == "worker":
        try:
            return worker_command(args)
        except UsageError as error:
            print(f"flowrra worker: {error}", file=sys.stderr)
            return USAGE_ERROR
    if args.command == "ui":
        return ui_command(args)
    app = load_app(args.app)
    if args.command == "dlq":
        return asyncio.run(run_dlq(app, args))
    if args.command == "scheduler":
        asyncio.run(run_scheduler(app, args.database_url, args.check_interval))
        return 0
    return asyncio.run(_report(app, args))


async def _report(app: Flowrra, args: argparse.Namespace) -> int:
    """Run ``flowrra status`` or ``flowrra inspect``; the exit code (1: unknown task)."""
    try:
        if args.command == "status":
            print(await status_report(app))
            return 0
        text = await inspect_report(app, args.task_id)
        if text is None:
            print(f"flowrra inspect: no task {args.task_id!r}", file=sys.stderr)
            return 1
        print(text)
        return 0
    finally:
        await app.close()


if __name__ == "__main__":
    sys.exit(main())
