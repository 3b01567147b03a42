"""The hardening apps in Flask and plain WSGI (werkzeug's router). Every handler records that it
ran."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.routing import Rule as Route

from skaala_auth import Authenticator
from skaala_auth.flask import SkaalaAuth, requires_scope
from skaala_auth.rules import Rules
from skaala_auth.wsgi import ApiKeyMiddleware

from .asgi_apps import DECLARED, OTHER_METHODS
from .world import record

BOOKINGS_ROUTE = "/api/v1/teams/<team_id>/bookings"
STAFF_ROUTE = "/api/v1/teams/<team_id>/staff"
_ROUTES = [
    # First: Flask adds an automatic OPTIONS answer to the routes that do not list OPTIONS, and
    # the first route that accepts OPTIONS wins; this view must be the one that gets them.
    (BOOKINGS_ROUTE, "other", OTHER_METHODS),
    (BOOKINGS_ROUTE, "list", ["GET"]),  # werkzeug adds HEAD
    (BOOKINGS_ROUTE, "create", ["POST"]),
    (STAFF_ROUTE, "staff", ["GET"]),
    ("/health", "health", ["GET"]),
    ("/internal/report", "internal", ["GET", "POST"]),
]


def _body(name: str, team: object) -> bytes:
    return json.dumps({"handler": name, "team": team, "data": ["secret"]}).encode()


def flask_app(auth: Authenticator, *, rules: Rules | None) -> Flask:
    """``rules=None``: the decorator style; else the rules table given to ``SkaalaAuth``."""
    app = Flask("hardening")
    SkaalaAuth(app, authenticator=auth, rules=rules)

    def view(name: str) -> Any:
        def handler(team_id: str | None = None) -> Any:
            record(name, request.method, team_id, g.principal)
            return app.response_class(
                _body(name, team_id),
                mimetype="application/json",
                headers={"X-Total-Count": "1"},
            )

        handler.__name__ = name
        scopes = DECLARED[name]
        if rules is None and scopes is not None:
            return requires_scope(*scopes)(handler)
        return handler

    for rule, name, methods in _ROUTES:
        app.add_url_rule(rule, name, view(name), methods=methods)
    return app


def plain_wsgi_app(auth: Authenticator, *, rules: Rules) -> ApiKeyMiddleware:
    """Legacy WSGI code routed by werkzeug's ``Map``, behind ``skaala_auth.wsgi``'s middleware."""
    url_map = Map([Route(rule, endpoint=name, methods=methods) for rule, name, methods in _ROUTES])

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            name, arguments = url_map.bind_to_environ(environ).match()
        except HTTPException as error:  # 404, 405, and the router's own redirects
            return error(environ, start_response)
        team = arguments.get("team_id")
        record(name, environ["REQUEST_METHOD"], team, environ.get("skaala_auth.principal"))
        start_response("200 OK", [("Content-Type", "application/json"), ("X-Total-Count", "1")])
        return [_body(name, team)]

    return ApiKeyMiddleware(app, authenticator=auth, rules=rules)
