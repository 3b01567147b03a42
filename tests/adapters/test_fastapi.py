"""FastAPI: ``RequireScopes`` as a dependency, the same HTTP contract, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Security, WebSocket
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from skaala_auth import Authenticator, KeyManager, Principal
from skaala_auth.fastapi import ApiKeyMiddleware, RequireScopes, document_scopes, requires_scope
from tests.adapters.test_starlette import (
    COOKIE,
    INVALID,
    KEY_OUTER,
    MISSING,
    SESSION_OUTER,
    CookieSessions,
    assert_error,
    bearer,
)


def build_app(authenticator: Authenticator, calls: list[str], *, document: bool = True) -> FastAPI:
    app = FastAPI(middleware=[Middleware(ApiKeyMiddleware, authenticator=authenticator)])

    @app.get("/bookings")
    async def list_bookings(
        principal: Annotated[Principal, Depends(RequireScopes("read:bookings"))],
    ) -> dict[str, str]:
        """List the team's bookings."""
        calls.append("list_bookings")
        return {"team": principal.team_id, "user": principal.user_id}

    @app.post(
        "/bookings", status_code=201, dependencies=[Security(RequireScopes("write:bookings"))]
    )
    def create_booking() -> dict[str, bool]:
        calls.append("create_booking")
        return {"created": True}

    router = APIRouter(prefix="/teams/{team_id}")

    @router.get("/bookings")
    async def team_bookings(
        team_id: str, principal: Annotated[Principal, Depends(RequireScopes("read:bookings"))]
    ) -> dict[str, str]:
        calls.append("team_bookings")
        return {"team": team_id}

    app.include_router(router)

    @app.get("/contacts")
    async def contacts(
        principal: Annotated[Principal, Depends(RequireScopes("read:contacts", "read:bookings"))],
    ) -> list[str]:
        return []

    @app.get("/decorated")
    @requires_scope("read:bookings")
    async def decorated(request: Request) -> dict[str, str | None]:
        return {"key_id": request.state.principal.key_id}

    @app.get("/open")
    async def open_endpoint(request: Request) -> dict[str, bool]:
        return {"authenticated": request.user.is_authenticated}

    @app.websocket("/ws")
    async def socket(
        websocket: WebSocket,
        principal: Annotated[Principal, Depends(RequireScopes("read:bookings"))],
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"user": principal.user_id})
        await websocket.close()

    return document_scopes(app) if document else app


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def key(manager: KeyManager) -> str:
    return manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])[0]


@pytest.fixture
def client(auth: Authenticator, calls: list[str]) -> Iterator[TestClient]:
    with TestClient(build_app(auth, calls)) as client:
        yield client


def test_if_the_dependency_passes_then_it_returns_the_principal(
    client: TestClient, key: str, calls: list[str]
) -> None:
    response = client.get("/bookings", headers=bearer(key))
    assert response.json() == {"team": "team_1", "user": "user_1"}
    assert client.get("/teams/team_1/bookings", headers={"X-API-Key": key}).status_code == 200
    assert calls == ["list_bookings", "team_bookings"]


def test_if_no_key_then_401_missing_with_the_contract_body(
    client: TestClient, calls: list[str]
) -> None:
    response = client.get("/bookings")
    assert_error(response, 401, MISSING)
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert_error(client.post("/bookings"), 401, MISSING)
    assert calls == []


def test_if_the_key_is_invalid_then_401_invalid(client: TestClient, calls: list[str]) -> None:
    assert_error(client.get("/bookings", headers=bearer("sk_live_junk")), 401, INVALID)
    assert_error(client.get("/open", headers=bearer("sk_live_junk")), 401, INVALID)
    assert calls == []


def test_if_a_scope_is_missing_then_403_and_the_handler_does_not_run(
    client: TestClient, key: str, calls: list[str]
) -> None:
    response = client.post("/bookings", headers=bearer(key))
    assert_error(response, 403, b'{"error":"forbidden","message":"Insufficient scopes"}')
    assert 'scope="write:bookings"' in response.headers["www-authenticate"]
    assert_error(client.get("/contacts", headers=bearer(key)), 403)
    assert calls == []


def test_if_the_path_team_is_not_the_keys_then_403(
    client: TestClient, key: str, calls: list[str]
) -> None:
    response = client.get("/teams/team_2/bookings", headers=bearer(key))
    assert_error(response, 403)
    assert response.json()["message"] == "API key does not belong to this team"
    assert calls == []


def test_if_two_credentials_then_400(client: TestClient, key: str) -> None:
    response = client.get("/bookings", headers={"X-API-Key": key, "Authorization": f"Bearer {key}"})
    assert_error(response, 400)


def test_if_requires_scope_decorates_a_fastapi_endpoint_then_it_works_too(
    client: TestClient, key: str
) -> None:
    assert client.get("/decorated", headers=bearer(key)).json()["key_id"].startswith("key_")
    assert_error(client.get("/decorated"), 401, MISSING)


def test_if_a_websocket_route_uses_the_dependency_then_the_handshake_is_checked(
    client: TestClient, key: str
) -> None:
    with client.websocket_connect("/ws", headers=bearer(key)) as socket:
        assert socket.receive_json() == {"user": "user_1"}
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws"):
            pass  # pragma: no cover
    assert refused.value.code == 1008


def test_if_the_middleware_is_missing_then_a_clear_error(auth: Authenticator, key: str) -> None:
    app = FastAPI()

    @app.get("/")
    async def endpoint(principal: Annotated[Principal, Depends(RequireScopes("read:x"))]) -> None:
        pass  # pragma: no cover

    with pytest.raises(RuntimeError, match="ApiKeyMiddleware"):
        TestClient(app).get("/", headers=bearer(key))


def test_if_a_scope_is_not_a_string_then_type_error() -> None:
    with pytest.raises(TypeError):
        RequireScopes(["read:bookings"])  # type: ignore[arg-type]
    assert repr(RequireScopes("read:bookings")) == "RequireScopes('read:bookings')"


@pytest.mark.parametrize("order", [SESSION_OUTER, KEY_OUTER])
def test_if_next_to_starlettes_authentication_middleware_then_only_the_key_decides(
    auth: Authenticator, key: str, order: str, calls: list[str]
) -> None:
    """A session login beside the keys, in either order: the dependency finds the key's
    principal, never takes the session for a key, and refuses a bad key beside a good cookie."""
    session = Middleware(AuthenticationMiddleware, backend=CookieSessions())
    keys = Middleware(ApiKeyMiddleware, authenticator=auth)
    app = FastAPI(middleware=[session, keys] if order == SESSION_OUTER else [keys, session])

    @app.get("/bookings")
    async def bookings(
        request: Request, principal: Annotated[Principal, Depends(RequireScopes("read:bookings"))]
    ) -> dict[str, str]:
        calls.append("bookings")
        return {"principal": principal.user_id, "user": request.user.display_name}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        return {"user": request.user.display_name or None}

    with TestClient(app) as client:
        assert client.get("/whoami", headers=COOKIE).json() == {"user": "alice"}
        assert_error(client.get("/bookings", headers=COOKIE), 401, MISSING)
        assert_error(client.get("/bookings"), 401, MISSING)
        expected = {"principal": "user_1", "user": "user_1"}
        assert client.get("/bookings", headers=bearer(key)).json() == expected
        assert client.get("/bookings", headers={**bearer(key), **COOKIE}).json() == expected
        assert_error(client.get("/bookings", headers={**bearer("sk_live_x"), **COOKIE}), 401)
    assert calls == ["bookings", "bookings"]


class TestOpenAPI:
    @pytest.fixture
    def schema(self, auth: Authenticator) -> dict[str, object]:
        return build_app(auth, []).openapi()

    def test_if_the_document_is_built_then_both_security_schemes_are_declared(
        self, schema: dict[str, object]
    ) -> None:
        schemes = schema["components"]["securitySchemes"]  # type: ignore[index]
        assert schemes["ApiKeyBearer"]["type"] == "http"
        assert schemes["ApiKeyBearer"]["scheme"] == "bearer"
        assert schemes["ApiKeyHeader"] == {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": schemes["ApiKeyHeader"]["description"],
        }

    def test_if_not_rewritten_then_the_scopes_are_in_the_security_requirements(
        self, auth: Authenticator
    ) -> None:
        app = build_app(auth, [], document=False)
        operation = app.openapi()["paths"]["/contacts"]["get"]
        scopes = ["read:contacts", "read:bookings"]
        assert operation["security"] == [{"ApiKeyBearer": scopes}, {"ApiKeyHeader": scopes}]
        assert "x-required-scopes" not in operation

    def test_if_an_operation_requires_scopes_then_they_are_listed_on_it(
        self, schema: dict[str, object]
    ) -> None:
        paths = schema["paths"]  # type: ignore[index]
        get = paths["/bookings"]["get"]
        assert get["security"] == [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]  # either one
        assert get["x-required-scopes"] == ["read:bookings"]
        assert get["description"].startswith("List the team's bookings.")
        assert "`read:bookings`" in get["description"]
        assert paths["/bookings"]["post"]["x-required-scopes"] == ["write:bookings"]
        assert paths["/contacts"]["get"]["x-required-scopes"] == ["read:bookings", "read:contacts"]
        assert paths["/teams/{team_id}/bookings"]["get"]["x-required-scopes"] == ["read:bookings"]

    def test_if_an_operation_is_open_then_it_has_no_security(
        self, schema: dict[str, object]
    ) -> None:
        operation = schema["paths"]["/open"]["get"]  # type: ignore[index]
        assert "security" not in operation and "x-required-scopes" not in operation

    def test_if_the_document_is_asked_twice_then_it_is_built_once(
        self, auth: Authenticator
    ) -> None:
        app = build_app(auth, [])
        assert app.openapi() is app.openapi()
        with TestClient(app) as client:
            assert client.get("/openapi.json").json()["paths"]["/bookings"]["get"][
                "x-required-scopes"
            ] == ["read:bookings"]
