"""Authentication, cross-site request checks, security headers and safe static paths."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from pathlib import Path
from urllib.parse import urlsplit

from flowrra.ui.messages import HTTPError, UIRequest

#: The folder the dashboard's CSS and JavaScript are served from.
STATIC_ROOT = (Path(__file__).parent / "static").resolve()

#: The header the dashboard's JavaScript sends with every state-changing request.
CSRF_HEADER = "x-flowrra-csrf"

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


def basic_auth_matches(request: UIRequest, credentials: tuple[str, str]) -> bool:
    """True when the ``Authorization: Basic`` header carries exactly ``credentials``.

    Compared in constant time; a missing or malformed header is False, never an error.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, separator, password = decoded.partition(":")
    if not separator:
        return False
    user_ok = hmac.compare_digest(user.encode(), credentials[0].encode())
    password_ok = hmac.compare_digest(password.encode(), credentials[1].encode())
    return user_ok and password_ok


def valid_host(request: UIRequest) -> str | None:
    """The request's ``Host`` header if it is a well-formed host[:port], else ``None``."""
    host = request.headers.get("host", "").strip()
    return host if _HOST.match(host) else None


def csrf_problem(request: UIRequest) -> str | None:
    """Why a state-changing request may be forged, or ``None`` when it is not.

    The ``Origin`` header (or, without it, ``Referer``) must name the request's own host,
    and the ``X-Flowrra-CSRF: 1`` header must be present: a cross-site form cannot send
    it, and a cross-site fetch cannot without a CORS preflight the dashboard never grants.
    Safe methods (GET, HEAD, OPTIONS) are never refused.
    """
    if request.method not in UNSAFE_METHODS:
        return None
    if request.headers.get(CSRF_HEADER) != "1":
        return "missing X-Flowrra-CSRF: 1 header (cross-site request refused)"
    host = valid_host(request)
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return "missing Origin header (cross-site request refused)"
    if host is None or urlsplit(source).netloc.lower() != host.lower():
        return "the Origin does not match this host (cross-site request refused)"
    return None


def security_headers(request: UIRequest) -> list[tuple[str, str]]:
    """Headers added to every response: a strict Content-Security-Policy (no inline
    script or style), no MIME sniffing, no framing, no referrer leaks."""
    connect = "'self'"
    host = valid_host(request)
    if host is not None:
        connect += f" ws://{host} wss://{host}"
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return [
        ("content-security-policy", policy),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ]


def static_file(relative: str) -> Path:
    """The file ``relative`` names inside :data:`STATIC_ROOT`.

    Only plain names and sub-folders are accepted: ``..``, ``.``, empty segments,
    absolute paths, backslashes, percent signs, NUL bytes and names outside
    :data:`STATIC_TYPES` raise :class:`HTTPError` (400 for a malformed path, 404 for a
    file that does not exist). The resolved path is checked to lie inside the folder, so
    a symbolic link cannot lead out of it either.
    """
    if not relative or relative.startswith("/") or any(c in relative for c in "\\%\x00:"):
        raise HTTPError(400, "bad static file path")
    parts = relative.split("/")
    if any(not _STATIC_NAME.match(part) for part in parts):
        raise HTTPError(400, "bad static file path")
    candidate = STATIC_ROOT.joinpath(*parts).resolve()
    if not candidate.is_relative_to(STATIC_ROOT) or not candidate.is_file():
        raise HTTPError(404, "no such static file")
    if candidate.suffix not in STATIC_TYPES:
        raise HTTPError(404, "no such static file")
    return candidate


def foreign_origin(request: UIRequest) -> bool:
    """True when the request carries an ``Origin`` header naming another host (a page on
    another site opening the WebSocket feed); a request without ``Origin`` (not from a
    browser) is not foreign."""
    origin = request.headers.get("origin")
    if not origin:
        return False
    host = valid_host(request)
    return host is None or urlsplit(origin).netloc.lower() != host.lower()
