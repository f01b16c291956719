"""The web dashboard (needs the ``ui`` extra: ``pip install 'flowrra[ui]'``).

``Dashboard`` holds every page and JSON route independent of any web framework;
``create_router`` mounts it in FastAPI, ``flowrra.ui.starlette.create_asgi_app`` in any
ASGI server, and ``flowrra ui module:app`` serves it on its own. See ``docs/ui.md``.

The names are loaded on first use, so importing this package needs no extra; using one
without the ``ui`` extra raises ``ImportError`` saying ``pip install 'flowrra[ui]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowrra._optional import load_optional

if TYPE_CHECKING:
    from flowrra.ui.core import AuthHook, Dashboard, RedactHook, UIRequest, UIResponse
    from flowrra.ui.starlette import create_router

__all__ = ["AuthHook", "Dashboard", "RedactHook", "UIRequest", "UIResponse", "create_router"]

_UI_PACKAGES = frozenset({"jinja2", "starlette", "uvicorn"})
_HOMES = {
    "AuthHook": "flowrra.ui.core",
    "Dashboard": "flowrra.ui.core",
    "RedactHook": "flowrra.ui.core",
    "UIRequest": "flowrra.ui.core",
    "UIResponse": "flowrra.ui.core",
    "create_router": "flowrra.ui.starlette",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` now (it needs the ``ui`` extra)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowrra.ui' has no attribute {name!r}")
    return load_optional(home, name, "ui", _UI_PACKAGES)
