"""Brokers: where queued, delayed and in-flight tasks live.

``MemoryBroker`` ships in the core; ``RedisBroker`` needs ``pip install 'flowrra[redis]'``
and is imported only when used.
"""

from __future__ import annotations

from typing import Any

from flowrra._optional import load_optional
from flowrra.brokers.base import (
    BaseBroker,
    BrokerCounts,
    DeadLetter,
    Delivery,
    QueueBroker,
    QueueDetail,
)
from flowrra.brokers.memory import MemoryBroker
from flowrra.config import BrokerConfig, redact_url
from flowrra.exceptions import BackendError

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})
REDIS_PACKAGES = frozenset({"redis", "hiredis"})

__all__ = [
    "BaseBroker",
    "BrokerCounts",
    "DeadLetter",
    "Delivery",
    "MemoryBroker",
    "QueueBroker",
    "QueueDetail",
    "RedisBroker",
    "get_broker",
]


def scheme_of(url: str) -> str:
    """The scheme of ``url`` (``"memory"`` for ``memory://``), lower-cased."""
    scheme, separator, _ = url.partition("://")
    if not separator:
        raise BackendError(f"not a URL: {redact_url(url)!r} (expected scheme://...)")
    return scheme.lower()


def get_broker(config: BrokerConfig | str | None = None, *, max_size: int = 1000) -> BaseBroker:
    """Build the broker a config or URL names.

    ``None`` and ``memory://``: a :class:`MemoryBroker` holding at most ``max_size`` waiting
    tasks. ``redis://``, ``rediss://``, ``unix://`` and the cluster schemes
    ``redis+cluster://``, ``rediss+cluster://``: a ``RedisBroker``. A broker object is
    returned as it is. Any other scheme raises :class:`BackendError` naming it.
    """
    if config is None:
        return MemoryBroker(max_size=max_size)
    if isinstance(config, str):
        config = BrokerConfig(url=config)
    if isinstance(config.url, BaseBroker):
        return config.url
    scheme = scheme_of(config.url)
    if scheme == "memory":
        return MemoryBroker(max_size=max_size)
    if scheme in REDIS_SCHEMES:
        built: BaseBroker = _redis_class().from_config(config)
        return built
    raise BackendError(
        f"unknown broker scheme '{scheme}' in {redact_url(config.url)!r}: "
        "use memory://, redis://, rediss://, unix:// or redis+cluster://"
    )


def _redis_class() -> Any:
    """The Redis implementation, imported on first use (it needs the ``redis`` extra)."""
    return load_optional("flowrra.brokers.redis", "RedisBroker", "redis", REDIS_PACKAGES)


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":
        return _redis_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
