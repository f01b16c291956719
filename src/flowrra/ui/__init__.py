"""The web dashboard (needs the ``ui`` extra: ``pip install 'flowrra[ui]'``).

``Dashboard`` holds every page and JSON route independent of any web framework;
``create_router`` mounts it in FastAPI, ``flowrra.ui.starlette.create_asgi_app`` in any
ASGI server, and ``flowrra ui module:app`` serves it on its own. See ``docs/ui.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    import jinja2  # noqa: F401 - checked here so the error names the extra
except ModuleNotFoundError as _missing:
    raise ImportError(
        "the flowrra dashboard needs the ui extra: pip install 'flowrra[ui]'"
    ) from _missing

from flowrra.ui.core import AuthHook, Dashboard, RedactHook, UIRequest, UIResponse

if TYPE_CHECKING:
    from flowrra.ui.starlette import create_router

__all__ = ["AuthHook", "Dashboard", "RedactHook", "UIRequest", "UIResponse", "create_router"]


def __getattr__(name: str) -> Any:
    """``create_router`` is imported on first use (it needs FastAPI)."""
    if name == "create_router":
        from flowrra.ui.starlette import create_router  # noqa: PLC0415 - needs fastapi

        return create_router
    raise AttributeError(f"module 'flowrra.ui' has no attribute {name!r}")
