"""The demo bookings API: a Starlette app protected by :class:`ApiKeyMiddleware`, with the
key-management API and its page (``/dashboard``), signed in to by the demo's own issuer
(:mod:`skaala_auth.demo.issuer`: DEMO ONLY, not Stack Auth).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.endpoints import HTTPEndpoint
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ImportError("the demo needs Starlette: pip install 'skaala-auth[demo]'") from error

from ..authenticator import Authenticator
from ..config import open_store
from ..manager import KeyManager
from ..models import Principal
from ..rules import Rules
from ..starlette import ApiKeyMiddleware, dashboard_routes, management_routes, requires_scope
from ..stores.sqlite import SQLiteKeyStore
from .bookings import BookingStore, BookingValidationError, parse_booking
from .issuer import DemoIssuer
from .sign_in import DEMO_NOTICE, sign_in_routes

__all__ = [
    "DASHBOARD_PATH",
    "DEMO_SCOPES",
    "DEMO_TEAM",
    "DEMO_USER",
    "MAX_BODY",
    "create_app",
    "seed",
]

DEMO_TEAM: Final = "team_demo"
DEMO_USER: Final = "user_demo"
DEMO_SCOPES: Final = ("read:bookings", "write:bookings", "read:contacts", "read:services")
#: Where the demo serves the key-management page.
DASHBOARD_PATH: Final = "/dashboard"
#: Seconds between the demo's batched ``last_used_at`` writes (a service's default is 60): the
#: dashboard's "Last used" shows a use a few seconds later.
LAST_USED_INTERVAL: Final = 5.0
#: The largest booking body accepted, in bytes.
MAX_BODY: Final = 64 * 1024

#: Default deny: every path but the public ones needs a key, even a route added without a
#: decorator (the rules table is what docs/security.md recommends for drop-in use). The page
#: and the demo sign-in hold no data; the management API under /api/ decides its own calls.
RULES: Final = Rules(
    public=["/", "/health", DASHBOARD_PATH, f"{DASHBOARD_PATH}/*", "/demo/*"],
    protect=["/api/"],
    default="deny",
)


def seed(manager: KeyManager) -> str | None:
    """On first start, create the demo team, its owner and a key with :data:`DEMO_SCOPES`.

    Returns:
        The new key (the only time it exists in plain text), or ``None`` when the team already
        has keys.

    .. versionadded:: 0.1.0
    """
    if manager.list_keys(team_id=DEMO_TEAM):
        return None
    manager.add_member(team_id=DEMO_TEAM, user_id=DEMO_USER, role="owner")
    key, _ = manager.create_key(
        team_id=DEMO_TEAM, user_id=DEMO_USER, name="demo", scopes=DEMO_SCOPES
    )
    return key


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def create_app(
    db_path: str | os.PathLike[str] = "skaala_auth.db",
    *,
    authenticator: Authenticator | None = None,
    pepper: str | bytes | None = None,
    dsn: str | None = None,
    schema: str | None = None,
    issuer: DemoIssuer | None = None,
) -> Starlette:
    """The demo API on the SQLite file ``db_path`` (keys and bookings in the same file), or
    with its keys in PostgreSQL (``dsn``) and its bookings in ``db_path``.

    Args:
        db_path: the database (``":memory:"``: bookings kept in memory).
        authenticator: use this one (its owner closes it) instead of opening the key store
            in ``db_path`` or ``dsn``.
        pepper: the server-side pepper the keys were created with, if any.
        dsn: keep the keys in this PostgreSQL database instead.
        schema: the PostgreSQL schema of the keys (default ``skaala_auth``).
        issuer: the demo's sign-in issuer (default: a new one, with a new key). An
            ``authenticator`` given here must trust it (``session_verifier=issuer.verifier()``)
            for the dashboard's sign-in to work.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``dsn`` and ``schema``.
    """
    owned = authenticator is None
    issuer = issuer if issuer is not None else DemoIssuer()
    if authenticator is None:
        keys = SQLiteKeyStore(db_path) if dsn is None else open_store(dsn=dsn, schema=schema)
        authenticator = Authenticator(
            keys,
            pepper=pepper,
            session_verifier=issuer.verifier(),
            last_used_interval=LAST_USED_INTERVAL,
        )
    store = authenticator.store
    manager = KeyManager(store, pepper=pepper)
    data = BookingStore(db_path)

    async def index(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": "skaala_auth demo bookings API",
                "endpoints": [
                    "GET /health",
                    "GET /api/v1/services  (read:services)",
                    "GET /api/v1/bookings  (read:bookings)",
                    "POST /api/v1/bookings  (write:bookings)",
                    "GET /api/v1/teams/{team_id}/bookings  (read:bookings)",
                    "POST /api/v1/teams/{team_id}/bookings  (write:bookings)",
                    "GET /api/v1/contacts  (read:contacts)",
                ],
                "dashboard": f"{DASHBOARD_PATH}?team={DEMO_TEAM}",
                "demo_sign_in": "/demo/sign-in  (DEMO only: not Stack Auth)",
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    class Bookings(HTTPEndpoint):
        """``/api/v1/bookings`` and ``/api/v1/teams/{team_id}/bookings``: the key's team."""

        @requires_scope("read:bookings")
        async def get(self, request: Request) -> JSONResponse:
            rows = await run_in_threadpool(data.bookings, _principal(request).team_id)
            return JSONResponse({"data": rows, "meta": {"total": len(rows)}})

        @requires_scope("write:bookings")
        async def post(self, request: Request) -> Response:
            body = await request.body()
            if len(body) > MAX_BODY:
                return _error(413, "payload_too_large", f"The body exceeds {MAX_BODY} bytes")
            try:
                payload = json.loads(body)
            except ValueError:
                return _error(422, "validation_error", "The body is not valid JSON")
            try:
                booking = parse_booking(payload, await run_in_threadpool(data.service_ids))
            except BookingValidationError as invalid:
                return _error(422, "validation_error", "Invalid booking", details=invalid.details)
            team_id = _principal(request).team_id
            created = await run_in_threadpool(data.create_booking, team_id, booking)
            return JSONResponse({"data": created}, status_code=201)

    @requires_scope("read:contacts")
    async def contacts(request: Request) -> JSONResponse:
        rows = await run_in_threadpool(data.contacts, _principal(request).team_id)
        return JSONResponse({"data": rows, "meta": {"total": len(rows)}})

    @requires_scope("read:services")
    async def services(request: Request) -> JSONResponse:
        rows = await run_in_threadpool(data.services)
        return JSONResponse({"data": rows, "meta": {"total": len(rows)}})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
        error = "not_found" if exc.status_code == 404 else "method_not_allowed"
        response = _error(exc.status_code, error, exc.detail)
        response.headers.update(exc.headers or {})
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # The middleware has closed the authenticator (flushing last-used times) by now.
        data.close()
        if owned:
            store.close()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/api/v1/bookings", Bookings),
            Route("/api/v1/teams/{team_id}/bookings", Bookings),
            Route("/api/v1/contacts", contacts),
            Route("/api/v1/services", services),
            *management_routes(authenticator=authenticator, manager=manager, prefix="/api/v1"),
            *dashboard_routes(
                path=DASHBOARD_PATH,
                api_prefix="/api/v1",
                scopes=manager.scopes,
                sign_in_url="/demo/sign-in",
                notice=DEMO_NOTICE,
            ),
            *sign_in_routes(
                issuer, user_id=DEMO_USER, team_id=DEMO_TEAM, dashboard_path=DASHBOARD_PATH
            ),
        ],
        middleware=[
            Middleware(
                ApiKeyMiddleware,
                authenticator=authenticator,
                rules=RULES,
                close_on_shutdown=owned,
            )
        ],
        exception_handlers={404: http_error, 405: http_error},
        lifespan=lifespan,
    )
