"""Health checks: each part answers within a timeout, and failures are reported, not raised."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flowrra.brokers.base import QueueBroker
from flowrra.telemetry.health import workers_check

if TYPE_CHECKING:
    from flowrra.app import Flowrra

Check = dict[str, Any]


def _ok(detail: str) -> Check:
    return {"healthy": True, "reason": None, "detail": detail}


def _bad(reason: str) -> Check:
    return {"healthy": False, "reason": reason, "detail": None}


async def _probe(name: str, probe: Callable[[], Awaitable[Check]], timeout: float) -> Check:
    """Run ``probe`` within ``timeout`` seconds; any error becomes an unhealthy check."""
    try:
        async with asyncio.timeout(timeout):
            return await probe()
    except TimeoutError:
        return _bad(f"{name} did not answer within {timeout:g}s")
    except Exception as error:  # a health check reports every failure
        return _bad(f"{name} check failed: {type(error).__name__}: {error}")


async def _ping(target: object, name: str) -> Check:
    """Use ``target.ping()`` when it has one (Redis); True means reachable."""
    ping = getattr(target, "ping", None)
    if ping is None:
        return _ok(f"{type(target).__name__} (in this process)")
    if await ping():
        return _ok(f"{type(target).__name__} answered ping")
    return _bad(f"{name} is unreachable: {type(target).__name__} did not answer ping")


async def _broker(app: Flowrra) -> Check:
    broker = app.broker
    check = await _ping(broker, "broker")
    if check["healthy"] and isinstance(broker, QueueBroker):
        await broker.counts()  # reachable and readable
    return check


async def _backend(app: Flowrra) -> Check:
    backend = app.backend
    check = await _ping(backend, "backend")
    if check["healthy"] and not hasattr(backend, "ping"):
        await backend.get("flowrra-health-check")  # a lookup must answer
    return check


async def _app(app: Flowrra) -> Check:
    if app.is_running:
        return _ok("the app is running")
    return _bad("the app is not running (call app.start())")


async def _scheduler(app: Flowrra) -> Check:
    scheduler = app.scheduler
    if scheduler is None:
        return {**_ok("no scheduler configured"), "configured": False}
    if app.is_running and not scheduler.is_running:
        return {**_bad("the scheduler is not running"), "configured": True}
    await scheduler.backend.next_due_at()  # the schedule store answers
    state = "running" if scheduler.is_running else "stopped with the app"
    return {**_ok(f"scheduler {state}; its store answered"), "configured": True}


def _bound(
    part: Callable[[Flowrra], Awaitable[Check]], app: Flowrra
) -> Callable[[], Awaitable[Check]]:
    return lambda: part(app)


async def health_check(app: Flowrra, timeout: float) -> dict[str, Any]:
    """Every check, run concurrently; ``healthy`` is True only when all of them are."""
    parts: dict[str, Callable[[Flowrra], Awaitable[Check]]] = {
        "broker": _broker,
        "backend": _backend,
        "app": _app,
        "scheduler": _scheduler,
        "workers": workers_check,
    }
    results = await asyncio.gather(
        *(_probe(name, _bound(part, app), timeout) for name, part in parts.items())
    )
    checks = dict(zip(parts, results, strict=True))
    reasons = [check["reason"] for check in checks.values() if not check["healthy"]]
    return {
        "healthy": not reasons,
        "status": "healthy" if not reasons else "unhealthy",
        "reasons": reasons,
        "checks": checks,
    }
