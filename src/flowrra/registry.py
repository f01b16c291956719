"""Task registration: the ``@task`` decorator, :class:`TaskFunction` and :class:`TaskRegistry`.

A registered task keeps working as the plain function it decorates (``await fetch(url)``
runs it in place) and can also be handed to the queue, by object or by registered name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)

from flowrra.exceptions import ExecutorNotRunningError, TaskNotFoundError
from flowrra.retry import RetryPolicy

if TYPE_CHECKING:
    from flowrra.app import Flowrra

P = ParamSpec("P")
R = TypeVar("R")
P2 = ParamSpec("P2")
R2 = TypeVar("R2")

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
BUILTIN_EXECUTORS = frozenset({"io", "cpu"})


def check_priority(priority: int) -> int:
    """Return ``priority`` or raise ``ValueError`` when it is out of range."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an int, got {type(priority).__name__}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {priority}"
        )
    return priority


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Everything ``@task(...)`` was told about one task."""

    name: str
    cpu_bound: bool
    max_retries: int
    retry_delay: float
    priority: int
    timeout: float | None
    executor: str
    queue: str
    retry_policy: RetryPolicy

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("task name must not be empty")
        if isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if self.retry_delay < 0:
            raise ValueError(f"retry_delay must be >= 0, got {self.retry_delay!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if not self.queue:
            raise ValueError("queue must not be empty")
        check_priority(self.priority)


def _check_function(fn: Callable[..., Any], cpu_bound: bool, executor: str) -> None:
    is_async = inspect.iscoroutinefunction(fn)
    if cpu_bound and is_async:
        raise TypeError(
            f"'{fn.__qualname__}' is an async function: cpu_bound=True takes a plain 'def' "
            "(it runs in a child process); drop cpu_bound for async functions"
        )
    if executor == "io" and not is_async:
        raise TypeError(
            f"'{fn.__qualname__}' is a plain function: IO tasks must be 'async def'; "
            "pass cpu_bound=True to run it in a process pool"
        )
    if cpu_bound:
        qualname = getattr(fn, "__qualname__", "")
        if "<locals>" in qualname or "<lambda>" in qualname or not fn.__module__:
            raise TypeError(
                f"cpu_bound task '{qualname}' must be a function defined at module level "
                "(nested functions and lambdas cannot be sent to a child process)"
            )


class TaskFunction(Generic[P, R]):
    """A registered task: callable like the function it wraps, and submittable.

    ``await task.submit(*args, **kwargs)`` queues a call checked against the function's
    signature; ``task.options(priority=..., countdown=...)`` sets per-call options.
    """

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        self.fn = fn
        self.options_ = options
        self.app: Flowrra | None = None
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", options.name)
        self.__qualname__ = getattr(fn, "__qualname__", options.name)
        self.__module__ = fn.__module__
        self.__doc__ = fn.__doc__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskFunction {self.task_name!r} executor={self.options_.executor!r}>"

    @property
    def task_name(self) -> str:
        """The registered name."""
        return self.options_.name

    @property
    def cpu_bound(self) -> bool:
        """True when the task runs in a process pool."""
        return self.options_.cpu_bound

    @property
    def max_retries(self) -> int:
        """Retries allowed after the first attempt."""
        return self.options_.max_retries

    @property
    def retry_delay(self) -> float:
        """Base delay of the exponential back-off, in seconds."""
        return self.options_.retry_delay

    @property
    def priority(self) -> int:
        """Default priority (higher runs first)."""
        return self.options_.priority

    @property
    def timeout(self) -> float | None:
        """Per-run time limit in seconds, or ``None``."""
        return self.options_.timeout

    def _bound_app(self) -> Flowrra:
        if self.app is None:
            raise ExecutorNotRunningError(
                f"task '{self.task_name}' is not registered on a Flowrra app; "
                "use 'app.task' to register it, or 'app.submit(...)'"
            )
        return self.app

    async def submit(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Queue a call with the task's default options; returns the task id."""
        return await self._bound_app().submit_call(self, args, kwargs)

    def options(
        self,
        *,
        priority: int | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
    ) -> SubmitOptions[P, R]:
        """Per-call options: ``await task.options(priority=9).submit(x)``."""
        return SubmitOptions(self, priority, countdown, eta, task_id)


class SubmitOptions(Generic[P, R]):
    """A task with per-call options, from :meth:`TaskFunction.options`."""

    def __init__(
        self,
        task: TaskFunction[P, R],
        priority: int | None,
        countdown: float | None,
        eta: datetime | None,
        task_id: str | None,
    ) -> None:
        self._task = task
        self._priority = priority
        self._countdown = countdown
        self._eta = eta
        self._task_id = task_id

    async def submit(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Queue a call with these options; returns the task id."""
        return await self._task._bound_app().submit_call(
            self._task,
            args,
            kwargs,
            priority=self._priority,
            countdown=self._countdown,
            eta=self._eta,
            task_id=self._task_id,
        )


class TaskDecoratorOptions(TypedDict, total=False):
    """The options of ``@task(...)``; :meth:`TaskRegistry.task` documents each."""

    name: str | None
    cpu_bound: bool
    max_retries: int
    retry_delay: float
    priority: int
    timeout: float | None
    executor: str | None
    queue: str
    retry_on: tuple[type[BaseException], ...] | None
    dont_retry_on: tuple[type[BaseException], ...]
    retry_backoff_max: float | None
    retry_jitter: bool


class TaskDecorator(Protocol):
    """What ``@task(...)`` returns: turns a function into a :class:`TaskFunction`."""

    def __call__(self, fn: Callable[P2, R2], /) -> TaskFunction[P2, R2]: ...


class TaskRegistry:
    """The tasks one app knows, by name.

    ``get(name)`` returns the task registered under ``name``, or ``None`` (it is the
    registry dict's own ``get``, since workers call it for every task they run).
    """

    def __init__(self) -> None:
        self._tasks: dict[str, TaskFunction[..., Any]] = {}
        self.get: Callable[[str], TaskFunction[..., Any] | None] = self._tasks.get

    @overload
    def task(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def task(self, **options: Unpack[TaskDecoratorOptions]) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        cpu_bound: bool = False,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        priority: int = 0,
        timeout: float | None = None,
        executor: str | None = None,
        queue: str = "default",
        retry_on: tuple[type[BaseException], ...] | None = None,
        dont_retry_on: tuple[type[BaseException], ...] = (),
        retry_backoff_max: float | None = None,
        retry_jitter: bool = False,
    ) -> TaskFunction[P, R] | TaskDecorator:
        """Register a function as a task (usable bare, ``@task``, or ``@task(...)``).

        Raises ``TypeError`` for a function the chosen executor cannot run and
        ``ValueError`` for a duplicate name or an invalid option.
        """

        def register(func: Callable[P2, R2]) -> TaskFunction[P2, R2]:
            if executor is not None and cpu_bound and executor != "cpu":
                raise ValueError("cpu_bound=True runs on the 'cpu' executor; drop one option")
            executor_name = executor or ("cpu" if cpu_bound else "io")
            _check_function(func, cpu_bound or executor_name == "cpu", executor_name)
            options = TaskOptions(
                name=name or func.__name__,
                cpu_bound=cpu_bound or executor_name == "cpu",
                max_retries=max_retries,
                retry_delay=retry_delay,
                priority=priority,
                timeout=timeout,
                executor=executor_name,
                queue=queue,
                retry_policy=RetryPolicy(
                    retry_on=retry_on,
                    dont_retry_on=dont_retry_on,
                    backoff_max=retry_backoff_max,
                    jitter=retry_jitter,
                ),
            )
            return self.add(TaskFunction(func, options))

        if fn is not None:
            return register(fn)
        return register

    def add(self, task: TaskFunction[P, R]) -> TaskFunction[P, R]:
        """Register an already built task; ``ValueError`` if the name is taken."""
        if task.task_name in self._tasks:
            raise ValueError(f"Task '{task.task_name}' is already registered")
        self._tasks[task.task_name] = task
        return task

    def get_or_raise(self, name: str) -> TaskFunction[..., Any]:
        """The task registered under ``name``; :class:`TaskNotFoundError` if absent."""
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFoundError(name) from None

    def list_tasks(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._tasks)

    def is_registered(self, name: str) -> bool:
        """True when ``name`` is registered."""
        return name in self._tasks

    def unregister(self, name: str) -> bool:
        """Remove ``name``; True if it was registered."""
        return self._tasks.pop(name, None) is not None

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)


def resolve_task_function(module: str, qualname: str) -> Callable[..., Any]:
    """Import ``module`` and return the plain function at ``qualname``.

    Used in child processes to find a CPU task's code: a registered task is unwrapped
    to the function it decorates.
    """
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if isinstance(target, TaskFunction):
        return target.fn
    if not callable(target):
        raise TypeError(f"{module}.{qualname} is not callable")
    return target  # type: ignore[no-any-return]
