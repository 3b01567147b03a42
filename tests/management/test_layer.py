"""The framework-free management layer, alone: every route, every validation error, the
defence-in-depth check of the principal, the audit events."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, Principal, Role
from skaala_auth.errors import InvalidKeyError, MembershipRevokedError
from skaala_auth.keys import generate_key
from skaala_auth.management import (
    MAX_BODY,
    RESOURCES,
    ROUTES,
    ManagementApi,
    ManagementEvent,
    ManagementResponse,
)

from ..conftest import START, Clock
from ..leakcheck import seen_response
from .conftest import Team, session, snapshot

NOW = datetime.fromtimestamp(START, UTC)
KEYS = "api_keys"
KEY = "api_key"
ROTATION = "api_key_rotation"
MEMBERS = "members"
MEMBER = "member"


def call(
    layer: ManagementApi,
    resource: str,
    method: str,
    body: object = None,
    *,
    principal: Principal | None = None,
    raw: bytes | None = None,
    content_type: str | None = "application/json",
    **params: str,
) -> ManagementResponse:
    """One request to the layer; the response is handed to the leak check."""
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    response = layer.handle(
        resource,
        method=method,
        principal=principal or session(),
        path_params={"team_id": "team_1", **params},
        body=data,
        content_type=content_type,
    )
    seen_response(f"{method} {resource}", response.body.decode())
    return response


def assert_json_headers(response: ManagementResponse) -> None:
    headers = dict(response.headers)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def assert_refused(
    response: ManagementResponse, status: int, error: str, message: str | None = None
) -> None:
    assert response.status == status, response.body
    assert_json_headers(response)
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == error
    if message is not None:
        assert message in body["message"]


def time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class TestRouteTable:
    def test_if_the_routes_are_grouped_then_each_path_is_one_resource(self) -> None:
        assert sorted(r.name for r in RESOURCES) == sorted(
            ["api_keys", "api_key", "api_key_rotation", "members", "member"]
        )
        assert sum(len(r.routes) for r in RESOURCES) == len(ROUTES) == 10
        by_name = {r.name: r for r in RESOURCES}
        assert by_name[KEY].allow == "DELETE, GET, HEAD, PATCH"
        assert by_name[KEY].path_as("flask") == "/teams/<team_id>/api-keys/<key_id>"
        assert by_name[KEY].path_as("django") == "/teams/<str:team_id>/api-keys/<str:key_id>"
        assert by_name[KEY].params == ("team_id", "key_id")

    @pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
    def test_if_a_method_is_not_served_then_405_with_allow(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, resource: Any
    ) -> None:
        before = snapshot(store)
        response = call(layer, resource.name, "PUT", {}, key_id=team.own_key_id, user_id="user_2")
        assert_refused(response, 405, "method_not_allowed")
        assert dict(response.headers)["allow"] == resource.allow
        assert snapshot(store) == before

    def test_if_head_is_asked_then_it_is_answered_as_get(
        self, layer: ManagementApi, team: Team
    ) -> None:
        assert call(layer, KEYS, "HEAD").body == call(layer, KEYS, "GET").body


class TestPrincipalCheck:
    """Defence in depth: the core grants only owner and admin sessions of the path's team; the
    layer refuses anything else (a wiring mistake) and logs it."""

    @pytest.mark.parametrize(
        "principal",
        [
            pytest.param(
                Principal("key_x", "team_1", "user_1", frozenset({"read:bookings"})), id="api-key"
            ),
            pytest.param(session(role=Role.MEMBER), id="member"),
            pytest.param(session(team_id="team_2"), id="other-team"),
            pytest.param(
                Principal(None, "team_1", "user_1", frozenset(), method="session"), id="no-role"
            ),
        ],
    )
    @pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
    def test_if_the_principal_may_not_manage_then_403_and_nothing_changes(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        principal: Principal,
        route: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        resource = next(r for r in RESOURCES if route in r.routes.values())
        before = snapshot(store)
        body = {"name": "x", "scopes": ["read:bookings"], "user_id": "user_5", "role": "admin"}
        if route.name in ("update_member", "rotate_key"):
            body = {"role": "admin"} if route.name == "update_member" else {}
        with caplog.at_level(logging.ERROR, logger="skaala_auth.management"):
            response = call(
                layer,
                resource.name,
                route.method,
                body,
                principal=principal,
                key_id=team.own_key_id,
                user_id="user_2",
            )
        assert_refused(response, 403, "forbidden")
        assert snapshot(store) == before
        assert "does not grant" in caplog.text


class TestListKeys:
    def test_if_keys_are_listed_then_only_the_teams_records_without_secrets(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        store.record_last_used({team.own_key_id: NOW - timedelta(minutes=5)})
        response = call(layer, KEYS, "GET")
        assert response.status == 200
        assert_json_headers(response)
        listed = response.json()["api_keys"]
        assert {key["id"] for key in listed} == {team.own_key_id, team.admin_key_id}
        own = next(key for key in listed if key["id"] == team.own_key_id)
        assert own == {
            "id": team.own_key_id,
            "team_id": "team_1",
            "user_id": "user_1",
            "name": "CI",
            "prefix": own["prefix"],
            "scopes": ["read:bookings"],
            "status": "active",
            "created_at": time(NOW),
            "expires_at": time(NOW + timedelta(days=365)),
            "last_used_at": time(NOW - timedelta(minutes=5)),
            "revoked_at": None,
            "rotated_from": None,
            "disabled_at": None,
            "rate_limit": None,
            "remaining": None,
            "allowed_ips": [],
            "metadata": {},
        }
        assert own["prefix"].startswith("sk_live_") and "…" in own["prefix"]
        assert team.own_key not in response.body.decode()

    def test_if_a_key_is_revoked_or_expired_then_it_is_listed_with_its_status(
        self, layer: ManagementApi, team: Team, manager: KeyManager, clock: Clock
    ) -> None:
        manager.revoke_key(team.own_key_id)
        clock.advance(timedelta(days=400))
        statuses = {key["id"]: key["status"] for key in call(layer, KEYS, "GET").json()["api_keys"]}
        assert statuses == {team.own_key_id: "revoked", team.admin_key_id: "expired"}

    def test_if_the_team_has_no_keys_then_an_empty_list(self, layer: ManagementApi) -> None:
        assert call(layer, KEYS, "GET").json() == {"api_keys": []}


class TestCreateKey:
    @pytest.mark.shows_key("response")
    def test_if_a_key_is_created_then_201_with_the_key_once_and_it_authenticates(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        clock: Clock,
        events: list[ManagementEvent],
    ) -> None:
        body = {"name": "Deploy", "scopes": ["write:bookings", "read:bookings"]}
        response = call(layer, KEYS, "POST", body, principal=session("user_3", Role.ADMIN))
        assert response.status == 201
        assert_json_headers(response)
        created = response.json()
        assert set(created) == {"key", "api_key"}
        record = created["api_key"]
        assert record["user_id"] == "user_3"  # the session's user
        assert record["team_id"] == "team_1"
        assert record["scopes"] == ["read:bookings", "write:bookings"]
        assert record["expires_at"] == time(NOW + timedelta(days=365))
        assert record["prefix"][:12] == created["key"][:12]
        with Authenticator(store, clock=clock) as auth:
            principal = auth.authenticate(
                {"X-API-Key": created["key"]}, required_scopes=["write:bookings"]
            )
        assert principal.key_id == record["id"]
        assert events == [
            ManagementEvent("create_key", "success", 201, "user_3", "team_1", key_id=record["id"])
        ]

    @pytest.mark.shows_key("response")
    def test_if_expires_in_is_given_then_the_key_expires_that_many_seconds_later(
        self, layer: ManagementApi, team: Team
    ) -> None:
        body = {"name": "short", "scopes": ["read:calls"], "expires_in": 3600}
        record = call(layer, KEYS, "POST", body).json()["api_key"]
        assert record["expires_at"] == time(NOW + timedelta(hours=1))

    @pytest.mark.shows_key("response")
    def test_if_the_content_type_has_a_charset_then_it_is_json_still(
        self, layer: ManagementApi, team: Team
    ) -> None:
        body = {"name": "n", "scopes": ["read:calls"]}
        response = call(layer, KEYS, "POST", body, content_type="Application/JSON; charset=utf-8")
        assert response.status == 201

    def test_if_the_sessions_user_is_not_in_the_store_then_403_and_nothing_created(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        # A role resolver other than the store's membership table (Stack Auth's permissions)
        # may grant a user the store does not know: the key would belong to nobody.
        before = snapshot(store)
        body = {"name": "n", "scopes": ["read:calls"]}
        response = call(layer, KEYS, "POST", body, principal=session("user_77"))
        assert_refused(response, 403, "forbidden", "not a member")
        assert snapshot(store) == before

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            pytest.param([], "JSON object", id="a-list"),
            pytest.param("x", "JSON object", id="a-string"),
            pytest.param(None, "needs a JSON object", id="empty"),
            pytest.param({"scopes": ["read:calls"]}, "missing field(s): 'name'", id="no-name"),
            pytest.param({"name": "n"}, "missing field(s): 'scopes'", id="no-scopes"),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "team_id": "team_2"},
                "unknown field(s) 'team_id'",
                id="team-in-body",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "user_id": "user_9"},
                "unknown field(s) 'user_id'",
                id="user-in-body",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "Expires In": 5},
                "unknown field(s) (not shown)",
                id="odd-field-name",
            ),
            pytest.param({"name": 5, "scopes": ["read:calls"]}, "'name' must be a string", id="n5"),
            pytest.param({"name": "", "scopes": ["read:calls"]}, "not be empty", id="name-empty"),
            pytest.param({"name": "  ", "scopes": ["read:calls"]}, "not be empty", id="blank"),
            pytest.param(
                {"name": "x" * 101, "scopes": ["read:calls"]}, "at most 100", id="name-long"
            ),
            pytest.param(
                {"name": "a\nb", "scopes": ["read:calls"]}, "control characters", id="newline"
            ),
            pytest.param(
                {"name": "a\ud800", "scopes": ["read:calls"]}, "valid Unicode", id="surrogate"
            ),
            pytest.param({"name": "n", "scopes": "read:calls"}, "list of scope", id="scope-str"),
            pytest.param({"name": "n", "scopes": [1]}, "list of scope", id="scope-int"),
            pytest.param({"name": "n", "scopes": []}, "at least one", id="no-scope"),
            pytest.param(
                {"name": "n", "scopes": ["read:calls", "admin:all"]},
                "unknown scope(s): admin:all",
                id="unknown-scope",
            ),
            pytest.param(
                {"name": "n", "scopes": ["Read Calls!"]},
                "unknown scope(s): 1 not shown",
                id="odd-scope",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "expires_in": "3600"},
                "whole number",
                id="expiry-string",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "expires_in": 3600.0},
                "whole number",
                id="expiry-float",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "expires_in": True},
                "whole number",
                id="expiry-bool",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "expires_in": 0},
                "between 60 and",
                id="expiry-zero",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "expires_in": -3600},
                "between 60 and",
                id="expiry-negative",
            ),
            pytest.param(
                {"name": "n", "scopes": ["read:calls"], "expires_in": 10**30},
                "between 60 and",
                id="expiry-huge",
            ),
        ],
    )
    def test_if_the_body_is_invalid_then_400_and_nothing_created(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        events: list[ManagementEvent],
        body: object,
        message: str,
    ) -> None:
        before = snapshot(store)
        response = call(layer, KEYS, "POST", body)
        assert_refused(response, 400, "invalid_request", message)
        assert snapshot(store) == before
        assert [(e.action, e.outcome, e.status_code, e.error) for e in events] == [
            ("create_key", "failure", 400, "invalid_request")
        ]

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            pytest.param(b"{", "not valid JSON", id="truncated"),
            pytest.param(b"\xff\xfe{}", "not valid JSON", id="not-utf8"),
            pytest.param(b'{"name": NaN}', "NaN", id="nan"),
            pytest.param(b'{"expires_in": Infinity}', "NaN", id="infinity"),
            pytest.param(b"[" * 60_000, "not valid JSON", id="deep"),
            pytest.param(b'{"n": 1' + b"0" * 60_000 + b"}", "not valid JSON", id="long-number"),
            pytest.param(
                b'{"name": "a", "name": "b", "scopes": ["read:calls"]}', "given twice", id="dup"
            ),
        ],
    )
    def test_if_the_body_is_not_json_then_400(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, raw: bytes, message: str
    ) -> None:
        before = snapshot(store)
        assert_refused(call(layer, KEYS, "POST", raw=raw), 400, "invalid_request", message)
        assert snapshot(store) == before

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded"]
    )
    def test_if_the_body_is_not_declared_json_then_415(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, content_type: str | None
    ) -> None:
        before = snapshot(store)
        body = {"name": "n", "scopes": ["read:calls"]}
        response = call(layer, KEYS, "POST", body, content_type=content_type)
        assert_refused(response, 415, "unsupported_media_type")
        assert snapshot(store) == before

    def test_if_the_body_is_too_large_then_413(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        before = snapshot(store)
        raw = json.dumps({"name": "n" * MAX_BODY, "scopes": ["read:calls"]}).encode()
        assert_refused(call(layer, KEYS, "POST", raw=raw), 413, "payload_too_large")
        assert snapshot(store) == before

    def test_if_a_key_is_pasted_as_the_name_then_400_and_it_is_not_echoed(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        before = snapshot(store)
        pasted = generate_key()  # the leak check looks for it in the response and the logs
        for body in (
            {"name": pasted, "scopes": ["read:calls"]},
            {"name": "n", "scopes": [pasted, f"read:{pasted}"]},
            {"name": "n", "scopes": ["read:calls"], pasted: 1},
        ):
            response = call(layer, KEYS, "POST", body)
            assert_refused(response, 400, "invalid_request")
        assert snapshot(store) == before


class TestGetKey:
    def test_if_a_key_of_the_team_is_asked_then_its_record(
        self, layer: ManagementApi, team: Team
    ) -> None:
        response = call(layer, KEY, "GET", key_id=team.admin_key_id)
        assert response.status == 200
        assert response.json()["api_key"]["id"] == team.admin_key_id
        assert response.json()["api_key"]["name"] == "sync"

    def test_if_another_teams_key_is_asked_then_404_as_for_no_key(
        self, layer: ManagementApi, team: Team
    ) -> None:
        other = call(layer, KEY, "GET", key_id=team.other_key_id)
        missing = call(layer, KEY, "GET", key_id="key_doesnotexist")
        assert_refused(other, 404, "not_found")
        assert other.body == missing.body

    @pytest.mark.parametrize("key_id", ["", "a\x00b", "x" * 300, "\ud800"])
    def test_if_the_key_id_cannot_be_one_then_404(
        self, layer: ManagementApi, team: Team, key_id: str
    ) -> None:
        assert_refused(call(layer, KEY, "GET", key_id=key_id), 404, "not_found")

    def test_if_a_plaintext_key_is_in_the_path_then_404_and_it_is_not_echoed(
        self, layer: ManagementApi, team: Team
    ) -> None:
        assert_refused(call(layer, KEY, "GET", key_id=team.own_key), 404, "not_found")

    def test_if_the_key_id_parameter_is_missing_then_404(
        self, layer: ManagementApi, team: Team
    ) -> None:
        assert_refused(call(layer, KEY, "GET"), 404, "not_found")


class TestRevokeKey:
    def test_if_a_key_is_revoked_then_200_and_it_stops_working(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        clock: Clock,
        events: list[ManagementEvent],
    ) -> None:
        with Authenticator(store, clock=clock) as auth:
            auth.authenticate({"X-API-Key": team.own_key})
            response = call(layer, KEY, "DELETE", key_id=team.own_key_id)
            assert response.status == 200
            record = response.json()["api_key"]
            assert (record["status"], record["revoked_at"]) == ("revoked", time(NOW))
            with pytest.raises(InvalidKeyError):
                auth.authenticate({"X-API-Key": team.own_key})
        assert events == [
            ManagementEvent(
                "revoke_key", "success", 200, "user_1", "team_1", key_id=team.own_key_id
            )
        ]

    def test_if_the_clock_moves_during_the_request_then_the_key_still_shows_revoked(
        self, store: MemoryKeyStore, team: Team, clock: Clock
    ) -> None:
        # A real clock: the manager reads it after the layer did, so revoked_at > the
        # request's instant; the answer must still say "revoked".
        class Ticking(Clock):
            def __call__(self) -> float:
                self.now += 0.001
                return self.now

        ticking = Ticking(clock.now)
        layer = ManagementApi(KeyManager(store, clock=ticking), clock=ticking)
        response = call(layer, KEY, "DELETE", key_id=team.own_key_id)
        assert response.status == 200
        assert response.json()["api_key"]["status"] == "revoked"

    def test_if_a_key_is_revoked_twice_then_the_first_time_stays(
        self, layer: ManagementApi, team: Team, clock: Clock
    ) -> None:
        call(layer, KEY, "DELETE", key_id=team.own_key_id)
        clock.advance(60)
        again = call(layer, KEY, "DELETE", key_id=team.own_key_id)
        assert again.status == 200
        assert again.json()["api_key"]["revoked_at"] == time(NOW)

    def test_if_another_teams_key_is_revoked_then_404_and_it_still_works(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        events: list[ManagementEvent],
    ) -> None:
        before = snapshot(store)
        assert_refused(call(layer, KEY, "DELETE", key_id=team.other_key_id), 404, "not_found")
        assert snapshot(store) == before
        assert [(e.outcome, e.key_id) for e in events] == [("failure", None)]


class TestRotateKey:
    @pytest.mark.shows_key("response")
    def test_if_a_key_is_rotated_then_201_with_the_new_key_and_the_old_ones_grace(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        clock: Clock,
        events: list[ManagementEvent],
    ) -> None:
        response = call(layer, ROTATION, "POST", key_id=team.admin_key_id, raw=b"")
        assert response.status == 201
        body = response.json()
        assert set(body) == {"key", "api_key", "previous_api_key"}
        new, old = body["api_key"], body["previous_api_key"]
        assert new["rotated_from"] == old["id"] == team.admin_key_id
        assert (new["user_id"], new["name"], new["scopes"]) == (
            "user_3",
            "sync",
            ["read:bookings", "write:bookings"],
        )
        assert old["expires_at"] == time(NOW + timedelta(hours=24))
        with Authenticator(store, clock=clock) as auth:
            assert auth.authenticate({"X-API-Key": body["key"]}).key_id == new["id"]
            assert auth.authenticate({"X-API-Key": team.admin_key}).key_id == old["id"]
        assert events == [
            ManagementEvent(
                "rotate_key",
                "success",
                201,
                "user_1",
                "team_1",
                key_id=team.admin_key_id,
                new_key_id=new["id"],
            )
        ]

    @pytest.mark.shows_key("response")
    def test_if_the_grace_period_is_zero_then_the_old_key_ends_now(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, clock: Clock
    ) -> None:
        response = call(layer, ROTATION, "POST", {"grace_period": 0}, key_id=team.own_key_id)
        assert response.json()["previous_api_key"]["status"] == "expired"
        with Authenticator(store, clock=clock) as auth, pytest.raises(InvalidKeyError):
            auth.authenticate({"X-API-Key": team.own_key})

    @pytest.mark.parametrize(
        "body", [{"grace_period": -1}, {"grace_period": 31 * 86400}, {"grace": 5}, [], "x"]
    )
    def test_if_the_body_is_invalid_then_400_and_nothing_rotated(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, body: object
    ) -> None:
        before = snapshot(store)
        response = call(layer, ROTATION, "POST", body, key_id=team.own_key_id)
        assert_refused(response, 400, "invalid_request")
        assert snapshot(store) == before

    def test_if_the_key_is_revoked_then_409(
        self, layer: ManagementApi, team: Team, manager: KeyManager, store: MemoryKeyStore
    ) -> None:
        manager.revoke_key(team.own_key_id)
        before = snapshot(store)
        response = call(layer, ROTATION, "POST", key_id=team.own_key_id)
        assert_refused(response, 409, "conflict", "revoked")
        assert snapshot(store) == before

    def test_if_the_keys_user_left_the_team_then_409(
        self, layer: ManagementApi, team: Team, manager: KeyManager, store: MemoryKeyStore
    ) -> None:
        manager.remove_member(team_id="team_1", user_id="user_3")
        before = snapshot(store)
        response = call(layer, ROTATION, "POST", key_id=team.admin_key_id)
        assert_refused(response, 409, "conflict", "no longer a member")
        assert snapshot(store) == before

    def test_if_another_teams_key_is_rotated_then_404(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        before = snapshot(store)
        response = call(layer, ROTATION, "POST", key_id=team.other_key_id)
        assert_refused(response, 404, "not_found")
        assert snapshot(store) == before


class TestMembers:
    def test_if_members_are_listed_then_the_teams_members_and_roles(
        self, layer: ManagementApi, team: Team
    ) -> None:
        response = call(layer, MEMBERS, "GET")
        assert response.status == 200
        roles = {m["user_id"]: m["role"] for m in response.json()["members"]}
        assert roles == {"user_1": "owner", "user_2": "member", "user_3": "admin"}
        assert response.json()["members"][0]["added_at"] == time(NOW)

    def test_if_a_member_is_added_then_201_and_the_role(
        self, layer: ManagementApi, team: Team, manager: KeyManager, events: list[ManagementEvent]
    ) -> None:
        response = call(layer, MEMBERS, "POST", {"user_id": "user_5", "role": "admin"})
        assert response.status == 201
        assert response.json()["member"]["role"] == "admin"
        member = manager.get_member(team_id="team_1", user_id="user_5")
        assert member is not None and member.role is Role.ADMIN
        assert events == [
            ManagementEvent(
                "add_member", "success", 201, "user_1", "team_1", member="user_5", role="admin"
            )
        ]

    def test_if_no_role_is_given_then_a_plain_member(
        self, layer: ManagementApi, team: Team
    ) -> None:
        response = call(layer, MEMBERS, "POST", {"user_id": "user_5"})
        assert response.json()["member"]["role"] == "member"

    def test_if_the_user_is_a_member_already_then_409_and_the_role_stays(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        before = snapshot(store)
        response = call(layer, MEMBERS, "POST", {"user_id": "user_2", "role": "admin"})
        assert_refused(response, 409, "conflict", "PATCH")
        assert snapshot(store) == before

    @pytest.mark.parametrize(
        "body",
        [
            {"user_id": "user_5", "role": "root"},
            {"user_id": "user_5", "role": 1},
            {"user_id": "user_5", "role": None},
            {"user_id": ""},
            {"user_id": 5},
            {"role": "member"},
            {"user_id": "u" * 256},
            {"user_id": "user_5", "team_id": "team_2"},
        ],
    )
    def test_if_the_body_is_invalid_then_400_and_nobody_added(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, body: object
    ) -> None:
        before = snapshot(store)
        assert_refused(call(layer, MEMBERS, "POST", body), 400, "invalid_request")
        assert snapshot(store) == before

    def test_if_an_admin_adds_an_owner_then_403(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        before = snapshot(store)
        response = call(
            layer,
            MEMBERS,
            "POST",
            {"user_id": "user_5", "role": "owner"},
            principal=session("user_3", Role.ADMIN),
        )
        assert_refused(response, 403, "forbidden", "only an owner")
        assert snapshot(store) == before

    def test_if_a_role_is_changed_then_200_and_the_new_role(
        self, layer: ManagementApi, team: Team, manager: KeyManager
    ) -> None:
        response = call(layer, MEMBER, "PATCH", {"role": "admin"}, user_id="user_2")
        assert response.status == 200
        assert response.json()["member"] == {
            "team_id": "team_1",
            "user_id": "user_2",
            "role": "admin",
            "added_at": time(NOW),
        }
        member = manager.get_member(team_id="team_1", user_id="user_2")
        assert member is not None and member.role is Role.ADMIN

    def test_if_the_member_does_not_exist_then_404(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        before = snapshot(store)
        response = call(layer, MEMBER, "PATCH", {"role": "admin"}, user_id="user_9")
        assert_refused(response, 404, "not_found")
        assert_refused(call(layer, MEMBER, "DELETE", user_id="user_9"), 404, "not_found")
        assert snapshot(store) == before

    @pytest.mark.parametrize(("method", "body"), [("PATCH", {"role": "admin"}), ("DELETE", None)])
    def test_if_the_last_owner_would_go_then_409(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore, method: str, body: object
    ) -> None:
        before = snapshot(store)
        response = call(layer, MEMBER, method, body, user_id="user_1")
        assert_refused(response, 409, "conflict", "must keep an owner")
        assert snapshot(store) == before

    def test_if_another_owner_remains_then_an_owner_may_step_down(
        self, layer: ManagementApi, team: Team, manager: KeyManager
    ) -> None:
        manager.add_member(team_id="team_1", user_id="user_5", role="owner")
        response = call(layer, MEMBER, "PATCH", {"role": "member"}, user_id="user_1")
        assert response.status == 200
        assert call(layer, MEMBER, "DELETE", user_id="user_1").status == 204

    @pytest.mark.parametrize(
        ("method", "body"),
        [("PATCH", {"role": "member"}), ("DELETE", None)],
    )
    def test_if_an_admin_changes_an_owner_then_403(
        self,
        layer: ManagementApi,
        team: Team,
        manager: KeyManager,
        store: MemoryKeyStore,
        method: str,
        body: object,
    ) -> None:
        manager.add_member(team_id="team_1", user_id="user_5", role="owner")
        before = snapshot(store)
        admin = session("user_3", Role.ADMIN)
        response = call(layer, MEMBER, method, body, principal=admin, user_id="user_1")
        assert_refused(response, 403, "forbidden", "only an owner")
        promote = call(layer, MEMBER, "PATCH", {"role": "owner"}, principal=admin, user_id="user_2")
        assert_refused(promote, 403, "forbidden", "only an owner")
        assert snapshot(store) == before

    def test_if_an_admin_changes_a_member_then_200(self, layer: ManagementApi, team: Team) -> None:
        admin = session("user_3", Role.ADMIN)
        response = call(
            layer, MEMBER, "PATCH", {"role": "admin"}, principal=admin, user_id="user_2"
        )
        assert response.status == 200

    def test_if_a_member_is_removed_then_204_and_their_keys_stop_working(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        clock: Clock,
        events: list[ManagementEvent],
    ) -> None:
        response = call(layer, MEMBER, "DELETE", user_id="user_3")
        assert (response.status, response.body) == (204, b"")
        assert dict(response.headers)["cache-control"] == "no-store"
        with Authenticator(store, clock=clock) as auth, pytest.raises(MembershipRevokedError):
            auth.authenticate({"X-API-Key": team.admin_key})
        assert events == [
            ManagementEvent("remove_member", "success", 204, "user_1", "team_1", member="user_3")
        ]


class TestStoreFailure:
    def test_if_the_store_fails_then_503_and_the_traceback_is_only_logged(
        self,
        layer: ManagementApi,
        team: Team,
        store: MemoryKeyStore,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def broken(*args: object) -> None:
            raise OSError("disk on fire")

        monkeypatch.setattr(store, "insert_key", broken)
        monkeypatch.setattr(store, "list_keys", broken)
        with caplog.at_level(logging.ERROR, logger="skaala_auth.management"):
            created = call(layer, KEYS, "POST", {"name": "n", "scopes": ["read:calls"]})
            listed = call(layer, KEYS, "GET")
        for response in (created, listed):
            assert_refused(response, 503, "service_unavailable")
            assert dict(response.headers)["retry-after"] == "1"
            assert b"fire" not in response.body
        assert "disk on fire" in caplog.text


class TestAudit:
    def test_if_changes_are_made_then_each_is_logged_on_the_audit_logger(
        self, layer: ManagementApi, team: Team, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="skaala_auth.audit"):
            call(layer, KEY, "DELETE", key_id=team.own_key_id)
            call(layer, KEYS, "GET")  # reads are not audited
            call(layer, MEMBER, "DELETE", user_id="user_1")  # refused: audited as a failure
        assert [record.getMessage() for record in caplog.records] == [
            f"manage revoke_key success status=200 actor=user_1 team=team_1 "
            f"key_id={team.own_key_id} new_key_id=- member=- role=- error=-",
            "manage remove_member failure status=409 actor=user_1 team=team_1 key_id=- "
            "new_key_id=- member=user_1 role=- error=conflict",
        ]

    def test_if_the_audit_hook_raises_then_the_change_is_answered_and_logged(
        self,
        manager: KeyManager,
        team: Team,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def hook(event: ManagementEvent) -> None:
            raise RuntimeError("hook down")

        layer = ManagementApi(manager, clock=clock, audit=hook)
        with caplog.at_level(logging.ERROR, logger="skaala_auth.management"):
            response = call(layer, KEY, "DELETE", key_id=team.own_key_id)
        assert response.status == 200
        assert "audit hook raised" in caplog.text


@pytest.mark.shows_key("response")
def test_if_the_store_fails_after_a_rotation_then_the_new_key_is_shown_still(
    layer: ManagementApi, team: Team, store: MemoryKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotate = store.rotate_key

    def rotate_then_fail(*args: Any) -> None:
        rotate(*args)
        monkeypatch.setattr(store, "get_key", broken)

    def broken(key_id: str) -> None:
        raise OSError("gone")

    monkeypatch.setattr(store, "rotate_key", rotate_then_fail)
    response = call(layer, ROTATION, "POST", key_id=team.own_key_id)
    assert response.status == 201
    assert response.json()["previous_api_key"]["expires_at"] == time(NOW + timedelta(hours=24))


def test_if_two_owners_demote_each_other_at_once_then_one_owner_remains(
    layer: ManagementApi,
    team: Team,
    manager: KeyManager,
    store: MemoryKeyStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager.add_member(team_id="team_1", user_id="user_5", role="owner")
    list_members = store.list_members

    def slow_list_members(team_id: str) -> Any:
        found = list_members(team_id)
        threading.Event().wait(0.05)  # both checks would see two owners without the lock
        return found

    monkeypatch.setattr(store, "list_members", slow_list_members)
    statuses: list[int] = []

    def demote(actor: str, target: str) -> None:
        response = layer.handle(
            MEMBER,
            method="PATCH",
            principal=session(actor),
            path_params={"team_id": "team_1", "user_id": target},
            body=b'{"role": "member"}',
            content_type="application/json",
        )
        statuses.append(response.status)

    threads = [
        threading.Thread(target=demote, args=("user_1", "user_5")),
        threading.Thread(target=demote, args=("user_5", "user_1")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    owners = [m for m in list_members("team_1") if m.role is Role.OWNER]
    assert len(owners) == 1


class TestKeyPolicies:
    @pytest.mark.shows_key("response")
    def test_if_a_key_is_created_with_policies_then_they_are_kept_and_shown(
        self, layer: ManagementApi, store: MemoryKeyStore
    ) -> None:
        body = {
            "name": "Metered",
            "scopes": ["read:bookings"],
            "rate_limit": "10/minute",
            "remaining": 100,
            "allowed_ips": ["203.0.113.0/24"],
            "metadata": {"plan": "pro"},
        }
        response = call(layer, KEYS, "POST", body)
        assert response.status == 201, response.body
        shown = response.json()["api_key"]
        assert (shown["rate_limit"], shown["remaining"]) == ("10/60s", 100)
        assert (shown["allowed_ips"], shown["metadata"]) == (["203.0.113.0/24"], {"plan": "pro"})
        stored = store.get_key(shown["id"])
        assert stored is not None and stored.remaining == 100

    @pytest.mark.parametrize(
        "field",
        [
            pytest.param({"rate_limit": "lots"}, id="rate-limit"),
            pytest.param({"remaining": -1}, id="negative-remaining"),
            pytest.param({"remaining": True}, id="boolean-remaining"),
            pytest.param({"allowed_ips": ["10.0.0.1/8"]}, id="host-bits"),
            pytest.param({"allowed_ips": "10.0.0.0/8"}, id="not-a-list"),
            pytest.param({"metadata": [1]}, id="metadata-not-an-object"),
            pytest.param({"metadata": {"x": "y" * 5000}}, id="metadata-too-large"),
        ],
    )
    def test_if_a_policy_is_malformed_then_400_and_nothing_is_made(
        self, layer: ManagementApi, store: MemoryKeyStore, team: Team, field: dict[str, Any]
    ) -> None:
        before = snapshot(store)
        body = {"name": "Bad", "scopes": ["read:bookings"], **field}
        response = call(layer, KEYS, "POST", body)
        assert_refused(response, 400, "invalid_request")
        assert snapshot(store) == before
        patched = call(layer, KEY, "PATCH", field, key_id=team.own_key_id)
        assert_refused(patched, 400, "invalid_request")

    def test_if_a_key_is_patched_then_it_is_disabled_refilled_and_enabled(
        self, layer: ManagementApi, team: Team, store: MemoryKeyStore
    ) -> None:
        body = {"disabled": True, "remaining": 5, "metadata": None}
        response = call(layer, KEY, "PATCH", body, key_id=team.own_key_id)
        assert response.status == 200, response.body
        shown = response.json()["api_key"]
        assert shown["status"] == "disabled" and shown["remaining"] == 5
        enabled = call(layer, KEY, "PATCH", {"disabled": False}, key_id=team.own_key_id)
        assert enabled.json()["api_key"]["status"] == "active"
        assert call(layer, KEY, "PATCH", {}, key_id=team.own_key_id).status == 400
