"""The HTML pages: overview, tasks, task detail, dead letters and schedules."""

from __future__ import annotations

from typing import Any

from flowrra.management import FlowrraManager
from flowrra.ui.api import records_page
from flowrra.ui.messages import HTTPError, UIRequest, UIResponse, html_response
from flowrra.ui.params import STATUSES, flag_of, identifier, limit_of
from flowrra.ui.records import Redactor, list_records
from flowrra.ui.render import Renderer
from flowrra.ui.routing import Params, Router

#: Rows in the overview's lists of recent tasks and recent failures.
RECENT = 10


class Pages:
    """Handlers of the HTML pages. Bad query parameters raise :class:`HTTPError` 400 and
    an unknown task 404, as in the JSON API."""

    def __init__(self, manager: FlowrraManager, redactor: Redactor, renderer: Renderer) -> None:
        self.manager = manager
        self.redactor = redactor
        self.renderer = renderer

    def register(self, router: Router) -> None:
        """Add every page route to ``router``."""
        router.add("GET", "/", self.overview)
        router.add("GET", "/tasks", self.tasks)
        router.add("GET", "/tasks/{task_id:path}", self.task)
        router.add("GET", "/dead-letters", self.dead_letters)
        router.add("GET", "/schedules", self.schedules)

    def _page(self, request: UIRequest, template: str, page: str, **values: Any) -> UIResponse:
        html = self.renderer.render(template, request.root_path, page=page, **values)
        return html_response(html)

    async def _recent(self, status: str | None) -> list[dict[str, Any]]:
        try:
            records = await list_records(self.manager, status, RECENT, 0, None)
        except NotImplementedError:
            return []
        return self.redactor.tasks(records)

    async def overview(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /``: queues, workers, throughput, recent tasks and recent failures."""
        return self._page(
            request,
            "overview.html",
            "overview",
            stats=await self.manager.get_stats(),
            recent=await self._recent(None),
            failures=await self._recent("failed"),
        )

    async def tasks(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /tasks?status=&limit=&offset=&name=``: one page of records."""
        page = await records_page(self.manager, request)
        registered = await self.manager.list_registered_tasks()
        return self._page(
            request,
            "tasks.html",
            "tasks",
            statuses=STATUSES,
            listing=page,
            records=self.redactor.tasks(page["results"]),
            names=[task["name"] for task in registered],
        )

    async def task(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /tasks/{task_id}``: one record in full; 404 when unknown."""
        task_id = identifier(params["task_id"], "task id")
        record = await self.manager.get_task_result(task_id)
        if record is None:
            raise HTTPError(404, f"no task with id '{task_id}'")
        return self._page(request, "task.html", "tasks", record=self.redactor.task(record))

    async def dead_letters(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /dead-letters?limit=``: tasks the broker gave up on."""
        letters = await self.manager.list_dead_letters(limit_of(request.query, 100))
        return self._page(
            request,
            "dead_letters.html",
            "dead-letters",
            letters=[self.redactor.dead_letter(letter) for letter in letters],
        )

    async def schedules(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /schedules?enabled_only=``: schedules and the forms that add them."""
        enabled_only = flag_of(request.query, "enabled_only")
        listed = await self.manager.list_schedules(enabled_only)
        registered = await self.manager.list_registered_tasks()
        return self._page(
            request,
            "schedules.html",
            "schedules",
            schedules=[self.redactor.schedule(s) for s in listed],
            scheduler=await self.manager.get_scheduler_stats(),
            names=[task["name"] for task in registered],
            enabled_only=enabled_only,
        )
