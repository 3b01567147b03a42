"""The one place that decides what a request needs: preflights, endpoints, rules, teams, and the
re-check of a principal a middleware found (issue 8), under both drivers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from skaala_auth import (
    ApiKey,
    Authenticator,
    AuthError,
    InsufficientScopeError,
    KeyManager,
    MemoryKeyStore,
    Principal,
    StoreUnavailableError,
    TeamMismatchError,
)
from skaala_auth.audit import AuditEvent
from skaala_auth.flow import (
    ANSWER_PREFLIGHT,
    PREFLIGHT,
    Endpoint,
    RequestFacts,
    is_preflight,
    requirement,
)
from skaala_auth.rules import UNBOUND_TEAM, Requirement, Rules
from skaala_auth.stores.base import KeyRecord

from ..conftest import Clock

ACRM = "Access-Control-Request-Method"
Outcome = Principal | AuthError | None
Decide = Callable[..., Outcome]


@pytest.fixture(params=["sync", "async"])
def decide(request: pytest.FixtureRequest, auth: Authenticator) -> Decide:
    """The two drivers, behind one signature: every test here runs under both."""
    if request.param == "sync":
        return auth.decide

    def run(*args: object, **kwargs: object) -> Outcome:
        return asyncio.run(auth.decide_async(*args, **kwargs))  # type: ignore[arg-type]

    return run


@pytest.fixture
def key(manager: KeyManager) -> str:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return key


def facts(
    method: str = "GET",
    path: str = "/teams/team_1/bookings",
    headers: object = (),
    params: dict[str, object] | None = None,
) -> RequestFacts:
    return RequestFacts(
        method,
        path,
        list(headers) if not isinstance(headers, dict) else headers,
        None,
        params or {},
    )  # type: ignore[arg-type]


class TestPreflight:
    @pytest.mark.parametrize(
        "headers",
        [
            {ACRM: "GET"},
            {"access-control-request-method": "GET"},
            [("Access-Control-Request-Method", "GET")],
            [(b"access-control-request-method", b"GET")],
        ],
    )
    @pytest.mark.parametrize("method", ["OPTIONS", "options", "Options"])
    def test_if_options_with_the_request_method_header_then_a_preflight(
        self, headers: object, method: str
    ) -> None:
        assert is_preflight(facts(method, headers=headers))

    @pytest.mark.parametrize(
        ("method", "headers"),
        [("OPTIONS", {}), ("GET", {ACRM: "GET"}), ("OPTIONS", [("origin", "x")])],
    )
    def test_if_not_options_or_no_header_then_not_a_preflight(
        self, method: str, headers: object
    ) -> None:
        assert not is_preflight(facts(method, headers=headers))

    def test_if_a_preflight_reaches_an_endpoint_then_it_is_answered_with_no_body(
        self, decide: Decide, key: str
    ) -> None:
        endpoint = Endpoint(("read:bookings",))
        for credentials in ({}, {"Authorization": f"Bearer {key}"}, {"X-API-Key": "junk"}):
            outcome = decide(facts("OPTIONS", headers={ACRM: "GET", **credentials}), endpoint)
            assert outcome is PREFLIGHT
        assert (PREFLIGHT.status_code, PREFLIGHT.body_bytes(), PREFLIGHT.headers()) == (
            204,
            b"",
            [],
        )
        assert PREFLIGHT.raw_headers() == ()
        assert PREFLIGHT.raisable() is not PREFLIGHT

    def test_if_a_preflight_meets_a_middleware_then_protected_paths_answered_others_passed(
        self, decide: Decide
    ) -> None:
        rules = Rules([("/api/*", ["read:bookings"])], public=["/health"])
        assert requirement(facts("OPTIONS", "/api/x", {ACRM: "GET"}), rules) == ANSWER_PREFLIGHT
        assert decide(facts("OPTIONS", "/api/x", {ACRM: "GET"}), rules) is PREFLIGHT
        assert decide(facts("OPTIONS", "/elsewhere", {ACRM: "GET"}), rules) is None
        assert decide(facts("OPTIONS", "/health", {ACRM: "GET"}), rules) is None
        assert decide(facts("OPTIONS", "/x", {ACRM: "GET", "X-API-Key": "junk"})) is None


class TestEndpoint:
    def test_if_the_route_has_the_team_param_then_it_is_the_team(self) -> None:
        need = Endpoint(("read:bookings",)).bind(facts(params={"team_id": 7}))
        assert need == Requirement(required=True, scopes=("read:bookings",), team_id="7")
        assert Endpoint((), None).bind(facts(params={"team_id": "t"})).team_id is None
        assert Endpoint(()).bind(facts(params={"booking_id": "b"})).team_id is None

    def test_if_a_team_parameter_is_misnamed_then_no_team_passes_and_it_is_logged_once(
        self, decide: Decide, key: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        endpoint = Endpoint(("read:bookings",))
        request = facts(headers={"X-API-Key": key}, params={"team": "team_1"})
        assert endpoint.bind(request).team_id == UNBOUND_TEAM
        with caplog.at_level(logging.ERROR, logger="skaala_auth"):
            first = decide(request, endpoint)
            second = decide(request, Endpoint(("read:bookings",)))
        assert isinstance(first, TeamMismatchError) and isinstance(second, TeamMismatchError)
        misnamed = [r for r in caplog.records if "path parameter 'team'" in r.getMessage()]
        assert len(misnamed) <= 1  # once per process and name pair (maybe logged earlier)
        assert Endpoint(("read:bookings",), "team").bind(request).team_id == "team_1"


class TestFound:
    """The principal a middleware found is checked against the endpoint, never waved through."""

    @pytest.fixture
    def principal(self, auth: Authenticator, key: str) -> Principal:
        return auth.authenticate({"X-API-Key": key})

    def test_if_the_found_principal_may_then_it_is_returned_without_reading_headers(
        self, decide: Decide, principal: Principal
    ) -> None:
        endpoint = Endpoint(("read:bookings",))
        assert decide(facts(params={"team_id": "team_1"}), endpoint, found=principal) is principal

    def test_if_the_found_principal_may_not_then_refused_and_audited(
        self, store: MemoryKeyStore, clock: Clock, key: str
    ) -> None:
        events: list[AuditEvent] = []
        with Authenticator(store, clock=clock, audit=events.append) as auth:
            principal = auth.authenticate({"X-API-Key": key})
            other_team = auth.decide(
                facts(params={"team_id": "team_2"}), Endpoint(("read:bookings",)), found=principal
            )
            no_scope = auth.decide(facts(), Endpoint(("write:bookings",)), found=principal)
        assert isinstance(other_team, TeamMismatchError)
        assert isinstance(no_scope, InsufficientScopeError)
        assert [event.outcome for event in events][-2:] == ["failure", "failure"]


class OddStore(MemoryKeyStore):
    """A real store that hands back a row no key can be (what a broken adapter or a bad
    migration produces)."""

    def __init__(self, **odd: object) -> None:
        super().__init__()
        self.odd = odd

    def find_key(self, digest: str) -> KeyRecord | None:
        record = super().find_key(digest)
        if record is None:
            return None
        fields = (
            {**record.key.__dict__}
            if hasattr(record.key, "__dict__")
            else {
                name: getattr(record.key, name)
                for name in ApiKey.__slots__  # type: ignore[attr-defined]
            }
        )
        fields.update(self.odd)
        return KeyRecord(ApiKey(**fields), record.digest, record.role)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "odd",
    [
        {"expires_at": None},
        {"scopes": None},
        {"scopes": "read:bookings"},
        {"scopes": frozenset({1})},
        {"revoked_at": "yesterday"},
    ],
    ids=["no-expiry", "no-scopes", "scopes-string", "scopes-not-names", "revoked-string"],
)
def test_if_the_store_returns_an_unusable_row_then_503_never_500(
    odd: dict[str, object], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = OddStore(**odd)
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    with Authenticator(store, clock=clock) as auth, caplog.at_level(logging.ERROR):
        outcome = auth.decide(facts(headers={"X-API-Key": key}), Endpoint(("read:bookings",)))
    assert isinstance(outcome, StoreUnavailableError)
    assert outcome.status_code == 503
    assert key not in caplog.text


def test_if_facts_come_from_asgi_or_wsgi_then_the_path_is_the_routers() -> None:
    scope = {
        "type": "http",
        "method": "get",
        "path": "/mnt/x",
        "root_path": "/mnt",
        "headers": [],
        "query_string": b"a=1",
    }
    asgi = RequestFacts.from_asgi(scope, {"team_id": "t"})
    assert (asgi.method, asgi.path, asgi.query, dict(asgi.path_params)) == (
        "get",
        "/x",
        b"a=1",
        {"team_id": "t"},
    )
    assert (
        RequestFacts.from_asgi(
            {"type": "websocket", "path": "/mnt", "root_path": "/mnt", "headers": []}
        ).path
        == "/"
    )
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/caf\xc3\xa9",
        "QUERY_STRING": "",
        "HTTP_X_API_KEY": "k",
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "GET",
    }
    wsgi = RequestFacts.from_environ(environ)
    assert wsgi.path == "/café"
    assert wsgi.headers == [("x-api-key", "k"), ("access-control-request-method", "GET")]
    assert RequestFacts.from_environ({}).path == "/"
    assert RequestFacts.from_environ({"PATH_INFO": "/€"}).path == "/€"  # already decoded


def test_if_the_store_returned_a_good_row_then_granted(decide: Decide, key: str) -> None:
    outcome = decide(
        facts(headers={"X-API-Key": key}, params={"team_id": "team_1"}),
        Endpoint(("read:bookings",)),
    )
    assert isinstance(outcome, Principal) and outcome.team_id == "team_1"
