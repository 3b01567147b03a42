"""Starlette / ASGI adapter: the HTTP contract through a real client, the middleware's three
outcomes, ``requires_scope`` on every kind of endpoint, the rules table, websockets, lifespan."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Final

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
    requires,
)
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from skaala_auth import (
    Authenticator,
    AuthError,
    InsufficientScopeError,
    KeyManager,
    MemoryKeyStore,
    Principal,
    RateLimitedError,
    SQLiteKeyStore,
    generate_key,
)
from skaala_auth.rules import Rule, Rules
from skaala_auth.starlette import ApiKeyMiddleware, ApiKeyUser, requires_scope
from tests.conftest import Clock

INVALID = b'{"error":"unauthorized","message":"Invalid API key"}'
MISSING = b'{"error":"unauthorized","message":"Missing API key"}'


# -- the app under test -----------------------------------------------------------------------


def build_app(
    authenticator: Authenticator,
    *,
    rules: Rules | None = None,
    calls: list[str] | None = None,
    lifespan: Any = None,
    **options: Any,
) -> Starlette:
    """One small app with every kind of endpoint; ``calls`` records the handlers that ran."""
    ran = calls if calls is not None else []

    async def public(request: Request) -> JSONResponse:
        ran.append("public")
        principal = request.state.principal
        return JSONResponse(
            {
                "authenticated": request.user.is_authenticated,
                "key_id": principal.key_id if principal else None,
                "scopes": list(request.auth.scopes),
            }
        )

    @requires_scope("read:bookings")
    async def list_bookings(request: Request) -> JSONResponse:
        ran.append("list_bookings")
        principal: Principal = request.state.principal
        return JSONResponse({"team": principal.team_id, "user": request.user.display_name})

    @requires_scope("write:bookings")
    def create_booking(request: Request) -> JSONResponse:  # sync: runs in a worker thread
        ran.append("create_booking")
        return JSONResponse({"created": True}, status_code=201)

    class TeamBookings(HTTPEndpoint):
        @requires_scope("read:bookings")
        async def get(self, request: Request) -> JSONResponse:
            ran.append("team_bookings")
            return JSONResponse({"team": request.path_params["team_id"]})

        @requires_scope("write:bookings")
        def post(self, request: Request) -> JSONResponse:
            ran.append("team_create")
            return JSONResponse({"team": request.path_params["team_id"]}, status_code=201)

    @requires("read:bookings")
    async def starlette_requires(request: Request) -> PlainTextResponse:
        ran.append("starlette_requires")
        return PlainTextResponse(request.user.identity)

    @requires_scope("read:bookings")
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for number in range(3):
                yield f"chunk {number}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @requires_scope("read:bookings")
    async def socket(websocket: WebSocket) -> None:
        ran.append("socket")
        await websocket.accept()
        await websocket.send_json({"user": websocket.user.display_name})
        await websocket.close()

    async def open_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"authenticated": websocket.user.is_authenticated})
        await websocket.close()

    return Starlette(
        routes=[
            Route("/public", public, methods=["GET", "OPTIONS"]),
            Route("/bookings", list_bookings, methods=["GET"]),
            Route("/bookings", create_booking, methods=["POST"]),
            Route("/teams/{team_id}/bookings", TeamBookings),
            Route("/starlette-requires", starlette_requires),
            Route("/stream", stream),
            WebSocketRoute("/ws", socket),
            WebSocketRoute("/ws-open", open_socket),
        ],
        middleware=[
            Middleware(ApiKeyMiddleware, authenticator=authenticator, rules=rules, **options)
        ],
        lifespan=lifespan,
    )


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def key(manager: KeyManager) -> str:
    key, _ = manager.create_key(
        team_id="team_1", user_id="user_1", name="test", scopes=["read:bookings"]
    )
    return key


@pytest.fixture
def writer(manager: KeyManager) -> str:
    key, _ = manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings", "write:bookings"]
    )
    return key


@pytest.fixture
def client(auth: Authenticator, calls: list[str]) -> Iterator[TestClient]:
    with TestClient(build_app(auth, calls=calls)) as client:
        yield client


def bearer(key: str) -> dict[str, bytes]:
    return {"Authorization": f"Bearer {key}".encode()}


def assert_error(response: httpx.Response, status: int, body: bytes | None = None) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert int(response.headers["content-length"]) == len(response.content)
    if body is not None:
        assert response.content == body


# -- the contract table -----------------------------------------------------------------------


class TestContract:
    def test_if_no_credentials_on_a_protected_endpoint_then_401_missing_and_handler_not_run(
        self, client: TestClient, calls: list[str]
    ) -> None:
        response = client.get("/bookings")
        assert_error(response, 401, MISSING)
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'
        assert calls == []

    def test_if_a_valid_key_with_the_scope_then_200_with_the_principal(
        self, client: TestClient, key: str, calls: list[str]
    ) -> None:
        for headers in (bearer(key), {"X-API-Key": key}, {"authorization": f"bEaReR {key}"}):
            response = client.get("/bookings", headers=headers)
            assert response.status_code == 200
            assert response.json() == {"team": "team_1", "user": "user_1"}
        assert calls == ["list_bookings"] * 3

    @pytest.mark.parametrize(
        "mutate",
        [
            pytest.param(lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), id="bad-checksum"),
            pytest.param(lambda k: k[:-3], id="too-short"),
            pytest.param(lambda k: "sk_live_" + "é" * 38, id="non-ascii"),
            pytest.param(lambda k: "not-a-key", id="junk"),
            pytest.param(lambda k: generate_key(), id="unknown"),
            pytest.param(lambda k: generate_key("test"), id="test-key-refused"),
        ],
    )
    def test_if_a_key_is_malformed_or_unknown_then_401_invalid_identical_bytes(
        self, client: TestClient, key: str, mutate: Any, calls: list[str]
    ) -> None:
        response = client.get("/bookings", headers=bearer(mutate(key)))
        assert_error(response, 401, INVALID)
        assert response.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'
        assert calls == []

    def test_if_a_key_is_expired_or_revoked_then_the_same_401_bytes(
        self, auth: Authenticator, manager: KeyManager, clock: Clock, calls: list[str]
    ) -> None:
        short, _ = manager.create_key(
            team_id="team_1",
            user_id="user_1",
            scopes=["read:bookings"],
            expires_in=timedelta(hours=1),
        )
        revoked, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings"]
        )
        with TestClient(build_app(auth, calls=calls)) as client:
            assert client.get("/bookings", headers=bearer(short)).status_code == 200
            assert client.get("/bookings", headers=bearer(revoked)).status_code == 200
            manager.revoke_key(record.id)
            clock.advance(timedelta(hours=2))
            answers = [client.get("/bookings", headers=bearer(k)) for k in (short, revoked)]
            unknown = client.get("/bookings", headers=bearer(generate_key()))
        for answer in answers:
            assert_error(answer, 401, INVALID)
            assert answer.headers["www-authenticate"] == unknown.headers["www-authenticate"]
        assert calls == ["list_bookings", "list_bookings"]

    def test_if_the_key_lacks_the_scope_then_403_insufficient_scope(
        self, client: TestClient, key: str, calls: list[str]
    ) -> None:
        response = client.post("/bookings", headers=bearer(key))
        assert_error(response, 403, b'{"error":"forbidden","message":"Insufficient scopes"}')
        assert response.headers["www-authenticate"] == (
            'Bearer realm="api", error="insufficient_scope", scope="write:bookings"'
        )
        assert calls == []

    def test_if_the_path_team_is_another_team_then_403(
        self, client: TestClient, key: str, calls: list[str]
    ) -> None:
        assert client.get("/teams/team_1/bookings", headers=bearer(key)).status_code == 200
        response = client.get("/teams/team_2/bookings", headers=bearer(key))
        assert_error(response, 403)
        assert response.json()["error"] == "forbidden"
        assert calls == ["team_bookings"]

    def test_if_the_user_left_the_team_then_403(
        self, client: TestClient, key: str, manager: KeyManager
    ) -> None:
        assert client.get("/bookings", headers=bearer(key)).status_code == 200
        manager.remove_member(team_id="team_1", user_id="user_1")
        response = client.get("/bookings", headers=bearer(key))
        assert_error(response, 403)
        assert response.json()["error"] == "forbidden"

    def test_if_a_bad_key_with_another_team_then_401_before_403(self, client: TestClient) -> None:
        response = client.get("/teams/team_2/bookings", headers=bearer(generate_key()))
        assert_error(response, 401, INVALID)

    @pytest.mark.parametrize(
        ("headers", "query"),
        [
            pytest.param(
                lambda k: [("authorization", f"Bearer {k}"), ("x-api-key", k)], "", id="both"
            ),
            pytest.param(lambda k: [("x-api-key", k), ("x-api-key", k)], "", id="repeated"),
            pytest.param(lambda k: [("authorization", "Bearer ")], "", id="empty-bearer"),
            pytest.param(lambda k: [("x-api-key", "  ")], "", id="empty-x-api-key"),
            pytest.param(lambda k: [], "api_key={key}", id="key-in-query"),
            pytest.param(lambda k: [("x-api-key", k)], "token={key}", id="key-value-in-query"),
        ],
    )
    def test_if_the_request_is_ambiguous_then_400_invalid_request(
        self, client: TestClient, key: str, headers: Any, query: str, calls: list[str]
    ) -> None:
        url = "/bookings" + ("?" + query.format(key=key) if query else "")
        response = client.get(url, headers=headers(key))
        assert_error(response, 400)
        assert response.json()["error"] == "invalid_request"
        assert response.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_request"'
        assert calls == []

    def test_if_the_rate_limit_is_exceeded_then_429_with_its_headers(
        self, store: MemoryKeyStore, key: str, clock: Clock
    ) -> None:
        class OnePerWindow:
            def __init__(self) -> None:
                self.seen: set[str | None] = set()

            def check(self, principal: Principal, now: float) -> None:
                if principal.key_id in self.seen:
                    raise RateLimitedError(limit=1, reset=30)
                self.seen.add(principal.key_id)

        limited = Authenticator(store, clock=clock, rate_limiter=OnePerWindow())
        with TestClient(build_app(limited)) as client:
            assert client.get("/bookings", headers=bearer(key)).status_code == 200
            response = client.get("/bookings", headers=bearer(key))
        assert_error(response, 429)
        assert response.json()["error"] == "rate_limited"
        assert response.headers["retry-after"] == "30"
        assert response.headers["x-ratelimit-limit"] == "1"
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert "x-ratelimit-reset" in response.headers

    def test_if_the_store_fails_then_503_fail_closed(
        self, tmp_path: Path, calls: list[str]
    ) -> None:
        store = SQLiteKeyStore(tmp_path / "keys.db")
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        authenticator = Authenticator(store)
        store.close()  # the database is gone: every look-up raises
        with TestClient(build_app(authenticator, calls=calls)) as client:
            response = client.get("/bookings", headers=bearer(key))
            anonymous = client.get("/public", headers=bearer(key))
        for answer in (response, anonymous):
            assert_error(answer, 503)
            assert answer.json()["error"] == "service_unavailable"
            assert int(answer.headers["retry-after"]) > 0
        assert calls == []

    def test_if_another_authorization_scheme_then_it_counts_as_absent(
        self, client: TestClient
    ) -> None:
        response = client.get("/bookings", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert_error(response, 401, MISSING)
        assert client.get("/public", headers={"Authorization": "Basic x"}).status_code == 200


# -- the middleware's three outcomes ----------------------------------------------------------


class TestMiddleware:
    def test_if_no_credentials_on_an_unprotected_path_then_anonymous(
        self, client: TestClient
    ) -> None:
        response = client.get("/public")
        assert response.json() == {"authenticated": False, "key_id": None, "scopes": []}

    def test_if_a_good_key_on_an_unprotected_path_then_user_auth_and_state_are_set(
        self, client: TestClient, key: str, manager: KeyManager
    ) -> None:
        response = client.get("/public", headers={"X-API-Key": key})
        key_id = manager.list_keys(team_id="team_1")[0].id
        assert response.json() == {
            "authenticated": True,
            "key_id": key_id,
            "scopes": ["read:bookings"],
        }

    def test_if_a_bad_key_on_an_unprotected_path_then_401(
        self, client: TestClient, calls: list[str]
    ) -> None:
        assert_error(client.get("/public", headers=bearer("sk_live_nope")), 401, INVALID)
        assert calls == []

    def test_if_starlette_requires_is_used_then_it_sees_our_scopes(
        self, client: TestClient, key: str, manager: KeyManager
    ) -> None:
        response = client.get("/starlette-requires", headers=bearer(key))
        assert response.status_code == 200
        assert response.text == manager.list_keys(team_id="team_1")[0].id
        assert client.get("/starlette-requires").status_code == 403  # Starlette's own answer

    def test_if_request_auth_scopes_are_shared_then_they_cannot_be_changed(
        self, auth: Authenticator, key: str
    ) -> None:
        seen: list[Any] = []

        async def endpoint(request: Request) -> Response:
            seen.append(request.auth.scopes)
            with pytest.raises(AttributeError):
                request.auth.scopes.append("write:bookings")
            return Response()

        app = Starlette(
            routes=[Route("/", endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
        )
        with TestClient(app) as client:
            client.get("/", headers=bearer(key))
            client.get("/", headers=bearer(key))
        assert seen[0] == seen[1] == ("read:bookings",)

    def test_if_the_request_is_anonymous_then_its_auth_scopes_cannot_be_changed_either(
        self, auth: Authenticator
    ) -> None:
        seen: list[Any] = []

        async def endpoint(request: Request) -> Response:
            seen.append(request.auth.scopes)
            with pytest.raises(AttributeError):
                request.auth.scopes.append("write:bookings")
            return Response()

        app = Starlette(
            routes=[Route("/", endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
        )
        with TestClient(app) as client:
            client.get("/")
            client.get("/")
        assert seen == [(), ()]

    def test_if_an_outer_middleware_edits_refusal_headers_then_the_next_refusal_is_intact(
        self, auth: Authenticator, key: str
    ) -> None:
        """Refusals are rendered from the core's cached headers; GZip (minimum_size=0) adds to
        the header list it is given, which must be the request's own copy."""
        app = Starlette(
            routes=[Route("/", PlainTextResponse)],
            middleware=[
                Middleware(GZipMiddleware, minimum_size=0),
                Middleware(ApiKeyMiddleware, authenticator=auth),
            ],
        )
        junk = bearer(key[:-1] + ("A" if key[-1] != "A" else "B"))
        with TestClient(app) as client:
            zipped = client.get("/", headers={**junk, "Accept-Encoding": "gzip"})
            plain = client.get("/", headers={**junk, "Accept-Encoding": "identity"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert_error(plain, 401, INVALID)
        assert "content-encoding" not in plain.headers

    def test_if_a_response_streams_then_it_passes_through(
        self, client: TestClient, key: str
    ) -> None:
        response = client.get("/stream", headers=bearer(key))
        assert response.status_code == 200
        assert response.text == "chunk 0\nchunk 1\nchunk 2\n"

    def test_if_a_refusal_is_raised_after_the_response_started_then_it_propagates(
        self, auth: Authenticator, key: str
    ) -> None:
        async def late(request: Request) -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"first"
                auth.authorize(request.state.principal, required_scopes=["write:bookings"])

            return StreamingResponse(chunks())

        app = Starlette(
            routes=[Route("/late", late)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
        )
        with pytest.raises(InsufficientScopeError):
            TestClient(app).get("/late", headers=bearer(key))

    def test_if_on_error_is_given_then_it_renders_refusals(self, auth: Authenticator) -> None:
        def on_error(conn: Any, error: AuthError) -> Response:
            return PlainTextResponse(f"nope: {error.status_code}", status_code=error.status_code)

        with TestClient(build_app(auth, on_error=on_error)) as client:
            response = client.get("/bookings")
        assert (response.status_code, response.text) == (401, "nope: 401")

    def test_if_the_user_repr_is_asked_then_no_key_shows(
        self, key: str, auth: Authenticator
    ) -> None:
        principal = auth.verify(key)
        user = ApiKeyUser(principal)
        assert user.is_authenticated and user.identity == principal.key_id
        assert key not in repr(user)

    def test_if_not_given_an_authenticator_then_type_error(self) -> None:
        with pytest.raises(TypeError, match="Authenticator"):
            ApiKeyMiddleware(build_app, authenticator="keys.db")  # type: ignore[arg-type]

    def test_if_an_async_client_is_used_then_the_same_answers(
        self, auth: Authenticator, key: str
    ) -> None:
        async def scenario() -> list[int]:
            transport = httpx.ASGITransport(app=build_app(auth))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                answers = [
                    await client.get("/bookings", headers=bearer(key)),
                    await client.get("/bookings"),
                    await client.post("/bookings", headers=bearer(key)),
                ]
            return [answer.status_code for answer in answers]

        assert asyncio.run(scenario()) == [200, 401, 403]


# -- requires_scope ---------------------------------------------------------------------------


class TestRequiresScope:
    def test_if_a_sync_endpoint_has_the_scope_then_it_runs(
        self, client: TestClient, writer: str, calls: list[str]
    ) -> None:
        assert client.post("/bookings", headers=bearer(writer)).status_code == 201
        assert client.post("/teams/team_1/bookings", headers=bearer(writer)).status_code == 201
        assert_error(client.post("/teams/team_9/bookings", headers=bearer(writer)), 403)
        assert calls == ["create_booking", "team_create"]

    def test_if_the_middleware_is_missing_then_a_clear_error(self) -> None:
        @requires_scope("read:bookings")
        async def endpoint(request: Request) -> Response:
            return Response()

        app = Starlette(routes=[Route("/", endpoint)])
        with pytest.raises(RuntimeError, match="ApiKeyMiddleware"):
            TestClient(app).get("/")

    def test_if_the_endpoint_gets_no_request_then_type_error(self) -> None:
        @requires_scope("read:bookings")
        def helper(value: int) -> int:
            return value

        with pytest.raises(TypeError, match="without a Request"):
            helper(1)

    def test_if_a_scope_is_not_a_string_then_type_error(self) -> None:
        with pytest.raises(TypeError):
            requires_scope(["read:bookings"])  # type: ignore[arg-type]

    def test_if_a_public_path_has_a_decorated_endpoint_then_it_authenticates_there(
        self, auth: Authenticator, key: str
    ) -> None:
        rules = Rules(public=["/bookings"])
        with TestClient(build_app(auth, rules=rules)) as client:
            assert client.get("/bookings", headers=bearer(key)).json()["user"] == "user_1"
            assert_error(client.get("/bookings"), 401, MISSING)
            assert_error(client.get("/bookings", headers=bearer(generate_key())), 401, INVALID)
            # Public for every method: the decorator decides, and this key cannot write.
            assert_error(client.post("/bookings", headers=bearer(key)), 403)

    def test_if_a_sync_endpoint_on_a_public_path_then_it_authenticates_there(
        self, auth: Authenticator, writer: str, key: str
    ) -> None:
        rules = Rules(public=["/teams/*"])
        with TestClient(build_app(auth, rules=rules)) as client:
            assert client.post("/teams/team_1/bookings", headers=bearer(writer)).status_code == 201
            assert_error(client.post("/teams/team_1/bookings", headers=bearer(key)), 403)
            assert_error(client.post("/teams/team_1/bookings"), 401, MISSING)

    def test_if_team_param_is_none_then_no_team_check(self, auth: Authenticator, key: str) -> None:
        @requires_scope("read:bookings", team_param=None)
        async def endpoint(request: Request) -> Response:
            return PlainTextResponse("ok")

        app = Starlette(
            routes=[Route("/teams/{team_id}", endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
        )
        with TestClient(app) as client:
            assert client.get("/teams/other", headers=bearer(key)).text == "ok"

    def test_if_the_team_param_is_an_int_convertor_then_it_compares_as_text(
        self, store: MemoryKeyStore, clock: Clock
    ) -> None:
        manager = KeyManager(store, clock=clock)
        manager.add_member(team_id="42", user_id="user_1")
        key, _ = manager.create_key(team_id="42", user_id="user_1", scopes=["read:bookings"])

        @requires_scope("read:bookings")
        async def endpoint(request: Request) -> Response:
            return PlainTextResponse("ok")

        app = Starlette(
            routes=[Route("/teams/{team_id:int}", endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=Authenticator(store))],
        )
        with TestClient(app) as client:
            assert client.get("/teams/42", headers=bearer(key)).status_code == 200
            assert client.get("/teams/43", headers=bearer(key)).status_code == 403


# -- the rules table --------------------------------------------------------------------------


class TestRules:
    @pytest.fixture
    def rules(self) -> Rules:
        return Rules(
            [
                Rule("/public", methods=["GET"], scopes=["read:bookings"]),
                Rule("/api/teams/{team_id}/*", scopes=["read:bookings"]),
            ],
            public=["/health", "/docs*"],
            protect=["/api/"],
        )

    @pytest.fixture
    def app(self, auth: Authenticator, rules: Rules, calls: list[str]) -> Starlette:
        async def endpoint(request: Request) -> JSONResponse:
            calls.append(request.url.path)
            principal = request.state.principal
            return JSONResponse({"user": principal.user_id if principal else None})

        return Starlette(
            routes=[
                Route("/health", endpoint),
                Route("/docs/{rest:path}", endpoint),
                Route("/public", endpoint, methods=["GET", "POST", "OPTIONS"]),
                Route("/api/{rest:path}", endpoint, methods=["GET", "OPTIONS"]),
                Route("/elsewhere", endpoint),
            ],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth, rules=rules)],
        )

    def test_if_a_rule_matches_then_its_scopes_are_required(
        self, app: Starlette, key: str, manager: KeyManager, calls: list[str]
    ) -> None:
        other, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:staff"])
        with TestClient(app) as client:
            assert_error(client.get("/public"), 401, MISSING)
            assert_error(client.get("/public", headers=bearer(other)), 403)
            assert client.get("/public", headers=bearer(key)).json() == {"user": "user_1"}
            # a method the pattern's rules do not list needs what they need, never nothing
            assert_error(client.post("/public"), 401, MISSING)
            assert_error(client.post("/public", headers=bearer(other)), 403)
            assert client.post("/public", headers=bearer(key)).status_code == 200
            assert client.head("/public", headers=bearer(other)).status_code == 403  # HEAD is GET
        assert calls == ["/public", "/public"]

    def test_if_under_a_protected_prefix_then_a_key_is_needed(
        self, app: Starlette, key: str, manager: KeyManager
    ) -> None:
        other, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:staff"])
        with TestClient(app) as client:
            assert_error(client.get("/api/anything"), 401, MISSING)
            assert client.get("/api/anything", headers=bearer(other)).status_code == 200
            assert client.get("/elsewhere").json() == {"user": None}

    def test_if_the_rule_has_a_team_then_it_must_be_the_keys(
        self, app: Starlette, key: str
    ) -> None:
        with TestClient(app) as client:
            assert client.get("/api/teams/team_1/bookings", headers=bearer(key)).status_code == 200
            assert_error(client.get("/api/teams/team_2/bookings", headers=bearer(key)), 403)

    def test_if_a_path_is_public_then_even_a_bad_key_is_not_challenged(
        self, app: Starlette
    ) -> None:
        with TestClient(app) as client:
            for path in ("/health", "/docs/index.html"):
                response = client.get(path, headers=bearer("sk_live_garbage"))
                assert response.json() == {"user": None}
            assert client.get("/health?api_key=sk_live_x").status_code == 200

    def test_if_a_cors_preflight_then_answered_not_run_and_plain_options_challenged(
        self, app: Starlette, auth: Authenticator, calls: list[str]
    ) -> None:
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
        with TestClient(app) as client:
            answered = client.options("/api/x", headers=preflight)
            assert (answered.status_code, answered.content) == (204, b"")
            assert "www-authenticate" not in answered.headers
            assert_error(client.options("/api/x"), 401, MISSING)
            assert client.options("/health", headers=preflight).status_code == 405  # the router
        assert calls == []  # the protected handler never ran for the preflight
        with TestClient(build_app(auth)) as client:  # without rules too
            assert client.options("/public", headers={**preflight, **bearer("junk")}).is_success
            assert_error(client.options("/public", headers=bearer("junk")), 401, INVALID)

    def test_if_the_app_is_mounted_under_a_root_path_then_rules_see_the_route_path(
        self, app: Starlette
    ) -> None:
        with TestClient(app, root_path="/prefix") as client:
            assert_error(client.get("/prefix/api/anything"), 401, MISSING)
            assert client.get("/prefix/health").status_code == 200


# -- websockets -------------------------------------------------------------------------------


class TestWebSocket:
    def test_if_the_handshake_has_a_good_key_then_the_socket_opens(
        self, client: TestClient, key: str
    ) -> None:
        with client.websocket_connect("/ws", headers={"X-API-Key": key}) as socket:
            assert socket.receive_json() == {"user": "user_1"}

    @pytest.mark.parametrize(
        ("path", "headers"),
        [
            pytest.param("/ws", {}, id="missing-key"),
            pytest.param("/ws", {"X-API-Key": "sk_live_junk"}, id="bad-key"),
            pytest.param("/ws-open", {"X-API-Key": "sk_live_junk"}, id="bad-key-open-socket"),
        ],
    )
    def test_if_the_handshake_is_refused_then_close_1008(
        self, client: TestClient, path: str, headers: dict[str, str], calls: list[str]
    ) -> None:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(path, headers=headers):
                pass  # pragma: no cover - never opens
        assert refused.value.code == 1008
        assert calls == []

    def test_if_the_key_lacks_the_scope_then_close_1008(
        self, client: TestClient, manager: KeyManager
    ) -> None:
        other, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:staff"])
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws", headers=bearer(other)):
                pass  # pragma: no cover
        assert (refused.value.code, refused.value.reason) == (1008, "Insufficient scopes")

    def test_if_no_key_on_an_open_socket_then_anonymous(self, client: TestClient) -> None:
        with client.websocket_connect("/ws-open") as socket:
            assert socket.receive_json() == {"authenticated": False}

    def test_if_the_store_fails_at_the_handshake_then_close_1013(self, tmp_path: Path) -> None:
        store = SQLiteKeyStore(tmp_path / "keys.db")
        authenticator = Authenticator(store)
        store.close()
        with TestClient(build_app(authenticator)) as client:
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect("/ws", headers=bearer(generate_key())):
                    pass  # pragma: no cover
        assert refused.value.code == 1013


# -- next to Starlette's AuthenticationMiddleware ---------------------------------------------


class CookieSessions(AuthenticationBackend):
    """Another backend of the same app: a session cookie, as a login page would set it. Its
    session is wider than the test keys (it may write), so a test sees whether it leaks in."""

    SESSIONS: ClassVar[dict[str, str]] = {"alice-session": "alice"}

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        user = self.SESSIONS.get(conn.cookies.get("session", ""))
        if user is None:
            return None
        return AuthCredentials(["authenticated", "write:bookings"]), SimpleUser(user)


COOKIE: Final = {"Cookie": "session=alice-session"}
SESSION_OUTER: Final = "session-middleware-outer"  # the documented order
KEY_OUTER: Final = "key-middleware-outer"


def coexisting_app(
    authenticator: Authenticator, order: str, calls: list[str], rules: Rules | None = None
) -> Starlette:
    """One app with both middlewares, in ``order``, and endpoints protected by each."""

    def who(connection: HTTPConnection) -> dict[str, Any]:
        principal = connection.state.principal
        return {
            "user": connection.user.display_name if connection.user.is_authenticated else None,
            "scopes": sorted(connection.auth.scopes),
            "key_user": principal.user_id if principal else None,
        }

    async def whoami(request: Request) -> JSONResponse:
        calls.append("whoami")
        return JSONResponse(who(request))

    @requires_scope("read:bookings")
    async def read(request: Request) -> JSONResponse:
        calls.append("read")
        return JSONResponse(who(request))

    @requires_scope("write:bookings")
    def write(request: Request) -> JSONResponse:
        calls.append("write")
        return JSONResponse(who(request), status_code=201)

    @requires("authenticated")
    async def logged_in(request: Request) -> JSONResponse:
        calls.append("logged_in")
        return JSONResponse(who(request))

    @requires_scope("read:bookings")
    async def socket(websocket: WebSocket) -> None:
        calls.append("socket")
        await websocket.accept()
        await websocket.send_json(who(websocket))
        await websocket.close()

    async def open_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(who(websocket))
        await websocket.close()

    session = Middleware(AuthenticationMiddleware, backend=CookieSessions())
    keys = Middleware(ApiKeyMiddleware, authenticator=authenticator, rules=rules)
    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/bookings", read, methods=["GET"]),
            Route("/bookings", write, methods=["POST"]),
            Route("/logged-in", logged_in),
            Route("/api/{rest:path}", whoami),
            WebSocketRoute("/ws", socket),
            WebSocketRoute("/ws-open", open_socket),
        ],
        middleware=[session, keys] if order == SESSION_OUTER else [keys, session],
    )


ALICE: Final = {"user": "alice", "scopes": ["authenticated", "write:bookings"], "key_user": None}
KEY_USER: Final = {"user": "user_1", "scopes": ["read:bookings"], "key_user": "user_1"}


@pytest.mark.parametrize("order", [SESSION_OUTER, KEY_OUTER])
class TestNextToStarlettesAuthenticationMiddleware:
    """Session login and API keys in one app: each backend's user survives the other, our
    endpoints are decided by the key alone, in either order of the two middlewares."""

    @pytest.fixture
    def client(self, auth: Authenticator, order: str, calls: list[str]) -> Iterator[TestClient]:
        with TestClient(coexisting_app(auth, order, calls)) as client:
            yield client

    def test_if_no_credentials_then_anonymous_and_our_endpoint_401(
        self, client: TestClient, calls: list[str]
    ) -> None:
        assert client.get("/whoami").json() == {"user": None, "scopes": [], "key_user": None}
        assert_error(client.get("/bookings"), 401, MISSING)
        assert client.get("/logged-in").status_code == 403  # Starlette's own refusal
        assert calls == ["whoami"]

    def test_if_a_session_cookie_only_then_its_user_is_kept_and_our_endpoint_401(
        self, client: TestClient, calls: list[str]
    ) -> None:
        """The other backend's session is not our credential: it never opens our endpoints."""
        assert client.get("/whoami", headers=COOKIE).json() == ALICE
        assert client.get("/logged-in", headers=COOKIE).json() == ALICE
        assert_error(client.get("/bookings", headers=COOKIE), 401, MISSING)
        assert_error(client.post("/bookings", headers=COOKIE), 401, MISSING)
        assert calls == ["whoami", "logged_in"]

    def test_if_a_key_only_then_our_endpoint_runs_with_the_keys_user(
        self, client: TestClient, key: str, order: str
    ) -> None:
        assert client.get("/bookings", headers=bearer(key)).json() == KEY_USER
        assert_error(client.post("/bookings", headers=bearer(key)), 403)
        whoami = client.get("/whoami", headers=bearer(key)).json()
        if order == SESSION_OUTER:  # ours runs last: the key's user is request.user everywhere
            assert whoami == KEY_USER
        else:  # Starlette's middleware runs last and always sets request.user (documented)
            assert whoami == {"user": None, "scopes": [], "key_user": "user_1"}
        # A key carries its scopes only, not the session side's "authenticated": it does not
        # open the pages Starlette's requires("authenticated") keeps for logged-in users.
        assert client.get("/logged-in", headers=bearer(key)).status_code == 403

    def test_if_a_key_and_a_session_cookie_then_the_key_decides(
        self, client: TestClient, key: str, writer: str, order: str, calls: list[str]
    ) -> None:
        both = {**bearer(key), **COOKIE}
        # Our endpoints see the key's user, and the session's scopes never widen the key's.
        assert client.get("/bookings", headers=both).json() == KEY_USER
        assert_error(client.post("/bookings", headers=both), 403)
        created = client.post("/bookings", headers={**bearer(writer), **COOKIE})  # sync
        assert (created.status_code, created.json()["user"]) == (201, "user_1")
        assert calls == ["read", "write"]
        whoami = client.get("/whoami", headers=both).json()
        logged_in = client.get("/logged-in", headers=both)
        if order == SESSION_OUTER:  # the key decides everywhere: the session is ignored
            assert whoami == KEY_USER
            assert logged_in.status_code == 403
        else:  # elsewhere, Starlette's middleware (inner) has the last word on request.user
            assert whoami == {**ALICE, "key_user": "user_1"}
            assert logged_in.json() == {**ALICE, "key_user": "user_1"}

    def test_if_a_bad_key_and_a_good_session_cookie_then_401(
        self, client: TestClient, key: str, calls: list[str]
    ) -> None:
        junk = {**bearer(key[:-1] + ("A" if key[-1] != "A" else "B")), **COOKIE}
        for path in ("/whoami", "/bookings", "/logged-in"):
            assert_error(client.get(path, headers=junk), 401, INVALID)
        assert_error(client.post("/bookings", headers=junk), 401, INVALID)
        assert calls == []

    def test_if_a_rules_table_protects_a_path_then_a_session_cookie_does_not_open_it(
        self, auth: Authenticator, key: str, order: str, calls: list[str]
    ) -> None:
        rules = Rules([Rule("/api/*", scopes=["read:bookings"])])
        with TestClient(coexisting_app(auth, order, calls, rules)) as client:
            assert_error(client.get("/api/x", headers=COOKIE), 401, MISSING)
            assert client.get("/api/x", headers=bearer(key)).json()["key_user"] == "user_1"
            assert client.get("/whoami", headers=COOKIE).json() == ALICE

    def test_if_a_websocket_then_the_same_answers(
        self, client: TestClient, key: str, order: str
    ) -> None:
        with client.websocket_connect("/ws-open", headers=COOKIE) as socket:
            assert socket.receive_json() == ALICE
        with client.websocket_connect("/ws", headers=bearer(key)) as socket:
            assert socket.receive_json() == KEY_USER
        with client.websocket_connect("/ws", headers={**bearer(key), **COOKIE}) as socket:
            assert socket.receive_json() == KEY_USER
        for headers in (COOKIE, {**bearer("sk_live_junk"), **COOKIE}):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect("/ws", headers=headers):
                    pass  # pragma: no cover - never opens
            assert refused.value.code == 1008

    def test_if_our_middleware_is_missing_then_a_clear_error_and_the_endpoint_never_runs(
        self, order: str, key: str, calls: list[str]
    ) -> None:
        """Only Starlette's middleware, with a session user (and even a key): fail closed."""

        @requires_scope("read:bookings")
        async def endpoint(request: Request) -> Response:
            calls.append("endpoint")  # pragma: no cover - never runs
            return Response()  # pragma: no cover

        app = Starlette(
            routes=[Route("/", endpoint)],
            middleware=[Middleware(AuthenticationMiddleware, backend=CookieSessions())],
        )
        with TestClient(app) as client:
            for headers in (COOKIE, {**bearer(key), **COOKIE}):
                with pytest.raises(RuntimeError, match="ApiKeyMiddleware"):
                    client.get("/", headers=headers)
        assert calls == []


# -- lifespan ---------------------------------------------------------------------------------


class TestLifespan:
    def test_if_the_app_shuts_down_then_last_used_is_flushed_and_the_authenticator_closed(
        self, store: MemoryKeyStore, key: str, manager: KeyManager
    ) -> None:
        authenticator = Authenticator(store, last_used_interval=3600)
        events: list[str] = []

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            events.append("startup")
            yield
            # The middleware closed the authenticator before the app's own shutdown ran, so
            # the app may close the store now.
            events.append("shutdown")

        with TestClient(build_app(authenticator, lifespan=lifespan)) as client:
            assert client.get("/bookings", headers=bearer(key)).status_code == 200
            assert manager.list_keys(team_id="team_1")[0].last_used_at is None  # batched
        assert events == ["startup", "shutdown"]
        assert manager.list_keys(team_id="team_1")[0].last_used_at is not None

    def test_if_the_app_starts_again_then_it_reopens_and_hears_revocations(
        self, auth: Authenticator, key: str, manager: KeyManager
    ) -> None:
        app = build_app(auth)
        with TestClient(app) as client:
            assert client.get("/bookings", headers=bearer(key)).status_code == 200
        with TestClient(app) as client:  # a second lifespan in the same process
            assert client.get("/bookings", headers=bearer(key)).status_code == 200
            manager.revoke_key(manager.list_keys(team_id="team_1")[0].id)
            assert_error(client.get("/bookings", headers=bearer(key)), 401, INVALID)

    def test_if_close_on_shutdown_is_false_then_the_app_can_start_again(
        self, auth: Authenticator, key: str, manager: KeyManager
    ) -> None:
        app = build_app(auth, close_on_shutdown=False)
        for _ in range(2):
            with TestClient(app) as client:
                assert client.get("/bookings", headers=bearer(key)).status_code == 200
        manager.revoke_key(manager.list_keys(team_id="team_1")[0].id)
        with TestClient(app) as client:  # still listening for revocations
            assert_error(client.get("/bookings", headers=bearer(key)), 401, INVALID)

    def test_if_other_scope_types_arrive_then_they_pass_through(self, auth: Authenticator) -> None:
        seen: list[str] = []

        async def inner(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])

        asyncio.run(ApiKeyMiddleware(inner, authenticator=auth)({"type": "custom"}, None, None))
        assert seen == ["custom"]


# -- hostile input ----------------------------------------------------------------------------


def _call(app: Any, headers: list[tuple[bytes, bytes]], query: bytes) -> tuple[int, bytes]:
    """Call the ASGI app directly, the way a server hands over raw header bytes."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/bookings",
        "raw_path": b"/bookings",
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


_header_values = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.builds(lambda tail: b"Bearer " + tail, st.binary(max_size=60)),
    st.builds(lambda tail: b"Bearer sk_live_" + tail.encode(), st.text(max_size=40)),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=st.lists(
        st.tuples(st.sampled_from([b"authorization", b"x-api-key", b"accept"]), _header_values),
        max_size=3,
    ),
    query=st.binary(max_size=40),
)
def test_if_header_values_are_arbitrary_bytes_then_never_a_500(
    auth: Authenticator, headers: list[tuple[bytes, bytes]], query: bytes
) -> None:
    status, body = _call(build_app(auth), headers, query)
    assert status in {200, 400, 401, 403}
    if status != 200:
        assert json.loads(body)["error"] in {"invalid_request", "unauthorized", "forbidden"}
