"""The JSON API: every ``/api/...`` route, answering plain JSON from ``FlowrraManager``."""

from __future__ import annotations

from typing import Any

from flowrra.exceptions import ExecutorNotRunningError
from flowrra.management import FlowrraManager
from flowrra.ui.messages import HTTPError, UIRequest, UIResponse, json_response
from flowrra.ui.params import (
    flag_of,
    identifier,
    json_body,
    limit_of,
    name_of,
    offset_of,
    status_of,
)
from flowrra.ui.records import Redactor, list_records
from flowrra.ui.routing import Params, Router
from flowrra.ui.schedule_bodies import schedule_arguments


async def records_page(
    manager: FlowrraManager, request: UIRequest, default_limit: int = 50
) -> dict[str, Any]:
    """The listing a ``status``/``limit``/``offset``/``name`` query asks for (raw records).

    Raises :class:`HTTPError` 400 for a bad parameter, 501 when the backend cannot list.
    """
    query = request.query
    status, limit, offset = status_of(query), limit_of(query, default_limit), offset_of(query)
    name = name_of(query)
    try:
        records = await list_records(manager, status, limit, offset, name)
    except NotImplementedError:
        raise HTTPError(501, "the result backend cannot list records by status") from None
    return {"status": status, "limit": limit, "offset": offset, "name": name, "results": records}


class JsonApi:
    """Handlers of the JSON routes; each returns a :class:`UIResponse` or raises
    :class:`HTTPError` (400 bad input, 404 unknown resource, 409 an action the resource's
    state forbids, 501 unsupported by the backend or broker, 503 app not running)."""

    def __init__(self, manager: FlowrraManager, redactor: Redactor) -> None:
        self.manager = manager
        self.redactor = redactor

    def register(self, router: Router) -> None:
        """Add every JSON route to ``router``."""
        routes = [
            ("GET", "/api/stats", self.stats),
            ("GET", "/api/health", self.health),
            ("GET", "/api/tasks", self.registered_tasks),
            ("GET", "/api/tasks/{name}", self.registered_task),
            ("GET", "/api/results", self.results),
            ("GET", "/api/results/{task_id:path}", self.result),
            ("POST", "/api/results/{task_id:path}/retry", self.retry),
            ("POST", "/api/results/{task_id:path}/cancel", self.cancel),
            ("GET", "/api/dead-letters", self.dead_letters),
            ("POST", "/api/dead-letters/{task_id:path}/requeue", self.requeue),
            ("DELETE", "/api/dead-letters/{task_id:path}", self.delete_dead_letter),
            ("GET", "/api/schedules", self.schedules),
            ("POST", "/api/schedules/cron", self.create_cron),
            ("POST", "/api/schedules/interval", self.create_interval),
            ("POST", "/api/schedules/once", self.create_once),
            ("GET", "/api/schedules/{schedule_id}", self.schedule),
            ("PUT", "/api/schedules/{schedule_id}/enable", self.enable),
            ("PUT", "/api/schedules/{schedule_id}/disable", self.disable),
            ("DELETE", "/api/schedules/{schedule_id}", self.delete_schedule),
        ]
        for method, template, handler in routes:
            router.add(method, template, handler)

    # -- overview ----------------------------------------------------------------------

    async def stats(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/stats``: ``FlowrraManager.get_stats()``."""
        return json_response(await self.manager.get_stats())

    async def health(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/health``: the health report; 200 when healthy, else 503."""
        report = await self.manager.health_check()
        return json_response(report, 200 if report.get("healthy") else 503)

    async def registered_tasks(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/tasks``: ``{"tasks": [...]}``, every registered task."""
        return json_response({"tasks": await self.manager.list_registered_tasks()})

    async def registered_task(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/tasks/{name}``: one registered task; 404 when none has that name."""
        name = identifier(params["name"], "task name")
        info = await self.manager.get_task_info(name)
        if info is None:
            raise HTTPError(404, f"no registered task '{name}'")
        return json_response(info)

    # -- records -----------------------------------------------------------------------

    async def results(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/results``: ``{"status", "limit", "offset", "name", "results"}``."""
        page = await records_page(self.manager, request)
        page["results"] = self.redactor.tasks(page["results"])
        return json_response(page)

    async def _record(self, params: Params) -> dict[str, Any]:
        task_id = identifier(params["task_id"], "task id")
        record = await self.manager.get_task_result(task_id)
        if record is None:
            raise HTTPError(404, f"no task with id '{task_id}'")
        return record

    async def result(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/results/{task_id}``: one record; 404 when unknown."""
        return json_response(self.redactor.task(await self._record(params)))

    async def retry(self, request: UIRequest, params: Params) -> UIResponse:
        """``POST .../retry``: submit a failed task again; 409 unless it failed."""
        record = await self._record(params)
        try:
            outcome = await self.manager.retry_task(record["task_id"])
        except ValueError as error:
            raise HTTPError(409, str(error)) from None
        except ExecutorNotRunningError:
            raise HTTPError(503, "the app is not running: it cannot submit") from None
        return json_response(outcome, 201)

    async def cancel(self, request: UIRequest, params: Params) -> UIResponse:
        """``POST .../cancel``: ``{"task_id", "cancelled"}``; False once finished."""
        record = await self._record(params)
        return json_response(await self.manager.cancel_task(record["task_id"]))

    # -- dead letters ------------------------------------------------------------------

    async def dead_letters(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/dead-letters?limit=``: ``{"dead_letters": [...]}``, newest first."""
        letters = await self.manager.list_dead_letters(limit_of(request.query, 100))
        return json_response({"dead_letters": [self.redactor.dead_letter(x) for x in letters]})

    def _manager_action(self, name: str) -> Any:
        action = getattr(self.manager, name, None)
        if action is None:
            raise HTTPError(501, f"this version of FlowrraManager has no {name}()")
        return action

    async def requeue(self, request: UIRequest, params: Params) -> UIResponse:
        """``POST /api/dead-letters/{task_id}/requeue``; 404 when no such dead letter."""
        task_id = identifier(params["task_id"], "task id")
        action = self._manager_action("requeue_dead_letter")
        try:
            outcome = await action(task_id)
        except ValueError as error:
            raise HTTPError(404, str(error)) from None
        return json_response(outcome)

    async def delete_dead_letter(self, request: UIRequest, params: Params) -> UIResponse:
        """``DELETE /api/dead-letters/{task_id}``; 404 when no such dead letter."""
        task_id = identifier(params["task_id"], "task id")
        action = self._manager_action("delete_dead_letter")
        if not await action(task_id):
            raise HTTPError(404, f"no dead letter with id '{task_id}'")
        return json_response({"task_id": task_id, "deleted": True})

    # -- schedules ---------------------------------------------------------------------

    async def schedules(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/schedules?enabled_only=``: ``{"schedules": [...]}``."""
        listed = await self.manager.list_schedules(flag_of(request.query, "enabled_only"))
        return json_response({"schedules": [self.redactor.schedule(s) for s in listed]})

    async def schedule(self, request: UIRequest, params: Params) -> UIResponse:
        """``GET /api/schedules/{id}``; 404 when unknown."""
        schedule_id = identifier(params["schedule_id"], "schedule id")
        schedule = await self.manager.get_schedule(schedule_id)
        if schedule is None:
            raise HTTPError(404, f"no schedule with id '{schedule_id}'")
        return json_response(self.redactor.schedule(schedule))

    async def _create(self, kind: str, request: UIRequest) -> UIResponse:
        body = json_body(request.body)
        name, timing, options = schedule_arguments(kind, body, self.manager.app.registry)
        create = getattr(self.manager, f"create_schedule_{kind}")
        try:
            schedule = await create(name, timing, **options)
        except ValueError as error:
            raise HTTPError(400, str(error)) from None
        return json_response(self.redactor.schedule(schedule), 201)

    async def create_cron(self, request: UIRequest, params: Params) -> UIResponse:
        """``POST /api/schedules/cron``: 201 with the schedule."""
        return await self._create("cron", request)

    async def create_interval(self, request: UIRequest, params: Params) -> UIResponse:
        """``POST /api/schedules/interval``: 201 with the schedule."""
        return await self._create("interval", request)

    async def create_once(self, request: UIRequest, params: Params) -> UIResponse:
        """``POST /api/schedules/once``: 201 with the schedule."""
        return await self._create("once", request)

    async def _toggle(self, params: Params, enabled: bool) -> UIResponse:
        schedule_id = identifier(params["schedule_id"], "schedule id")
        change = self.manager.enable_schedule if enabled else self.manager.disable_schedule
        schedule = await change(schedule_id)
        if schedule is None:
            raise HTTPError(404, f"no schedule with id '{schedule_id}'")
        return json_response(self.redactor.schedule(schedule))

    async def enable(self, request: UIRequest, params: Params) -> UIResponse:
        """``PUT /api/schedules/{id}/enable``; 404 when unknown."""
        return await self._toggle(params, True)

    async def disable(self, request: UIRequest, params: Params) -> UIResponse:
        """``PUT /api/schedules/{id}/disable``; 404 when unknown."""
        return await self._toggle(params, False)

    async def delete_schedule(self, request: UIRequest, params: Params) -> UIResponse:
        """``DELETE /api/schedules/{id}``; 404 when unknown."""
        schedule_id = identifier(params["schedule_id"], "schedule id")
        if not await self.manager.delete_schedule(schedule_id):
            raise HTTPError(404, f"no schedule with id '{schedule_id}'")
        return json_response({"id": schedule_id, "deleted": True})
