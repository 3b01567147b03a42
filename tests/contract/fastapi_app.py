"""The bookings API in FastAPI: the middleware, and ``Depends(RequireScopes(...))``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from starlette.middleware import Middleware

from skaala_auth import Authenticator, Principal
from skaala_auth.fastapi import RequireScopes
from skaala_auth.rules import Rules
from skaala_auth.starlette import ApiKeyMiddleware

from .apps import CALLS, PUBLIC, key_id


def build(auth: Authenticator) -> FastAPI:
    app = FastAPI(
        middleware=[
            Middleware(
                ApiKeyMiddleware,
                authenticator=auth,
                rules=Rules(public=PUBLIC),
                close_on_shutdown=False,
            )
        ]
    )
    app.get("/health")(health)
    app.get("/public/status")(public)
    app.get("/teams/{team_id}/bookings")(list_bookings)
    app.post("/teams/{team_id}/bookings", status_code=201)(create_booking)
    return app


def health(request: Request) -> dict[str, Any]:
    CALLS.append("health")
    return {"principal": key_id(request.state.principal)}


def public() -> dict[str, Any]:
    CALLS.append("public")
    return {"public": True}


def list_bookings(
    team_id: str, principal: Annotated[Principal, Depends(RequireScopes("read:bookings"))]
) -> dict[str, Any]:
    CALLS.append("list")
    return {"team_id": team_id, "key_id": principal.key_id}


def create_booking(
    team_id: str, principal: Annotated[Principal, Depends(RequireScopes("write:bookings"))]
) -> dict[str, Any]:
    CALLS.append("create")
    return {"created": True}
