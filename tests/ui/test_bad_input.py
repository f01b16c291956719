"""Bad request bodies and stored values the dashboard must answer without a 500."""

from __future__ import annotations

import json

from flowrra.ui import Dashboard, UIRequest
from ui.conftest import Populated, same_origin

LONE_SURROGATE_BODY = b'{"task_name": "add", "interval": 60, "args": ["\\ud800"]}'


def post(path: str, body: bytes) -> UIRequest:
    headers = {"host": "testserver", **same_origin()}
    return UIRequest("POST", path, {}, headers, body, "")


async def test_a_lone_surrogate_in_a_schedule_body_is_refused_and_not_stored(
    populated: Populated,
) -> None:
    dashboard = Dashboard(populated.app)
    created = await dashboard.handle(post("/api/schedules/interval", LONE_SURROGATE_BODY))
    assert created.status == 400
    assert "surrogate" in json.loads(created.body)["error"]
    listed = await dashboard.handle(UIRequest("GET", "/api/schedules", {}, {}, b"", ""))
    assert listed.status == 200
    ids = [s["id"] for s in json.loads(listed.body)["schedules"]]
    assert ids == [populated.schedule_id]


async def test_a_stored_lone_surrogate_is_shown_not_a_500(populated: Populated) -> None:
    app = populated.app
    task_id = await app.submit("add", "\ud800", "x")
    await app.run_until_idle(timeout=10)
    dashboard = Dashboard(app)
    get = {"host": "testserver"}
    listed = await dashboard.handle(UIRequest("GET", "/api/results", {}, get, b"", ""))
    assert listed.status == 200
    ids = [r["task_id"] for r in json.loads(listed.body)["results"]]
    assert task_id in ids
    one = await dashboard.handle(UIRequest("GET", f"/api/results/{task_id}", {}, get, b"", ""))
    assert json.loads(one.body)["args"] == ["\ud800", "x"]
    for path in ("/", "/tasks", f"/tasks/{task_id}"):
        page = await dashboard.handle(UIRequest("GET", path, {}, get, b"", ""))
        assert page.status == 200, path
