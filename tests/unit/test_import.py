"""``import flowrra`` needs none of the optional packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

OPTIONAL = [
    "redis",
    "hiredis",
    "asyncpg",
    "aiomysql",
    "aiosqlite",
    "croniter",
    "fastapi",
    "starlette",
    "flask",
    "django",
    "uvicorn",
]

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {OPTIONAL!r}:
                raise ImportError(f"{{name}} is blocked for this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_flowrra_without_optional_packages() -> None:
    outcome = run_isolated(
        """
        import asyncio, sys
        import flowrra
        from flowrra import (
            Flowrra, IOExecutor, CPUExecutor, TaskRegistry, Config, BrokerConfig,
            BackendConfig, ExecutorConfig, SchedulerConfig, Task, TaskResult, TaskStatus,
            FlowrraError, TaskNotFoundError, TaskTimeoutError, ExecutorNotRunningError,
            BackendError, __version__,
        )
        from flowrra.app import Flowrra
        from flowrra.task import Task, TaskResult, TaskStatus
        from flowrra.registry import TaskRegistry
        from flowrra.events import EventBus, event_bus
        from flowrra.executors import BaseTaskExecutor, IOExecutor, CPUExecutor
        from flowrra.backends import BaseResultBackend, InMemoryBackend, get_backend
        from flowrra.brokers import BaseBroker, get_broker

        app = Flowrra()

        @app.task
        async def hello(name: str) -> str:
            return "hello " + name

        async def main() -> None:
            async with app:
                result = await app.wait_for_result(await app.submit(hello, "you"), timeout=5)
                assert result.result == "hello you", result

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked})
        assert not loaded, loaded
        print("ok", __version__)
        """.replace("{blocked}", repr(OPTIONAL))
    )
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.startswith("ok ")


def test_redis_parts_name_the_extra_when_redis_is_missing() -> None:
    outcome = run_isolated(
        """
        from flowrra import Flowrra
        try:
            Flowrra.from_urls(broker="redis://localhost:6379/0")
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    assert outcome.returncode == 0, outcome.stderr
    assert "pip install 'flowrra[redis]'" in outcome.stdout
