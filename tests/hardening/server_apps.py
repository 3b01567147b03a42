"""The apps that tests/hardening/test_real_servers.py serves with real gunicorn and uvicorn
processes on 127.0.0.1.

Each factory reads two environment variables:

- ``SKAALA_SERVERS_DB``: the SQLite key store (the test creates the keys before the servers);
- ``SKAALA_SERVERS_RAN_LOG``: a file to which every protected handler appends one JSON line
  (``probe``, ``handler``, ``method``, ``team_id``, ``key_id``) *before* it answers, so the test,
  in another process, sees which handler ran, for which request (its ``X-Probe`` header), with
  the method the handler saw, the router-resolved team and the key id of the principal.

Handlers answer ``{"data": "BOOKINGS-OF-<team>"}`` and, for GET (and HEAD), an ``X-Total-Count``
header: data that must never reach a request the core did not grant.

Frameworks are imported inside the factories, so importing this module needs none of them.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which
# name classes imported inside the factory.
import json
import os
from typing import Any

from skaala_auth import Authenticator, SQLiteKeyStore
from skaala_auth.rules import Rule, Rules

DB_ENV = "SKAALA_SERVERS_DB"
LOG_ENV = "SKAALA_SERVERS_RAN_LOG"
MARKER = "BOOKINGS-OF-"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _authenticator() -> Authenticator:
    return Authenticator(SQLiteKeyStore(os.environ[DB_ENV]))


def _rules(prefix: str) -> Rules:
    """The drop-in table as docs/wsgi.md writes it: GET reads, POST writes, the rest of the
    prefix needs a valid key."""
    pattern = prefix + "/v1/teams/{team_id}/bookings"
    return Rules(
        [
            Rule(pattern, methods=["GET"], scopes=["read:bookings"]),
            Rule(pattern, methods=["POST"], scopes=["write:bookings"]),
        ],
        public=["/health"],
        protect=[prefix + "/"],
    )


def ran(
    handler: str, method: str, path: str, team_id: object, principal: object, probe: str | None
) -> None:
    """Record that ``handler`` ran (one ``write`` of one line, on an ``O_APPEND`` file), with the
    method and path the app saw."""
    line = json.dumps(
        {
            "probe": probe,
            "handler": handler,
            "method": method,
            "path": path,
            "team_id": None if team_id is None else str(team_id),
            "key_id": getattr(principal, "key_id", None),
        }
    )
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _flask_ran(handler: str, team_id: str) -> None:
    from flask import g, request

    ran(handler, request.method, request.path, team_id, g.principal, request.headers.get("X-Probe"))


def _asgi_ran(handler: str, request: Any, principal: object = None) -> None:
    """For Starlette and FastAPI: the path the router matched is ``scope["path"]``."""
    if principal is None:
        principal = getattr(request.state, "principal", None)
    if principal is None:
        principal = getattr(request.auth, "principal", None)
    team_id = request.path_params.get("team_id")
    probe = request.headers.get("x-probe")
    ran(handler, request.method, request.scope["path"], team_id, principal, probe)


def _body(team_id: object) -> dict[str, str]:
    return {"data": f"{MARKER}{team_id}"}


# --- gunicorn (WSGI) -------------------------------------------------------------------------


def flask_rules_app() -> Any:
    """Flask, drop-in: the rules table and ``protect=["/api/"]``, no decorator (the case that
    leaked under gunicorn with ``//api/…``)."""
    from flask import Flask

    from skaala_auth.flask import SkaalaAuth

    app = Flask("flask_rules")
    SkaalaAuth(app, authenticator=_authenticator(), rules=_rules("/api"))

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.route("/api/v1/teams/<team_id>/bookings", methods=ALL_METHODS)
    def bookings(team_id: str) -> Any:
        _flask_ran("flask_rules", team_id)
        return _body(team_id), 200, {"X-Total-Count": "3"}

    return app


def flask_decorator_app() -> Any:
    """Flask, ``@requires_scope`` on a route that lists OPTIONS (Flask then leaves OPTIONS to
    the view) and on a POST route."""
    from flask import Flask

    from skaala_auth.flask import SkaalaAuth, requires_scope

    app = Flask("flask_decorator")
    SkaalaAuth(app, authenticator=_authenticator())

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.route("/api/v1/teams/<team_id>/bookings", methods=["GET", "OPTIONS"])
    @requires_scope("read:bookings")
    def list_bookings(team_id: str) -> Any:
        _flask_ran("flask_list", team_id)
        return _body(team_id), 200, {"X-Total-Count": "3"}

    @app.post("/api/v1/teams/<team_id>/bookings")
    @requires_scope("write:bookings")
    def create_booking(team_id: str) -> Any:
        _flask_ran("flask_create", team_id)
        return _body(team_id), 201

    return app


def wsgi_rules_app() -> Any:
    """A plain WSGI app behind :class:`skaala_auth.wsgi.ApiKeyMiddleware` with the rules table.
    Its hand-written router accepts every method, and routes as many do: repeated slashes
    merged, one trailing slash ignored."""
    import re

    from skaala_auth.wsgi import PRINCIPAL_KEY, ApiKeyMiddleware

    route = re.compile(r"/api/v1/teams/(?P<team_id>[^/]+)/bookings")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = re.sub("/{2,}", "/", environ.get("PATH_INFO", ""))
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        if path == "/health":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        found = route.fullmatch(path)
        if found is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        method = environ["REQUEST_METHOD"]
        team_id = found["team_id"]
        principal, probe = environ.get(PRINCIPAL_KEY), environ.get("HTTP_X_PROBE")
        ran("wsgi_rules", method, environ.get("PATH_INFO", ""), team_id, principal, probe)
        body = json.dumps(_body(team_id)).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if method in ("GET", "HEAD"):
            headers.append(("X-Total-Count", "3"))
        start_response("200 OK", headers)
        return [] if method == "HEAD" else [body]

    return ApiKeyMiddleware(app, authenticator=_authenticator(), rules=_rules("/api"))


def django_app() -> Any:
    """Django (WSGI): ``@requires_scope`` function views under ``/api/`` and a view protected
    only by the ``SKAALA_AUTH`` rules under ``/rules/``; the settings are configured here."""
    import django
    from django.conf import settings

    rules = _rules("/rules")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        USE_TZ=True,
        DATABASES={},
        INSTALLED_APPS=["skaala_auth.django"],
        MIDDLEWARE=["skaala_auth.django.ApiKeyMiddleware"],
        ROOT_URLCONF=__name__,  # urlpatterns: the module __getattr__ below
        SKAALA_AUTH={
            "DB": os.environ[DB_ENV],
            "RULES": rules.rules,
            "PUBLIC": ["/health"],
            "PROTECT": ["/rules/"],
        },
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _django_urlpatterns() -> list[Any]:
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path

    from skaala_auth.django import requires_scope

    def answer(request: HttpRequest, handler: str, team_id: str, status: int = 200) -> Any:
        probe = request.headers.get("X-Probe")
        ran(handler, request.method, request.path_info, team_id, request.principal, probe)
        response = JsonResponse(_body(team_id), status=status)
        if request.method in ("GET", "HEAD"):
            response["X-Total-Count"] = "3"
        return response

    def health(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    @requires_scope("read:bookings")
    def list_bookings(request: HttpRequest, team_id: str) -> Any:
        return answer(request, "django_list", team_id)

    @requires_scope("write:bookings")
    def create_booking(request: HttpRequest, team_id: str) -> Any:
        return answer(request, "django_create", team_id, 201)

    def bookings(request: HttpRequest, team_id: str) -> Any:
        view = create_booking if request.method == "POST" else list_bookings
        return view(request, team_id=team_id)

    def rules_bookings(request: HttpRequest, team_id: str) -> Any:  # every method
        return answer(request, "django_rules", team_id)

    return [
        path("health", health),
        path("api/v1/teams/<str:team_id>/bookings", bookings),
        path("rules/v1/teams/<str:team_id>/bookings", rules_bookings),
    ]


def __getattr__(name: str) -> Any:  # Django's ROOT_URLCONF reads urlpatterns from here
    if name == "urlpatterns":
        patterns = _django_urlpatterns()
        globals()["urlpatterns"] = patterns
        return patterns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- uvicorn (ASGI) --------------------------------------------------------------------------


def starlette_app() -> Any:
    """Starlette: :class:`ApiKeyMiddleware` (no rules) and ``@requires_scope`` endpoints; the
    GET route lists OPTIONS too."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @requires_scope("read:bookings")
    async def list_bookings(request: Request) -> JSONResponse:
        team_id = request.path_params["team_id"]
        _asgi_ran("starlette_list", request)
        return JSONResponse(_body(team_id), headers={"X-Total-Count": "3"})

    @requires_scope("write:bookings")
    async def create_booking(request: Request) -> JSONResponse:
        team_id = request.path_params["team_id"]
        _asgi_ran("starlette_create", request)
        return JSONResponse(_body(team_id), status_code=201)

    path = "/api/v1/teams/{team_id}/bookings"
    return Starlette(
        routes=[
            Route("/health", health),
            Route(path, list_bookings, methods=["GET", "OPTIONS"]),
            Route(path, create_booking, methods=["POST"]),
        ],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=_authenticator())],
    )


def starlette_rules_app() -> Any:
    """Starlette, drop-in: the rules table on the middleware, an endpoint that knows nothing
    about keys and accepts every method."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from skaala_auth.starlette import ApiKeyMiddleware

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def bookings(request: Request) -> JSONResponse:
        team_id = request.path_params["team_id"]
        _asgi_ran("starlette_rules", request)
        headers = {"X-Total-Count": "3"} if request.method in ("GET", "HEAD") else None
        return JSONResponse(_body(team_id), headers=headers)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/api/v1/teams/{team_id}/bookings", bookings, methods=ALL_METHODS),
        ],
        middleware=[
            Middleware(ApiKeyMiddleware, authenticator=_authenticator(), rules=_rules("/api"))
        ],
    )


def fastapi_app() -> Any:
    """FastAPI: ``Depends(RequireScopes(...))`` and ``Security(RequireScopes(...), scopes=...)``
    (the dependency's own scopes and ``scopes=`` are both required)."""
    from typing import Annotated

    from fastapi import Depends, FastAPI, Request, Response, Security
    from starlette.middleware import Middleware

    from skaala_auth import Principal
    from skaala_auth.fastapi import ApiKeyMiddleware, RequireScopes

    app = FastAPI(middleware=[Middleware(ApiKeyMiddleware, authenticator=_authenticator())])
    path = "/api/v1/teams/{team_id}/bookings"

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get(path)
    async def list_bookings(
        team_id: str,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(RequireScopes("read:bookings"))],
    ) -> dict[str, str]:
        _asgi_ran("fastapi_list", request, principal)
        response.headers["X-Total-Count"] = "3"
        return _body(team_id)

    @app.post(path, status_code=201)
    async def create_booking(
        team_id: str,
        request: Request,
        principal: Annotated[Principal, Security(RequireScopes(), scopes=["write:bookings"])],
    ) -> dict[str, str]:
        _asgi_ran("fastapi_create", request, principal)
        return _body(team_id)

    @app.put(path)
    async def replace_bookings(
        team_id: str,
        request: Request,
        principal: Annotated[
            Principal, Security(RequireScopes("read:bookings"), scopes=["write:bookings"])
        ],
    ) -> dict[str, str]:
        _asgi_ran("fastapi_replace", request, principal)
        return _body(team_id)

    @app.delete(path, dependencies=[Security(RequireScopes(), scopes=["write:bookings"])])
    async def delete_bookings(team_id: str, request: Request) -> dict[str, str]:
        _asgi_ran("fastapi_delete", request)
        return _body(team_id)

    return app
