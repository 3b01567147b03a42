"""The same small bookings API, built in every framework, behind one way of calling it.

Endpoints (identical everywhere):

- ``GET /health``: not protected; answers ``{"principal": <key id or null>}``.
- ``GET /public/status``: a public path (never challenged, even with a bad key).
- ``GET /teams/{team_id}/bookings``: needs ``read:bookings`` and a key of that team.
- ``POST /teams/{team_id}/bookings``: needs ``write:bookings`` and a key of that team; 201.

Each endpoint that runs appends its name to :data:`CALLS`, so a test can tell that a refused
request never reached its handler. Every app is called through its framework's own test client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from skaala_auth import Authenticator, Principal
from skaala_auth.rules import Rule, Rules

CALLS: list[str] = []
PUBLIC = ["/public/*"]
Headers = list[tuple[str, str]]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: (method, path, headers, query string) -> Reply
Call = Callable[[str, str, Headers, str], Reply]


def key_id(principal: Principal | None) -> str | None:
    return None if principal is None else principal.key_id


def _url(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def _merged(headers: Headers) -> dict[str, str]:
    """Headers as a WSGI server or Django's ASGI handler hands them over: a repeated header is
    one value, joined with commas."""
    merged: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        merged[lower] = f"{merged[lower]},{value}" if lower in merged else value
    return merged


# -- Starlette and FastAPI ----------------------------------------------------------------------


def _asgi_call(app: Any) -> Call:
    from starlette.testclient import TestClient

    # The address every test client sends from (werkzeug's and Django's default), so that the
    # IP allow-list rows read the same in every adapter.
    client = TestClient(app, client=("127.0.0.1", 50000))

    def call(method: str, path: str, headers: Headers, query: str) -> Reply:
        raw = [(name, value.encode("latin-1")) for name, value in headers]
        response = client.request(method, _url(path, query), headers=raw)
        return Reply(response.status_code, dict(response.headers), response.content)

    return call


@contextmanager
def starlette(auth: Authenticator) -> Iterator[Call]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

    async def health(request: Request) -> JSONResponse:
        CALLS.append("health")
        return JSONResponse({"principal": key_id(request.state.principal)})

    async def public(request: Request) -> JSONResponse:
        CALLS.append("public")
        return JSONResponse({"public": True})

    @requires_scope("read:bookings")
    async def list_bookings(request: Request) -> JSONResponse:
        CALLS.append("list")
        team_id = request.path_params["team_id"]
        return JSONResponse({"team_id": team_id, "key_id": key_id(request.state.principal)})

    @requires_scope("write:bookings")
    async def create_booking(request: Request) -> JSONResponse:
        CALLS.append("create")
        return JSONResponse({"created": True}, status_code=201)

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/public/status", public),
            Route("/teams/{team_id}/bookings", list_bookings, methods=["GET"]),
            Route("/teams/{team_id}/bookings", create_booking, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                ApiKeyMiddleware,
                authenticator=auth,
                rules=Rules(public=PUBLIC),
                close_on_shutdown=False,
            )
        ],
    )
    yield _asgi_call(app)


@contextmanager
def fastapi(auth: Authenticator) -> Iterator[Call]:
    from .fastapi_app import build

    yield _asgi_call(build(auth))


# -- Flask and plain WSGI -----------------------------------------------------------------------


def _wsgi_call(client: Any) -> Call:
    def call(method: str, path: str, headers: Headers, query: str) -> Reply:
        # werkzeug's test client joins a repeated header with ", ", as WSGI servers do.
        response = client.open(
            path,
            method=method,
            headers=headers,
            query_string=query,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},  # what a server sets (Flask's client too)
        )
        try:
            return Reply(
                response.status_code,
                {name.lower(): value for name, value in response.headers.items()},
                response.get_data(),
            )
        finally:
            response.close()

    return call


@contextmanager
def flask(auth: Authenticator) -> Iterator[Call]:
    from flask import Flask, g
    from werkzeug.exceptions import HTTPException

    from skaala_auth.flask import SkaalaAuth, requires_scope

    app = Flask("contract")
    SkaalaAuth(app, authenticator=auth, rules=Rules(public=PUBLIC))

    # The app's own error handlers must not reshape the contract's answers.
    @app.errorhandler(HTTPException)
    def html_errors(error: HTTPException) -> tuple[str, int]:
        return f"<h1>{error.code}</h1>", error.code or 500

    @app.errorhandler(Exception)
    def everything(error: Exception) -> tuple[str, int]:
        return "<h1>oops</h1>", 500

    @app.get("/health")
    def health() -> dict[str, Any]:
        CALLS.append("health")
        return {"principal": key_id(g.principal)}

    @app.get("/public/status")
    def public() -> dict[str, Any]:
        CALLS.append("public")
        return {"public": True}

    @app.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def list_bookings(team_id: str) -> dict[str, Any]:
        CALLS.append("list")
        return {"team_id": team_id, "key_id": key_id(g.principal)}

    @app.post("/teams/<team_id>/bookings")
    @requires_scope("write:bookings")
    def create_booking(team_id: str) -> tuple[dict[str, Any], int]:
        CALLS.append("create")
        return {"created": True}, 201

    # use_cookies=False: the requests send their own Cookie headers (sessions), kept as sent
    yield _wsgi_call(app.test_client(use_cookies=False))


_BOOKINGS = re.compile(r"/teams/([^/]+)/bookings")


def bookings_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A framework-free WSGI app, as legacy code would be: it only reads the principal."""
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    principal = environ.get("skaala_auth.principal")
    status, body = "404 Not Found", {"error": "not_found"}
    found = _BOOKINGS.fullmatch(path)
    if path == "/health":
        CALLS.append("health")
        status, body = "200 OK", {"principal": key_id(principal)}
    elif path == "/public/status":
        CALLS.append("public")
        status, body = "200 OK", {"public": True}
    elif found and method == "GET":
        CALLS.append("list")
        status, body = "200 OK", {"team_id": found[1], "key_id": key_id(principal)}
    elif found and method == "POST":
        CALLS.append("create")
        status, body = "201 Created", {"created": True}
    elif found and method == "OPTIONS":
        status, body = "204 No Content", {}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


BOOKINGS_RULES = Rules(
    [
        Rule("/teams/{team_id}/bookings", methods=["GET"], scopes=["read:bookings"]),
        Rule("/teams/{team_id}/bookings", methods=["POST"], scopes=["write:bookings"]),
    ],
    public=PUBLIC,
)


@contextmanager
def wsgi(auth: Authenticator) -> Iterator[Call]:
    from werkzeug.test import Client

    from skaala_auth.wsgi import ApiKeyMiddleware

    app = ApiKeyMiddleware(bookings_wsgi_app, authenticator=auth, rules=BOOKINGS_RULES)
    yield _wsgi_call(Client(app, use_cookies=False))


# -- Django (WSGI and ASGI) and Django REST framework -------------------------------------------


def _django_reply(response: Any) -> Reply:
    return Reply(
        response.status_code,
        {name.lower(): value for name, value in response.headers.items()},
        response.content,
    )


@contextmanager
def _django(auth: Authenticator, **overrides: Any) -> Iterator[None]:
    from django.test.utils import override_settings

    from tests.django_settings import configure

    configure()
    with override_settings(SKAALA_AUTH={"AUTHENTICATOR": auth, "PUBLIC": PUBLIC}, **overrides):
        yield


@contextmanager
def django(auth: Authenticator) -> Iterator[Call]:
    with _django(auth):
        from django.test import Client

        client = Client()

        def call(method: str, path: str, headers: Headers, query: str) -> Reply:
            response = client.generic(method, _url(path, query), headers=_merged(headers))
            return _django_reply(response)

        yield call


@contextmanager
def django_asgi(auth: Authenticator) -> Iterator[Call]:
    with _django(auth, ROOT_URLCONF="tests.contract.django_async_app"):
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient

        client = AsyncClient()

        async def request(method: str, path: str, headers: Headers, query: str) -> Any:
            return await client.generic(method, _url(path, query), headers=_merged(headers))

        def call(method: str, path: str, headers: Headers, query: str) -> Reply:
            return _django_reply(async_to_sync(request)(method, path, headers, query))

        yield call


@contextmanager
def drf(auth: Authenticator) -> Iterator[Call]:
    # No skaala_auth middleware: the DRF classes do all the work.
    with _django(auth, ROOT_URLCONF="tests.contract.drf_app", MIDDLEWARE=[]):
        from django.test import Client

        client = Client()

        def call(method: str, path: str, headers: Headers, query: str) -> Reply:
            response = client.generic(method, _url(path, query), headers=_merged(headers))
            return _django_reply(response)

        yield call


ADAPTERS: dict[str, Callable[[Authenticator], Any]] = {
    "starlette": starlette,
    "fastapi": fastapi,
    "flask": flask,
    "wsgi": wsgi,
    "django": django,
    "django-asgi": django_asgi,
    "drf": drf,
}
