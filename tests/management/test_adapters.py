"""The management API through every adapter (``adapter`` is parametrized): who may use each
route, the CSRF rule for cookies, another team's keys, and generated bodies.

Real Stack Auth session tokens (:class:`~skaala_auth.testing.SessionKit`) against an
authenticator with a session verifier: the core decides, the layer answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skaala_auth import Authenticator, AuthError, KeyManager, MemoryKeyStore
from skaala_auth.errors import (
    MissingSessionError,
    NotTeamMemberError,
    OriginRejectedError,
    RoleRequiredError,
    SessionRequiredError,
)
from skaala_auth.management import MANAGE_ROLES, ROUTES, Route
from skaala_auth.scopes import default_registry
from skaala_auth.testing import SessionKit

from ..conftest import Clock
from .apps import ADAPTERS, Call, Reply
from .conftest import Team, snapshot

ORIGIN = "https://dashboard.example.com"
PREFIX = "/api/v1/teams/team_1"

_NEEDS = {
    "starlette": ("starlette",),
    "fastapi": ("fastapi",),
    "flask": ("flask",),
    "django": ("django",),
    "django-asgi": ("django",),
}


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> str:
    for module in _NEEDS[request.param]:
        pytest.importorskip(module)
    return str(request.param)


@pytest.fixture
def kit(clock: Clock) -> SessionKit:
    return SessionKit(project_id="test-project", clock=clock)


@dataclass
class Api:
    call: Call
    kit: SessionKit
    team: Team

    def request(
        self,
        route: Route,
        *,
        who: str | None = "user_1",
        carrier: Literal["cookie", "sdk", "header"] = "cookie",
        origin: str | None = ORIGIN,
        key: str | None = None,
        body: bytes | None = None,
        key_id: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Reply:
        """``route`` as ``who`` (a session by ``carrier``; ``key``: an API key instead), with a
        body that the route accepts unless one is given."""
        sent = list(headers or [])
        if key is not None:
            sent.append(("Authorization", f"Bearer {key}"))
        elif who is not None:
            sent.extend(self.kit.headers(who, carrier=carrier).items())
        if origin is not None:
            sent.append(("Origin", origin))
        if body is None:
            body = json.dumps(BODIES.get(route.name, {})).encode() if route.changes else b""
        if body:
            sent.append(("Content-Type", "application/json"))
        path = "/api/v1" + route.path.format(
            team_id="team_1", key_id=key_id or self.team.admin_key_id, user_id="user_2"
        )
        return self.call(route.method, path, sent, body)


BODIES = {
    "create_key": {"name": "Deploy", "scopes": ["read:bookings"]},
    "add_member": {"user_id": "user_5", "role": "member"},
    "update_member": {"role": "admin"},
    "update_key": {"disabled": True, "rate_limit": "10/minute", "metadata": {"plan": "pro"}},
}
SUCCESS = {
    "list_keys": 200,
    "create_key": 201,
    "get_key": 200,
    "update_key": 200,
    "revoke_key": 200,
    "rotate_key": 201,
    "list_members": 200,
    "add_member": 201,
    "update_member": 200,
    "remove_member": 204,
}
CHANGES = [route for route in ROUTES if route.changes]


def _routes(*, changing_only: bool = False) -> list[object]:
    """Every route as a parameter; a route whose answer shows a new key is marked so."""
    return [
        pytest.param(
            route,
            id=route.name,
            marks=[pytest.mark.shows_key("response")]
            if route.name in ("create_key", "rotate_key")
            else [],
        )
        for route in (CHANGES if changing_only else ROUTES)
    ]


@pytest.fixture
def api(
    adapter: str,
    store: MemoryKeyStore,
    manager: KeyManager,
    clock: Clock,
    kit: SessionKit,
    team: Team,
) -> Iterator[Api]:
    with ExitStack() as stack:
        auth = stack.enter_context(
            Authenticator(store, clock=clock, session_verifier=kit.verifier())
        )
        call = stack.enter_context(ADAPTERS[adapter](auth, manager, [ORIGIN]))
        yield Api(call, kit, team)


def assert_json_error(reply: Reply, status: int, error: str | None = None) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    if error is not None:
        assert reply.json()["error"] == error


def assert_refused(reply: Reply, error: AuthError) -> None:
    """The core's refusal, byte for byte, as every adapter renders it."""
    assert_json_error(reply, error.status_code)
    assert reply.body == error.body_bytes()
    assert reply.headers.get("www-authenticate") == error.www_authenticate()


class TestWhoMayManage:
    @pytest.mark.parametrize("route", _routes())
    @pytest.mark.parametrize("who", ["user_1", "user_3"], ids=["owner", "admin"])
    def test_if_an_owner_or_admin_session_asks_then_2xx(
        self, api: Api, route: Route, who: str
    ) -> None:
        reply = api.request(route, who=who)
        assert reply.status == SUCCESS[route.name], reply.body
        assert reply.headers["cache-control"] == "no-store"

    @pytest.mark.parametrize("route", _routes())
    def test_if_a_plain_member_asks_then_403_and_nothing_changes(
        self, api: Api, store: MemoryKeyStore, route: Route
    ) -> None:
        before = snapshot(store)
        assert_refused(api.request(route, who="user_2"), RoleRequiredError(MANAGE_ROLES))
        assert snapshot(store) == before

    @pytest.mark.parametrize("route", _routes())
    def test_if_a_non_member_asks_then_403_and_nothing_changes(
        self, api: Api, store: MemoryKeyStore, route: Route
    ) -> None:
        before = snapshot(store)
        assert_refused(api.request(route, who="user_9"), NotTeamMemberError())
        assert snapshot(store) == before

    @pytest.mark.parametrize("route", _routes())
    def test_if_an_api_key_with_every_scope_asks_then_403_and_nothing_changes(
        self, api: Api, store: MemoryKeyStore, manager: KeyManager, route: Route
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=default_registry)
        before = snapshot(store)
        assert_refused(api.request(route, key=key, origin=None), SessionRequiredError())
        assert snapshot(store) == before

    @pytest.mark.parametrize("route", _routes())
    def test_if_no_credentials_are_sent_then_401_and_nothing_changes(
        self, api: Api, store: MemoryKeyStore, route: Route
    ) -> None:
        before = snapshot(store)
        assert_refused(api.request(route, who=None), MissingSessionError())
        assert snapshot(store) == before


class TestCsrf:
    @pytest.mark.parametrize("route", _routes(changing_only=True))
    @pytest.mark.parametrize("carrier", ["cookie", "sdk"])
    def test_if_a_cookie_change_has_no_origin_then_403_and_nothing_changes(
        self,
        api: Api,
        store: MemoryKeyStore,
        route: Route,
        carrier: Literal["cookie", "sdk"],
    ) -> None:
        before = snapshot(store)
        assert_refused(api.request(route, carrier=carrier, origin=None), OriginRejectedError())
        assert snapshot(store) == before

    @pytest.mark.parametrize("route", _routes(changing_only=True))
    @pytest.mark.parametrize(
        "origin", ["https://evil.example.com", "null", "http://dashboard.example.com"]
    )
    def test_if_a_cookie_change_comes_from_another_origin_then_403(
        self, api: Api, store: MemoryKeyStore, route: Route, origin: str
    ) -> None:
        before = snapshot(store)
        assert_refused(api.request(route, origin=origin), OriginRejectedError())
        assert snapshot(store) == before

    @pytest.mark.parametrize("route", _routes(changing_only=True))
    def test_if_a_cookie_change_has_an_allowed_referer_then_2xx(
        self, api: Api, route: Route
    ) -> None:
        reply = api.request(route, origin=None, headers=[("Referer", f"{ORIGIN}/keys")])
        assert reply.status == SUCCESS[route.name], reply.body

    @pytest.mark.parametrize("route", _routes(changing_only=True))
    def test_if_the_token_is_in_a_header_then_no_origin_is_needed(
        self, api: Api, route: Route
    ) -> None:
        # A header is no ambient credential: a browser never adds it to a forged request.
        reply = api.request(route, carrier="header", origin=None)
        assert reply.status == SUCCESS[route.name], reply.body

    @pytest.mark.parametrize(
        "route", [route for route in ROUTES if not route.changes], ids=lambda r: r.name
    )
    def test_if_a_cookie_read_has_no_origin_then_200(self, api: Api, route: Route) -> None:
        assert api.request(route, origin=None).status == 200


class TestOtherTeams:
    @pytest.mark.parametrize(
        "route", [r for r in ROUTES if "{key_id}" in r.path], ids=lambda r: r.name
    )
    def test_if_another_teams_key_id_is_used_then_404_and_nothing_changes(
        self, api: Api, store: MemoryKeyStore, team: Team, route: Route
    ) -> None:
        before = snapshot(store)
        reply = api.request(route, key_id=team.other_key_id)
        unknown = api.request(route, key_id="key_unknown")
        assert_json_error(reply, 404, "not_found")
        assert reply.body == unknown.body
        assert snapshot(store) == before

    @pytest.mark.shows_key("response")
    def test_if_a_key_is_created_then_it_belongs_to_the_path_team_and_the_session_user(
        self, api: Api
    ) -> None:
        create = next(route for route in ROUTES if route.name == "create_key")
        reply = api.request(create, who="user_3")
        assert reply.status == 201
        record = reply.json()["api_key"]
        assert (record["team_id"], record["user_id"]) == ("team_1", "user_3")


class TestAnswers:
    def test_if_a_method_is_not_served_then_405_json(self, api: Api) -> None:
        reply = api.call(
            "PUT",
            f"{PREFIX}/api-keys",
            [*api.kit.headers("user_1").items(), ("Origin", ORIGIN)],
            b"",
        )
        assert_json_error(reply, 405, "method_not_allowed")
        assert reply.headers["allow"] == "GET, HEAD, POST"

    def test_if_the_body_is_too_large_then_413(self, api: Api, store: MemoryKeyStore) -> None:
        create = next(route for route in ROUTES if route.name == "create_key")
        before = snapshot(store)
        body = json.dumps({"name": "n", "scopes": ["read:bookings"], "x": "y" * 70_000})
        assert_json_error(api.request(create, body=body.encode()), 413, "payload_too_large")
        assert snapshot(store) == before

    def test_if_a_preflight_is_sent_then_204_and_nothing_runs(self, api: Api) -> None:
        reply = api.call(
            "OPTIONS",
            f"{PREFIX}/api-keys",
            [("Origin", ORIGIN), ("Access-Control-Request-Method", "POST")],
            b"",
        )
        assert (reply.status, reply.body) == (204, b"")


@pytest.mark.shows_key("response")  # a generated body may be a valid creation or rotation
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(CHANGES),
    body=st.one_of(
        st.binary(max_size=100),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(["name", "scopes", "role", "user_id"]), inner)
            ),
            max_leaves=8,
        ).map(lambda value: json.dumps(value).encode()),
    ),
)
def test_if_bodies_are_generated_then_never_a_500_nor_a_change_on_a_refusal(
    api: Api, store: MemoryKeyStore, route: Route, body: bytes
) -> None:
    before = snapshot(store)
    reply = api.request(route, body=body)
    assert reply.status < 500, reply.body
    if reply.status >= 400:
        assert snapshot(store) == before


def test_if_an_asgi_route_uses_the_store_then_not_on_the_event_loop(
    api: Api, adapter: str, store: MemoryKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    if adapter not in ("starlette", "fastapi"):
        pytest.skip("the ASGI adapters only (Django runs its sync views in a thread itself)")
    list_keys = store.list_keys
    loops: list[bool] = []

    def on_which_thread(team_id: str) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loops.append(False)
        else:
            loops.append(True)
        return list_keys(team_id)

    monkeypatch.setattr(store, "list_keys", on_which_thread)
    list_route = next(route for route in ROUTES if route.name == "list_keys")
    assert api.request(list_route).status == 200
    assert loops == [False]
