"""DEMO ONLY — the demo's one-click sign-in: ``GET /demo/sign-in`` (a page with one button),
``POST /demo/sign-in`` (sets the ``stack-access-token`` cookie for the demo owner, minted by
:class:`~skaala_auth.demo.issuer.DemoIssuer`), ``POST /demo/sign-out``, and
``GET /demo/jwks.json`` (the issuer's public keys).

Mounted only by the demo app (:func:`skaala_auth.demo.create_app`); no setting, extra or
environment variable of the library mounts it anywhere else.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Final
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..dashboard import SECURITY_HEADERS
from .issuer import DEMO_SESSION_SECONDS, DemoIssuer

__all__ = ["COOKIE", "DEMO_NOTICE", "sign_in_routes"]

#: The cookie the dashboard's session is read from (the verifier's default carrier).
COOKIE: Final = "stack-access-token"
#: The banner of every demo page.
DEMO_NOTICE: Final = (
    "DEMO sign-in — not Stack Auth. This demo signs you in with its own local issuer."
)


def _same_origin(request: Request) -> bool:
    """A sign-in POST from this origin only (browsers send ``Origin`` with every form POST):
    another site must not sign a visitor in to the demo behind their back."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return parts.scheme == request.url.scheme and parts.netloc == request.headers.get("host")


def _refused() -> Response:
    return JSONResponse(
        {"error": "forbidden", "message": "Cross-site request refused: this Origin is not allowed"},
        status_code=403,
        headers={"Cache-Control": "no-store"},
    )


def sign_in_routes(
    issuer: DemoIssuer,
    *,
    user_id: str,
    team_id: str,
    dashboard_path: str = "/dashboard",
) -> list[BaseRoute]:
    """DEMO ONLY: the sign-in page, sign-in, sign-out and JWKS routes of the demo app.

    Args:
        issuer: the demo's issuer (its key signs the session).
        user_id: who signing in makes you (the demo team's owner).
        team_id: the team the dashboard opens on after signing in.
        dashboard_path: where the dashboard is mounted.

    .. versionadded:: 0.1.0
    """
    page = (resources.files(__package__) / "sign_in.html").read_text("utf-8")
    for name, value in {
        "dashboard": dashboard_path,
        "user": user_id,
        "team": team_id,
        "sign_in": "/demo/sign-in",
        "sign_out": "/demo/sign-out",
    }.items():
        page = page.replace("{{" + name + "}}", html.escape(value))
    body = page.encode("utf-8")
    landing = f"{dashboard_path}?team={quote(team_id, safe='')}"

    async def sign_in_page(request: Request) -> Response:
        response = Response(body, media_type="text/html; charset=utf-8")
        response.headers.update(dict(SECURITY_HEADERS))
        response.headers["cache-control"] = "no-store"
        return response

    async def sign_in(request: Request) -> Response:
        if not _same_origin(request):
            return _refused()
        response = RedirectResponse(landing, status_code=303)
        response.set_cookie(
            COOKIE,
            issuer.mint(user_id),
            max_age=DEMO_SESSION_SECONDS,
            path="/",
            httponly=True,  # set by the server: no script needs to read it
            samesite="lax",
        )
        response.headers["cache-control"] = "no-store"
        return response

    async def sign_out(request: Request) -> Response:
        if not _same_origin(request):
            return _refused()
        response = RedirectResponse("/demo/sign-in", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
        return response

    async def jwks(request: Request) -> Response:
        return JSONResponse(issuer.jwks, headers={"Cache-Control": "public, max-age=300"})

    return [
        Route("/demo/sign-in", sign_in_page, methods=["GET"]),
        Route("/demo/sign-in", sign_in, methods=["POST"]),
        Route("/demo/sign-out", sign_out, methods=["POST"]),
        Route("/demo/jwks.json", jwks, methods=["GET"]),
    ]
