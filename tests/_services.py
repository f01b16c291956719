"""Reachability checks for the services some tests need (Redis, a Redis Cluster, PostgreSQL,
MariaDB), and the Chromium the browser tests drive.

Each ``require_*`` function returns the service's URL when its port answers. When it
does not, the test is skipped with the reason, except in CI (environment variable ``CI``
set to ``true``), where a missing service is a failure: CI must run every test.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_CLUSTER_PORTS = (7001, 7002, 7003)
REDIS_CLUSTER_URL = "redis+cluster://127.0.0.1:7001"
POSTGRESQL_URL = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql://root@127.0.0.1:3306/test"


def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def service_or_skip(name: str, host: str, port: int, timeout: float = 1.0) -> None:
    """Return if ``host:port`` accepts a TCP connection; skip (or fail in CI) otherwise."""
    if _reachable(host, port, timeout):
        return
    reason = f"{name} is not reachable at {host}:{port}"
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: every service must be running)")
    pytest.skip(reason)


def require_redis() -> str:
    """The Redis URL (127.0.0.1:6379, database 0), or skip/fail."""
    service_or_skip("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def require_redis_cluster() -> str:
    """The URL of the three-node Redis Cluster on 127.0.0.1:7001-7003 (``scripts/services.sh``
    starts it), or skip/fail."""
    for port in REDIS_CLUSTER_PORTS:
        service_or_skip("Redis Cluster node", "127.0.0.1", port)
    return REDIS_CLUSTER_URL


def require_postgresql() -> str:
    """The PostgreSQL URL (127.0.0.1:5432, user postgres, database test), or skip/fail."""
    service_or_skip("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRESQL_URL


def require_mariadb() -> str:
    """The MariaDB URL (127.0.0.1:3306, user root, no password, database test), or skip/fail."""
    service_or_skip("MariaDB", "127.0.0.1", 3306)
    return MARIADB_URL


def require_chromium() -> str:
    """The path of Debian's ``chromium`` executable, or skip/fail (``scripts/services.sh``
    installs it)."""
    path = shutil.which("chromium")
    if path is not None:
        return path
    reason = "chromium is not installed (bash scripts/services.sh installs it)"
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: every browser test must run)")
    pytest.skip(reason)
