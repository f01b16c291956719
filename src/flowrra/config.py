"""Configuration: one dataclass per part, validated on construction.

Invalid values raise :class:`~flowrra.exceptions.ConfigurationError` (a ``ValueError``)
naming the field. :meth:`Config.from_env` builds a config from ``FLOWRRA_*`` variables.
Connection URLs keep their password out of ``repr()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from flowrra.exceptions import ConfigurationError

if TYPE_CHECKING:
    from flowrra.backends.base import BaseResultBackend
    from flowrra.brokers.base import BaseBroker

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and reprs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(redact_url(value))
    return repr(value)


def _positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")


class _SafeRepr:
    """A ``repr`` that shows every dataclass field with URLs redacted."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={_describe(getattr(self, f.name))}"
            for f in fields(self)  # type: ignore[arg-type]
        )
        return f"{type(self).__name__}({shown})"


@dataclass(repr=False)
class BrokerConfig(_SafeRepr):
    """Where tasks are queued. ``url`` is ``memory://`` or a Redis URL, or a broker object."""

    url: str | BaseBroker = "memory://"
    max_connections: int = 50
    socket_timeout: float = 5.0
    retry_on_timeout: bool = True
    queue_key: str | None = None

    def __post_init__(self) -> None:
        _positive("BrokerConfig.max_connections", self.max_connections)
        _positive("BrokerConfig.socket_timeout", self.socket_timeout)
        if isinstance(self.url, str) and not self.url:
            raise ConfigurationError("BrokerConfig.url must not be empty")


@dataclass(repr=False)
class BackendConfig(_SafeRepr):
    """Where results are stored. ``url`` is ``memory://``, a Redis URL, or a backend object.

    ``ttl``: seconds a finished result is kept (``None``: no time limit).
    ``max_results``: the most finished results the in-memory backend keeps; the oldest
    are dropped first (``None``: no count limit). Records of tasks not yet finished never
    expire under either limit.
    """

    url: str | BaseResultBackend = "memory://"
    ttl: float | None = None
    max_connections: int = 50
    socket_timeout: float = 5.0
    retry_on_timeout: bool = True
    max_results: int | None = 100_000

    def __post_init__(self) -> None:
        _positive("BackendConfig.ttl", self.ttl, allow_none=True)
        _positive("BackendConfig.max_connections", self.max_connections)
        _positive("BackendConfig.socket_timeout", self.socket_timeout)
        _positive("BackendConfig.max_results", self.max_results, allow_none=True)
        if isinstance(self.url, str) and not self.url:
            raise ConfigurationError("BackendConfig.url must not be empty")


@dataclass(repr=False)
class ExecutorConfig(_SafeRepr):
    """How tasks run in this process.

    ``io_workers``: async tasks run at once. ``cpu_workers``: child processes for
    ``cpu_bound`` tasks. ``max_queue_size``: tasks waiting in the in-memory queue before
    ``submit`` waits for room (back-pressure). ``max_retries`` / ``retry_delay``: defaults
    for tasks that don't set their own. ``max_deliveries``: how many times a task whose
    worker process dies is delivered before it is dead-lettered. ``heartbeat_interval``:
    seconds between two publications of the worker's presence and counts (a worker is
    shown alive while its last heartbeat is at most three intervals old).
    """

    io_workers: int = 4
    cpu_workers: int | None = field(default_factory=os.cpu_count)
    max_queue_size: int = 1000
    max_retries: int = 3
    retry_delay: float = 1.0
    max_deliveries: int = 3
    heartbeat_interval: float = 5.0

    def __post_init__(self) -> None:
        _positive("ExecutorConfig.heartbeat_interval", self.heartbeat_interval)
        if self.cpu_workers is None:
            self.cpu_workers = os.cpu_count() or 1
        for name in ("io_workers", "cpu_workers", "max_queue_size", "max_deliveries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"ExecutorConfig.{name} must be an int >= 1, got {value!r}"
                )
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigurationError(
                f"ExecutorConfig.max_retries must be an int, got {self.max_retries!r}"
            )
        _non_negative("ExecutorConfig.max_retries", self.max_retries)
        _non_negative("ExecutorConfig.retry_delay", self.retry_delay)


@dataclass(repr=False)
class SchedulerConfig(_SafeRepr):
    """The persistent scheduler: its store URL (``None``: SQLite file) and loop interval."""

    database_url: str | None = None
    check_interval: float = 60.0
    enabled: bool = False

    def __post_init__(self) -> None:
        _positive("SchedulerConfig.check_interval", self.check_interval)


@dataclass(repr=False)
class Config(_SafeRepr):
    """The whole configuration of an app. ``None`` parts use in-process defaults."""

    broker: BrokerConfig | None = None
    backend: BackendConfig | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    scheduler: SchedulerConfig | None = None

    @classmethod
    def from_env(cls, prefix: str = "FLOWRRA_", environ: Mapping[str, str] | None = None) -> Config:
        """Build a config from ``{prefix}BROKER_URL``, ``{prefix}EXECUTOR_IO_WORKERS``, ...

        Any subset may be set; parts with no variable set keep their defaults (``None``
        for broker, backend and scheduler). Booleans accept true/1/yes/on and
        false/0/no/off. A malformed value raises ``ConfigurationError`` naming the variable.
        """
        env = os.environ if environ is None else environ
        return cls(
            broker=_section(env, prefix + "BROKER_", BrokerConfig),
            backend=_section(env, prefix + "BACKEND_", BackendConfig),
            executor=_section(env, prefix + "EXECUTOR_", ExecutorConfig) or ExecutorConfig(),
            scheduler=_section(env, prefix + "SCHEDULER_", SchedulerConfig),
        )


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_optional_float(text: str) -> float | None:
    return None if text.strip().lower() in {"", "none"} else float(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "url": str,
    "database_url": str,
    "queue_key": str,
    "max_connections": int,
    "io_workers": int,
    "cpu_workers": int,
    "max_queue_size": int,
    "max_retries": int,
    "max_deliveries": int,
    "max_results": int,
    "socket_timeout": float,
    "retry_delay": float,
    "check_interval": float,
    "heartbeat_interval": float,
    "ttl": _parse_optional_float,
    "retry_on_timeout": _parse_bool,
    "enabled": _parse_bool,
}


def _section(env: Mapping[str, str], prefix: str, kind: Callable[..., T]) -> T | None:
    values: dict[str, Any] = {}
    for f in fields(kind):  # type: ignore[arg-type]
        variable = prefix + f.name.upper()
        if variable not in env or f.name not in _PARSERS:
            continue
        try:
            values[f.name] = _PARSERS[f.name](env[variable])
        except ValueError as exc:
            raise ConfigurationError(f"{variable}: {exc}") from None
    return kind(**values) if values else None
