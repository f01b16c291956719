"""The dashboard mounted in FastAPI (and plain Starlette) under a prefix, over real tasks."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from flowrra import Flowrra
from flowrra.brokers.base import lane_of
from flowrra.ui import create_router
from flowrra.ui.starlette import create_asgi_app
from ui.conftest import Populated, same_origin, shutdown

PREFIX = "/ops/flowrra"


@asynccontextmanager
async def fastapi_client(app: Flowrra, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a FastAPI app that includes the dashboard at :data:`PREFIX`."""
    web = FastAPI()
    web.include_router(create_router(app, **options), prefix=PREFIX)
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_every_page_renders_under_the_prefix(populated: Populated) -> None:
    async with fastapi_client(populated.app) as client:
        for path in ["/", "/tasks", "/tasks?status=failed", "/tasks?name=add&limit=2",
                     f"/tasks/{populated.failed}", "/dead-letters", "/schedules",
                     "/schedules?enabled_only=true"]:
            response = await client.get(PREFIX + path)
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"].startswith("text/html")
            links = re.findall(r'(?:href|src|data-action|data-create)="([^"]+)"', response.text)
            assert links
            assert all(link.startswith(PREFIX + "/") for link in links), (path, links)


async def test_the_overview_shows_counts_recent_tasks_and_failures(populated: Populated) -> None:
    async with fastapi_client(populated.app) as client:
        html = (await client.get(PREFIX + "/")).text
    assert '<span class="count" data-count="results.success">4</span>' in html
    assert '<span class="count" data-count="results.failed">1</span>' in html
    recent = html.split('id="recent-tasks"')[1].split("</table>")[0]
    failures = html.split('id="recent-failures"')[1].split("</table>")[0]
    assert all(task_id in recent for task_id in populated.succeeded)
    assert populated.failed in failures
    assert populated.succeeded[0] not in failures
    assert "<time datetime=" in html


async def test_tasks_page_filters_by_status_and_name_and_pages(populated: Populated) -> None:
    async with fastapi_client(populated.app) as client:
        failed = (await client.get(PREFIX + "/tasks?status=failed")).text
        named = (await client.get(PREFIX + "/tasks?name=add&limit=2")).text
        older = (await client.get(PREFIX + "/tasks?name=add&limit=2&offset=2")).text
        empty = (await client.get(PREFIX + "/tasks?status=cancelled")).text
    assert populated.failed in failed
    assert populated.succeeded[0] not in failed
    rows = re.findall(r'<tr data-task-id="([^"]+)"', named)
    assert len(rows) == 2
    assert set(rows) <= set(populated.succeeded)
    assert "Older" in named
    assert re.findall(r'<tr data-task-id="([^"]+)"', older) == [populated.succeeded[0]]
    assert "No cancelled tasks." in empty


async def test_task_detail_shows_error_traceback_and_retry(populated: Populated) -> None:
    async with fastapi_client(populated.app) as client:
        html = (await client.get(f"{PREFIX}/tasks/{populated.failed}")).text
        ok = (await client.get(f"{PREFIX}/tasks/{populated.succeeded[1]}")).text
    assert "RuntimeError: boom bad" in html
    assert "Traceback" in html
    assert f"{PREFIX}/api/results/{populated.failed}/retry" in html
    assert "/cancel" not in html
    assert "<pre class=\"value\">2</pre>" in ok  # add(1, 1)
    assert "/retry" not in ok


async def test_json_listings_and_lookups(populated: Populated) -> None:
    async with fastapi_client(populated.app) as client:
        stats = (await client.get(PREFIX + "/api/stats")).json()
        health = await client.get(PREFIX + "/api/health")
        tasks = (await client.get(PREFIX + "/api/tasks")).json()
        add = (await client.get(PREFIX + "/api/tasks/add")).json()
        failed = (await client.get(PREFIX + "/api/results?status=failed")).json()
        named = (await client.get(PREFIX + "/api/results?name=add&limit=2&offset=1")).json()
        record = (await client.get(f"{PREFIX}/api/results/{populated.succeeded[2]}")).json()
        schedules = (await client.get(PREFIX + "/api/schedules")).json()
        schedule = (await client.get(f"{PREFIX}/api/schedules/{populated.schedule_id}")).json()
        letters = (await client.get(PREFIX + "/api/dead-letters")).json()
    assert stats["results"]["success"] == 4
    assert stats["results"]["failed"] == 1
    assert health.status_code == 200
    assert health.json()["healthy"] is True
    assert [t["name"] for t in tasks["tasks"]] == ["add", "boom", "flaky", "login", "nap"]
    assert add["name"] == "add"
    assert add["executor"] == "io"
    assert [r["task_id"] for r in failed["results"]] == [populated.failed]
    assert named["limit"] == 2
    assert named["offset"] == 1
    assert len(named["results"]) == 2
    assert {r["task_name"] for r in named["results"]} == {"add"}
    assert record["result"] == 4
    assert record["status"] == "success"
    assert [s["id"] for s in schedules["schedules"]] == [populated.schedule_id]
    assert schedule["task_name"] == "add"
    assert schedule["schedule_type"] == "interval"
    assert letters == {"dead_letters": []}


async def test_retry_and_cancel(populated: Populated) -> None:
    app = populated.app
    async with fastapi_client(app) as client:
        retried = await client.post(
            f"{PREFIX}/api/results/{populated.failed}/retry", headers=same_origin()
        )
        assert retried.status_code == 201, retried.text
        new_id = retried.json()["task_id"]
        await app.run_until_idle(timeout=10)
        assert (await client.get(f"{PREFIX}/api/results/{new_id}")).json()["status"] == "failed"
        again = await client.post(
            f"{PREFIX}/api/results/{populated.succeeded[0]}/retry", headers=same_origin()
        )
        assert again.status_code == 409
        assert "only failed" in again.json()["error"]
        later = await app.submit("nap", 0, countdown=60)
        cancelled = await client.post(f"{PREFIX}/api/results/{later}/cancel", headers=same_origin())
        assert cancelled.json() == {"task_id": later, "cancelled": True}
        record = (await client.get(f"{PREFIX}/api/results/{later}")).json()
        assert record["status"] == "cancelled"


async def test_schedule_create_toggle_and_delete(populated: Populated) -> None:
    run_at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    bodies = {
        "cron": {"task_name": "add", "cron": "*/5 * * * *", "args": [1, 2], "timezone": "UTC"},
        "interval": {"task_name": "login", "interval": 90, "kwargs": {"user": "x", "password": "y"},
                     "priority": 5, "description": "every 90 s"},
        "once": {"task_name": "nap", "run_at": run_at, "args": [0]},
    }
    async with fastapi_client(populated.app) as client:
        made = {}
        for kind, body in bodies.items():
            response = await client.post(
                f"{PREFIX}/api/schedules/{kind}", json=body, headers=same_origin()
            )
            assert response.status_code == 201, (kind, response.text)
            made[kind] = response.json()
        assert made["cron"]["schedule"] == "*/5 * * * *"
        assert made["interval"]["priority"] == 5
        assert made["once"]["schedule_type"] == "one_time"
        sid = made["cron"]["id"]
        off = await client.put(f"{PREFIX}/api/schedules/{sid}/disable", headers=same_origin())
        assert off.json()["enabled"] is False
        listed = (await client.get(PREFIX + "/api/schedules?enabled_only=1")).json()
        assert sid not in [s["id"] for s in listed["schedules"]]
        on = await client.put(f"{PREFIX}/api/schedules/{sid}/enable", headers=same_origin())
        assert on.json()["enabled"] is True
        page = (await client.get(PREFIX + "/schedules")).text
        assert "*/5 * * * *" in page
        assert "every 90 s" in page
        gone = await client.delete(f"{PREFIX}/api/schedules/{sid}", headers=same_origin())
        assert gone.json() == {"id": sid, "deleted": True}
        missing = await client.get(f"{PREFIX}/api/schedules/{sid}")
        assert missing.status_code == 404


async def bury_one(app: Flowrra) -> str:
    """Submit ``add`` on a client-only app and move it to the dead letters by hand."""
    task_id = await app.submit("add", 40, 2)
    broker: Any = app.broker
    async with asyncio.timeout(5):
        delivery = await broker.claim([lane_of("default", "io")])
    assert await broker.bury(delivery, "kept killing its worker")
    return task_id


async def test_dead_letters_list_requeue_and_delete(ui_app: Flowrra) -> None:
    await ui_app.start(worker=False)
    try:
        first, second = await bury_one(ui_app), await bury_one(ui_app)
        async with fastapi_client(ui_app) as client:
            page = (await client.get(PREFIX + "/dead-letters")).text
            assert first in page
            assert second in page
            assert "kept killing its worker" in page
            listed = (await client.get(PREFIX + "/api/dead-letters")).json()["dead_letters"]
            assert [x["task_id"] for x in listed] == [second, first]
            requeued = await client.post(
                f"{PREFIX}/api/dead-letters/{first}/requeue", headers=same_origin()
            )
            assert requeued.status_code == 200
            assert requeued.json()["requeued"] is True
            deleted = await client.delete(
                f"{PREFIX}/api/dead-letters/{second}", headers=same_origin()
            )
            assert deleted.json() == {"task_id": second, "deleted": True}
            again = await client.delete(
                f"{PREFIX}/api/dead-letters/{second}", headers=same_origin()
            )
            assert again.status_code == 404
            assert (await client.get(PREFIX + "/api/dead-letters")).json()["dead_letters"] == []
            assert "No dead letters." in (await client.get(PREFIX + "/dead-letters")).text
        assert (await ui_app.broker.size()) == 1  # the requeued one waits again
    finally:
        await shutdown(ui_app)


async def test_static_files_and_metrics(populated: Populated) -> None:
    async with fastapi_client(populated.app) as client:
        css = await client.get(PREFIX + "/static/flowrra.css")
        js = await client.get(PREFIX + "/static/flowrra.js")
        metrics = await client.get(PREFIX + "/metrics")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200
    assert "X-Flowrra-CSRF" in js.text
    assert metrics.status_code == 200, metrics.text  # the dev extra installs the metrics one
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "flowrra_workers" in metrics.text


async def test_plain_starlette_mount_follows_root_path(populated: Populated) -> None:
    web = Starlette(routes=[Mount("/flowrra", create_asgi_app(populated.app))])
    transport = httpx.ASGITransport(app=web, root_path="/behind-proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # as uvicorn --root-path does: the path keeps the proxy's prefix
        html = (await client.get("/behind-proxy/flowrra/tasks")).text
        stats = await client.get("/behind-proxy/flowrra/api/stats")
    assert 'href="/behind-proxy/flowrra/static/flowrra.css"' in html
    assert stats.json()["results"]["success"] == 4


async def test_sse_feed_streams_stats_then_task_updates(populated: Populated) -> None:
    web = FastAPI()
    web.include_router(create_router(populated.app), prefix=PREFIX)
    events = await read_sse(web, PREFIX + "/api/events", {}, populated.app, wanted=2)
    assert events[0]["type"] == "stats"
    assert events[0]["stats"]["results"]["success"] == 4
    assert any(e["type"] == "task.update" and e["task"]["task_name"] == "add" for e in events)


async def read_sse(
    asgi: Any, path: str, headers: dict[str, str], app: Flowrra, wanted: int
) -> list[dict[str, Any]]:
    """Open the SSE stream at ``path`` on ``asgi``, submit ``add`` once the stream
    started, and return the first ``wanted`` task updates plus what came before them."""
    started, done = asyncio.Event(), asyncio.Event()
    body = bytearray()
    status: list[int] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
        "headers": [(k.encode(), v.encode()) for k, v in {"host": "testserver", **headers}.items()],
    }
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            started.set()
            if body.count(b'"task.update"') >= wanted or not message.get("more_body"):
                done.set()

    server = asyncio.create_task(asgi(scope, receive, send))
    async with asyncio.timeout(10):
        await started.wait()
        if status == [200]:
            await app.submit("add", 5, 5)
        await done.wait()
        await server
    if status != [200]:
        return [{"status": status[0], "body": bytes(body).decode()}]
    lines = bytes(body).decode().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


@pytest.mark.parametrize("path", ["/api/stats", "/", "/tasks"])
async def test_redis_setup_serves_pages_and_api(path: str, tmp_path: Any) -> None:
    from flowrra.backends.redis import RedisBackend
    from flowrra.brokers.redis import RedisBroker
    from integration.redis_support import redis_url, scratch_backend, scratch_broker, unique_prefix

    prefix = unique_prefix("ui")
    app = Flowrra.from_urls(
        broker=RedisBroker(redis_url(), prefix=prefix),
        backend=RedisBackend(redis_url(), prefix=prefix),
    )

    @app.task(max_retries=0)
    async def double(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return 2 * n

    try:
        async with app:
            done = await app.submit("double", 21)
            bad = await app.submit("double", -1)
            await app.run_until_idle(timeout=10)
            async with fastapi_client(app) as client:
                response = await client.get(PREFIX + path)
                assert response.status_code == 200, response.text
                record = (await client.get(f"{PREFIX}/api/results/{done}")).json()
                failed = (await client.get(PREFIX + "/api/results?status=failed")).json()
                health = await client.get(PREFIX + "/api/health")
            assert record["result"] == 42
            assert [r["task_id"] for r in failed["results"]] == [bad]
            assert health.status_code == 200
            if path == "/api/stats":
                assert response.json()["results"]["success"] == 1
            else:
                assert done in response.text
    finally:
        await app.close()
        await scratch_broker(prefix=prefix).close()
        backend = scratch_backend(prefix=prefix)
        await backend.clear()
        await backend.close()


async def test_a_standalone_server_runs_the_tasks_of_a_memory_app(ui_app: Flowrra) -> None:
    # no other process can see a memory broker's queue: the dashboard's server runs it
    web = create_asgi_app(ui_app, start_app=True)
    transport = httpx.ASGITransport(app=web)
    async with web.router.lifespan_context(web):
        assert ui_app.is_running
        task_id = await ui_app.submit("add", 2, 3)
        assert (await ui_app.wait_for_result(task_id, timeout=5)).result == 5
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            stats = (await client.get("/api/stats")).json()
        assert [worker["alive"] for worker in stats["workers"]] == [True]
    assert not ui_app.is_running


async def test_a_task_id_with_slashes_gets_working_links_and_actions(
    populated: Populated,
) -> None:
    app = populated.app
    task_id = "invoices/2026/11 #7"
    await app.submit("boom", "monthly", task_id=task_id)
    await app.run_until_idle(timeout=5)
    quoted = "invoices%2F2026%2F11%20%237"
    async with fastapi_client(app) as client:
        listing = (await client.get(PREFIX + "/tasks?status=failed")).text
        page = await client.get(f"{PREFIX}/tasks/{quoted}")
        record = (await client.get(f"{PREFIX}/api/results/{quoted}")).json()
        retried = await client.post(
            f"{PREFIX}/api/results/{quoted}/retry", headers=same_origin()
        )
    assert f'href="{PREFIX}/tasks/{quoted}"' in listing
    assert page.status_code == 200
    assert f"{PREFIX}/api/results/{quoted}/retry" in page.text
    assert record["task_id"] == task_id
    assert retried.status_code == 201, retried.text
    assert retried.json()["original_task_id"] == task_id
