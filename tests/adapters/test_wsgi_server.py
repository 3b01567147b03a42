"""A Flask app behind a real WSGI server (werkzeug's, on a loopback port): what a server does to
headers (merging repeats with a comma, dropping none) must not change the contract."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask, g
from werkzeug.serving import make_server

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore
from skaala_auth.flask import SkaalaAuth, requires_scope

MISSING = b'{"error":"unauthorized","message":"Missing API key"}'
INVALID = b'{"error":"unauthorized","message":"Invalid API key"}'


@dataclass
class Server:
    port: int
    key: str
    manager: KeyManager

    def get(self, path: str, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
        # http.client, not a high-level client: it sends repeated headers as they are given.
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest("GET", path)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    store = MemoryKeyStore()
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    app = Flask(__name__)
    SkaalaAuth(app, authenticator=Authenticator(store))

    @app.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def bookings(team_id: str) -> dict[str, object]:
        return {"data": [], "team": g.principal.team_id}

    @app.errorhandler(401)
    def own_handler(error: Exception) -> tuple[str, int]:  # the app's own handlers stay out
        return "not ours", 401

    wsgi_server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=wsgi_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(wsgi_server.server_port, key, manager)
    finally:
        wsgi_server.shutdown()
        thread.join(timeout=10)


def test_if_a_valid_key_then_200(server: Server) -> None:
    status, _, body = server.get(
        "/teams/team_1/bookings", [("Authorization", f"Bearer {server.key}")]
    )
    assert (status, body.strip()) == (200, b'{"data":[],"team":"team_1"}')


def test_if_no_key_then_the_contract_401_not_the_app_handler(server: Server) -> None:
    status, headers, body = server.get("/teams/team_1/bookings", [])
    assert (status, body) == (401, MISSING)
    assert headers["www-authenticate"] == 'Bearer realm="api"'
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def test_if_a_bad_key_then_401_invalid(server: Server) -> None:
    status, _, body = server.get("/teams/team_1/bookings", [("X-API-Key", server.key[:-1] + "x")])
    assert (status, body) == (401, INVALID)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param(
            lambda k: [("Authorization", f"Bearer {k}"), ("Authorization", f"Bearer {k}")],
            b"Repeated Authorization header",
            id="repeated-authorization",
        ),
        pytest.param(
            lambda k: [("X-API-Key", k), ("X-API-Key", k)],
            b"Repeated X-API-Key header",
            id="repeated-x-api-key",
        ),
        pytest.param(
            lambda k: [("Authorization", "Basic dXNlcjpwYXNz"), ("Authorization", f"Bearer {k}")],
            b"Repeated Authorization header",
            id="basic-then-bearer",
        ),
    ],
)
def test_if_the_server_merges_a_repeated_header_then_still_400(
    server: Server, headers: object, message: bytes
) -> None:
    status, response_headers, body = server.get("/teams/team_1/bookings", headers(server.key))  # type: ignore[operator]
    assert status == 400 and message in body
    assert response_headers["www-authenticate"] == 'Bearer realm="api", error="invalid_request"'


def test_if_revoked_while_cached_then_401_at_once(server: Server) -> None:
    key, record = server.manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"]
    )
    assert server.get("/teams/team_1/bookings", [("X-API-Key", key)])[0] == 200
    server.manager.revoke_key(record.id)
    assert server.get("/teams/team_1/bookings", [("X-API-Key", key)])[:3:2] == (401, INVALID)
