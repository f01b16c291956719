"""The dashboard in Django: URL patterns with one catch-all view.

    # urls.py
    from django.urls import include, path
    from flowrra.ui.django import get_urls
    urlpatterns = [path("flowrra/", include(get_urls(app)))]

The view is a plain synchronous Django view, so the same patterns work under WSGI and
ASGI: every request runs :meth:`Dashboard.handle` through the process's
:class:`~flowrra.ui.bridge.LoopBridge`, on the Flowrra app's own event loop (an app that is
not running is started on the bridge loop as a client on the first request; one the
ASGI server's loop runs is reached there). ``/api/events`` streams server-sent events
(a sync stream under WSGI, an async one under ASGI, as each server needs); there is no
WebSocket, so the dashboard's JavaScript falls back to server-sent events, then polling.

Needs the ``ui`` extra and Django (``pip install django``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

from flowrra.ui.bridge import (
    MAX_BODY,
    AppLoopError,
    async_sse_stream,
    call_for_view,
    default_bridge,
    sse_stream,
)
from flowrra.ui.core import AuthHook, Dashboard, RedactHook
from flowrra.ui.messages import UIRequest, UIResponse, error_response
from flowrra.ui.security import security_headers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from flowrra.app import Flowrra

__all__ = ["get_urls"]


def _root_path(request: HttpRequest, subpath: str) -> str:
    """The mount prefix the browser sees: the request's full path (script prefix
    included) without the ``subpath`` the catch-all pattern matched."""
    full = request.path
    mount = full[: len(full) - len(subpath)] if subpath and full.endswith(subpath) else full
    return mount.rstrip("/")


def _read_body(request: HttpRequest) -> bytes | None:
    """The request body, or ``None`` when it is larger than :data:`MAX_BODY` (or than
    Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``)."""
    declared = str(request.META.get("CONTENT_LENGTH") or "0")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return None if len(body) > MAX_BODY else body


def ui_request(request: HttpRequest, subpath: str, body: bytes) -> UIRequest:
    """The :class:`UIRequest` of a Django request routed to ``subpath``.

    The ``host`` header is Django's own view of the host (``request.get_host()``: checked
    against ``ALLOWED_HOSTS``, honouring ``USE_X_FORWARDED_HOST``), so the cross-site
    check compares the ``Origin`` with the host the browser used. Raises
    ``DisallowedHost`` for a host outside ``ALLOWED_HOSTS``.
    """
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), value)
    headers["host"] = request.get_host()
    return UIRequest(
        method=(request.method or "GET").upper(),
        path="/" + subpath,
        query={key: values[0] for key, values in request.GET.lists() if values},
        headers=headers,
        body=body,
        root_path=_root_path(request, subpath),
    )


def to_response(answer: UIResponse) -> HttpResponse:
    """A Django response of ``answer``; a header given twice is sent once, its values
    joined by ``", "`` (Django keeps one value per header name)."""
    response = HttpResponse(answer.body, status=answer.status)
    given: set[str] = set()
    for name, value in answer.headers:
        key = name.lower()
        response.headers[key] = f"{response.headers[key]}, {value}" if key in given else value
        given.add(key)
    return response


class _DashboardView:
    """The catch-all view: every dashboard route of one app."""

    def __init__(self, app: Flowrra, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    def __call__(self, request: HttpRequest, subpath: str) -> HttpResponseBase:
        body = _read_body(request)
        if body is None:
            return to_response(error_response(413, f"the body is over {MAX_BODY} bytes"))
        try:
            ui = ui_request(request, subpath, body)
        except DisallowedHost as error:
            return to_response(error_response(400, str(error)))
        if ui.path == "/api/events" and ui.method == "GET":
            return self._events(request, ui)
        return to_response(call_for_view(self.app, self.dashboard.handle(ui)))

    def _events(self, request: HttpRequest, ui: UIRequest) -> HttpResponseBase:
        """Authorize, then stream the live feed as server-sent events."""
        refused = call_for_view(self.app, self.dashboard.authorize(ui))
        if refused is not None:
            return to_response(refused)
        bridge = default_bridge()
        content: Iterator[bytes] | AsyncIterator[bytes]
        try:
            if isinstance(request, ASGIRequest):  # the server streams from its own loop
                feed = bridge.aiterate_for(self.app, self.dashboard.events())
                content = async_sse_stream(feed)
            else:
                content = sse_stream(bridge.iterate_for(self.app, self.dashboard.events()))
        except AppLoopError as error:  # the app's loop died since authorize() ran
            return to_response(error_response(503, str(error)))
        response = StreamingHttpResponse(content, content_type="text/event-stream")
        for name, value in security_headers(ui):
            response.headers[name] = value
        response.headers["cache-control"] = "no-cache"
        response.headers["x-accel-buffering"] = "no"
        return response


def get_urls(
    app: Flowrra,
    *,
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    redact: RedactHook | None = None,
    title: str = "flowrra",
) -> list[URLPattern]:
    """URL patterns serving the dashboard of ``app``, to include under any prefix:
    ``path("flowrra/", include(get_urls(app)))``; links follow the prefix (and the
    script prefix). ``auth``, ``basic_auth``, ``redact``, ``title``: as
    :class:`~flowrra.ui.core.Dashboard`.

    The view is exempt from Django's CSRF middleware on purpose: the dashboard makes its
    own cross-site check on every POST, PUT and DELETE (the ``Origin`` must name this host
    and the ``X-Flowrra-CSRF: 1`` header must be present, which a cross-site form cannot
    send and a cross-site script cannot without a CORS preflight that is never granted),
    so it needs no CSRF cookie or token and works with or without the middleware. Any
    cookie-based session auth you add in ``auth`` is protected by that same check.

    Requests run on the app's own event loop through the process's loop bridge; if the
    app is not running it is started as a client on the first request and stopped at
    interpreter exit. A request that cannot reach the app answers 503 JSON, one that
    takes over a minute 504 JSON.
    """
    dashboard = Dashboard(app, auth=auth, basic_auth=basic_auth, redact=redact, title=title)
    view = csrf_exempt(_DashboardView(app, dashboard))
    return [
        path("", view, {"subpath": ""}, name="flowrra-dashboard"),
        path("<path:subpath>", view, name="flowrra-dashboard-page"),
    ]
