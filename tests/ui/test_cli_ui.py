"""``flowrra ui``: the real process serves the dashboard on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowrra.ui.cli import UIUsageError, parse_basic_auth

APP_MODULE = '''
from flowrra import Flowrra

app = Flowrra()


@app.task
async def add(a: int, b: int) -> int:
    return a + b
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_up(base: str, process: subprocess.Popen[str], auth: tuple[str, str] | None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"flowrra ui exited: {process.communicate()[1]}")
        try:
            httpx.get(base + "/api/health", auth=auth, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("flowrra ui did not answer within 20 s")


def serve(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    (tmp_path / "dashboard_app.py").write_text(APP_MODULE)
    command = [sys.executable, "-m", "flowrra", "ui", "dashboard_app:app", *options]
    return subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def port() -> int:
    return free_port()


def stop(process: subprocess.Popen[str]) -> str:
    """SIGINT, then the process's log (uvicorn logs to stderr)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serves_the_dashboard_and_health(
    tmp_path: Path, port: int, processes: list[subprocess.Popen[str]]
) -> None:
    process = serve(tmp_path, "--port", str(port))
    processes.append(process)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, process, None)
    page = httpx.get(base + "/", timeout=5)
    health = httpx.get(base + "/api/health", timeout=5)
    tasks = httpx.get(base + "/api/tasks", timeout=5)
    assert page.status_code == 200
    assert 'href="/static/flowrra.css"' in page.text
    report = health.json()
    # a client-only process: the app runs; no worker serves the memory queue here
    assert report["checks"]["app"]["healthy"] is True
    assert health.status_code == (200 if report["healthy"] else 503)
    assert [t["name"] for t in tasks.json()["tasks"]] == ["add"]
    log = stop(process)
    assert process.returncode == 0, log
    assert "without authentication" not in log  # loopback: no warning


def test_basic_auth_from_the_environment_is_required_and_never_logged(
    tmp_path: Path, port: int, processes: list[subprocess.Popen[str]]
) -> None:
    password = "pa:ss-w0rd-xyz"
    process = serve(tmp_path, "--port", str(port), "--host", "0.0.0.0", "--log-level", "debug",
                    env={"FLOWRRA_UI_BASIC_AUTH": f"ops:{password}"})
    processes.append(process)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, process, ("ops", password))
    assert httpx.get(base + "/api/health", timeout=5).status_code == 401
    assert httpx.get(base + "/", auth=("ops", password), timeout=5).status_code == 200
    log = stop(process)
    assert password not in log
    assert "without authentication" not in log


def test_binding_beyond_loopback_without_auth_warns(
    tmp_path: Path, port: int, processes: list[subprocess.Popen[str]]
) -> None:
    process = serve(tmp_path, "--port", str(port), "--host", "0.0.0.0")
    processes.append(process)
    wait_until_up(f"http://127.0.0.1:{port}", process, None)
    assert "without authentication" in stop(process)


def test_a_malformed_basic_auth_is_a_usage_error(tmp_path: Path) -> None:
    process = serve(tmp_path, "--basic-auth", "no-colon")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "user:password" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("", None), ("a:b", ("a", "b")), ("a:b:c", ("a", "b:c"))],
)
def test_parse_basic_auth(text: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic_auth(text) == expected


@pytest.mark.parametrize("text", ["nocolon", ":pw", "user:"])
def test_parse_basic_auth_refuses(text: str) -> None:
    with pytest.raises(UIUsageError):
        parse_basic_auth(text)
