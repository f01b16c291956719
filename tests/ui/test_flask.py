"""The dashboard mounted in Flask, over a memory app whose worker runs real tasks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flowrra import Flowrra
from flowrra.task import TaskResult
from flowrra.ui.bridge import MAX_BODY, LoopBridge, default_bridge
from flowrra.ui.flask import create_blueprint
from flowrra.ui.messages import UIRequest
from ui.conftest import LINK, make_app

PREFIX = "/ops/flowrra"
CSRF = {"Origin": "http://localhost", "X-Flowrra-CSRF": "1"}


def client_for(app: Flowrra, **options: Any) -> FlaskClient:
    flask_app = Flask(__name__)
    flask_app.register_blueprint(create_blueprint(app, **options), url_prefix=PREFIX)
    return flask_app.test_client()


@pytest.fixture
def client(app: Flowrra) -> FlaskClient:
    return client_for(app)


def run_task(bridge: LoopBridge, app: Flowrra, name: str, *args: Any) -> TaskResult:
    async def submit_and_wait() -> TaskResult:
        task_id = await app.submit(name, *args)
        return await app.wait_for_result(task_id, timeout=10)

    return bridge.run(submit_and_wait())


def error_of(response: TestResponse) -> str:
    assert response.headers["content-type"] == "application/json"
    body = response.get_json()
    assert isinstance(body, dict)
    message = body["error"]
    assert isinstance(message, str)
    return message


# -- pages and JSON under a prefix -----------------------------------------------------


def test_every_page_links_under_the_prefix(
    bridge: LoopBridge, app: Flowrra, client: FlaskClient
) -> None:
    done = run_task(bridge, app, "double", 4)
    pages = ["/", "/tasks", "/tasks?status=success", f"/tasks/{done.task_id}"]
    pages += ["/dead-letters", "/schedules"]
    for page in pages:
        response = client.get(PREFIX + page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        links = [link for link in LINK.findall(response.text) if link.startswith("/")]
        assert links, page
        assert all(link.startswith(PREFIX + "/") for link in links), (page, links)
    detail = client.get(f"{PREFIX}/tasks/{done.task_id}").text
    assert done.task_id in detail
    assert client.get(f"{PREFIX}/static/flowrra.css").status_code == 200


def test_the_bare_prefix_redirects_to_the_dashboard(client: FlaskClient) -> None:
    response = client.get(PREFIX)
    assert response.status_code == 308
    assert response.headers["location"].endswith(PREFIX + "/")


def test_links_follow_the_wsgi_script_root(app: Flowrra, client: FlaskClient) -> None:
    response = client.get(f"{PREFIX}/tasks", base_url="http://localhost/site/")
    assert response.status_code == 200
    links = [link for link in LINK.findall(response.text) if link.startswith("/")]
    assert links
    assert all(link.startswith("/site" + PREFIX + "/") for link in links), links


def test_json_routes_answer_under_the_prefix(
    bridge: LoopBridge, app: Flowrra, client: FlaskClient
) -> None:
    done = run_task(bridge, app, "double", 21)
    assert done.result == 42
    stats = client.get(f"{PREFIX}/api/stats").get_json()
    assert stats["results"]["success"] >= 1
    assert client.get(f"{PREFIX}/api/health").status_code == 200
    names = [task["name"] for task in client.get(f"{PREFIX}/api/tasks").get_json()["tasks"]]
    assert sorted(names) == ["double", "explode"]
    assert client.get(f"{PREFIX}/api/tasks/double").get_json()["name"] == "double"
    listing = client.get(f"{PREFIX}/api/results?status=success&limit=10").get_json()
    assert done.task_id in [record["task_id"] for record in listing["results"]]
    record = client.get(f"{PREFIX}/api/results/{done.task_id}").get_json()
    assert (record["status"], record["result"]) == ("success", 42)
    assert client.get(f"{PREFIX}/api/dead-letters").status_code == 200
    head = client.head(f"{PREFIX}/api/stats")
    assert (head.status_code, head.data) == (200, b"")


def test_a_failed_task_is_retried_only_with_the_csrf_header_and_own_origin(
    bridge: LoopBridge, app: Flowrra, client: FlaskClient
) -> None:
    failed = run_task(bridge, app, "explode", "bad luck")
    assert failed.status == "failed"
    url = f"{PREFIX}/api/results/{failed.task_id}/retry"

    refused = client.post(url, headers={"Origin": "http://localhost"})
    assert refused.status_code == 403
    assert "X-Flowrra-CSRF" in error_of(refused)
    foreign = client.post(url, headers={**CSRF, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert "Origin" in error_of(foreign)

    accepted = client.post(url, headers=CSRF)
    assert accepted.status_code == 201
    new_id = accepted.get_json()["task_id"]
    assert new_id != failed.task_id
    again = bridge.run(app.wait_for_result(new_id, timeout=10))
    assert (again.status, list(again.args)) == ("failed", ["bad luck"])


def test_bad_input_answers_4xx_json(client: FlaskClient) -> None:
    assert client.get(f"{PREFIX}/api/results?limit=lots").status_code == 400
    assert client.get(f"{PREFIX}/api/results?status=sideways").status_code == 400
    missing = client.get(f"{PREFIX}/api/results/no-such-task")
    assert missing.status_code == 404
    assert "no-such-task" in error_of(missing)
    assert client.get(f"{PREFIX}/api/nowhere").status_code == 404
    wrong_method = client.delete(f"{PREFIX}/api/stats", headers=CSRF)
    assert wrong_method.status_code == 405
    error_of(wrong_method)
    traversal = client.get(f"{PREFIX}/static/..%2Fcore.py")
    assert 400 <= traversal.status_code < 500
    too_big = client.post(f"{PREFIX}/api/schedules/cron", data=b"x" * (MAX_BODY + 1), headers=CSRF)
    assert too_big.status_code == 413
    error_of(too_big)


# -- authentication --------------------------------------------------------------------


def test_basic_auth_guards_pages_api_and_events(app: Flowrra) -> None:
    client = client_for(app, basic_auth=("admin", "s3cret"))
    for path in ["/", "/tasks", "/api/stats", "/api/events"]:
        response = client.get(PREFIX + path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Basic")
        error_of(response)
    wrong = base64.b64encode(b"admin:guess").decode()
    assert client.get(f"{PREFIX}/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    assert client.get(f"{PREFIX}/", headers=good).status_code == 200
    assert client.get(f"{PREFIX}/api/stats", headers=good).status_code == 200


def test_the_auth_hook_sees_the_request_and_can_refuse(app: Flowrra) -> None:
    seen: list[tuple[str, str]] = []

    def allow_ops(request: UIRequest) -> bool:
        seen.append((request.path, request.root_path))
        return request.headers.get("x-team") == "ops"

    client = client_for(app, auth=allow_ops)
    assert client.get(f"{PREFIX}/api/stats").status_code == 403
    assert client.get(f"{PREFIX}/api/events").status_code == 403
    assert client.get(f"{PREFIX}/api/stats", headers={"X-Team": "ops"}).status_code == 200
    assert seen[0] == ("/api/stats", PREFIX)


def test_the_redact_hook_applies(bridge: LoopBridge, app: Flowrra) -> None:
    def hide_args(name: str, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "args": ["***"]}

    client = client_for(app, redact=hide_args)
    done = run_task(bridge, app, "double", 12345)
    record = client.get(f"{PREFIX}/api/results/{done.task_id}").get_json()
    assert record["args"] == ["***"]
    assert "12345" not in client.get(f"{PREFIX}/tasks/{done.task_id}").text


# -- the live feed ---------------------------------------------------------------------


def read_events(response: TestResponse) -> Iterator[dict[str, Any]]:
    """The JSON events of a streamed server-sent events response."""
    for chunk in response.response:
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        for line in text.splitlines():
            if line.startswith("data: "):
                yield json.loads(line[len("data: ") :])


def test_the_event_stream_yields_a_task_update_when_a_task_completes(
    bridge: LoopBridge, app: Flowrra, client: FlaskClient
) -> None:
    response = client.get(f"{PREFIX}/api/events", buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        events = read_events(response)
        first = next(events)
        assert first["type"] == "stats"
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


def test_closing_the_event_stream_unsubscribes_from_the_bus(
    app: Flowrra, client: FlaskClient
) -> None:
    from flowrra.events import event_bus

    before = len(event_bus.subscribers)
    response = client.get(f"{PREFIX}/api/events", buffered=False)
    next(read_events(response))
    assert len(event_bus.subscribers) == before + 1
    response.close()
    assert len(event_bus.subscribers) == before


# -- the app's lifecycle ---------------------------------------------------------------


def test_a_stopped_app_is_started_as_a_client_by_the_first_request(bridge: LoopBridge) -> None:
    app = make_app()
    client = client_for(app)
    try:
        stats = client.get(f"{PREFIX}/api/stats")
        assert stats.status_code == 200
        assert stats.get_json()["app"]["running"] is True
        assert app.is_running
        assert app.running_tasks == 0
        assert app._worker is None  # a client: the dashboard never runs tasks itself
    finally:
        bridge.run(app.stop())


def test_an_app_that_cannot_start_answers_503_json() -> None:
    app = Flowrra.from_urls(broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")
    client = client_for(app)
    for path in ["/api/stats", "/", "/api/events"]:
        response = client.get(PREFIX + path)
        assert response.status_code == 503, path
        assert "cannot reach Redis" in error_of(response)
    assert not app.is_running


def test_two_dashboards_mount_side_by_side_under_their_own_names(app: Flowrra) -> None:
    other = make_app()
    flask_app = Flask(__name__)
    flask_app.register_blueprint(create_blueprint(app), url_prefix="/one")
    flask_app.register_blueprint(create_blueprint(other, name="other"), url_prefix="/two")
    client = flask_app.test_client()
    try:
        assert 'href="/one/tasks"' in client.get("/one/").text
        assert 'href="/two/tasks"' in client.get("/two/").text
        assert client.get("/one/api/stats").get_json()["app"]["running"] is True
        assert other.is_running  # started as a client by its first request
    finally:
        default_bridge().run(other.stop())
