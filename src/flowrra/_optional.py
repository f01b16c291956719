"""Loading the parts that need an optional extra, with an error that names the extra."""

from __future__ import annotations

import importlib
from typing import Any


def load_optional(module: str, name: str, extra: str, packages: frozenset[str]) -> Any:
    """Return ``module.name``, importing ``module`` now.

    When the import fails because one of ``packages`` is missing, raises ``ImportError``
    telling the user to ``pip install 'flowrra[<extra>]'``.
    """
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in packages:
            raise ImportError(
                f"{name} needs the {extra} extra: pip install 'flowrra[{extra}]'"
            ) from exc
        raise
    return getattr(loaded, name)
