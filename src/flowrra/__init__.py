"""flowrra: an asyncio-first task queue.

In-process by default, distributed on Redis, with retries, priorities, IO/CPU/custom
executors and a persistent scheduler. ``import flowrra`` needs no optional package.
"""

from flowrra._version import __version__
from flowrra.app import Flowrra
from flowrra.config import BackendConfig, BrokerConfig, Config, ExecutorConfig, SchedulerConfig
from flowrra.exceptions import (
    BackendError,
    ExecutorNotRunningError,
    FlowrraError,
    SerializationError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskTimeoutError,
    WorkerLostError,
)
from flowrra.executors import BaseTaskExecutor, CPUExecutor, IOExecutor
from flowrra.registry import TaskFunction, TaskRegistry
from flowrra.retry import RetryPolicy
from flowrra.task import Task, TaskResult, TaskStatus

__all__ = [
    "BackendConfig",
    "BackendError",
    "BaseTaskExecutor",
    "BrokerConfig",
    "CPUExecutor",
    "Config",
    "ExecutorConfig",
    "ExecutorNotRunningError",
    "Flowrra",
    "FlowrraError",
    "IOExecutor",
    "RetryPolicy",
    "SchedulerConfig",
    "SerializationError",
    "Task",
    "TaskCancelledError",
    "TaskFunction",
    "TaskNotFoundError",
    "TaskRegistry",
    "TaskResult",
    "TaskStatus",
    "TaskTimeoutError",
    "WorkerLostError",
    "__version__",
]
