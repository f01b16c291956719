"""Result backends: where task records live.

``InMemoryBackend`` ships in the core; ``RedisBackend`` needs
``pip install 'flowrra[redis]'`` and is imported only when used.
"""

from __future__ import annotations

from typing import Any

from flowrra._optional import load_optional
from flowrra.backends.base import BaseResultBackend
from flowrra.backends.memory import InMemoryBackend
from flowrra.brokers import REDIS_PACKAGES, REDIS_SCHEMES, scheme_of
from flowrra.config import BackendConfig, redact_url
from flowrra.exceptions import BackendError

__all__ = ["BaseResultBackend", "InMemoryBackend", "RedisBackend", "get_backend"]


def get_backend(config: BackendConfig | str | None = None) -> BaseResultBackend:
    """Build the backend a config or URL names.

    ``None`` and ``memory://``: an :class:`InMemoryBackend` (keeping the config's ``ttl``
    and ``max_results``). ``redis://``, ``rediss://``, ``unix://`` and the cluster schemes
    ``redis+cluster://``, ``rediss+cluster://``: a ``RedisBackend``. A backend object is
    returned as it is. Any other scheme raises :class:`BackendError`.
    """
    if config is None:
        return InMemoryBackend()
    if isinstance(config, str):
        config = BackendConfig(url=config)
    if isinstance(config.url, BaseResultBackend):
        return config.url
    scheme = scheme_of(config.url)
    if scheme == "memory":
        return InMemoryBackend(ttl=config.ttl, max_results=config.max_results)
    if scheme in REDIS_SCHEMES:
        built: BaseResultBackend = _redis_class().from_config(config)
        return built
    raise BackendError(
        f"unknown backend scheme '{scheme}' in {redact_url(config.url)!r}: "
        "use memory://, redis://, rediss://, unix:// or redis+cluster://"
    )


def _redis_class() -> Any:
    """The Redis implementation, imported on first use (it needs the ``redis`` extra)."""
    return load_optional("flowrra.backends.redis", "RedisBackend", "redis", REDIS_PACKAGES)


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        return _redis_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
