"""The framework-neutral request and response of the dashboard, and the 4xx error."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class UIRequest:
    """One HTTP request, as a framework adapter hands it to :class:`Dashboard`.

    ``method`` is upper case; ``path`` is below the mount prefix, already percent-decoded,
    and starts with ``/`` (``/`` is the overview); ``query`` holds the first value of each
    query parameter; ``headers`` has lower-case names; ``root_path`` is the mount prefix
    as the browser sees it (``""`` or ``"/ops/flowrra"``, no trailing ``/``).
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    root_path: str


@dataclass(frozen=True, slots=True)
class UIResponse:
    """One HTTP response: status, headers (including ``content-type``) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


class HTTPError(Exception):
    """A request the dashboard refuses: answered as ``{"error": message}`` with ``status``.

    Raised by handlers for bad input (4xx); :meth:`Dashboard.handle` turns it into a
    response and never lets it escape.
    """

    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


def dump_json(data: Any) -> bytes:
    """``data`` as compact UTF-8 JSON; values JSON cannot hold are shown with ``str``.

    A string with a lone surrogate (which UTF-8 cannot encode) makes the whole document
    ASCII, with ``\\uXXXX`` escapes, so a stored value never turns a listing into a 500.
    """
    text = json.dumps(data, default=str, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(data, default=str, separators=(",", ":")).encode()


def json_response(
    data: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> UIResponse:
    """A JSON response of ``data``."""
    return UIResponse(status, [("content-type", JSON_TYPE), *headers], dump_json(data))


def error_response(
    status: int, message: str, headers: Sequence[tuple[str, str]] = ()
) -> UIResponse:
    """The JSON error ``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status, headers)


def html_response(text: str, status: int = 200) -> UIResponse:
    """An HTML page (a lone surrogate, which UTF-8 cannot encode, is shown as ``?``)."""
    return UIResponse(status, [("content-type", HTML_TYPE)], text.encode(errors="replace"))
