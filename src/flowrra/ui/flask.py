"""The dashboard in Flask: a blueprint with one catch-all view.

    from flowrra.ui.flask import create_blueprint
    flask_app.register_blueprint(create_blueprint(app), url_prefix="/flowrra")

Flask views are synchronous, so every request runs :meth:`Dashboard.handle` through the
process's :class:`~flowrra.ui.bridge.LoopBridge`, on the Flowrra app's own event loop; an
app that is not running is started there as a client (``start(worker=False)``) on the
first request. ``/api/events`` streams server-sent events; there is no WebSocket in Flask,
so the dashboard's JavaScript falls back to server-sent events, then to polling.

Needs the ``ui`` extra and Flask (``pip install flask``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, request, stream_with_context

from flowrra.ui.bridge import (
    MAX_BODY,
    AppLoopError,
    call_for_view,
    default_bridge,
    sse_stream,
)
from flowrra.ui.core import AuthHook, Dashboard, RedactHook
from flowrra.ui.messages import UIRequest, UIResponse, error_response
from flowrra.ui.security import security_headers

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["create_blueprint"]

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in pairs:
        values.setdefault(key, value)
    return values


def _root_path(subpath: str) -> str:
    """The mount prefix the browser sees: the WSGI script root plus the part of the path
    before the matched ``subpath`` (the blueprint's ``url_prefix``, as requested)."""
    path = request.path
    mount = path[: len(path) - len(subpath)] if subpath and path.endswith(subpath) else path
    return (request.script_root + mount).rstrip("/")


def _read_body() -> bytes | None:
    """The request body, or ``None`` when it is larger than :data:`MAX_BODY`."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        return None
    body = request.stream.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


def ui_request(subpath: str, body: bytes) -> UIRequest:
    """The :class:`UIRequest` of the current Flask request, routed to ``subpath``.

    The ``host`` header is Werkzeug's view of the host (``request.host``, checked against
    ``trusted_hosts`` and rewritten by a proxy fix), so the cross-site check compares the
    ``Origin`` with the host the browser used.
    """
    headers = _first_values([(k.lower(), v) for k, v in request.headers.items()])
    headers["host"] = request.host  # as Werkzeug sees it (trusted_hosts, proxy fixes)
    return UIRequest(
        method=request.method.upper(),
        path="/" + subpath,
        query=_first_values(list(request.args.items(multi=True))),
        headers=headers,
        body=body,
        root_path=_root_path(subpath),
    )


def to_response(answer: UIResponse) -> Response:
    """A Flask response of ``answer`` (headers kept in order, repeats allowed)."""
    response = Response(answer.body, status=answer.status)
    response.headers.clear()
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response


class _DashboardView:
    """The catch-all view: every dashboard route of one app."""

    def __init__(self, app: Flowrra, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    def __call__(self, subpath: str) -> Response:
        body = _read_body()
        if body is None:
            return to_response(error_response(413, f"the body is over {MAX_BODY} bytes"))
        ui = ui_request(subpath, body)
        if ui.path == "/api/events" and ui.method == "GET":
            return self._events(ui)
        return to_response(call_for_view(self.app, self.dashboard.handle(ui)))

    def _events(self, ui: UIRequest) -> Response:
        """Authorize, then stream the live feed as server-sent events."""
        refused = call_for_view(self.app, self.dashboard.authorize(ui))
        if refused is not None:
            return to_response(refused)
        try:
            feed = default_bridge().iterate_for(self.app, self.dashboard.events())
        except AppLoopError as error:  # the app's loop died since authorize() ran
            return to_response(error_response(503, str(error)))
        headers = dict(security_headers(ui))
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return Response(
            stream_with_context(sse_stream(feed)),
            mimetype="text/event-stream",
            headers=headers,
        )


def create_blueprint(
    app: Flowrra,
    *,
    name: str = "flowrra",
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    redact: RedactHook | None = None,
    title: str = "flowrra",
) -> Blueprint:
    """A Flask blueprint serving the dashboard of ``app``.

    Register it under any prefix: ``flask_app.register_blueprint(create_blueprint(app),
    url_prefix="/flowrra")``; links follow the WSGI script root plus that prefix.
    ``name``: the blueprint's name (change it to mount two dashboards). ``auth``,
    ``basic_auth``, ``redact``, ``title``: as :class:`~flowrra.ui.core.Dashboard`.

    Requests run on the app's own event loop through the process's loop bridge; if the
    app is not running it is started there as a client on the first request and stopped
    at interpreter exit. A request that cannot reach the app answers 503 JSON, one that
    takes over a minute 504 JSON.
    """
    dashboard = Dashboard(app, auth=auth, basic_auth=basic_auth, redact=redact, title=title)
    view = _DashboardView(app, dashboard)
    blueprint = Blueprint(name, __name__)
    blueprint.add_url_rule("/", "index", view, defaults={"subpath": ""}, methods=METHODS)
    blueprint.add_url_rule("/<path:subpath>", "route", view, methods=METHODS)
    return blueprint
