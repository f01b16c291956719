"""The dashboard mounted in Django (WSGI and ASGI), over a memory app running real tasks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any, cast

import django
import pytest
from django.conf import settings
from django.http import HttpResponseBase, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import include, path

from flowrra import Flowrra
from flowrra.events import event_bus
from flowrra.task import TaskResult
from flowrra.ui.bridge import MAX_BODY, LoopBridge
from flowrra.ui.django import get_urls
from flowrra.ui.messages import UIRequest
from ui.conftest import LINK, make_app

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

if not settings.configured:  # settings are process-wide: configure them once, minimally
    settings.configure(
        DEBUG=False,
        SECRET_KEY="flowrra-dashboard-tests",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=None,
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=MIDDLEWARE,
        USE_TZ=True,
    )
    django.setup()

PREFIX = "/ops/flowrra"
CSRF = {"Origin": "http://testserver", "X-Flowrra-CSRF": "1"}


@pytest.fixture
def mount() -> Iterator[Any]:
    """``mount(app, **options)`` serves the dashboard of ``app`` at ``PREFIX`` for the test."""
    overrides: list[override_settings] = []

    def mount_dashboard(app: Flowrra, **options: Any) -> None:
        urls = ModuleType("dashboard_test_urls")
        urls.urlpatterns = [path(PREFIX[1:] + "/", include(get_urls(app, **options)))]  # type: ignore[attr-defined]
        override = override_settings(
            ROOT_URLCONF=urls, ALLOWED_HOSTS=["testserver"], MIDDLEWARE=MIDDLEWARE
        )
        override.enable()
        overrides.append(override)

    yield mount_dashboard
    for override in reversed(overrides):
        override.disable()


@pytest.fixture
def client(app: Flowrra, mount: Any) -> Client:
    mount(app)
    return Client(enforce_csrf_checks=True)  # the dashboard's own check replaces Django's


def run_task(bridge: LoopBridge, app: Flowrra, name: str, *args: Any) -> TaskResult:
    async def submit_and_wait() -> TaskResult:
        task_id = await app.submit(name, *args)
        return await app.wait_for_result(task_id, timeout=10)

    return bridge.run(submit_and_wait())


def json_of(response: HttpResponseBase) -> Any:
    assert response["content-type"] == "application/json"
    return json.loads(response.content)  # type: ignore[attr-defined]


def error_of(response: HttpResponseBase) -> str:
    message = json_of(response)["error"]
    assert isinstance(message, str)
    return message


def text_of(response: HttpResponseBase) -> str:
    content = response.content  # type: ignore[attr-defined]
    assert isinstance(content, bytes)
    return content.decode()


def streaming(response: HttpResponseBase) -> StreamingHttpResponse:
    assert response.streaming
    return cast(StreamingHttpResponse, response)


# -- pages and JSON under a prefix -----------------------------------------------------


def test_every_page_links_under_the_prefix(
    bridge: LoopBridge, app: Flowrra, client: Client
) -> None:
    done = run_task(bridge, app, "double", 4)
    pages = ["/", "/tasks", "/tasks?status=success", f"/tasks/{done.task_id}"]
    pages += ["/dead-letters", "/schedules"]
    for page in pages:
        response = client.get(PREFIX + page)
        assert response.status_code == 200, page
        assert response["content-type"].startswith("text/html")
        links = [link for link in LINK.findall(text_of(response)) if link.startswith("/")]
        assert links, page
        assert all(link.startswith(PREFIX + "/") for link in links), (page, links)
    assert done.task_id in text_of(client.get(f"{PREFIX}/tasks/{done.task_id}"))
    assert client.get(f"{PREFIX}/static/flowrra.css").status_code == 200


def test_links_follow_the_script_prefix(client: Client) -> None:
    response = client.get(f"{PREFIX}/tasks", SCRIPT_NAME="/site")
    assert response.status_code == 200
    links = [link for link in LINK.findall(text_of(response)) if link.startswith("/")]
    assert links
    assert all(link.startswith("/site" + PREFIX + "/") for link in links), links


def test_json_routes_answer_under_the_prefix(
    bridge: LoopBridge, app: Flowrra, client: Client
) -> None:
    done = run_task(bridge, app, "double", 21)
    stats = json_of(client.get(f"{PREFIX}/api/stats"))
    assert stats["results"]["success"] >= 1
    assert client.get(f"{PREFIX}/api/health").status_code == 200
    names = [task["name"] for task in json_of(client.get(f"{PREFIX}/api/tasks"))["tasks"]]
    assert sorted(names) == ["double", "explode"]
    assert json_of(client.get(f"{PREFIX}/api/tasks/double"))["name"] == "double"
    listing = json_of(client.get(f"{PREFIX}/api/results", {"status": "success", "limit": "10"}))
    assert done.task_id in [record["task_id"] for record in listing["results"]]
    record = json_of(client.get(f"{PREFIX}/api/results/{done.task_id}"))
    assert (record["status"], record["result"]) == ("success", 42)
    assert client.get(f"{PREFIX}/api/dead-letters").status_code == 200
    head = client.head(f"{PREFIX}/api/stats")
    assert (head.status_code, head.content) == (200, b"")


def test_the_first_query_value_wins(bridge: LoopBridge, app: Flowrra, client: Client) -> None:
    run_task(bridge, app, "double", 1)
    listing = json_of(client.get(f"{PREFIX}/api/results?limit=1&limit=500"))
    assert listing["limit"] == 1


def test_a_failed_task_is_retried_only_with_the_csrf_header_and_own_origin(
    bridge: LoopBridge, app: Flowrra, client: Client
) -> None:
    failed = run_task(bridge, app, "explode", "bad luck")
    assert failed.status == "failed"
    url = f"{PREFIX}/api/results/{failed.task_id}/retry"

    refused = client.post(url, headers={"Origin": "http://testserver"})
    assert refused.status_code == 403
    assert "X-Flowrra-CSRF" in error_of(refused)
    foreign = client.post(url, headers={**CSRF, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert "Origin" in error_of(foreign)

    accepted = client.post(url, headers=CSRF)
    assert accepted.status_code == 201
    new_id = json_of(accepted)["task_id"]
    assert new_id != failed.task_id
    again = bridge.run(app.wait_for_result(new_id, timeout=10))
    assert (again.status, list(again.args)) == ("failed", ["bad luck"])


def test_bad_input_answers_4xx_json(client: Client) -> None:
    assert client.get(f"{PREFIX}/api/results?limit=lots").status_code == 400
    assert client.get(f"{PREFIX}/api/results?status=sideways").status_code == 400
    missing = client.get(f"{PREFIX}/api/results/no-such-task")
    assert missing.status_code == 404
    assert "no-such-task" in error_of(missing)
    assert client.get(f"{PREFIX}/api/nowhere").status_code == 404
    wrong_method = client.delete(f"{PREFIX}/api/stats", headers=CSRF)
    assert wrong_method.status_code == 405
    error_of(wrong_method)
    too_big = client.post(
        f"{PREFIX}/api/schedules/cron",
        b"x" * (MAX_BODY + 1),
        content_type="application/json",
        headers=CSRF,
    )
    assert too_big.status_code == 413
    error_of(too_big)


def test_a_host_outside_allowed_hosts_answers_400(client: Client) -> None:
    # CommonMiddleware refuses it first; without it the dashboard's view does, in JSON
    assert client.get(f"{PREFIX}/api/stats", HTTP_HOST="evil.example").status_code == 400
    with override_settings(MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"]):
        refused = Client().get(f"{PREFIX}/api/stats", HTTP_HOST="evil.example")
    assert refused.status_code == 400
    assert "evil.example" in error_of(refused)


# -- authentication --------------------------------------------------------------------


def test_basic_auth_guards_pages_api_and_events(app: Flowrra, mount: Any) -> None:
    mount(app, basic_auth=("admin", "s3cret"))
    client = Client()
    for page in ["/", "/tasks", "/api/stats", "/api/events"]:
        response = client.get(PREFIX + page)
        assert response.status_code == 401, page
        assert response["www-authenticate"].startswith("Basic")
        error_of(response)
    wrong = "Basic " + base64.b64encode(b"admin:guess").decode()
    assert client.get(f"{PREFIX}/", headers={"Authorization": wrong}).status_code == 401
    good = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert client.get(f"{PREFIX}/", headers={"Authorization": good}).status_code == 200
    assert client.get(f"{PREFIX}/api/stats", headers={"Authorization": good}).status_code == 200


def test_the_auth_hook_sees_the_request_and_can_refuse(app: Flowrra, mount: Any) -> None:
    seen: list[tuple[str, str]] = []

    def allow_ops(request: UIRequest) -> bool:
        seen.append((request.path, request.root_path))
        return request.headers.get("x-team") == "ops"

    mount(app, auth=allow_ops)
    client = Client()
    assert client.get(f"{PREFIX}/api/stats").status_code == 403
    assert client.get(f"{PREFIX}/api/events").status_code == 403
    assert client.get(f"{PREFIX}/api/stats", headers={"X-Team": "ops"}).status_code == 200
    assert seen[0] == ("/api/stats", PREFIX)


# -- the live feed under WSGI ----------------------------------------------------------


def sse_events(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    for chunk in chunks:
        for line in chunk.decode().splitlines():
            if line.startswith("data: "):
                yield json.loads(line[len("data: ") :])


def test_the_event_stream_yields_a_task_update_when_a_task_completes(
    bridge: LoopBridge, app: Flowrra, client: Client
) -> None:
    response = streaming(client.get(f"{PREFIX}/api/events"))
    assert response["content-type"] == "text/event-stream"
    before = len(event_bus.subscribers)
    try:
        events = sse_events(iter(response.streaming_content))  # type: ignore[arg-type]  # sync under WSGI
        assert next(events)["type"] == "stats"
        assert len(event_bus.subscribers) == before + 1  # subscribed once streaming
        task_id = bridge.run(app.submit("double", 5))
        deadline = time.monotonic() + 15
        for event in events:
            task = event.get("task", {})
            is_ours = event["type"] == "task.update" and task.get("task_id") == task_id
            if is_ours and task["status"] == "success":
                assert task["result"] == 10
                break
            assert time.monotonic() < deadline, "no task.update for the finished task"
    finally:
        response.close()
    assert len(event_bus.subscribers) == before  # closing the response unsubscribed


# -- under ASGI ------------------------------------------------------------------------


async def async_sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    async for chunk in chunks:
        for line in chunk.decode().splitlines():
            if line.startswith("data: "):
                yield json.loads(line[len("data: ") :])


async def read_until_done(
    response: StreamingHttpResponse, app: Flowrra, submit: Any
) -> dict[str, Any]:
    """The ``task.update`` of the task ``submit()`` queues, once it succeeded."""
    content: AsyncIterator[bytes] = response.streaming_content  # type: ignore[assignment]
    events = async_sse_events(content)
    assert (await anext(events))["type"] == "stats"
    task_id = await submit()
    async with asyncio.timeout(15):
        async for event in events:
            task = event.get("task", {})
            is_ours = event["type"] == "task.update" and task.get("task_id") == task_id
            if is_ours and task["status"] == "success":
                await content.aclose()  # type: ignore[attr-defined]
                return dict(task)
    raise AssertionError("the stream ended")


async def test_asgi_serves_pages_and_streams_from_the_bridge_loop(
    bridge: LoopBridge, app: Flowrra, mount: Any
) -> None:
    mount(app)
    client = AsyncClient()
    page = await client.get(f"{PREFIX}/tasks")
    assert page.status_code == 200
    assert f'href="{PREFIX}/schedules"' in text_of(page)
    response = streaming(await client.get(f"{PREFIX}/api/events"))
    assert response.is_async

    async def submit() -> str:
        return await asyncio.to_thread(bridge.run, app.submit("double", 8))

    task = await read_until_done(response, app, submit)
    assert task["result"] == 16


async def test_asgi_reaches_an_app_running_in_the_servers_own_loop(mount: Any) -> None:
    app = make_app()
    await app.start()  # the user started it in the ASGI server's loop, with a worker
    try:
        mount(app)
        client = AsyncClient()
        stats = await client.get(f"{PREFIX}/api/stats")
        assert stats.status_code == 200
        assert json_of(stats)["app"]["running"] is True
        response = streaming(await client.get(f"{PREFIX}/api/events"))

        async def submit() -> str:
            return await app.submit("double", 9)

        task = await read_until_done(response, app, submit)
        assert task["result"] == 18
        failed_id = await app.submit("explode", "again")
        await app.wait_for_result(failed_id, timeout=10)
        retry = await client.post(
            f"{PREFIX}/api/results/{failed_id}/retry",
            headers=CSRF,
        )
        assert retry.status_code == 201
        retried = await app.wait_for_result(json_of(retry)["task_id"], timeout=10)
        assert retried.status == "failed"
    finally:
        await app.stop()
