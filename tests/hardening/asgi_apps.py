"""The hardening apps in Starlette and FastAPI. Every handler records that it ran.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations, and the
dependency markers are local values.
"""

from typing import Any

from fastapi import Depends, FastAPI, Security
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skaala_auth import Authenticator, Principal
from skaala_auth.fastapi import RequireScopes
from skaala_auth.rules import Rules
from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

from .world import record

BOOKINGS_ROUTE = "/api/v1/teams/{team_id}/bookings"
STAFF_ROUTE = "/api/v1/teams/{team_id}/staff"
OTHER_METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS"]

#: The scopes each handler declares in the decorator / dependency styles.
DECLARED: dict[str, tuple[str, ...] | None] = {
    "list": ("read:bookings",),
    "create": ("write:bookings",),
    "other": ("read:bookings", "write:bookings"),
    "staff": ("read:staff",),
    "health": None,
    "internal": None,
}


def _reply(name: str, team: object) -> JSONResponse:
    # X-Total-Count: what a HEAD request must not leak (issue 8, finding 2).
    return JSONResponse(
        {"handler": name, "team": team, "data": ["secret"]}, headers={"X-Total-Count": "1"}
    )


def _middleware(auth: Authenticator, rules: Rules | None) -> list[Middleware]:
    return [Middleware(ApiKeyMiddleware, authenticator=auth, rules=rules, close_on_shutdown=False)]


def starlette_app(auth: Authenticator, *, rules: Rules | None) -> Starlette:
    """``rules=None``: the decorator style (``@requires_scope``); else the rules-table style
    with undecorated handlers."""

    def handler(name: str) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            team = request.path_params.get("team_id")
            record(name, request.method, team, request.state.principal)
            return _reply(name, team)

        endpoint.__name__ = name
        scopes = DECLARED[name]
        if rules is None and scopes is not None:
            return requires_scope(*scopes)(endpoint)
        return endpoint

    return Starlette(
        routes=[
            Route(BOOKINGS_ROUTE, handler("list"), methods=["GET"]),  # Starlette adds HEAD
            Route(BOOKINGS_ROUTE, handler("create"), methods=["POST"]),
            Route(BOOKINGS_ROUTE, handler("other"), methods=OTHER_METHODS),
            Route(STAFF_ROUTE, handler("staff"), methods=["GET"]),
            Route("/health", handler("health")),
            Route("/internal/report", handler("internal")),
        ],
        middleware=_middleware(auth, rules),
    )


def _marker(style: str, scopes: tuple[str, ...]) -> Any:
    if style == "depends":
        return Depends(RequireScopes(*scopes))
    if style == "security":
        return Security(RequireScopes(), scopes=list(scopes))
    if style == "security-union":  # the dependency's own scope, and the rest in scopes=
        return Security(RequireScopes(scopes[0]), scopes=list(scopes[1:]))
    raise ValueError(style)


#: In the union style every handler needs one more scope than its own, through ``scopes=``.
UNION_DECLARED: dict[str, tuple[str, ...] | None] = {
    "list": ("read:bookings", "write:bookings"),
    "create": ("write:bookings", "read:bookings"),
    "other": ("read:bookings", "write:bookings"),
    "staff": ("read:staff", "read:bookings"),
    "health": None,
    "internal": None,
}


def fastapi_app(auth: Authenticator, *, style: str, rules: Rules | None = None) -> FastAPI:
    """``style``: ``depends``, ``security``, ``security-union`` or ``rules``."""
    declared = UNION_DECLARED if style == "security-union" else DECLARED
    app = FastAPI(middleware=_middleware(auth, rules if style == "rules" else None))

    def team_handler(name: str) -> Any:
        scopes = declared[name]
        if style == "rules" or scopes is None:

            async def plain(request: Request, team_id: str) -> JSONResponse:
                record(name, request.method, team_id, request.state.principal)
                return _reply(name, team_id)

            return plain

        marker = _marker(style, scopes)

        async def protected(
            request: Request, team_id: str, principal: Principal = marker
        ) -> JSONResponse:
            record(name, request.method, team_id, principal)
            return _reply(name, team_id)

        return protected

    async def health(request: Request) -> JSONResponse:
        record("health", request.method, None, request.state.principal)
        return _reply("health", None)

    async def internal(request: Request) -> JSONResponse:
        record("internal", request.method, None, request.state.principal)
        return _reply("internal", None)

    def add(path: str, endpoint: Any, name: str, methods: list[str]) -> None:
        # One route per method, each with its own operation id (FastAPI warns of duplicates,
        # and the test suite turns warnings into errors).
        for method in methods:
            app.api_route(path, methods=[method], operation_id=f"{name}_{method.lower()}")(endpoint)

    # FastAPI does not add HEAD to GET routes: list it, so HEAD reaches the GET handler.
    add(BOOKINGS_ROUTE, team_handler("list"), "list", ["GET", "HEAD"])
    add(BOOKINGS_ROUTE, team_handler("create"), "create", ["POST"])
    add(BOOKINGS_ROUTE, team_handler("other"), "other", OTHER_METHODS)
    add(STAFF_ROUTE, team_handler("staff"), "staff", ["GET", "HEAD"])
    add("/health", health, "health", ["GET", "HEAD"])
    add("/internal/report", internal, "internal", ["GET", "HEAD", "POST"])
    return app
