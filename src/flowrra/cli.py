"""The ``flowrra`` command: run the processes of a flowrra deployment.

    flowrra scheduler myproject.tasks:app [--database-url URL] [--check-interval S]

``APP`` names a :class:`~flowrra.app.Flowrra` instance as ``module:attribute`` (the module
is imported from the current directory as well as from ``sys.path``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from flowrra.app import Flowrra
from flowrra.brokers import MemoryBroker

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
        await app.stop()
        if app.scheduler is not None:
            await app.scheduler.close()
    logger.info("scheduler stopped")


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowrra`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = load_app(args.app)
    if args.command == "scheduler":
        asyncio.run(run_scheduler(app, args.database_url, args.check_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
