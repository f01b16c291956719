"""``list_by_task_name``: records of one task name, paged after filtering, on every backend."""

from __future__ import annotations

from flowrra.backends.base import LISTING_CHUNK, BaseResultBackend
from flowrra.task import TaskResult, TaskStatus


async def store(backend: BaseResultBackend, task_id: str, name: str, **fields: object) -> None:
    status = fields.pop("status", TaskStatus.SUCCESS)
    record = TaskResult(task_id, status, name, **fields)  # type: ignore[arg-type]
    await backend.store(task_id, record)


async def test_pages_one_name_across_chunks_most_recent_first(
    backend: BaseResultBackend,
) -> None:
    total = LISTING_CHUNK + 400
    for index in range(total):
        name = "rare" if index % 100 == 0 else "common"
        await store(backend, f"t{index:04d}", name, args=(index,))
    rare = [f"t{index:04d}" for index in range(total - 1, -1, -1) if index % 100 == 0]
    listed = await backend.list_by_task_name(TaskStatus.SUCCESS, "rare")
    assert [r.task_id for r in listed] == rare
    page = await backend.list_by_task_name(TaskStatus.SUCCESS, "rare", limit=3, offset=2)
    assert [r.task_id for r in page] == rare[2:5]
    assert await backend.list_by_task_name(TaskStatus.SUCCESS, "rare", 5, len(rare)) == []
    assert await backend.list_by_task_name(TaskStatus.SUCCESS, "rare", 0) == []


async def test_keeps_only_the_exact_name_in_the_status(backend: BaseResultBackend) -> None:
    await store(backend, "mention", "other", args=("report",), kwargs={"report": "report"})
    await store(backend, "prefix", "report_daily")
    await store(backend, "failed", "report", status=TaskStatus.FAILED, error="E: x")
    await store(backend, "wanted", "report", result="report")
    listed = await backend.list_by_task_name(TaskStatus.SUCCESS, "report")
    assert [r.task_id for r in listed] == ["wanted"]
    assert listed[0].result == "report"
    failed = await backend.list_by_task_name(TaskStatus.FAILED, "report")
    assert [r.task_id for r in failed] == ["failed"]


async def test_finds_names_a_json_encoder_escapes(backend: BaseResultBackend) -> None:
    names = ["mail/send", 'say "hi"', "café", "tab\there", "back\\slash"]
    for index, name in enumerate(names):
        await store(backend, f"n{index}", name)
    for index, name in enumerate(names):
        listed = await backend.list_by_task_name(TaskStatus.SUCCESS, name)
        assert [r.task_id for r in listed] == [f"n{index}"], name
