"""``flowrra ui``: serve the dashboard of an app on its own, with uvicorn.

    flowrra ui myproject.tasks:app [--host 127.0.0.1] [--port 8555]
                                   [--basic-auth user:password] [--log-level info]

The app is started as a client (``start(worker=False)``: it reads and submits, the
worker processes run the tasks) when the server starts, and closed when it stops; an app
on the in-process memory broker runs its tasks in this process, since no other process
can see its queue.
``--basic-auth`` (or the ``FLOWRRA_UI_BASIC_AUTH`` environment variable, which keeps the
password out of the process list) protects every page; without it the dashboard is open
to whoever can reach the port, so the default bind address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from flowrra._optional import load_optional

logger = logging.getLogger("flowrra.ui")

BASIC_AUTH_ENV = "FLOWRRA_UI_BASIC_AUTH"
DEFAULT_PORT = 8555
_UI = frozenset({"jinja2", "starlette", "uvicorn"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class UIUsageError(Exception):
    """A bad ``flowrra ui`` option (exit code 2)."""


def parse_basic_auth(text: str | None) -> tuple[str, str] | None:
    """``"user:password"`` -> ``("user", "password")`` (the password may hold ``:``);
    ``None`` or ``""`` -> ``None``. :class:`UIUsageError` without a user or a ``:``."""
    if not text:
        return None
    user, separator, password = text.partition(":")
    if not separator or not user or not password:
        raise UIUsageError("basic auth must look like 'user:password' (both non-empty)")
    return user, password


def add_ui_command(commands: Any) -> None:
    """Add the ``ui`` sub-command to the ``flowrra`` argument parser's sub-parsers."""
    ui = commands.add_parser("ui", help="serve the web dashboard")
    ui.add_argument("app", help="the app, as module:attribute")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8555)")
    ui.add_argument(
        "--basic-auth",
        default=None,
        metavar="USER:PASSWORD",
        help=f"require HTTP basic auth (default: ${BASIC_AUTH_ENV}, if set)",
    )
    ui.add_argument(
        "--log-level", default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING or ERROR"
    )


def ui_command(args: argparse.Namespace) -> int:
    """Run ``flowrra ui`` until SIGINT/SIGTERM; returns the exit code (2: bad usage)."""
    from flowrra.cli import load_app  # noqa: PLC0415 - flowrra.cli imports this module

    try:
        create_asgi_app = load_optional("flowrra.ui.starlette", "create_asgi_app", "ui", _UI)
        run = load_optional("uvicorn", "run", "ui", _UI)
    except ImportError as error:
        logger.error("flowrra ui: %s", error)
        return 2
    try:
        credentials = parse_basic_auth(args.basic_auth or os.environ.get(BASIC_AUTH_ENV))
    except UIUsageError as error:
        logger.error("flowrra ui: %s", error)
        return 2
    if not 0 < args.port < 65536:
        logger.error("flowrra ui: --port must be between 1 and 65535, got %d", args.port)
        return 2
    app = load_app(args.app)
    asgi = create_asgi_app(app, basic_auth=credentials, start_app=True)
    if credentials is None and args.host not in LOCAL_HOSTS:
        logger.warning(
            "the dashboard listens on %s without authentication: anyone who can reach "
            "the port can see task arguments and cancel or retry tasks (use --basic-auth "
            "or %s)",
            args.host,
            BASIC_AUTH_ENV,
        )
    logger.info(
        "dashboard of %s on http://%s:%d/ (%s)",
        args.app,
        args.host,
        args.port,
        "basic auth" if credentials else "no auth",
    )
    level = str(args.log_level).lower()
    run(asgi, host=args.host, port=args.port, log_level=level, access_log=False)
    return 0
