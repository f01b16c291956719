"""Matching a method and a path to a handler, with ``{name}`` path parameters."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from flowrra.ui.messages import HTTPError, UIRequest, UIResponse

Params = dict[str, str]
Handler = Callable[[UIRequest, Params], Awaitable[UIResponse]]


def _compile(template: str) -> re.Pattern[str]:
    """``/api/results/{task_id}`` -> a pattern matching one non-empty segment per name;
    ``{path:path}`` matches the rest of the path (slashes included)."""
    pattern = ""
    position = 0
    for match in re.finditer(r"\{(\w+)(:path)?\}", template):
        pattern += re.escape(template[position : match.start()])
        body = ".+" if match.group(2) else "[^/]+"
        pattern += f"(?P<{match.group(1)}>{body})"
        position = match.end()
    pattern += re.escape(template[position:])
    return re.compile(f"^{pattern}$")


@dataclass(frozen=True, slots=True)
class Route:
    """One route: an upper-case method, the compiled path pattern and its handler."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """An ordered list of routes; the first route whose path matches wins."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        """Route ``method`` requests whose path matches ``template`` to ``handler``."""
        self._routes.append(Route(method.upper(), _compile(template), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, Params]:
        """The handler and path parameters for ``method`` and ``path``.

        ``HEAD`` is served by the ``GET`` handler. Raises :class:`HTTPError` 404 when no
        route matches the path, 405 (with an ``allow`` header) when routes match the path
        but none takes the method.
        """
        wanted = "GET" if method == "HEAD" else method
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == wanted:
                return route.handler, match.groupdict()
            allowed.append(route.method)
        if allowed:
            allow = ", ".join(sorted(set(allowed)))
            raise HTTPError(405, f"method {method} not allowed here", [("allow", allow)])
        raise HTTPError(404, f"no such page: {path}")
