"""Task registration: the decorator forms, validation and the registry's API."""

from __future__ import annotations

import pytest

from flowrra import Flowrra, TaskNotFoundError, TaskRegistry
from flowrra.registry import PRIORITY_MAX, PRIORITY_MIN, TaskFunction


def module_level_cpu(x: int) -> int:
    return x * 2


async def test_decorated_async_task_stays_callable() -> None:
    registry = TaskRegistry()

    @registry.task(name="double", max_retries=5, retry_delay=2.0, priority=3, timeout=9.0)
    async def double(x: int) -> int:
        return x * 2

    assert isinstance(double, TaskFunction)
    assert await double(21) == 42
    assert (double.task_name, double.cpu_bound, double.max_retries) == ("double", False, 5)
    assert (double.retry_delay, double.priority, double.timeout) == (2.0, 3, 9.0)
    assert registry.get("double") is double


def test_bare_decorator_uses_the_function_name() -> None:
    registry = TaskRegistry()

    @registry.task
    async def fetch() -> None:
        return None

    assert registry.list_tasks() == ["fetch"]
    assert "fetch" in registry
    assert registry.is_registered("fetch")
    assert len(registry) == 1


def test_cpu_bound_task_must_be_a_plain_module_level_function() -> None:
    registry = TaskRegistry()
    task = registry.task(cpu_bound=True)(module_level_cpu)
    assert task.cpu_bound
    assert task(4) == 8

    async def coroutine_function() -> None:
        return None

    def nested(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="async function"):
        registry.task(cpu_bound=True)(coroutine_function)
    with pytest.raises(TypeError, match="module level"):
        registry.task(cpu_bound=True)(nested)
    with pytest.raises(TypeError, match="module level"):
        registry.task(name="lam", cpu_bound=True)(lambda x: x)


def test_sync_function_without_cpu_bound_is_rejected() -> None:
    with pytest.raises(TypeError, match="async def"):
        TaskRegistry().task(module_level_cpu)


def test_duplicate_names_are_rejected() -> None:
    registry = TaskRegistry()

    @registry.task(name="same")
    async def first() -> None:
        return None

    async def second() -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        registry.task(name="same")(second)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": PRIORITY_MAX + 1}, "priority"),
        ({"priority": PRIORITY_MIN - 1}, "priority"),
        ({"max_retries": -1}, "max_retries"),
        ({"retry_delay": -0.5}, "retry_delay"),
        ({"timeout": 0}, "timeout"),
        ({"retry_backoff_max": -1.0}, "retry_backoff_max"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, float], message: str) -> None:
    async def job() -> None:
        return None

    with pytest.raises(ValueError, match=message):
        TaskRegistry().task(**options)(job)  # type: ignore[call-overload]


def test_retry_filters_must_be_exception_types() -> None:
    async def job() -> None:
        return None

    with pytest.raises(TypeError, match="exception types"):
        TaskRegistry().task(retry_on=("ValueError",))(job)  # type: ignore[arg-type]


def test_get_or_raise_and_unregister() -> None:
    registry = TaskRegistry()

    @registry.task
    async def job() -> None:
        return None

    assert registry.get_or_raise("job") is job
    assert registry.unregister("job")
    assert not registry.unregister("job")
    assert registry.get("job") is None
    with pytest.raises(TaskNotFoundError, match="Task 'job' not registered"):
        registry.get_or_raise("job")


async def test_task_not_bound_to_an_app_cannot_be_submitted() -> None:
    registry = TaskRegistry()

    @registry.task
    async def job() -> None:
        return None

    with pytest.raises(Exception, match="not registered on a Flowrra app"):
        await job.submit()


def test_app_task_defaults_come_from_executor_config() -> None:
    from flowrra import Config, ExecutorConfig

    app = Flowrra(Config(executor=ExecutorConfig(max_retries=7, retry_delay=0.25)))

    @app.task
    async def job() -> None:
        return None

    @app.task(max_retries=1)
    async def other() -> None:
        return None

    assert (job.max_retries, job.retry_delay) == (7, 0.25)
    assert (other.max_retries, other.retry_delay) == (1, 0.25)
    assert app.registry.get("job") is job
