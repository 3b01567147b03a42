"""The key-management page: one HTML page, its script and its style sheet, served
framework-free beside the management API (:mod:`skaala_auth.management`).

Rules of this module:

- no framework import, no I/O but reading the package's own static files (once, at
  construction): the adapters (:func:`skaala_auth.starlette.dashboard_routes`,
  :func:`skaala_auth.flask.dashboard_blueprint`, ``skaala_auth.django.dashboard_urls``) route
  ``GET``/``HEAD`` requests to :meth:`Dashboard.page` and :meth:`Dashboard.asset` and send the
  :class:`DashboardResponse` as it is;
- the page holds no secret and no data: it is the same for everyone. What it shows comes from
  the management API, called by the browser with the dashboard session cookie, so the API's
  checks (owner or admin of the team, ``Origin``) are the only ones that matter;
- nothing is fetched from anywhere else (it works offline), and the
  ``Content-Security-Policy`` says so: scripts, styles and calls only from the page's origin,
  no inline script or style, no framing.

The page is at the mount path (``/dashboard``, with or without a trailing slash); the team is
its ``team`` query parameter (``/dashboard?team=team_1``), asked for when missing. Its files
are under ``<mount>/static/``; the page links them relative to its own URL, so it works at any
mount path, under any script root.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final
from urllib.parse import quote

from ..scopes import ScopeRegistry, default_registry

__all__ = ["ASSETS", "SECURITY_HEADERS", "Dashboard", "DashboardResponse"]

#: The files under ``<mount>/static/``, with their content types.
ASSETS: Final[Mapping[str, str]] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

#: Sent with every answer, the page and its files alike.
SECURITY_HEADERS: Final = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)

# The page is tiny and the same for everyone: revalidate it every time, so that a new version of
# the package is picked up at once. Its files are linked with their digest (?v=…), so they may
# be kept for a day.
_PAGE_CACHE: Final = "no-cache"
_ASSET_CACHE: Final = "public, max-age=86400"
_METHODS: Final = frozenset({"GET", "HEAD"})
_LOCAL_PATH: Final = re.compile(r"/(?![/\\])[^\s\\]*")
_WEB_URL: Final = re.compile(r"https?://[^\s\\/]+(?:/[^\s\\]*)?")
_LAST_SEGMENT: Final = re.compile(r"[^/]*$")


@dataclass(frozen=True, slots=True)
class DashboardResponse:
    """What the dashboard answers: an adapter sends it as it is.

    Attributes:
        status: the HTTP status.
        headers: ``(name, value)`` pairs, lower-case names.
        body: the body (empty for ``HEAD``).

    .. versionadded:: 0.1.0
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _read(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


class Dashboard:
    """The key-management page, ready to serve.

    Args:
        api_prefix: where the management API is mounted, a path on the same origin
            (``/api/v1``, the default of every adapter's mount).
        scopes: the scopes a new key may have, shown grouped as read, write and manage (a
            :class:`~skaala_auth.ScopeRegistry`, or names with their descriptions; default:
            the documented set). Give the one your :class:`~skaala_auth.KeyManager` validates
            with.
        sign_in_url: where the page sends a visitor who is not signed in (your dashboard's
            sign-in page); without it, the page says to sign in and reload.
        notice: a line shown at the top of every page, in a banner (the demo's says that its
            sign-in is not Stack Auth).

    Raises:
        ValueError: ``api_prefix`` is not a path on this origin, or ``sign_in_url`` neither
            such a path nor an ``http(s)`` URL.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        api_prefix: str = "/api/v1",
        scopes: ScopeRegistry | Mapping[str, str] | None = None,
        sign_in_url: str | None = None,
        notice: str | None = None,
    ) -> None:
        # Same origin only: the page calls the API with the session cookie
        # (credentials: "same-origin"), and its CSP allows no other origin.
        if not _LOCAL_PATH.fullmatch(api_prefix) or "?" in api_prefix or "#" in api_prefix:
            raise ValueError(f"api_prefix must be a path on this origin, not {api_prefix!r}")
        # A link the visitor follows: a path here, or a web page (Stack Auth's hosted sign-in);
        # never a javascript: or data: URL.
        if sign_in_url is not None and not (
            _LOCAL_PATH.fullmatch(sign_in_url) or _WEB_URL.fullmatch(sign_in_url)
        ):
            raise ValueError(f"sign_in_url must be a path or an http(s) URL, not {sign_in_url!r}")
        if scopes is None:
            scopes = default_registry
        described = scopes.describe() if isinstance(scopes, ScopeRegistry) else dict(scopes)
        self.api_prefix = api_prefix.rstrip("/")
        self._files = {name: _read(name) for name in ASSETS}
        self._versions = {
            name: hashlib.sha256(body).hexdigest()[:12] for name, body in self._files.items()
        }
        config = {
            "api": self.api_prefix,
            "scopes": [{"name": name, "description": text} for name, text in described.items()],
            "signInUrl": sign_in_url,
            "notice": notice,
        }
        # A JSON data block, not a script: the CSP allows no inline script, and this is never
        # run. "<" is escaped so that no value can close the element.
        data = json.dumps(config, separators=(",", ":")).replace("<", "\\u003c")
        self._template = _read("index.html").decode("utf-8").replace("{{config}}", data)

    def page(self, method: str, request_path: str) -> DashboardResponse:
        """The page (``GET``/``HEAD`` of the mount path, with or without its trailing slash).

        Args:
            method: the request's method.
            request_path: the path the browser asked for: the page's links to its files are
                relative to it.
        """
        if method.upper() not in _METHODS:
            return _not_allowed(method)
        if request_path.endswith("/"):
            base = "static/"
        else:  # /dashboard: "dashboard/static/…" resolves to /dashboard/static/…
            segment = _LAST_SEGMENT.search(request_path)
            base = quote(segment.group(0) if segment else "", safe="") + "/static/"
        text = self._template
        for name, version in self._versions.items():
            text = text.replace("{{" + name + "}}", html.escape(f"{base}{name}?v={version}"))
        return _answer(method, "text/html; charset=utf-8", text.encode("utf-8"), _PAGE_CACHE)

    def asset(self, method: str, name: str) -> DashboardResponse:
        """One of the page's files (``<mount>/static/<name>``); ``404`` for any other name.

        Args:
            method: the request's method.
            name: the file's name, the last segment of the path.
        """
        if method.upper() not in _METHODS:
            return _not_allowed(method)
        content_type = ASSETS.get(name)
        if content_type is None:
            return _answer(method, "text/plain; charset=utf-8", b"Not Found", status=404)
        return _answer(method, content_type, self._files[name], _ASSET_CACHE)


def _answer(
    method: str,
    content_type: str,
    body: bytes,
    cache: str = "no-store",
    *,
    status: int = 200,
    extra: tuple[tuple[str, str], ...] = (),
) -> DashboardResponse:
    headers = (
        *SECURITY_HEADERS,
        ("content-type", content_type),
        ("cache-control", cache),
        ("content-length", str(len(body))),
        *extra,
    )
    return DashboardResponse(status, headers, b"" if method.upper() == "HEAD" else body)


def _not_allowed(method: str) -> DashboardResponse:
    text = "text/plain; charset=utf-8"
    return _answer(method, text, b"Method Not Allowed", status=405, extra=(("allow", "GET, HEAD"),))
