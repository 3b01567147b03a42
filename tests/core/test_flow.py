"""The one place that decides what a request needs: preflights, endpoints, rules, teams, and the
re-check of a principal a middleware found (issue 8), under both drivers."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from skaala_auth import (
    ApiKey,
    Authenticator,
    AuthError,
    InsufficientScopeError,
    InvalidKeyError,
    KeyManager,
    MemoryKeyStore,
    Principal,
    StoreUnavailableError,
    TeamMismatchError,
    generate_key,
)
from skaala_auth.audit import AuditEvent
from skaala_auth.cache import KeyCache
from skaala_auth.decision import Grant
from skaala_auth.flow import (
    ANSWER_PREFLIGHT,
    PREFLIGHT,
    Endpoint,
    Flow,
    Load,
    RequestFacts,
    is_preflight,
    requirement,
)
from skaala_auth.hashing import Hasher
from skaala_auth.keys import display_prefix
from skaala_auth.lastused import LastUsedRecorder
from skaala_auth.rules import UNBOUND_TEAM, Requirement, Rules
from skaala_auth.stores.base import KeyRecord

from ..conftest import Clock

ACRM = "Access-Control-Request-Method"
Outcome = Principal | AuthError | None
Decide = Callable[..., Outcome]


@pytest.fixture
def decide(auth: Authenticator) -> Decide:
    """The ``auth`` fixture's decide: every test here runs under both drivers (see conftest)."""
    return auth.decide


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


class TestFlowAlone:
    """The flow without a driver: pure, so its steps are tested directly."""

    @pytest.fixture
    def flow(self, store: MemoryKeyStore) -> Flow:
        return Flow(
            Hasher(),
            KeyCache(100, 30.0, 100, 5.0),
            accept_test_keys=False,
            last_used=LastUsedRecorder(store, 60.0),
            last_used_interval=60.0,
            track_last_used=False,
            rate_limiter=None,
            audit=None,
        )

    def test_if_a_key_is_not_cached_then_a_load_without_the_plaintext(self, flow: Flow) -> None:
        key = generate_key()
        step = flow.start(key, ("read:bookings",), "team_1", 1000.0)
        assert isinstance(step, Load)
        assert step.stored == Hasher().stored_digest(key)
        assert step.key_prefix == display_prefix(key)
        assert (step.scopes, step.team_id, step.now, step.legacy) == (
            ("read:bookings",),
            "team_1",
            1000.0,
            [],
        )
        held = [getattr(step, name) for name in Load.__slots__] + [repr(step)]
        assert not [value for value in held if isinstance(value, str) and key[8:20] in value]

    def test_if_loaded_then_decided_and_cached_keys_need_no_load(
        self, flow: Flow, manager: KeyManager
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        step = flow.start(key, ("read:calls",), None, 1000.0)
        assert isinstance(step, Load)
        found = manager.store.find_key(step.stored)
        assert found is not None
        entry = flow._cache.put(step.digest, Grant.from_record(found), 1000.0, 0)
        assert flow.resume(step, entry, 1000.0) == flow.start(key, ("read:calls",), None, 1001.0)
        principal = flow.start(key, ("read:calls",), None, 1001.0)
        assert isinstance(principal, Principal) and principal.key_id == record.id
        assert isinstance(flow.start(key, ("write:calls",), None, 1001.0), InsufficientScopeError)
        assert isinstance(flow.start(key, (), None, 1031.0), Load)  # stale after the ttl

    def test_if_the_load_failed_then_its_refusal(self, flow: Flow) -> None:
        step = flow.start(generate_key(), (), None, 1000.0)
        assert isinstance(step, Load)
        failure = StoreUnavailableError()
        assert flow.resume(step, failure, 1000.0) is failure

    @pytest.mark.parametrize(
        "junk",
        [
            pytest.param("checksum", id="bad-checksum"),
            pytest.param("length", id="short"),
            pytest.param("alphabet", id="alphabet"),
            pytest.param("test", id="test-key"),
        ],
    )
    def test_if_malformed_then_refused_and_nothing_remembered(self, flow: Flow, junk: str) -> None:
        key = generate_key("test" if junk == "test" else "live")
        if junk == "checksum":
            key = key[:-1] + ("A" if key[-1] != "A" else "B")
        elif junk == "length":
            key = key[:-1]
        elif junk == "alphabet":
            key = key[:20] + "-" + key[21:]
        for _ in range(3):
            outcome = flow.start(key, (), None, 1000.0)
            assert isinstance(outcome, InvalidKeyError) and outcome.status_code == 401
        assert not flow._cache.is_known_unknown(flow.hasher.digest(key.encode()), 1000.0)
        assert len(flow._cache) == 0


class TestClientAddress:
    def test_asgi_facts_take_the_servers_client(self) -> None:
        scope = {"type": "http", "path": "/", "headers": [], "client": ("203.0.113.7", 50000)}
        assert RequestFacts.from_asgi(scope).client == "203.0.113.7"
        assert RequestFacts.from_asgi({**scope, "client": None}).client is None

    def test_wsgi_facts_take_remote_addr_never_a_forwarded_header(self) -> None:
        environ = {"PATH_INFO": "/", "REMOTE_ADDR": "198.51.100.2"}
        environ["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
        assert RequestFacts.from_environ(environ).client == "198.51.100.2"
        assert RequestFacts.from_environ({"PATH_INFO": "/"}).client is None
