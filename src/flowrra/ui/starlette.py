"""The dashboard in Starlette and FastAPI: a catch-all route and the ``/ws`` feed.

    from flowrra.ui import create_router
    fastapi_app.include_router(create_router(app), prefix="/flowrra")

    from flowrra.ui.starlette import create_asgi_app
    Starlette(routes=[Mount("/flowrra", create_asgi_app(app))])

Needs the ``ui`` extra (Starlette); :func:`create_router` also needs FastAPI, imported
only when it is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from flowrra.app import Flowrra
from flowrra.brokers import MemoryBroker
from flowrra.ui.core import AuthHook, Dashboard, RedactHook
from flowrra.ui.messages import UIRequest, UIResponse, error_response
from flowrra.ui.security import foreign_origin, security_headers

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["create_asgi_app", "create_router"]

#: The largest request body accepted (a schedule is far smaller).
MAX_BODY = 1024 * 1024

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
POLICY_VIOLATION = 1008


def _first_values(pairs: Any) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in pairs:
        values.setdefault(key, value)
    return values


def _mount_root(connection: HTTPConnection, below: str) -> str:
    """The prefix the browser sees: the ASGI ``root_path`` plus the part of the route
    path before ``below`` (a FastAPI router's ``prefix``)."""
    root = str(connection.scope.get("root_path", "")).rstrip("/")
    path = str(connection.scope.get("path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    prefix = path[: len(path) - len(below)] if path.endswith(below) else ""
    return (root + prefix).rstrip("/")


def ui_request(connection: HTTPConnection, method: str, body: bytes = b"") -> UIRequest:
    """The :class:`UIRequest` of a Starlette request or WebSocket routed by
    ``/{path:path}`` (or ``/ws``)."""
    below = "/" + str(connection.path_params.get("path", "ws" if method == "WS" else ""))
    return UIRequest(
        method="GET" if method == "WS" else method,
        path=below,
        query=_first_values(connection.query_params.multi_items()),
        headers=_first_values((k.lower(), v) for k, v in connection.headers.items()),
        body=body,
        root_path=_mount_root(connection, below),
    )


def to_response(answer: UIResponse) -> Response:
    """A Starlette response of ``answer`` (headers kept in order, repeats allowed)."""
    response = Response(answer.body, status_code=answer.status)
    for name, value in answer.headers:
        response.headers.append(name, value)
    return response


async def _read_body(request: Request) -> bytes | None:
    """The body, or ``None`` when it is larger than :data:`MAX_BODY`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


def _sse_stream(dashboard: Dashboard) -> AsyncIterator[bytes]:
    async def stream() -> AsyncIterator[bytes]:
        feed = dashboard.events()
        try:
            yield b"retry: 3000\n\n"
            async for event in feed:
                yield b"data: " + json.dumps(event, default=str).encode() + b"\n\n"
        finally:
            await feed.aclose()  # type: ignore[attr-defined]

    return stream()


class _Endpoints:
    """The two endpoints the Starlette app and the FastAPI router share."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def http(self, request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return to_response(error_response(413, f"the body is over {MAX_BODY} bytes"))
        ui = ui_request(request, request.method.upper(), body)
        if ui.path == "/api/events" and ui.method == "GET":
            return await self._events(ui)
        return to_response(await self.dashboard.handle(ui))

    async def _events(self, ui: UIRequest) -> Response:
        refused = await self.dashboard.authorize(ui)
        if refused is not None:
            return to_response(refused)
        headers = dict(security_headers(ui))
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return StreamingResponse(
            _sse_stream(self.dashboard), media_type="text/event-stream", headers=headers
        )

    async def websocket(self, websocket: WebSocket) -> None:
        ui = ui_request(websocket, "WS")
        refused = await self.dashboard.authorize(ui)
        if refused is not None or foreign_origin(ui):
            await websocket.close(code=POLICY_VIOLATION)
            return
        await websocket.accept()
        pump = asyncio.create_task(self._pump(websocket))
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _pump(self, websocket: WebSocket) -> None:
        feed = self.dashboard.events()
        try:
            async for event in feed:
                await websocket.send_text(json.dumps(event, default=str))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away while we were sending
        finally:
            await feed.aclose()  # type: ignore[attr-defined]


def _routes(dashboard: Dashboard) -> tuple[Route, WebSocketRoute]:
    endpoints = _Endpoints(dashboard)
    return (
        Route("/{path:path}", endpoints.http, methods=METHODS, include_in_schema=False),
        WebSocketRoute("/ws", endpoints.websocket),
    )


def create_asgi_app(
    app: Flowrra,
    *,
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    redact: RedactHook | None = None,
    title: str = "flowrra",
    start_app: bool = False,
) -> Starlette:
    """A Starlette application serving the dashboard of ``app`` at its root.

    Mount it anywhere (``Mount("/flowrra", create_asgi_app(app))``): links follow the
    ASGI ``root_path``. ``start_app=True`` starts ``app`` as a client
    (``start(worker=False)``) when the server starts and closes it when it stops, for a
    server that serves only the dashboard; otherwise the host application runs ``app``.
    An app on the in-process memory broker is started with its worker instead: no other
    process can see its queue, so tasks submitted from the dashboard run here.
    """
    dashboard = Dashboard(app, auth=auth, basic_auth=basic_auth, redact=redact, title=title)
    http, websocket = _routes(dashboard)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        if start_app:
            await app.start(worker=isinstance(app.broker, MemoryBroker))
        try:
            yield {}
        finally:
            if start_app:
                await app.close()

    return Starlette(routes=[websocket, http], lifespan=lifespan)


def create_router(
    app: Flowrra,
    *,
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    redact: RedactHook | None = None,
    title: str = "flowrra",
) -> APIRouter:
    """A FastAPI router serving the dashboard of ``app``:
    ``fastapi_app.include_router(create_router(app), prefix="/flowrra")``.

    Links follow the ASGI ``root_path`` plus the router's prefix. The host application
    runs ``app`` (start it in its lifespan, ``await app.start(worker=False)`` for a web
    process that only submits). Raises ``ImportError`` without FastAPI.
    """
    try:
        from fastapi import APIRouter  # noqa: PLC0415 - FastAPI is optional
    except ModuleNotFoundError as error:
        raise ImportError("create_router needs FastAPI: pip install fastapi") from error
    dashboard = Dashboard(app, auth=auth, basic_auth=basic_auth, redact=redact, title=title)
    http, websocket = _routes(dashboard)
    router = APIRouter()
    router.routes.extend([websocket, http])
    return router
