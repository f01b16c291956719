"""The dashboard in a real browser: headless Chromium against the standalone server,
backed by real Redis and a real worker process.

Each test saves screenshots of the pages it visits (see ``conftest.SCREENSHOTS_ENV``).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from browser.conftest import Deployment
from flowrra.ids import new_task_id
from flowrra.task import Task, TaskStatus, utcnow

pytestmark = [pytest.mark.service, pytest.mark.slow]

LIVE = 15_000  # ms a live update may take to show on a loaded 2-core machine


async def stats_when(
    deployment: Deployment, condition: Any, timeout: float = 15.0
) -> dict[str, Any]:
    """``/api/stats`` once ``condition(stats)`` holds (the workers' heartbeats flushed)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            stats: dict[str, Any] = (await client.get(f"{deployment.base_url}/api/stats")).json()
            if condition(stats) or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.25)


async def test_overview_shows_a_task_moving_to_success_without_a_reload(
    deployment: Deployment, page: Page, screenshots: Path
) -> None:
    for recipient in ("ada@example.com", "grace@example.com"):
        await deployment.producer.wait_for_result(
            await deployment.producer.submit("send_report", recipient), timeout=15
        )
    await page.goto(f"{deployment.base_url}/")
    await expect(page.locator(".live")).to_contain_text("live", timeout=LIVE)
    await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    task_id = await deployment.producer.submit("send_report", "linus@example.com", 2.0)
    status = page.locator(f'tr[data-task-id="{task_id}"] [data-field="status"]').first
    await expect(status).to_have_text("running", timeout=LIVE)
    await expect(status).to_have_text("success", timeout=LIVE)
    assert await page.evaluate("window.loadedOnce === true"), "the page was reloaded"
    await expect(page.locator('[data-count="results.success"]')).to_have_text("3")

    shown = await page.locator(f'tr[data-task-id="{task_id}"] time').first.inner_text()
    assert "+00:00" not in shown, f"times must be shown in the viewer's zone, got {shown!r}"

    stats = await stats_when(
        deployment, lambda s: [w["processed"] for w in s["workers"]] == [3] and s["throughput"]
    )
    assert [(w["processed"], w["alive"]) for w in stats["workers"]] == [(3, True)]
    assert sum(minute["succeeded"] for minute in stats["throughput"]) == 3
    await page.reload()
    await expect(page.locator("text=No tasks finished in the last 15 minutes")).to_have_count(0)
    await page.screenshot(path=str(screenshots / "overview.png"), full_page=True)
    await page.goto(f"{deployment.base_url}/tasks")
    await expect(page.locator("tr[data-task-id]")).to_have_count(3)
    await page.screenshot(path=str(screenshots / "tasks.png"), full_page=True)


async def test_a_failed_task_is_retried_from_its_detail_page(
    deployment: Deployment, page: Page, screenshots: Path
) -> None:
    failed_id = await deployment.producer.submit("charge_card", 42)
    failed = await deployment.producer.wait_for_result(failed_id, timeout=15)
    assert failed.status == TaskStatus.FAILED

    await page.goto(f"{deployment.base_url}/tasks/{failed_id}")
    await expect(page.locator("pre.error")).to_contain_text("card declined for order 42")
    await page.screenshot(path=str(screenshots / "task-failed.png"), full_page=True)
    await page.get_by_role("button", name="Retry").click()

    await page.wait_for_url(re.compile(r"/tasks/(?!" + re.escape(failed_id) + r")[^/]+$"))
    retried_id = page.url.rsplit("/", 1)[1]
    retried = await deployment.producer.wait_for_result(retried_id, timeout=15)
    assert retried.status == TaskStatus.SUCCESS
    assert retried.result == "order 42 charged"
    assert list(retried.args) == [42]
    await page.reload()
    await expect(page.locator(".detail .actions [data-field='status']")).to_have_text("success")
    await page.screenshot(path=str(screenshots / "task-retried.png"), full_page=True)


async def test_a_schedule_created_from_the_form_appears_in_the_list(
    deployment: Deployment, page: Page, screenshots: Path
) -> None:
    await page.goto(f"{deployment.base_url}/schedules")
    await expect(page.locator(".empty", has_text="No schedules")).to_be_visible()
    form = page.locator('form.schedule-form[data-create$="/cron"]')
    await form.locator('select[name="task_name"]').select_option("send_report")
    await form.locator('input[name="cron"]').fill("30 6 * * 1-5")
    await form.locator('input[name="timezone"]').fill("Europe/Paris")
    await form.locator('input[name="args"]').fill('["team@example.com"]')
    await form.locator('input[name="description"]').fill("weekday morning report")
    await form.get_by_role("button", name="Add").click()

    row = page.locator("tr[data-schedule-id]", has_text="weekday morning report")
    await expect(row).to_be_visible(timeout=LIVE)
    await expect(row).to_contain_text("30 6 * * 1-5")
    await page.screenshot(path=str(screenshots / "schedules.png"), full_page=True)
    async with httpx.AsyncClient() as client:
        listed = (await client.get(f"{deployment.base_url}/api/schedules")).json()
    schedules = listed["schedules"] if isinstance(listed, dict) else listed
    assert [s["task_name"] for s in schedules] == ["send_report"]
    assert schedules[0]["args"] == ["team@example.com"]
    assert schedules[0]["next_run_at"] is not None


async def test_a_dead_letter_is_listed_with_its_reason_and_deleted(
    deployment: Deployment, page: Page, screenshots: Path
) -> None:
    # a message naming a task no worker knows: the worker dead-letters it with the reason
    stray = Task(new_task_id(), "resize_image", ("cat.png",), {"width": 640})
    stray.submitted_at = utcnow()
    assert await deployment.producer.broker.enqueue(stray)  # type: ignore[attr-defined]
    stats = await stats_when(deployment, lambda s: s["queues"]["dead"] == 1)
    assert stats["queues"]["dead"] == 1

    await page.goto(f"{deployment.base_url}/dead-letters")
    row = page.locator(f'tr[data-letter-id="{stray.id}"]')
    await expect(row).to_contain_text("resize_image")
    await expect(row).to_contain_text("cat.png")
    await page.screenshot(path=str(screenshots / "dead-letters.png"), full_page=True)
    await row.get_by_role("button", name="Delete").click()
    await expect(row).to_have_count(0, timeout=LIVE)
    stats = await stats_when(deployment, lambda s: s["queues"]["dead"] == 0)
    assert stats["queues"]["dead"] == 0
