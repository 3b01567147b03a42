"""The pytest plugin, used the way a service would use it: a throwaway project with a small
Flask app and a small Starlette app, run by pytest's own ``pytester``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

pytest.importorskip("flask")
pytest.importorskip("starlette")

APPS = """
from flask import Flask, g, jsonify
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skaala_auth import Authenticator, MemoryKeyStore
from skaala_auth.flask import SkaalaAuth, requires_scope as flask_requires_scope
from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

# Built at import time with "production" settings, as real apps are.
flask_app = Flask(__name__)
SkaalaAuth(flask_app, authenticator=Authenticator(MemoryKeyStore()))


@flask_app.get("/api/v1/teams/<team_id>/bookings")
@flask_requires_scope("read:bookings")
def flask_bookings(team_id):
    return jsonify({"data": [], "team": g.principal.team_id})


def make_starlette(authenticator):
    @requires_scope("read:bookings")
    async def bookings(request: Request) -> JSONResponse:
        return JSONResponse({"data": [], "user": request.state.principal.user_id})

    return Starlette(
        routes=[Route("/api/v1/bookings", bookings)],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=authenticator)],
    )
"""

TESTS = """
from datetime import timedelta

from starlette.testclient import TestClient

from apps import flask_app, make_starlette


def test_flask_with_override(skaala_auth_override, auth_headers):
    client = flask_app.test_client()
    response = client.get("/api/v1/teams/team_1/bookings", headers=auth_headers(["read:bookings"]))
    assert response.status_code == 200
    assert response.get_json() == {"data": [], "team": "team_1"}


def test_flask_other_team_is_forbidden(skaala_auth_override, auth_headers):
    client = flask_app.test_client()
    headers = auth_headers(["read:bookings"], team_id="team_2")
    assert client.get("/api/v1/teams/team_1/bookings", headers=headers).status_code == 403


def test_flask_expired_key(skaala_auth_override, api_key_factory):
    key, _ = api_key_factory(scopes=["read:bookings"], expired=True)
    response = flask_app.test_client().get(
        "/api/v1/teams/team_1/bookings", headers={"X-API-Key": key}
    )
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized", "message": "Invalid API key"}


def test_starlette_factory_with_clock(skaala_authenticator, api_key_factory, skaala_clock):
    key, record = api_key_factory(scopes=["read:bookings"], expires_in=timedelta(days=1))
    with TestClient(make_starlette(skaala_authenticator)) as client:
        ok = client.get("/api/v1/bookings", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json() == {"data": [], "user": record.user_id}
        skaala_clock.advance(timedelta(days=1))
        late = client.get("/api/v1/bookings", headers={"Authorization": f"Bearer {key}"})
        assert late.status_code == 401


def test_starlette_wrong_scope_must_fail(skaala_authenticator, auth_headers):
    # Deliberately wrong: the key lacks read:bookings, so the app answers 403 and this fails.
    with TestClient(make_starlette(skaala_authenticator)) as client:
        response = client.get("/api/v1/bookings", headers=auth_headers(["read:contacts"]))
        assert response.status_code == 200


def test_fixtures_are_fresh_per_test(skaala_store):
    assert skaala_store.list_members("team_1") == []
"""


def test_if_a_service_uses_the_fixtures_then_outcomes_are_real(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(apps=APPS, test_service=TESTS)
    # In-process, so that coverage sees the fixtures run.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*test_starlette_wrong_scope_must_fail*", "*assert 403 == 200*"])


def test_if_the_plugin_is_installed_then_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["*skaala_clock*", "*api_key_factory*", "*auth_headers*", "*skaala_auth_override*"]
    )


DOCS = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
FILE_BLOCK = re.compile(r"^```py\n# file: (?P<name>[\w.]+)\n(?P<body>.*?)^```", re.M | re.S)


def test_if_the_testing_page_is_run_as_a_project_then_every_example_passes(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("django")
    files = {m["name"]: m["body"] for m in FILE_BLOCK.finditer(DOCS.read_text(encoding="utf-8"))}
    assert {"shop_starlette.py", "shop_flask.py", "shop_fastapi.py", "conftest.py"} <= set(files)
    for name, body in files.items():
        pytester.path.joinpath(name).write_text(body, encoding="utf-8")
    tests = sum(len(re.findall(r"^def test_", body, re.M)) for body in files.values())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=tests)
