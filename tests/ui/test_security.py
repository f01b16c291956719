"""Dashboard security: authentication everywhere, cross-site refusals, safe static paths,
security headers, redaction in every view, and 4xx JSON (never 500) for bad input."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from fastapi import FastAPI

from flowrra import Flowrra
from flowrra.ui import Dashboard, UIRequest, create_router
from ui.conftest import (
    PASSWORD,
    REDACTED,
    SECRET,
    USER,
    Populated,
    basic_header,
    redact_secret,
    same_origin,
    shutdown,
)
from ui.test_fastapi import PREFIX, read_sse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette prefers httpx2, which is not needed here
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

GET_ROUTES = [
    "/", "/tasks", "/tasks/some-id", "/dead-letters", "/schedules", "/static/flowrra.css",
    "/api/stats", "/api/health", "/api/tasks", "/api/tasks/add", "/api/results",
    "/api/results/some-id", "/api/dead-letters", "/api/schedules", "/api/schedules/x",
    "/metrics", "/api/events",
]
CHANGE_ROUTES = [
    ("POST", "/api/results/x/retry"), ("POST", "/api/results/x/cancel"),
    ("POST", "/api/dead-letters/x/requeue"), ("DELETE", "/api/dead-letters/x"),
    ("POST", "/api/schedules/cron"), ("POST", "/api/schedules/interval"),
    ("POST", "/api/schedules/once"), ("PUT", "/api/schedules/x/enable"),
    ("PUT", "/api/schedules/x/disable"), ("DELETE", "/api/schedules/x"),
]
ALL_ROUTES = [("GET", path) for path in GET_ROUTES] + CHANGE_ROUTES


@asynccontextmanager
async def client_of(app: Flowrra, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    web = FastAPI()
    web.include_router(create_router(app, **options), prefix=PREFIX)
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def refuse_all(request: UIRequest) -> bool:
    return False


async def allow_with_token(request: UIRequest) -> bool:
    return request.headers.get("x-token") == "let-me-in"


# -- authentication ----------------------------------------------------------------------


async def test_no_credentials_gets_401_on_every_route(populated: Populated) -> None:
    async with client_of(populated.app, basic_auth=(USER, PASSWORD)) as client:
        for method, path in ALL_ROUTES:
            response = await client.request(method, PREFIX + path, headers=same_origin())
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Basic")
            assert response.json() == {"error": "authentication required"}
            wrong = await client.request(
                method, PREFIX + path, headers={**same_origin(), **basic_header(USER, "nope")}
            )
            assert wrong.status_code == 401, (method, path)


async def test_a_refusing_auth_hook_gets_403_on_every_route(populated: Populated) -> None:
    async with client_of(populated.app, auth=refuse_all) as client:
        for method, path in ALL_ROUTES:
            response = await client.request(method, PREFIX + path, headers=same_origin())
            assert response.status_code == 403, (method, path, response.text)


async def test_good_credentials_and_an_async_hook_let_requests_through(
    populated: Populated,
) -> None:
    async with client_of(populated.app, basic_auth=(USER, PASSWORD)) as client:
        assert (await client.get(PREFIX + "/", headers=basic_header())).status_code == 200
    async with client_of(populated.app, auth=allow_with_token) as client:
        assert (await client.get(PREFIX + "/api/stats")).status_code == 403
        allowed = await client.get(PREFIX + "/api/stats", headers={"x-token": "let-me-in"})
        assert allowed.status_code == 200


async def test_the_sse_feed_needs_credentials(populated: Populated) -> None:
    web = FastAPI()
    web.include_router(create_router(populated.app, basic_auth=(USER, PASSWORD)), prefix=PREFIX)
    refused = await read_sse(web, PREFIX + "/api/events", {}, populated.app, wanted=1)
    assert refused[0]["status"] == 401
    events = await read_sse(web, PREFIX + "/api/events", basic_header(), populated.app, 1)
    assert events[0]["type"] == "stats"


def portal(client: TestClient) -> BlockingPortal:
    """The portal (event loop thread) a started TestClient runs the app in."""
    assert client.portal is not None
    return client.portal


@contextmanager
def running_client(app: Flowrra, **options: Any) -> Iterator[TestClient]:
    """A TestClient of the dashboard whose portal loop also runs ``app``."""
    web = FastAPI()
    web.include_router(create_router(app, **options), prefix=PREFIX)
    with TestClient(web) as client:
        portal(client).call(app.start)
        try:
            yield client
        finally:
            portal(client).call(shutdown, app)


def test_the_websocket_feed_needs_credentials_and_same_origin(ui_app: Flowrra) -> None:
    with running_client(ui_app, basic_auth=(USER, PASSWORD)) as client:
        for headers in ({}, basic_header(USER, "wrong"),
                        {**basic_header(), "origin": "http://evil.example"}):
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                client.websocket_connect(PREFIX + "/ws", headers=headers) as socket,
            ):
                socket.receive_json()
            assert refused.value.code == 1008
        with client.websocket_connect(PREFIX + "/ws", headers=basic_header()) as socket:
            assert socket.receive_json()["type"] == "stats"


def test_a_refusing_hook_closes_the_websocket(ui_app: Flowrra) -> None:
    with running_client(ui_app, auth=refuse_all) as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(PREFIX + "/ws") as socket,
        ):
            socket.receive_json()
        assert refused.value.code == 1008


# -- cross-site requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example", "x-flowrra-csrf": "1"},
        {"origin": "http://testserver"},
        {"x-flowrra-csrf": "1"},
        {"referer": "http://evil.example/page", "x-flowrra-csrf": "1"},
        {"origin": "null", "x-flowrra-csrf": "1"},
        {"origin": "http://testserver", "x-flowrra-csrf": "yes"},
    ],
    ids=["foreign-origin", "no-csrf-header", "no-origin", "foreign-referer", "null", "bad"],
)
async def test_cross_site_changes_are_refused(
    populated: Populated, headers: dict[str, str]
) -> None:
    sid = populated.schedule_id
    async with client_of(populated.app) as client:
        for method, path in CHANGE_ROUTES:
            response = await client.request(method, PREFIX + path.replace("/x", f"/{sid}"),
                                            headers=headers, json={"task_name": "add"})
            assert response.status_code == 403, (method, path, response.text)
            assert "cross-site" in response.json()["error"]
        schedule = (await client.get(f"{PREFIX}/api/schedules/{sid}")).json()
    assert schedule["enabled"] is True


async def test_a_same_host_referer_is_accepted(populated: Populated) -> None:
    async with client_of(populated.app) as client:
        response = await client.put(
            f"{PREFIX}/api/schedules/{populated.schedule_id}/disable",
            headers={"referer": "http://testserver/ops/flowrra/schedules", "x-flowrra-csrf": "1"},
        )
    assert response.status_code == 200
    assert response.json()["enabled"] is False


# -- static files and headers ------------------------------------------------------------


def direct(path: str, method: str = "GET", **headers: str) -> UIRequest:
    return UIRequest(method, path, {}, {"host": "testserver", **headers}, b"", "/x")


@pytest.mark.parametrize(
    "path",
    [
        "/static/../core.py", "/static/..", "/static/../../../../etc/passwd",
        "/static/%2e%2e/core.py", "/static/%2e%2e%2fcore.py", "/static//etc/passwd",
        "/static/..\\core.py", "/static/C:/Windows/win.ini", "/static/./flowrra.css",
        "/static/flowrra.css/..", "/static/templates/base.html", "/static/nope.css",
        "/static/flowrra.css\x00.js",
    ],
)
async def test_static_paths_outside_the_folder_are_refused(ui_app: Flowrra, path: str) -> None:
    response = await Dashboard(ui_app).handle(direct(path))
    assert response.status in (400, 404), response.body
    assert json.loads(response.body)["error"]
    assert b"import" not in response.body


async def test_encoded_traversal_through_the_adapter_is_refused(populated: Populated) -> None:
    async with client_of(populated.app) as client:
        for raw in ["/static/%2e%2e/core.py", "/static/%2e%2e%2f%2e%2e%2fcli.py",
                    "/static/..%5ccore.py", "/static/%252e%252e/core.py"]:
            response = await client.get(PREFIX + raw)
            assert response.status_code in (400, 404), raw
            assert "Dashboard" not in response.text


async def test_every_response_carries_the_security_headers(populated: Populated) -> None:
    async with client_of(populated.app) as client:
        for path in ["/", "/api/stats", "/static/flowrra.js", "/api/results/unknown"]:
            response = await client.get(PREFIX + path)
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy
            assert "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "same-origin"
        html = (await client.get(PREFIX + "/")).text
    assert "<script>" not in html
    assert " style=" not in html
    assert " on" + "click=" not in html


# -- redaction ---------------------------------------------------------------------------


async def test_redaction_hides_the_secret_in_pages_and_json(populated: Populated) -> None:
    secret_id = populated.secret
    async with client_of(populated.app, redact=redact_secret) as client:
        views = [
            await client.get(PREFIX + path)
            for path in ["/", "/tasks", "/tasks?name=login", f"/tasks/{secret_id}",
                         "/api/results", f"/api/results/{secret_id}",
                         "/api/results?status=success&name=login"]
        ]
    for view in views:
        assert view.status_code == 200
        assert SECRET not in view.text, view.url
        assert REDACTED in view.text, view.url
    async with client_of(populated.app) as client:  # without the hook it shows
        assert SECRET in (await client.get(f"{PREFIX}/api/results/{secret_id}")).text


async def test_redaction_applies_to_schedules_and_the_sse_feed(populated: Populated) -> None:
    assert populated.app.scheduler is not None
    await populated.app.scheduler.schedule_interval("login", 60, kwargs={"user": "a",
                                                                       "password": SECRET})
    async with client_of(populated.app, redact=redact_secret) as client:
        for path in ["/schedules", "/api/schedules"]:
            assert SECRET not in (await client.get(PREFIX + path)).text
    web = FastAPI()
    web.include_router(create_router(populated.app, redact=redact_secret), prefix=PREFIX)
    events = await read_sse_login(web, populated.app)
    updates = [e for e in events if e["type"] == "task.update"]
    assert updates
    assert all(e["task"]["kwargs"]["password"] == REDACTED for e in updates)
    assert SECRET not in json.dumps(events)


async def read_sse_login(web: FastAPI, app: Flowrra) -> list[dict[str, Any]]:
    original = app.submit

    async def submit_login(*args: Any, **kwargs: Any) -> str:
        return await original("login", "bob", password=SECRET)

    app.submit = submit_login  # type: ignore[method-assign]
    try:
        return await read_sse(web, PREFIX + "/api/events", {}, app, wanted=2)
    finally:
        del app.submit


def test_redaction_applies_to_the_websocket_feed(ui_app: Flowrra) -> None:
    with running_client(ui_app, redact=redact_secret) as client:
        with client.websocket_connect(PREFIX + "/ws") as socket:
            assert socket.receive_json()["type"] == "stats"
            portal(client).call(lambda: ui_app.submit("login", "bob", password=SECRET))
            event = socket.receive_json()
        assert event["type"] == "task.update"
        assert event["task"]["kwargs"] == {"password": REDACTED}
        assert SECRET not in json.dumps(event)


async def test_a_failing_redaction_hook_hides_everything(populated: Populated) -> None:
    def broken(name: str, record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug in the hook")

    async with client_of(populated.app, redact=broken) as client:
        record = (await client.get(f"{PREFIX}/api/results/{populated.secret}")).json()
        page = await client.get(f"{PREFIX}/tasks/{populated.secret}")
        failed = (await client.get(f"{PREFIX}/api/results/{populated.failed}")).json()
    assert record["kwargs"] == record["args"] == record["result"]
    assert "redaction hook failed" in record["kwargs"]
    # an error message often quotes the arguments: it is hidden too
    assert failed["error"] == failed["traceback"] == record["kwargs"]
    assert "boom bad" not in json.dumps(failed)
    assert page.status_code == 200
    assert SECRET not in page.text


# -- bad input ---------------------------------------------------------------------------

BAD_INPUT = [
    ("GET", "/tasks?status=bogus", None, 400),
    ("GET", "/tasks?limit=-1", None, 400),
    ("GET", "/tasks?limit=abc", None, 400),
    ("GET", "/tasks?offset=1e3", None, 400),
    ("GET", "/tasks?limit=100000", None, 400),
    ("GET", "/tasks/" + "x" * 300, None, 400),
    ("GET", "/tasks/unknown-id", None, 404),
    ("GET", "/dead-letters?limit=x", None, 400),
    ("GET", "/schedules?enabled_only=maybe", None, 400),
    ("GET", "/api/results?status=done", None, 400),
    ("GET", "/api/results?offset=-5", None, 400),
    ("GET", "/api/results?name=" + "n" * 300, None, 400),
    ("GET", "/api/results/unknown-id", None, 404),
    ("GET", "/api/results/bad%01id", None, 400),
    ("GET", "/api/tasks/unknown", None, 404),
    ("GET", "/api/dead-letters?limit=1001", None, 400),
    ("GET", "/api/schedules?enabled_only=2", None, 400),
    ("GET", "/api/schedules/unknown", None, 404),
    ("GET", "/nowhere", None, 404),
    ("GET", "/api/nowhere", None, 404),
    ("GET", "/ws", None, 426),
    ("POST", "/api/stats", b"{}", 405),
    ("DELETE", "/api/results/x", None, 405),
    ("PATCH", "/api/schedules/x", None, 405),
    ("GET", "/api/results/x/retry", None, 404),  # ids may hold slashes: no task "x/retry"
    ("POST", "/api/results/unknown-id/retry", None, 404),
    ("POST", "/api/results/unknown-id/cancel", None, 404),
    ("POST", "/api/dead-letters/unknown/requeue", None, 404),
    ("DELETE", "/api/dead-letters/unknown", None, 404),
    ("PUT", "/api/schedules/unknown/enable", None, 404),
    ("PUT", "/api/schedules/unknown/disable", None, 404),
    ("DELETE", "/api/schedules/unknown", None, 404),
    ("POST", "/api/schedules/cron", b"", 400),
    ("POST", "/api/schedules/cron", b"{not json", 400),
    ("POST", "/api/schedules/cron", b"[1, 2]", 400),
    ("POST", "/api/schedules/cron", b"\xff\xfe", 400),
    ("POST", "/api/schedules/cron", {"cron": "* * * * *"}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "add"}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "nope", "cron": "* * * * *"}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "add", "cron": "61 * * * *"}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "add", "cron": 5}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "add", "cron": "* * * * *",
                                     "timezone": "Mars/Olympus"}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "add", "cron": "* * * * *",
                                     "args": "1,2"}, 400),
    ("POST", "/api/schedules/cron", {"task_name": "add", "cron": "* * * * *",
                                     "surprise": 1}, 400),
    ("POST", "/api/schedules/interval", {"task_name": "add", "interval": -1}, 400),
    ("POST", "/api/schedules/interval", {"task_name": "add", "interval": "often"}, 400),
    ("POST", "/api/schedules/interval", {"task_name": "add", "interval": True}, 400),
    ("POST", "/api/schedules/interval", {"task_name": "add", "interval": 5,
                                         "max_retries": -3}, 400),
    ("POST", "/api/schedules/interval", {"task_name": ["add"], "interval": 5}, 400),
    ("POST", "/api/schedules/once", {"task_name": "add", "run_at": "tomorrow"}, 400),
    ("POST", "/api/schedules/once", {"task_name": "add"}, 400),
    ("POST", "/api/schedules/once", {"task_name": "ghost", "run_at": "2030-01-01T00:00:00"},
     400),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_INPUT)
async def test_bad_input_answers_4xx_json(
    populated: Populated, method: str, path: str, body: Any, status: int
) -> None:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    async with client_of(populated.app) as client:
        response = await client.request(
            method, PREFIX + path, content=content,
            headers={**same_origin(), "content-type": "application/json"},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str)
    assert response.json()["error"]


async def test_retry_of_a_task_whose_name_is_gone_is_refused(populated: Populated) -> None:
    assert populated.app.registry.unregister("boom")
    async with client_of(populated.app) as client:
        response = await client.post(
            f"{PREFIX}/api/results/{populated.failed}/retry", headers=same_origin()
        )
    assert response.status_code == 409
    assert "not registered" in response.json()["error"]


async def test_an_oversized_body_is_refused(populated: Populated) -> None:
    async with client_of(populated.app) as client:
        response = await client.post(
            PREFIX + "/api/schedules/cron", content=b"x" * (1024 * 1024 + 1),
            headers=same_origin(),
        )
    assert response.status_code == 413
