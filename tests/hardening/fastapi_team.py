"""A FastAPI route whose team path parameter is not named ``team_id`` (issue 8, finding 8).

No ``from __future__ import annotations``: FastAPI reads the annotations.
"""

from typing import Any

from fastapi import Depends, FastAPI, Request

from skaala_auth import Authenticator, Principal
from skaala_auth.fastapi import RequireScopes

from .world import record

READ = Depends(RequireScopes("read:bookings"))  # team_param defaults to "team_id"


def build(auth: Authenticator, middleware: list[Any]) -> FastAPI:
    app = FastAPI(middleware=middleware)

    @app.get("/teams/{team}/x")
    async def team_bookings(request: Request, team: str, principal: Principal = READ) -> Any:
        record("list", request.method, team, principal)
        return {"team": team, "data": ["secret"]}

    return app
