"""Configuration classes: validation, defaults, from_env and secret-free reprs."""

from __future__ import annotations

import os

import pytest

from flowrra import BackendConfig, BrokerConfig, Config, ExecutorConfig, SchedulerConfig
from flowrra.config import redact_url
from flowrra.exceptions import ConfigurationError


def test_defaults_match_the_documented_ones() -> None:
    executor = ExecutorConfig()
    assert (executor.io_workers, executor.max_queue_size) == (4, 1000)
    assert (executor.max_retries, executor.retry_delay) == (3, 1.0)
    assert executor.cpu_workers == (os.cpu_count() or 1)
    broker = BrokerConfig(url="redis://localhost/0")
    assert (broker.max_connections, broker.socket_timeout, broker.retry_on_timeout) == (
        50,
        5.0,
        True,
    )
    assert broker.queue_key is None
    assert BackendConfig(url="memory://").ttl is None
    assert (SchedulerConfig().check_interval, SchedulerConfig().enabled) == (60.0, False)
    config = Config()
    assert (config.broker, config.backend, config.scheduler) == (None, None, None)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ExecutorConfig(io_workers=0), "io_workers"),
        (lambda: ExecutorConfig(cpu_workers=-1), "cpu_workers"),
        (lambda: ExecutorConfig(max_queue_size=0), "max_queue_size"),
        (lambda: ExecutorConfig(max_retries=-1), "max_retries"),
        (lambda: ExecutorConfig(retry_delay=-1.0), "retry_delay"),
        (lambda: BrokerConfig(url="redis://x", max_connections=0), "max_connections"),
        (lambda: BrokerConfig(url=""), "url"),
        (lambda: BackendConfig(url="memory://", ttl=0), "ttl"),
        (lambda: BackendConfig(url="memory://", socket_timeout=-1), "socket_timeout"),
        (lambda: SchedulerConfig(check_interval=0), "check_interval"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(build: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build()  # type: ignore[operator]


def test_from_env_reads_every_variable() -> None:
    env = {
        "FLOWRRA_BROKER_URL": "redis://:s3cret@localhost:6379/1",
        "FLOWRRA_BROKER_MAX_CONNECTIONS": "20",
        "FLOWRRA_BROKER_SOCKET_TIMEOUT": "2.5",
        "FLOWRRA_BROKER_RETRY_ON_TIMEOUT": "no",
        "FLOWRRA_BACKEND_URL": "redis://localhost:6379/2",
        "FLOWRRA_BACKEND_TTL": "3600",
        "FLOWRRA_BACKEND_MAX_CONNECTIONS": "30",
        "FLOWRRA_BACKEND_SOCKET_TIMEOUT": "1",
        "FLOWRRA_BACKEND_RETRY_ON_TIMEOUT": "yes",
        "FLOWRRA_EXECUTOR_IO_WORKERS": "16",
        "FLOWRRA_EXECUTOR_CPU_WORKERS": "3",
        "FLOWRRA_EXECUTOR_MAX_QUEUE_SIZE": "500",
        "FLOWRRA_EXECUTOR_MAX_RETRIES": "6",
        "FLOWRRA_EXECUTOR_RETRY_DELAY": "0.5",
        "FLOWRRA_SCHEDULER_DATABASE_URL": "sqlite:///sched.db",
        "FLOWRRA_SCHEDULER_CHECK_INTERVAL": "5",
        "FLOWRRA_SCHEDULER_ENABLED": "on",
    }
    config = Config.from_env(environ=env)
    assert config.broker is not None
    assert config.broker.url == "redis://:s3cret@localhost:6379/1"
    assert (config.broker.max_connections, config.broker.socket_timeout) == (20, 2.5)
    assert config.broker.retry_on_timeout is False
    assert config.backend is not None
    assert (config.backend.url, config.backend.ttl) == ("redis://localhost:6379/2", 3600.0)
    assert (config.backend.max_connections, config.backend.retry_on_timeout) == (30, True)
    assert config.executor.io_workers == 16
    assert config.executor.cpu_workers == 3
    assert config.executor.max_queue_size == 500
    assert (config.executor.max_retries, config.executor.retry_delay) == (6, 0.5)
    assert config.scheduler is not None
    assert config.scheduler.database_url == "sqlite:///sched.db"
    assert (config.scheduler.check_interval, config.scheduler.enabled) == (5.0, True)


def test_from_env_with_a_subset_keeps_defaults() -> None:
    config = Config.from_env(environ={"FLOWRRA_EXECUTOR_IO_WORKERS": "8"})
    assert config.executor.io_workers == 8
    assert config.executor.max_queue_size == 1000
    assert (config.broker, config.backend, config.scheduler) == (None, None, None)
    assert Config.from_env(environ={}).executor == ExecutorConfig()


def test_from_env_reads_os_environ_and_a_custom_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_EXECUTOR_IO_WORKERS", "12")
    assert Config.from_env(prefix="MYAPP_").executor.io_workers == 12


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLOWRRA_EXECUTOR_IO_WORKERS", "many"),
        ("FLOWRRA_BROKER_RETRY_ON_TIMEOUT", "maybe"),
        ("FLOWRRA_EXECUTOR_IO_WORKERS", "0"),
    ],
)
def test_from_env_rejects_malformed_values(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        Config.from_env(environ={variable: value})


def test_passwords_never_show_in_reprs() -> None:
    config = Config(
        broker=BrokerConfig(url="redis://user:hunter2@cache:6379/0"),
        backend=BackendConfig(url="rediss://:hunter2@cache:6380/1"),
    )
    text = repr(config)
    assert "hunter2" not in text
    assert "user:***@cache:6379" in text
    assert redact_url("redis://localhost/0") == "redis://localhost/0"
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
