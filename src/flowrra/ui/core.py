"""The dashboard, independent of any web framework.

A framework adapter turns its request into a :class:`UIRequest`, awaits
:meth:`Dashboard.handle` and turns the :class:`UIResponse` back; for the live feed it
calls :meth:`Dashboard.authorize` and then streams :meth:`Dashboard.events`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from flowrra.app import Flowrra
from flowrra.events import EventBus, event_bus
from flowrra.management import FlowrraManager
from flowrra.ui.api import JsonApi
from flowrra.ui.feed import live_events
from flowrra.ui.messages import (
    HTTPError,
    UIRequest,
    UIResponse,
    dump_json,
    error_response,
    html_response,
)
from flowrra.ui.pages import Pages
from flowrra.ui.records import RedactHook, Redactor
from flowrra.ui.render import Renderer
from flowrra.ui.routing import Params, Router
from flowrra.ui.security import (
    STATIC_TYPES,
    basic_auth_matches,
    csrf_problem,
    security_headers,
    static_file,
)

__all__ = ["AuthHook", "Dashboard", "RedactHook", "UIRequest", "UIResponse"]

logger = logging.getLogger("flowrra.ui")

AuthHook = Callable[[UIRequest], bool | Awaitable[bool]]

#: Seconds between two ``stats`` events of the live feed.
STATS_INTERVAL = 5.0

METRICS_MISSING = "metrics need the metrics extra: pip install 'flowrra[metrics]'"


def _event_bus(app: Flowrra) -> EventBus:
    bus = getattr(app, "event_bus", None)
    return bus if isinstance(bus, EventBus) else event_bus


def _with_headers(response: UIResponse, extra: list[tuple[str, str]]) -> UIResponse:
    present = {name.lower() for name, _ in response.headers}
    added = [(name, value) for name, value in extra if name not in present]
    return UIResponse(response.status, [*response.headers, *added], response.body)


class Dashboard:
    """Every page, static file and JSON route of the web dashboard of one app.

    ``auth``: called with each request (sync or async); True lets it through, False
    answers 403. ``basic_auth``: ``(user, password)`` HTTP Basic credentials every request
    must carry (else 401 with ``WWW-Authenticate``); checked before ``auth``. ``redact``:
    ``(task name, record) -> record`` applied to every task record, dead letter and
    schedule shown in pages, JSON and the live feed. ``title``: the page title.
    """

    def __init__(
        self,
        app: Flowrra,
        *,
        auth: AuthHook | None = None,
        basic_auth: tuple[str, str] | None = None,
        redact: RedactHook | None = None,
        title: str = "flowrra",
    ) -> None:
        if basic_auth is not None and (
            len(basic_auth) != 2 or not all(isinstance(part, str) for part in basic_auth)
        ):
            raise TypeError("basic_auth must be a (user, password) pair of strings")
        if basic_auth is not None and not basic_auth[0]:
            raise ValueError("basic_auth needs a non-empty user name")
        self.app = app
        self.manager = FlowrraManager(app)
        self.redactor = Redactor(redact)
        self._auth = auth
        self._basic_auth = basic_auth
        self._router = Router()
        Pages(self.manager, self.redactor, Renderer(title)).register(self._router)
        JsonApi(self.manager, self.redactor).register(self._router)
        self._router.add("GET", "/static/{path:path}", self._static)
        self._router.add("GET", "/api/events", self._events_once)
        self._router.add("GET", "/ws", self._no_websocket)
        self._router.add("GET", "/metrics", self._metrics)

    # -- the entry points of the adapters ----------------------------------------------

    async def authorize(self, request: UIRequest) -> UIResponse | None:
        """``None`` when ``request`` may see the dashboard; else the response refusing it:
        401 (with ``WWW-Authenticate``) for missing or wrong basic-auth credentials, 403
        when the auth hook says no. An auth hook that raises refuses (403, logged)."""
        if self._basic_auth is not None and not basic_auth_matches(request, self._basic_auth):
            challenge = ("www-authenticate", 'Basic realm="flowrra", charset="UTF-8"')
            refused = error_response(401, "authentication required", [challenge])
            return self._finish(request, refused)
        if self._auth is None:
            return None
        try:
            allowed = self._auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            logger.exception("the dashboard's auth hook failed: refusing the request")
            allowed = False
        if allowed is True:
            return None
        return self._finish(request, error_response(403, "forbidden"))

    async def handle(self, request: UIRequest) -> UIResponse:
        """Answer ``request``: auth first, then the cross-site check of state-changing
        methods, then the route. Never raises: bad input answers 4xx JSON
        ``{"error": ...}``, an unexpected fault is logged and answers 500 JSON."""
        refused = await self.authorize(request)
        if refused is not None:
            return refused
        try:
            response = await self._route(request)
        except HTTPError as error:
            response = self._error(request, error)
        except Exception:
            logger.exception("the dashboard failed on %s %s", request.method, request.path)
            response = error_response(500, "internal error (see the server log)")
        if request.method == "HEAD":
            response = UIResponse(response.status, response.headers, b"")
        return self._finish(request, response)

    def events(self) -> AsyncIterator[dict[str, Any]]:
        """The live feed: ``{"type": "stats", "stats": ...}`` at once and every few
        seconds, ``{"type": "task.update", "task": <redacted record>}`` for every task
        change. Unsubscribes when the consumer closes it; a slow consumer loses the
        oldest buffered events. Call :meth:`authorize` before streaming it."""
        return live_events(_event_bus(self.app), self.redactor, self._stats, STATS_INTERVAL)

    # -- inside ------------------------------------------------------------------------

    async def _route(self, request: UIRequest) -> UIResponse:
        path = request.path or "/"
        if not path.startswith("/"):
            raise HTTPError(400, "the path must start with '/'")
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        handler, params = self._router.resolve(request.method, path)
        problem = csrf_problem(request)
        if problem is not None:
            raise HTTPError(403, problem)
        return await handler(request, params)

    def _error(self, request: UIRequest, error: HTTPError) -> UIResponse:
        wants_html = "text/html" in request.headers.get("accept", "")
        is_page = not request.path.startswith(("/api/", "/static/", "/ws", "/metrics"))
        if wants_html and is_page and request.method == "GET":
            page = self._error_page(request, error)
            return UIResponse(error.status, [*page.headers, *error.headers], page.body)
        return error_response(error.status, error.message, error.headers)

    def _error_page(self, request: UIRequest, error: HTTPError) -> UIResponse:
        renderer = Renderer("flowrra")
        html = renderer.render("error.html", request.root_path, page="", error=error)
        return html_response(html, error.status)

    def _finish(self, request: UIRequest, response: UIResponse) -> UIResponse:
        return _with_headers(response, security_headers(request))

    async def _stats(self) -> dict[str, Any]:
        try:
            return await self.manager.get_stats()
        except Exception as error:  # the feed reports a failing read instead of ending
            logger.exception("the dashboard could not read the stats")
            return {"error": f"{type(error).__name__}: {error}"}

    async def _static(self, request: UIRequest, params: Params) -> UIResponse:
        path = static_file(params["path"])
        headers = [
            ("content-type", STATIC_TYPES[path.suffix]),
            ("cache-control", "public, max-age=300"),
        ]
        return UIResponse(200, headers, path.read_bytes())

    async def _events_once(self, request: UIRequest, params: Params) -> UIResponse:
        """Server-sent events without streaming (an adapter that cannot stream): one
        ``stats`` event and a 5 s reconnect delay, so ``EventSource`` polls."""
        event = {"type": "stats", "stats": await self._stats()}
        body = b"retry: 5000\ndata: " + dump_json(event) + b"\n\n"
        return UIResponse(200, [("content-type", "text/event-stream")], body)

    async def _no_websocket(self, request: UIRequest, params: Params) -> UIResponse:
        raise HTTPError(426, "the live feed at /ws needs a WebSocket upgrade")

    async def _metrics(self, request: UIRequest, params: Params) -> UIResponse:
        try:
            metrics = importlib.import_module("flowrra.metrics")
            importlib.import_module("prometheus_client")
        except ImportError:
            raise HTTPError(404, METRICS_MISSING) from None
        text = metrics.render_prometheus(self.manager)
        if inspect.isawaitable(text):
            text = await text
        body = text if isinstance(text, bytes) else str(text).encode()
        content_type = "text/plain; version=0.0.4; charset=utf-8"
        return UIResponse(200, [("content-type", content_type)], body)

