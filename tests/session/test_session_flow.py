"""Dashboard sessions decided by the authenticator: the same flow as keys, under both drivers.

What is checked here is what a handler behind any adapter sees: the principal (method
``"session"``, the team of the path, the role from the store, scopes by role) or the refusal
(status and body), for every carrier, the CSRF rule, roles, membership changes and outages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, Principal
from skaala_auth.audit import AuditEvent
from skaala_auth.errors import AuthError, ConfigurationError, Reason
from skaala_auth.flow import AFRESH, Endpoint, RequestFacts
from skaala_auth.models import Role
from skaala_auth.rules import Rules
from skaala_auth.scopes import DEFAULT_SCOPES, ScopeRegistry
from skaala_auth.testing import SessionKit

from ..conftest import Clock
from .conftest import NOW

MANAGE = Endpoint(credentials="session", roles=frozenset({"owner", "admin"}))
READ = Endpoint(scopes=("read:bookings",))
WRITE = Endpoint(scopes=("write:bookings",))
EVERY_SCOPE = frozenset(DEFAULT_SCOPES)
READ_SCOPES = frozenset(s for s in DEFAULT_SCOPES if s.startswith("read:"))


class Driven:
    """An authenticator's ``decide``, by the sync or the async driver."""

    def __init__(self, auth: Authenticator, driver: str) -> None:
        self.auth = auth
        self.driver = driver

    def __call__(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        need: Endpoint | Rules | None = None,
        team: str | None = "team_1",
        found: Principal | None = None,
    ) -> Principal | AuthError | None:
        params = {} if team is None else {"team_id": team}
        facts = RequestFacts(
            method, path, [(k.lower(), v) for k, v in headers.items()], None, params
        )
        if self.driver == "async":
            return asyncio.run(self.auth.decide_async(facts, need, found=found))
        return self.auth.decide(facts, need, found=found)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def kit(clock: Clock) -> SessionKit:
    return SessionKit(project_id="test-project", clock=clock)


@pytest.fixture
def team(store: MemoryKeyStore, clock: Clock) -> KeyManager:
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="owner_1", role="owner")
    manager.add_member(team_id="team_1", user_id="admin_1", role="admin")
    manager.add_member(team_id="team_1", user_id="member_1", role="member")
    manager.add_member(team_id="team_2", user_id="member_1", role="owner")
    return manager


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(store: MemoryKeyStore, clock: Clock, kit: SessionKit, driver: str) -> Iterator[Any]:
    made: list[Authenticator] = []

    def make(**options: Any) -> Driven:
        options.setdefault("session_verifier", kit.verifier())
        auth = Authenticator(options.pop("store", store), clock=clock, **options)
        made.append(auth)
        return Driven(auth, driver)

    yield make
    for auth in made:
        auth.close()


@pytest.fixture
def decide(make: Any, team: KeyManager) -> Driven:
    return make()  # type: ignore[no-any-return]


def cookie(kit: SessionKit, user: str, **claims: Any) -> dict[str, str]:
    return {"cookie": f"stack-access-token={kit.mint(user, **claims)}"}


class TestPrincipal:
    @pytest.mark.parametrize(
        ("user", "role", "scopes"),
        [
            ("owner_1", Role.OWNER, EVERY_SCOPE),
            ("admin_1", Role.ADMIN, EVERY_SCOPE),
            ("member_1", Role.MEMBER, READ_SCOPES),
        ],
    )
    def test_a_session_acts_for_the_team_in_the_path_with_its_roles_scopes(
        self, decide: Driven, kit: SessionKit, user: str, role: Role, scopes: frozenset[str]
    ) -> None:
        found = decide("GET", "/teams/team_1/bookings", cookie(kit, user), READ)
        assert found == Principal(None, "team_1", user, scopes, "session", role)

    def test_the_same_user_has_its_role_of_each_team(self, decide: Driven, kit: SessionKit) -> None:
        headers = cookie(kit, "member_1")
        assert (
            decide("POST", "/t", {**headers, "origin": "http://x"}, WRITE, "team_1").status_code
            == 403
        )  # type: ignore[union-attr]
        found = decide("GET", "/t", headers, WRITE, "team_2")
        assert isinstance(found, Principal) and found.role is Role.OWNER

    @pytest.mark.parametrize("carrier", ["cookie", "sdk", "header"])
    def test_every_carrier(self, decide: Driven, kit: SessionKit, carrier: Any) -> None:
        headers = kit.headers(user_id="owner_1", carrier=carrier)
        found = decide("GET", "/t", dict(headers), READ)
        assert isinstance(found, Principal) and found.method == "session"

    def test_not_a_member_of_the_team_in_the_path(self, decide: Driven, kit: SessionKit) -> None:
        refused = decide("GET", "/t", cookie(kit, "owner_1"), READ, "team_2")
        assert isinstance(refused, AuthError) and refused.status_code == 403
        assert refused.body == {
            "error": "forbidden",
            "message": "You are not a member of this team: check the team id in the URL",
        }

    def test_no_team_in_the_path_authenticates_the_user_for_no_team(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        found = decide("GET", "/me", cookie(kit, "owner_1"), Endpoint(), None)
        assert found == Principal(None, "", "owner_1", frozenset(), "session")
        refused = decide("GET", "/me", cookie(kit, "owner_1"), READ, None)
        assert isinstance(refused, AuthError) and refused.status_code == 403

    def test_configured_scopes_by_role(self, make: Any, team: KeyManager, kit: SessionKit) -> None:
        decide = make(session_scopes={"owner": ["read:bookings"], "member": []})
        found = decide("GET", "/t", cookie(kit, "owner_1"), Endpoint())
        assert isinstance(found, Principal) and found.scopes == {"read:bookings"}
        refused = decide("GET", "/t", cookie(kit, "admin_1"), READ)
        assert isinstance(refused, AuthError) and refused.status_code == 403

    def test_a_registry_gives_owners_its_scopes(
        self, make: Any, team: KeyManager, kit: SessionKit
    ) -> None:
        registry = ScopeRegistry()
        registry.register("read:invoices")
        decide = make(session_scopes=registry)
        owner = decide("GET", "/t", cookie(kit, "owner_1"), Endpoint())
        member = decide("GET", "/t", cookie(kit, "member_1"), Endpoint())
        assert isinstance(owner, Principal) and "read:invoices" in owner.scopes
        assert isinstance(member, Principal) and "read:invoices" in member.scopes
        assert "write:bookings" not in member.scopes

    def test_a_role_resolver_replaces_the_store(self, make: Any, kit: SessionKit) -> None:
        asked: list[tuple[str, str]] = []

        def resolver(team_id: str, user_id: str) -> str | None:
            asked.append((team_id, user_id))
            return "admin" if user_id == "stack_user" else None

        decide = make(role_resolver=resolver)
        found = decide("GET", "/t", cookie(kit, "stack_user"), READ, "team_9")
        assert isinstance(found, Principal) and found.role is Role.ADMIN
        assert asked == [("team_9", "stack_user")]
        decide("GET", "/t", cookie(kit, "stack_user"), READ, "team_9")
        assert len(asked) == 1  # cached

    @pytest.mark.parametrize(
        "options",
        [
            {"session_scopes": {"boss": []}},
            {"session_scopes": {"owner": "read:bookings"}},
            {"session_scopes": ["owner"]},
            {"allowed_origins": "https://a.example"},
            {"allowed_origins": ["https://a.example/path"]},
            {"allowed_origins": ["*"]},
            {"allowed_origins": ["a.example"]},
        ],
    )
    def test_bad_settings_are_refused(self, kit: SessionKit, options: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            Authenticator(MemoryKeyStore(), session_verifier=kit.verifier(), **options)

    def test_session_settings_need_a_verifier(self) -> None:
        with pytest.raises(ConfigurationError, match="session_verifier"):
            Authenticator(MemoryKeyStore(), session_scopes={"owner": []})


class TestKeysAndSessions:
    def test_the_key_decides_when_both_are_sent(
        self, decide: Driven, kit: SessionKit, team: KeyManager
    ) -> None:
        key, record = team.create_key(
            team_id="team_1", user_id="member_1", name="k", scopes=["read:bookings"]
        )
        both = {**cookie(kit, "owner_1"), "authorization": f"Bearer {key}"}
        found = decide("GET", "/t", both, READ)
        assert isinstance(found, Principal) and found.method == "api_key"
        assert found.key_id == record.id
        refused = decide("GET", "/t", both, WRITE)  # a cookie never widens a key's scopes
        assert isinstance(refused, AuthError) and refused.body["message"] == "Insufficient scopes"

    def test_a_bad_key_is_refused_beside_a_good_session(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        both = {**cookie(kit, "owner_1"), "x-api-key": "sk_live_" + "a" * 38}
        refused = decide("GET", "/t", both, READ)
        assert isinstance(refused, AuthError)
        assert refused.body == {"error": "unauthorized", "message": "Invalid API key"}

    def test_api_key_only_endpoints_ignore_sessions(self, decide: Driven, kit: SessionKit) -> None:
        refused = decide("GET", "/t", cookie(kit, "owner_1"), Endpoint(credentials="api_key"))
        assert isinstance(refused, AuthError)
        assert refused.body == {"error": "unauthorized", "message": "Missing API key"}

    def test_without_a_verifier_sessions_are_not_read(
        self, make: Any, team: KeyManager, kit: SessionKit
    ) -> None:
        decide = make(session_verifier=None)
        refused = decide("GET", "/t", cookie(kit, "owner_1"), READ)
        assert isinstance(refused, AuthError) and refused.body["message"] == "Missing API key"


class TestSessionOnlyEndpoints:
    @pytest.mark.parametrize("user", ["owner_1", "admin_1"])
    def test_owners_and_admins(self, decide: Driven, kit: SessionKit, user: str) -> None:
        found = decide("GET", "/t", cookie(kit, user), MANAGE)
        assert isinstance(found, Principal) and found.user_id == user

    def test_a_member_is_refused_with_the_roles_named(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        refused = decide("GET", "/t", cookie(kit, "member_1"), MANAGE)
        assert isinstance(refused, AuthError) and refused.status_code == 403
        assert refused.body["message"] == (
            "Only team owners and admins can do this: ask one of them for a role change"
        )
        assert refused.reason is Reason.ROLE

    @pytest.mark.parametrize("junk", [False, True])
    def test_an_api_key_is_refused_whatever_its_scopes(
        self, decide: Driven, kit: SessionKit, team: KeyManager, junk: bool
    ) -> None:
        key, _ = team.create_key(
            team_id="team_1", user_id="owner_1", name="k", scopes=sorted(EVERY_SCOPE)
        )
        sent = "sk_live_" + "b" * 38 if junk else key
        for headers in (
            {"authorization": f"Bearer {sent}"},
            {"x-api-key": sent, **cookie(kit, "owner_1")},
        ):
            refused = decide("GET", "/t", headers, MANAGE)
            assert isinstance(refused, AuthError) and refused.status_code == 403
            assert refused.reason is Reason.SESSION_REQUIRED
            assert "not API keys" in refused.body["message"]

    def test_nothing_sent(self, decide: Driven) -> None:
        refused = decide("GET", "/t", {}, MANAGE)
        assert isinstance(refused, AuthError) and refused.status_code == 401
        assert refused.body == {
            "error": "unauthorized",
            "message": "Missing session: sign in to the dashboard",
        }

    def test_without_a_verifier_nobody_gets_in(self, make: Any, team: KeyManager) -> None:
        decide = make(session_verifier=None)
        refused = decide("GET", "/t", {}, MANAGE)
        assert isinstance(refused, AuthError) and refused.status_code == 401

    def test_a_bad_token(self, decide: Driven, kit: SessionKit) -> None:
        refused = decide("GET", "/t", cookie(kit, "owner_1", expires_in=-60), MANAGE)
        assert isinstance(refused, AuthError)
        assert refused.body == {"error": "unauthorized", "message": "Invalid session"}


class TestCsrf:
    def post(self, decide: Driven, headers: dict[str, str]) -> Principal | AuthError | None:
        return decide("POST", "/t", headers, MANAGE)

    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post", "PROPFIND"])
    def test_a_cookie_on_an_unsafe_method_needs_an_origin(
        self, decide: Driven, kit: SessionKit, method: str
    ) -> None:
        refused = decide(method, "/t", cookie(kit, "owner_1"), MANAGE)
        assert isinstance(refused, AuthError) and refused.status_code == 403
        assert refused.body == {
            "error": "forbidden",
            "message": "Cross-site request refused: this Origin is not allowed",
        }

    @pytest.mark.parametrize("method", ["GET", "HEAD", "head", "OPTIONS"])
    def test_safe_methods_need_none(self, decide: Driven, kit: SessionKit, method: str) -> None:
        assert isinstance(decide(method, "/t", cookie(kit, "owner_1"), MANAGE), Principal)

    @pytest.mark.parametrize(
        ("extra", "granted"),
        [
            ({"origin": "http://testserver", "host": "testserver"}, True),
            ({"origin": "https://testserver", "host": "testserver"}, True),
            ({"origin": "https://evil.example", "host": "testserver"}, False),
            ({"origin": "null", "host": "testserver"}, False),
            ({"referer": "https://testserver/dashboard", "host": "testserver"}, True),
            ({"referer": "https://evil.example/testserver", "host": "testserver"}, False),
            ({"referer": "/relative", "host": "testserver"}, False),
            ({"origin": "https://dash.example.com", "host": "api.example.com"}, True),
            ({"origin": "HTTPS://DASH.example.com/", "host": "api.example.com"}, True),
            ({"origin": "https://dash.example.com:8443", "host": "api.example.com"}, False),
            ({"origin": "https://user@testserver", "host": "testserver"}, False),
            ({"host": "testserver"}, False),
        ],
    )
    def test_allowed_origins_and_the_requests_own(
        self, make: Any, team: KeyManager, kit: SessionKit, extra: dict[str, str], granted: bool
    ) -> None:
        decide = make(allowed_origins=["https://dash.example.com"])
        outcome = self.post(decide, {**cookie(kit, "owner_1"), **extra})
        assert isinstance(outcome, Principal) is granted, outcome

    def test_two_different_origins_are_refused(self, decide: Driven, kit: SessionKit) -> None:
        facts = RequestFacts(
            "POST",
            "/t",
            [
                ("cookie", f"stack-access-token={kit.mint('owner_1')}"),
                ("host", "testserver"),
                ("origin", "http://testserver"),
                ("origin", "https://evil.example"),
            ],
            None,
            {"team_id": "team_1"},
        )
        assert isinstance(decide.auth.decide(facts, MANAGE), AuthError)

    def test_an_endpoints_own_origins(self, decide: Driven, kit: SessionKit) -> None:
        endpoint = Endpoint(credentials="session", allowed_origins=frozenset({"https://d.example"}))
        headers = {**cookie(kit, "owner_1"), "origin": "https://d.example"}
        assert isinstance(decide("POST", "/t", headers, endpoint), Principal)
        assert isinstance(decide("POST", "/t", headers, MANAGE), AuthError)

    @pytest.mark.parametrize("carrier", ["cookie", "sdk"])
    def test_every_cookie_carrier(self, decide: Driven, kit: SessionKit, carrier: Any) -> None:
        refused = self.post(decide, dict(kit.headers(user_id="owner_1", carrier=carrier)))
        assert isinstance(refused, AuthError) and refused.reason is Reason.ORIGIN

    def test_a_header_is_not_ambient(self, decide: Driven, kit: SessionKit) -> None:
        found = self.post(decide, dict(kit.headers(user_id="owner_1", carrier="header")))
        assert isinstance(found, Principal)

    def test_an_unknown_method_counts_as_unsafe(
        self, kit: SessionKit, team: KeyManager, store: MemoryKeyStore, clock: Clock
    ) -> None:
        with Authenticator(store, clock=clock, session_verifier=kit.verifier()) as auth:
            headers = cookie(kit, "owner_1")
            with pytest.raises(AuthError) as refused:
                auth.authenticate(headers, team_id="team_1")
            assert refused.value.reason is Reason.ORIGIN
            found = auth.authenticate(headers, team_id="team_1", method="GET")
            assert found.method == "session"

    def test_where_nothing_is_required_a_stale_cookie_goes_on_anonymous(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        assert decide("POST", "/t", cookie(kit, "owner_1"), None, None) is None
        assert decide("GET", "/t", cookie(kit, "owner_1", expires_in=-60), None, None) is None
        # ... but a token sent in a header is checked, as a key would be
        stale = {"x-stack-access-token": kit.mint("owner_1", expires_in=-60)}
        assert isinstance(decide("GET", "/t", stale, None, None), AuthError)


class TestChanges:
    def test_a_removed_member_is_refused_at_once(
        self, decide: Driven, kit: SessionKit, team: KeyManager
    ) -> None:
        headers = cookie(kit, "admin_1")
        assert isinstance(decide("GET", "/t", headers, MANAGE), Principal)
        team.remove_member(team_id="team_1", user_id="admin_1")
        refused = decide("GET", "/t", headers, MANAGE)
        assert isinstance(refused, AuthError) and refused.reason is Reason.NOT_A_MEMBER

    def test_a_role_change_applies_at_once(
        self, decide: Driven, kit: SessionKit, team: KeyManager
    ) -> None:
        headers = cookie(kit, "member_1")
        assert isinstance(decide("GET", "/t", headers, MANAGE), AuthError)
        team.set_role(team_id="team_1", user_id="member_1", role="admin")
        assert isinstance(decide("GET", "/t", headers, MANAGE), Principal)
        team.set_role(team_id="team_1", user_id="member_1", role="member")
        assert isinstance(decide("GET", "/t", headers, MANAGE), AuthError)

    def test_a_new_member_gets_in_at_once(
        self, decide: Driven, kit: SessionKit, team: KeyManager
    ) -> None:
        headers = cookie(kit, "newcomer")
        assert isinstance(decide("GET", "/t", headers, READ), AuthError)
        team.add_member(team_id="team_1", user_id="newcomer", role="member")
        assert isinstance(decide("GET", "/t", headers, READ), Principal)

    def test_a_cached_token_still_expires(
        self, decide: Driven, kit: SessionKit, clock: Clock
    ) -> None:
        headers = cookie(kit, "owner_1", expires_in=20)
        assert isinstance(decide("GET", "/t", headers, READ), Principal)
        clock.advance(19)
        assert isinstance(decide("GET", "/t", headers, READ), Principal)
        clock.advance(20)  # past exp and the 10 s leeway
        refused = decide("GET", "/t", headers, READ)
        assert isinstance(refused, AuthError) and refused.reason is Reason.EXPIRED

    def test_the_signature_is_verified_once_per_token_and_ttl(
        self, decide: Driven, kit: SessionKit, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sessions = decide.auth._flow.sessions
        assert sessions is not None
        calls = []
        original = sessions.verifier.decode
        monkeypatch.setattr(
            sessions.verifier, "decode", lambda *a, **k: calls.append(1) or original(*a, **k)
        )
        headers = cookie(kit, "owner_1")
        for _ in range(5):
            assert isinstance(decide("GET", "/t", headers, READ), Principal)
        assert len(calls) == 1
        clock.advance(31)  # past cache_ttl
        assert isinstance(decide("GET", "/t", headers, READ), Principal)
        assert len(calls) == 2


class FailingStore(MemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def get_member(self, team_id: str, user_id: str) -> Any:
        if self.failing:
            raise OSError("the store is down")
        return super().get_member(team_id, user_id)


class TestOutages:
    def test_a_role_that_cannot_be_looked_up_is_a_503_that_recovers(
        self, make: Any, kit: SessionKit, clock: Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = FailingStore()
        KeyManager(store, clock=clock).add_member(team_id="team_1", user_id="u", role="owner")
        decide = make(store=store)
        store.failing = True
        with caplog.at_level(logging.WARNING, "skaala_auth"):
            refused = decide("GET", "/t", cookie(kit, "u"), MANAGE)
        assert isinstance(refused, AuthError) and refused.status_code == 503
        assert any("session look-up" in r.getMessage() for r in caplog.records)
        store.failing = False
        assert isinstance(decide("GET", "/t", cookie(kit, "u"), MANAGE), Principal)

    def test_a_resolver_that_hangs_is_a_503_at_store_timeout(
        self, make: Any, kit: SessionKit
    ) -> None:
        import threading

        release = threading.Event()
        decide = make(role_resolver=lambda t, u: release.wait(5) and "owner", store_timeout=0.2)
        try:
            refused = decide("GET", "/t", cookie(kit, "u"), MANAGE)
            assert isinstance(refused, AuthError) and refused.status_code == 503
        finally:
            release.set()

    def test_a_resolver_answering_no_role_is_a_503(self, make: Any, kit: SessionKit) -> None:
        decide = make(role_resolver=lambda t, u: "boss")
        refused = decide("GET", "/t", cookie(kit, "u"), MANAGE)
        assert isinstance(refused, AuthError) and refused.status_code == 503

    def test_the_jwks_url_down_is_a_503(self, make: Any, kit: SessionKit, team: KeyManager) -> None:
        from skaala_auth.session import StackAuthVerifier

        verifier = StackAuthVerifier(
            project_id="test-project", jwks_url="http://127.0.0.1:9/jwks.json", fetch_timeout=0.5
        )
        decide = make(session_verifier=verifier)
        refused = decide("GET", "/t", cookie(kit, "owner_1"), READ)
        assert isinstance(refused, AuthError) and refused.status_code == 503
        assert refused.reason is Reason.JWKS_UNAVAILABLE

    def test_the_jwks_url_serves_keys(
        self, make: Any, kit: SessionKit, team: KeyManager, jwks_server: Any
    ) -> None:
        from skaala_auth.session import StackAuthVerifier

        verifier = StackAuthVerifier(project_id="test-project", jwks_url=jwks_server.url)
        decide = make(session_verifier=verifier)
        assert isinstance(decide("GET", "/t", cookie(kit, "owner_1"), READ), Principal)
        assert jwks_server.requests == 1


class TestRecheck:
    def test_a_session_found_for_no_team_is_decided_afresh(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        headers = cookie(kit, "owner_1")
        found = decide("GET", "/t", headers, None, None)  # a middleware, before routing
        assert isinstance(found, Principal) and found.team_id == ""
        facts = RequestFacts("GET", "/t", list(headers.items()), None, {"team_id": "team_1"})
        assert decide.auth._flow.recheck(facts, MANAGE, found) is AFRESH
        granted = decide("GET", "/t", headers, MANAGE, "team_1", found=found)
        assert isinstance(granted, Principal) and granted.role is Role.OWNER

    def test_a_key_found_by_a_middleware_cannot_manage(
        self, decide: Driven, team: KeyManager
    ) -> None:
        key, _ = team.create_key(
            team_id="team_1", user_id="owner_1", name="k", scopes=["read:staff"]
        )
        found = decide("GET", "/t", {"x-api-key": key}, None, None)
        assert isinstance(found, Principal)
        refused = decide("GET", "/t", {"x-api-key": key}, MANAGE, found=found)
        assert isinstance(refused, AuthError) and refused.reason is Reason.SESSION_REQUIRED

    def test_a_session_on_an_api_key_only_endpoint(self, decide: Driven, kit: SessionKit) -> None:
        found = decide("GET", "/t", cookie(kit, "owner_1"), READ)
        assert isinstance(found, Principal)
        refused = decide("GET", "/t", {}, Endpoint(credentials="api_key"), found=found)
        assert isinstance(refused, AuthError) and refused.status_code == 401

    def test_roles_of_a_found_key(self, decide: Driven, team: KeyManager) -> None:
        key, _ = team.create_key(
            team_id="team_1", user_id="member_1", name="k", scopes=["read:staff"]
        )
        owners = Endpoint(roles=frozenset({"owner"}))
        refused = decide("GET", "/t", {"x-api-key": key}, owners)
        assert isinstance(refused, AuthError) and refused.reason is Reason.ROLE
        assert refused.body["message"].startswith("Only team owners can do this")
        found = decide("GET", "/t", {"x-api-key": key}, None, None)
        assert isinstance(found, Principal)
        again = decide("GET", "/t", {}, owners, found=found)
        assert isinstance(again, AuthError) and again.reason is Reason.ROLE

    def test_a_rules_table_reads_the_team_from_the_path(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        rules = Rules([("/teams/{team_id}/bookings", ["read:bookings"])])
        found = decide("GET", "/teams/team_1/bookings", cookie(kit, "member_1"), rules, None)
        assert isinstance(found, Principal) and found.role is Role.MEMBER
        refused = decide("GET", "/teams/team_9/bookings", cookie(kit, "member_1"), rules, None)
        assert isinstance(refused, AuthError) and refused.status_code == 403


class TestAudit:
    def test_sessions_are_audited_with_their_method(
        self, make: Any, team: KeyManager, kit: SessionKit
    ) -> None:
        events: list[AuditEvent] = []
        decide = make(audit=events.append)
        decide("GET", "/t", cookie(kit, "owner_1"), MANAGE)
        decide("GET", "/t", cookie(kit, "member_1"), MANAGE)
        decide("POST", "/t", cookie(kit, "owner_1"), MANAGE)
        assert [(e.outcome, e.reason, e.user_id, e.method) for e in events] == [
            ("success", None, "owner_1", "session"),
            ("failure", Reason.ROLE, "member_1", "session"),
            ("failure", Reason.ORIGIN, "owner_1", "session"),
        ]


class TestEnvirons:
    def test_wsgi_facts_carry_the_session_and_its_csrf_headers(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/t",
            "HTTP_COOKIE": f"theme=dark; stack-access-token={kit.mint('owner_1')}",
            "HTTP_ORIGIN": "http://testserver",
            "HTTP_HOST": "testserver",
        }
        facts = RequestFacts.from_environ(environ, {"team_id": "team_1"})
        assert isinstance(decide.auth.decide(facts, MANAGE), Principal)
        del environ["HTTP_ORIGIN"]
        facts = RequestFacts.from_environ(environ, {"team_id": "team_1"})
        assert isinstance(decide.auth.decide(facts, MANAGE), AuthError)

    def test_a_configured_token_header_is_carried(
        self, make: Any, team: KeyManager, kit: SessionKit
    ) -> None:
        decide = make(session_verifier=kit.verifier(header="X-Dashboard-Token"))
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/t"}
        environ["HTTP_X_DASHBOARD_TOKEN"] = kit.mint("owner_1")
        facts = RequestFacts.from_environ(environ, {"team_id": "team_1"})
        assert isinstance(decide.auth.decide(facts, MANAGE), Principal)


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(max_size=200) | st.sampled_from(['["a","b"]', "%5B%22", "[", '[""]', "a.b.c"]),
    name=st.sampled_from(["stack-access-token", "stack-access", "stack-refresh-test-project"]),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
)
def test_garbage_cookies_are_refused_never_raised(value: str, name: str, method: str) -> None:
    auth = _GARBAGE_AUTH
    facts = RequestFacts(method, "/t", [("cookie", f"{name}={value}")], None, {"team_id": "team_1"})
    outcome = auth.decide(facts, MANAGE)
    assert isinstance(outcome, AuthError) and outcome.status_code in (400, 401, 403)


_GARBAGE_AUTH = Authenticator(
    MemoryKeyStore(), session_verifier=SessionKit(project_id="test-project").verifier()
)


class TestEdges:
    def test_the_steps_never_show_the_token(self, decide: Driven, kit: SessionKit) -> None:
        from skaala_auth.rules import Requirement
        from skaala_auth.sessionflow import FetchKeys, Membership, SessionClaims

        token = kit.mint("owner_1")
        carried = decide.auth.session_verifier.find({"cookie": f"stack-access-token={token}"})  # type: ignore[union-attr]
        assert carried is not None
        step = FetchKeys(carried, [], "GET", Requirement())
        member = Membership("team_1", SessionClaims("owner_1", NOW + 60), Requirement(), 0)
        for text in (repr(step), repr(member), repr(carried)):
            assert token not in text and token[-20:] not in text
        assert repr(member) == "Membership('team_1', 'owner_1')"

    def test_werkzeug_headers_are_read_with_every_value(
        self, decide: Driven, kit: SessionKit
    ) -> None:
        from werkzeug.datastructures import Headers

        headers = Headers()
        headers.add("Cookie", f"stack-access-token={kit.mint('owner_1')}")
        headers.add("Origin", "http://testserver")
        headers.add("Origin", "https://evil.example")
        headers.add("Host", "testserver")
        facts = RequestFacts("POST", "/t", headers, None, {"team_id": "team_1"})
        refused = decide.auth.decide(facts, MANAGE)
        assert isinstance(refused, AuthError) and refused.reason is Reason.ORIGIN
        headers.remove("Origin")
        headers.add("Origin", "http://testserver")
        assert isinstance(decide.auth.decide(facts, MANAGE), Principal)

    def test_full_caches_start_again(self, make: Any, team: KeyManager, kit: SessionKit) -> None:
        decide = make(cache_size=2)
        for user in ("owner_1", "admin_1", "member_1", "owner_1"):
            assert isinstance(decide("GET", "/t", cookie(kit, user), READ), Principal)
        sessions = decide.auth._flow.sessions
        assert len(sessions._tokens) <= 2 and len(sessions._members) <= 2

    def test_no_team_with_roles_or_a_misnamed_team_is_refused(
        self, make: Any, team: KeyManager, kit: SessionKit
    ) -> None:
        events: list[AuditEvent] = []
        decide = make(audit=events.append)
        headers = cookie(kit, "owner_1")
        refused = decide("GET", "/me", headers, MANAGE, None)
        assert isinstance(refused, AuthError) and refused.reason is Reason.NOT_A_MEMBER
        found = decide("GET", "/me", headers, Endpoint(), None)
        assert isinstance(found, Principal) and found.team_id == ""
        assert events[-1].outcome == "success" and events[-1].method == "session"
        # a path parameter that looks like a team but is not the endpoint's: refused, logged
        facts = RequestFacts("GET", "/t", list(headers.items()), None, {"teamid": "team_1"})
        refused = decide.auth.decide(facts, READ)
        assert isinstance(refused, AuthError) and refused.reason is Reason.NOT_A_MEMBER

    def test_a_change_of_everything_forgets_every_role(
        self, decide: Driven, kit: SessionKit, team: KeyManager
    ) -> None:
        from skaala_auth.stores.base import Change

        assert isinstance(decide("GET", "/t", cookie(kit, "admin_1"), MANAGE), Principal)
        sessions = decide.auth._flow.sessions
        assert sessions is not None and len(sessions._members) == 1
        decide.auth._on_change(Change("key", key_id="key_x"))  # a key's change: roles stay
        assert len(sessions._members) == 1
        decide.auth._on_change(Change("all"))
        assert len(sessions._members) == 0

    def test_a_reopened_authenticator_forgets_tokens_and_roles(
        self, decide: Driven, kit: SessionKit, store: MemoryKeyStore
    ) -> None:
        headers = cookie(kit, "admin_1")
        assert isinstance(decide("GET", "/t", headers, MANAGE), Principal)
        decide.auth.close()
        store.remove_member("team_1", "admin_1")
        decide.auth.open()
        assert isinstance(decide("GET", "/t", headers, MANAGE), AuthError)

    def test_a_stale_cookie_with_keys_from_a_url_goes_on_anonymous_where_nothing_is_needed(
        self, make: Any, kit: SessionKit, team: KeyManager, jwks_server: Any
    ) -> None:
        from skaala_auth.session import StackAuthVerifier

        verifier = StackAuthVerifier(project_id="test-project", jwks_url=jwks_server.url)
        decide = make(session_verifier=verifier)
        stale = cookie(kit, "owner_1", expires_in=-60)
        assert decide("GET", "/t", stale, None, None) is None  # after the JWKS fetch
        refused = decide("GET", "/t", stale, READ)
        assert isinstance(refused, AuthError) and refused.reason is Reason.EXPIRED
