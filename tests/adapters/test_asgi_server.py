"""The contract table against a real uvicorn server (httptools, uvloop) on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, generate_key
from skaala_auth.rules import Rules
from tests.adapters.test_starlette import INVALID, MISSING, build_app


@dataclass
class Server:
    url: str
    key: str
    writer: str
    manager: KeyManager


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    store = MemoryKeyStore()
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    writer, _ = manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings", "write:bookings"]
    )
    app = build_app(Authenticator(store), rules=Rules(public=["/health"], protect=["/api/"]))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # a free port, held from the start: no race
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        ws="websockets-sansio",
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [listener]})
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Server(f"http://127.0.0.1:{port}", key, writer, manager)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        listener.close()
        assert not thread.is_alive()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def test_if_a_good_key_over_http_then_200(server: Server, http: httpx.Client) -> None:
    response = http.get("/bookings", headers={"Authorization": f"Bearer {server.key}"})
    assert (response.status_code, response.json()["user"]) == (200, "user_1")


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "body", "challenge"),
    [
        ("GET", "/bookings", {}, 401, MISSING, 'Bearer realm="api"'),
        ("GET", "/api/x", {}, 401, MISSING, 'Bearer realm="api"'),
        ("GET", "/bookings", {"X-API-Key": "sk_live_junk"}, 401, INVALID, "invalid_token"),
        ("GET", "/bookings", {"X-API-Key": "{unknown}"}, 401, INVALID, "invalid_token"),
        ("POST", "/bookings", {"X-API-Key": "{key}"}, 403, None, "insufficient_scope"),
        ("GET", "/teams/team_2/bookings", {"X-API-Key": "{key}"}, 403, None, None),
        (
            "GET",
            "/bookings",
            {"Authorization": "Bearer {key}", "X-API-Key": "{key}"},
            400,
            None,
            "invalid",
        ),
        ("GET", "/bookings?api_key={key}", {}, 400, None, "invalid_request"),
        ("GET", "/health", {"X-API-Key": "sk_live_junk"}, 404, None, None),  # public: not ours
    ],
)
def test_if_a_contract_row_is_sent_over_http_then_the_contract_answer(
    server: Server,
    http: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    body: bytes | None,
    challenge: str | None,
) -> None:
    values = {"key": server.key, "unknown": generate_key()}
    response = http.request(
        method,
        path.format(**values),
        headers={name: value.format(**values) for name, value in headers.items()},
    )
    assert response.status_code == status
    if status == 404:
        return
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    if body is not None:
        assert response.content == body
    if challenge is not None:
        assert challenge in response.headers["www-authenticate"]


def test_if_a_header_is_repeated_over_http_then_400(server: Server, http: httpx.Client) -> None:
    headers = [("X-API-Key", server.key), ("X-API-Key", server.key)]
    response = http.get("/bookings", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_if_a_key_is_revoked_then_the_server_refuses_it_at_once(
    server: Server, http: httpx.Client
) -> None:
    key, record = server.manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"]
    )
    assert http.get("/bookings", headers={"X-API-Key": key}).status_code == 200
    server.manager.revoke_key(record.id)
    assert http.get("/bookings", headers={"X-API-Key": key}).content == INVALID


def test_if_a_websocket_handshake_is_authenticated_over_the_wire_then_it_opens(
    server: Server,
) -> None:
    url = server.url.replace("http", "ws") + "/ws"
    with connect(url, additional_headers={"X-API-Key": server.key}) as socket_:
        assert socket_.recv(timeout=5) == '{"user":"user_1"}'
    with pytest.raises(InvalidStatus) as refused:
        with connect(url, additional_headers={"X-API-Key": "sk_live_junk"}):
            pass  # pragma: no cover
    assert refused.value.response.status_code == 403  # a close before accept
