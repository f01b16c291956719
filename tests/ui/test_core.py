"""The framework-neutral core: routing, escaping, the live feed, rendering of the stats
parts, and the package's lazy imports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

from flowrra import Flowrra
from flowrra.events import EventBus
from flowrra.ui import Dashboard, UIRequest, UIResponse
from flowrra.ui.feed import live_events
from flowrra.ui.records import Redactor
from flowrra.ui.render import CHART_HEIGHT, Renderer, throughput_bars
from ui.conftest import Populated, same_origin, shutdown

XSS = "<script>alert(1)</script>"


def request(path: str, method: str = "GET", **headers: str) -> UIRequest:
    query: dict[str, str] = {}
    if "?" in path:
        path, _, text = path.partition("?")
        query = dict(part.split("=", 1) for part in text.split("&"))
    return UIRequest(method, path, query, {"host": "testserver", **headers}, b"", "/r")


def body_of(response: UIResponse) -> Any:
    return json.loads(response.body)


async def test_handle_routes_pages_and_json(populated: Populated) -> None:
    dashboard = Dashboard(populated.app, title="Ops <board>")
    page = await dashboard.handle(request("/"))
    assert page.status == 200
    assert b"Ops &lt;board&gt;" in page.body
    assert b'href="/r/tasks"' in page.body
    stats = await dashboard.handle(request("/api/stats"))
    assert body_of(stats)["results"]["success"] == 4
    trailing = await dashboard.handle(request("/api/stats/"))
    assert trailing.status == 200


async def test_unknown_paths_and_wrong_methods(populated: Populated) -> None:
    dashboard = Dashboard(populated.app)
    missing = await dashboard.handle(request("/api/none"))
    assert missing.status == 404
    wrong = await dashboard.handle(request("/api/stats", "POST", **same_origin()))
    assert wrong.status == 405
    assert wrong.header("allow") == "GET"
    head = await dashboard.handle(request("/api/stats", "HEAD"))
    assert head.status == 200
    assert head.body == b""


async def test_a_browser_gets_an_html_error_page(populated: Populated) -> None:
    dashboard = Dashboard(populated.app)
    page = await dashboard.handle(request("/tasks/nope", accept="text/html,*/*"))
    assert page.status == 404
    assert page.header("content-type") == "text/html; charset=utf-8"
    assert b"no task with id" in page.body
    api = await dashboard.handle(request("/api/results/nope", accept="text/html"))
    assert api.header("content-type") == "application/json"


async def test_task_values_are_escaped_everywhere(ui_app: Flowrra) -> None:
    await ui_app.start()
    try:
        task_id = await ui_app.submit("boom", XSS)
        await ui_app.run_until_idle(timeout=10)
        dashboard = Dashboard(ui_app)
        for path in ["/", "/tasks", f"/tasks/{task_id}", "/tasks?status=failed"]:
            html = (await dashboard.handle(request(path))).body.decode()
            assert XSS not in html, path
            assert "&lt;script&gt;" in html, path
    finally:
        await shutdown(ui_app)


async def test_long_arguments_are_cut_with_the_full_value_in_a_title(ui_app: Flowrra) -> None:
    await ui_app.start()
    try:
        await ui_app.submit("boom", "x" * 500)
        await ui_app.run_until_idle(timeout=10)
        html = (await Dashboard(ui_app).handle(request("/tasks"))).body.decode()
    finally:
        await shutdown(ui_app)
    assert 'class="cut" title="&#34;' + "x" * 500 in html
    assert "…" in html


async def test_retry_needs_a_running_app(populated: Populated) -> None:
    dashboard = Dashboard(populated.app)
    await populated.app.stop()
    response = await dashboard.handle(
        request(f"/api/results/{populated.failed}/retry", "POST", **same_origin())
    )
    assert response.status == 503
    assert "not running" in body_of(response)["error"]


async def test_an_auth_hook_that_raises_refuses(populated: Populated) -> None:
    def broken(request: UIRequest) -> bool:
        raise RuntimeError("hook bug")

    response = await Dashboard(populated.app, auth=broken).handle(request("/api/stats"))
    assert response.status == 403


def test_basic_auth_must_be_a_pair_of_strings(ui_app: Flowrra) -> None:
    with pytest.raises(TypeError):
        Dashboard(ui_app, basic_auth=("user",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user name"):
        Dashboard(ui_app, basic_auth=("", "pw"))


# -- the live feed -----------------------------------------------------------------------


async def stats_of() -> dict[str, Any]:
    return {"n": 1}


async def test_the_feed_sends_stats_first_then_redacted_updates() -> None:
    bus = EventBus()

    def hide(name: str, record: dict[str, Any]) -> dict[str, Any]:
        record["args"] = ["hidden"]
        return record

    feed = live_events(bus, Redactor(hide), stats_of, interval=30)
    assert await anext(feed) == {"type": "stats", "stats": {"n": 1}}
    assert bus.has_subscribers
    await bus.emit({"type": "task.update", "task": {"task_id": "a", "args": ["pw"]}})
    await bus.emit({"type": "other"})
    update = await anext(feed)
    assert update == {"type": "task.update", "task": {"task_id": "a", "args": ["hidden"]}}
    await feed.aclose()  # type: ignore[attr-defined]
    assert not bus.has_subscribers


async def test_the_feed_repeats_stats_and_drops_the_oldest_for_a_slow_reader() -> None:
    bus = EventBus()
    feed = live_events(bus, Redactor(None), stats_of, interval=0.05, buffer=3)
    await anext(feed)
    for number in range(10):
        await bus.emit({"type": "task.update", "task": {"task_id": str(number)}})
    got = [await anext(feed) for _ in range(4)]
    assert [e["task"]["task_id"] for e in got[:3]] == ["7", "8", "9"]
    assert got[3]["type"] == "stats"
    await feed.aclose()  # type: ignore[attr-defined]


async def test_cancelling_a_reader_unsubscribes() -> None:
    bus = EventBus()

    async def read() -> None:
        async for _ in live_events(bus, Redactor(None), stats_of, interval=30):
            pass

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    assert bus.has_subscribers
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not bus.has_subscribers


async def test_dashboard_events_carry_real_task_updates(populated: Populated) -> None:
    feed = Dashboard(populated.app).events()
    first = await anext(feed)
    assert first["type"] == "stats"
    task_id = await populated.app.submit("add", 2, 3)
    async with asyncio.timeout(5):
        while True:
            event = await anext(feed)
            if event["type"] == "task.update" and event["task"]["status"] == "success":
                break
    assert event["task"]["task_id"] == task_id
    assert event["task"]["result"] == 5
    await feed.aclose()  # type: ignore[attr-defined]


# -- the stats parts ---------------------------------------------------------------------

FULL_STATS: dict[str, Any] = {
    "app": {"running": True},
    "queues": {"ready": 5, "delayed": 1, "in_flight": 2, "dead": 1},
    "results": {"pending": 5, "running": 2, "success": 10, "failed": 1, "retrying": 0,
                "cancelled": 0},
    "tasks": {"registered": 3, "running": 2},
    "scheduler": {"configured": False},
    "queue_details": [{"queue": "emails", "ready": 5, "by_priority": {"10": 2, "0": 3},
                       "delayed": 1, "in_flight": 2, "dead": 1, "oldest_age": 125.0}],
    "workers": [{"id": "host-1-abc", "hostname": "host", "pid": 1, "queues": ["emails"],
                 "concurrency": {"io": 10, "cpu": 2}, "running": 2, "processed": 40,
                 "failed": 1, "started_at": "2030-01-01T00:00:00+00:00",
                 "last_heartbeat": "2030-01-01T00:05:00+00:00", "alive": True}],
    "throughput": [{"minute": f"2030-01-01T00:0{i}:00+00:00", "succeeded": i,
                    "failed": 1 if i == 3 else 0, "retried": 0} for i in range(5)],
}


def render_overview(stats: dict[str, Any]) -> str:
    return Renderer("t").render("overview.html", "", page="overview", stats=stats,
                                recent=[], failures=[])


def test_the_overview_renders_queue_details_workers_and_throughput() -> None:
    html = render_overview(FULL_STATS)
    assert 'data-queue="emails"' in html
    assert '<span class="pill">10: 2</span>' in html
    assert "2 min" in html  # oldest age 125 s
    assert "host-1-abc" in html
    assert "alive" in html
    assert html.count('<rect class="bar succeeded"') == 4  # minute 0 had none
    assert html.count('<rect class="bar failed"') == 1
    assert "No failed tasks." in html


def test_the_overview_degrades_when_parts_are_missing() -> None:
    minimal = {"app": {"running": False}, "queues": None, "queues_error": "ConnectionError: x",
               "results": None, "results_error": "cannot list", "tasks": {"registered": 0,
               "running": 0}, "scheduler": {"configured": False}}
    html = render_overview(minimal)
    assert "The broker cannot be read: ConnectionError: x" in html
    assert "does not report workers" in html
    assert "does not report throughput" in html
    quiet = render_overview({**minimal, "workers": [], "throughput": [
        {"minute": "m", "succeeded": 0, "failed": 0, "retried": 0}]})
    assert "No workers seen in the last 10 minutes." in quiet
    assert "No tasks finished in the last 15 minutes." in quiet


def test_throughput_bars_scale_to_the_busiest_minute() -> None:
    bars = throughput_bars([{"minute": "a", "succeeded": 4, "failed": 4, "retried": 0},
                            {"minute": "b", "succeeded": 2, "failed": 0, "retried": 0}])
    assert [bar.kind for bar in bars] == ["succeeded", "failed", "succeeded"]
    assert bars[0].height == pytest.approx(bars[1].height)
    assert bars[1].y + bars[1].height == pytest.approx(bars[0].y)
    assert bars[0].height + bars[1].height == pytest.approx(CHART_HEIGHT - 4)
    assert throughput_bars(None) == []
    assert throughput_bars([{"minute": "a", "succeeded": "x"}]) == []


# -- packaging ---------------------------------------------------------------------------


def test_import_flowrra_imports_no_web_package() -> None:
    code = (
        "import sys, flowrra, flowrra.ui, flowrra.ui.cli, flowrra.cli\n"
        "loaded = {'jinja2', 'starlette', 'fastapi', 'uvicorn', 'flask', 'django'}\n"
        "print(sorted(loaded & set(sys.modules)))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert output.stdout.strip() == "[]"


def test_unknown_names_of_the_package_raise_attribute_error() -> None:
    import flowrra.ui

    with pytest.raises(AttributeError):
        _ = flowrra.ui.Nothing
    assert flowrra.ui.create_router.__module__ == "flowrra.ui.starlette"
