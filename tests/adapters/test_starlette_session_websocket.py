"""A Starlette WebSocket route protected by ``requires_scope``, opened with a dashboard session
(docs/sessions.md, "CSRF"): a handshake authenticated by a session *cookie* is a cross-site
request like an unsafe method, so it needs an ``Origin`` that is the request's own host or one
of ``allowed_origins``; else it is closed with 1008 (policy violation) and the handler never
runs. A token in the ``x-stack-access-token`` header needs no Origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("jwt", reason="the session extra (PyJWT) is not installed")

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore
from skaala_auth.starlette import ApiKeyMiddleware, requires_scope
from skaala_auth.testing import SessionKit

from ..conftest import Clock

DASHBOARD = "https://dashboard.example"
SOCKET = "/teams/team_1/ws"  # requires_scope("read:bookings")
OPEN = "/open/ws"  # not protected


@pytest.fixture
def kit(clock: Clock) -> SessionKit:
    return SessionKit(project_id="test-project", clock=clock)


@pytest.fixture
def calls() -> list[tuple[str, object]]:
    return []


@pytest.fixture
def client(clock: Clock, kit: SessionKit, calls: list[tuple[str, object]]) -> Iterator[TestClient]:
    store = MemoryKeyStore()
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    manager.add_member(team_id="team_1", user_id="member_1", role="member")
    manager.add_member(team_id="team_2", user_id="user_2", role="owner")

    @requires_scope("read:bookings")
    async def socket(websocket: WebSocket) -> None:
        principal = websocket.state.principal
        calls.append(("socket", principal.user_id))
        await websocket.accept()
        await websocket.send_json({"user": principal.user_id, "team": principal.team_id})
        await websocket.close()

    async def open_socket(websocket: WebSocket) -> None:
        principal = websocket.state.principal
        calls.append(("open", None if principal is None else principal.user_id))
        await websocket.accept()
        await websocket.send_json({"authenticated": websocket.user.is_authenticated})
        await websocket.close()

    auth = Authenticator(
        store, clock=clock, session_verifier=kit.verifier(), allowed_origins=[DASHBOARD]
    )
    app = Starlette(
        routes=[
            WebSocketRoute("/teams/{team_id}/ws", socket),
            WebSocketRoute(OPEN, open_socket),
        ],
        middleware=[Middleware(ApiKeyMiddleware, authenticator=auth, close_on_shutdown=False)],
    )
    with TestClient(app) as test_client:  # Host: testserver
        yield test_client
    auth.close()


def cookie(kit: SessionKit, user: str = "user_1") -> dict[str, str]:
    return {"Cookie": f"stack-access-token={kit.mint(user)}"}


def refused(client: TestClient, path: str, headers: dict[str, str]) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect(path, headers=headers):
            pass  # pragma: no cover - never opens
    return closed.value


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param({}, id="no-origin"),
        pytest.param({"Origin": "https://evil.example"}, id="evil-origin"),
        pytest.param({"Origin": "null"}, id="null-origin"),
        pytest.param({"Origin": DASHBOARD + ".evil.example"}, id="lookalike-origin"),
        pytest.param({"Referer": "https://evil.example/http://testserver/"}, id="evil-referer"),
    ],
)
def test_if_a_cookie_handshake_has_no_allowed_origin_then_close_1008_and_no_handler(
    client: TestClient, kit: SessionKit, calls: list[tuple[str, object]], origin: dict[str, str]
) -> None:
    closed = refused(client, SOCKET, {**cookie(kit), **origin})
    assert closed.code == 1008
    assert closed.reason == "Cross-site request refused: this Origin is not allowed"
    assert calls == []


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param({"Origin": "http://testserver"}, id="same-host"),
        pytest.param({"Origin": DASHBOARD}, id="allowed-origin"),
        pytest.param({"Referer": "http://testserver/dashboard"}, id="same-host-referer"),
    ],
)
def test_if_a_cookie_handshake_has_an_allowed_origin_then_the_socket_opens(
    client: TestClient, kit: SessionKit, calls: list[tuple[str, object]], origin: dict[str, str]
) -> None:
    with client.websocket_connect(SOCKET, headers={**cookie(kit), **origin}) as socket:
        assert socket.receive_json() == {"user": "user_1", "team": "team_1"}
    assert calls == [("socket", "user_1")]


def test_if_the_sdk_cookie_carries_the_session_then_it_needs_an_origin_too(
    client: TestClient, kit: SessionKit, calls: list[tuple[str, object]]
) -> None:
    sdk = kit.headers("user_1", carrier="sdk")
    assert refused(client, SOCKET, sdk).code == 1008
    assert calls == []
    with client.websocket_connect(SOCKET, headers={**sdk, "Origin": "http://testserver"}) as ws:
        assert ws.receive_json()["user"] == "user_1"


def test_if_the_token_is_in_the_header_then_no_origin_is_needed(
    client: TestClient, kit: SessionKit, calls: list[tuple[str, object]]
) -> None:
    with client.websocket_connect(SOCKET, headers=kit.headers("member_1", carrier="header")) as ws:
        assert ws.receive_json() == {"user": "member_1", "team": "team_1"}
    assert calls == [("socket", "member_1")]


@pytest.mark.parametrize(
    ("user", "headers"),
    [
        pytest.param("user_2", {}, id="not-a-member-of-the-team"),
        pytest.param("user_1", {"expires_in": -3600}, id="expired"),
        pytest.param("user_1", {"aud": "another-project"}, id="wrong-audience"),
    ],
)
def test_if_the_session_is_refused_at_a_same_host_handshake_then_close_1008(
    client: TestClient,
    kit: SessionKit,
    calls: list[tuple[str, object]],
    user: str,
    headers: dict[str, object],
) -> None:
    token = kit.mint(user, **headers)  # type: ignore[arg-type]
    sent = {"Cookie": f"stack-access-token={token}", "Origin": "http://testserver"}
    assert refused(client, SOCKET, sent).code == 1008
    assert calls == []


def test_if_a_cross_site_cookie_opens_an_unprotected_socket_then_it_is_anonymous(
    client: TestClient, kit: SessionKit, calls: list[tuple[str, object]]
) -> None:
    """Nothing is required there: the browser sent the cookie by itself, so it is ignored."""
    sent = {**cookie(kit), "Origin": "https://evil.example"}
    with client.websocket_connect(OPEN, headers=sent) as socket:
        assert socket.receive_json() == {"authenticated": False}
    assert calls == [("open", None)]
