"""``credentials=`` and ``roles=`` on every adapter's per-endpoint check: a handler that takes
dashboard sessions only (an API key gets 403, whatever its scopes), or only some roles.

One small app per adapter, each with the same two routes, driven by the same table of cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("jwt", reason="the session extra (PyJWT) is not installed")

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore
from skaala_auth.testing import SessionKit

from ..conftest import Clock

#: (method, path, headers) -> (status, body)
Call = Callable[[str, str, dict[str, str]], tuple[int, Any]]
SETTINGS = "/teams/team_1/settings"  # session only, owners and admins
BOOKINGS = "/teams/team_1/bookings"  # any credential, read:bookings, owners only


def _json(response: Any) -> tuple[int, Any]:
    return response.status_code, response.json()


@contextmanager
def starlette_app(auth: Authenticator) -> Iterator[Call]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

    @requires_scope(credentials="session", roles=["owner", "admin"])
    async def settings(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.state.principal.user_id})

    @requires_scope("read:bookings", roles=["owner"])
    def bookings(request: Request) -> JSONResponse:  # a sync endpoint: the worker-thread path
        return JSONResponse({"user": request.state.principal.user_id})

    app = Starlette(
        routes=[
            Route("/teams/{team_id}/settings", settings, methods=["GET", "POST"]),
            Route("/teams/{team_id}/bookings", bookings),
        ],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=auth, close_on_shutdown=False)],
    )
    with TestClient(app) as client:
        yield lambda m, p, h: _json(client.request(m, p, headers=h))


@contextmanager
def fastapi_app(auth: Authenticator) -> Iterator[Call]:
    from fastapi import Depends, FastAPI
    from starlette.testclient import TestClient

    from skaala_auth import Principal
    from skaala_auth.fastapi import ApiKeyMiddleware, RequireScopes

    app = FastAPI()
    app.add_middleware(ApiKeyMiddleware, authenticator=auth, close_on_shutdown=False)
    manage = RequireScopes(credentials="session", roles=["owner", "admin"])
    owners = RequireScopes("read:bookings", roles=["owner"])

    @app.api_route("/teams/{team_id}/settings", methods=["GET", "POST"])
    async def settings(
        team_id: str,
        principal: Principal = Depends(manage),  # noqa: B008 - Annotated needs module imports
    ) -> dict[str, str]:
        return {"user": principal.user_id}

    @app.get("/teams/{team_id}/bookings")
    async def bookings(
        team_id: str,
        principal: Principal = Depends(owners),  # noqa: B008
    ) -> dict[str, str]:
        return {"user": principal.user_id}

    with TestClient(app) as client:
        yield lambda m, p, h: _json(client.request(m, p, headers=h))


@contextmanager
def flask_app(auth: Authenticator) -> Iterator[Call]:
    from flask import Flask, g

    from skaala_auth.flask import SkaalaAuth, requires_scope

    app = Flask("sessions")
    SkaalaAuth(app, authenticator=auth)

    @app.route("/teams/<team_id>/settings", methods=["GET", "POST"])
    @requires_scope(credentials="session", roles=["owner", "admin"])
    def settings(team_id: str) -> dict[str, str]:
        return {"user": g.principal.user_id}

    @app.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings", roles=["owner"])
    def bookings(team_id: str) -> dict[str, str]:
        return {"user": g.principal.user_id}

    client = app.test_client(use_cookies=False)

    def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        response = client.open(path, method=method, headers=headers)
        return response.status_code, response.get_json()

    yield call


@contextmanager
def django_app(auth: Authenticator) -> Iterator[Call]:
    from django.test import Client
    from django.test.utils import override_settings

    from tests.django_settings import configure

    configure()
    with override_settings(
        SKAALA_AUTH={"AUTHENTICATOR": auth}, ROOT_URLCONF="tests.adapters.session_django_urls"
    ):
        client = Client()

        def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
            response = client.generic(method, path, headers=headers)
            return response.status_code, response.json()

        yield call


APPS = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "flask": flask_app,
    "django": django_app,
}


@pytest.fixture(params=list(APPS))
def call(
    request: pytest.FixtureRequest, store: MemoryKeyStore, clock: Clock, kit: SessionKit
) -> Iterator[Call]:
    pytest.importorskip(request.param)
    with Authenticator(store, clock=clock, session_verifier=kit.verifier()) as auth:
        with APPS[request.param](auth) as call:
            yield call


@pytest.fixture
def kit(clock: Clock) -> SessionKit:
    return SessionKit(project_id="test-project", clock=clock)


@pytest.fixture
def people(store: MemoryKeyStore, clock: Clock) -> dict[str, str]:
    manager = KeyManager(store, clock=clock)
    for user, role in [("owner_1", "owner"), ("admin_1", "admin"), ("member_1", "member")]:
        manager.add_member(team_id="team_1", user_id=user, role=role)
    key, _ = manager.create_key(
        team_id="team_1", user_id="owner_1", name="all", scopes=["read:bookings", "read:staff"]
    )
    return {"key": key}


def cookie(kit: SessionKit, user: str) -> dict[str, str]:
    return {"Cookie": f"stack-access-token={kit.mint(user)}"}


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        ("owner_1", SETTINGS, 200),
        ("admin_1", SETTINGS, 200),
        ("member_1", SETTINGS, 403),
        ("outsider", SETTINGS, 403),
        ("owner_1", BOOKINGS, 200),
        ("admin_1", BOOKINGS, 403),
    ],
)
def test_sessions_by_role(
    call: Call, kit: SessionKit, people: dict[str, str], user: str, path: str, status: int
) -> None:
    got, body = call("GET", path, cookie(kit, user))
    assert got == status, body
    if status == 200:
        assert body == {"user": user}
    else:
        assert body["error"] == "forbidden"


def test_an_api_key_cannot_reach_a_session_only_handler(
    call: Call, kit: SessionKit, people: dict[str, str]
) -> None:
    for headers in (
        {"X-API-Key": people["key"]},
        {"X-API-Key": people["key"], **cookie(kit, "owner_1")},
    ):
        status, body = call("GET", SETTINGS, headers)
        assert status == 403 and "not API keys" in body["message"], body


def test_a_key_of_an_owner_passes_a_role_check(call: Call, people: dict[str, str]) -> None:
    status, body = call("GET", BOOKINGS, {"X-API-Key": people["key"]})
    assert status == 200 and body == {"user": "owner_1"}


def test_nothing_sent_to_a_session_only_handler(call: Call, people: dict[str, str]) -> None:
    status, body = call("GET", SETTINGS, {})
    assert status == 401
    assert body == {"error": "unauthorized", "message": "Missing session: sign in to the dashboard"}


def test_a_cookie_post_needs_an_origin(call: Call, kit: SessionKit, people: dict[str, str]) -> None:
    status, body = call("POST", SETTINGS, cookie(kit, "owner_1"))
    assert status == 403 and body["message"].startswith("Cross-site request refused"), body
    host = {"Origin": "http://localhost", "Host": "localhost"}
    status, body = call("POST", SETTINGS, {**cookie(kit, "owner_1"), **host})
    assert status == 200, body
