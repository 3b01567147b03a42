"""DESIGN.md's HTTP contract, row by row, against every adapter (``adapter`` is parametrized).

Every refusal is compared byte for byte with the core's rendering of the error, so the answers
are identical across adapters, and the endpoint's handler must not have run.
"""

from __future__ import annotations

import logging
import threading

import pytest

from skaala_auth import (
    Authenticator,
    AuthError,
    InsufficientScopeError,
    InvalidKeyError,
    InvalidRequestError,
    IpNotAllowedError,
    KeyManager,
    MembershipRevokedError,
    MemoryKeyStore,
    MemoryRateLimiter,
    MissingKeyError,
    Principal,
    RateLimitedError,
    RateLimiterUnavailableError,
    StoreUnavailableError,
    TeamMismatchError,
    UsageLimitExceededError,
    generate_key,
)

from ..conftest import Clock
from .apps import CALLS, Reply
from .conftest import Api, Keys, Serve

BOOKINGS = "/teams/team_1/bookings"


def bearer(key: str, scheme: str = "Bearer") -> list[tuple[str, str]]:
    return [("Authorization", f"{scheme} {key}")]


def assert_refused(reply: Reply, error: AuthError) -> None:
    """The contract's answer for ``error``: status, exact body, and headers; no handler ran."""
    assert reply.status == error.status_code
    assert reply.body == error.body_bytes()
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers.get("www-authenticate") == error.www_authenticate()
    assert CALLS == []


def _corrupt_checksum(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


class TestValidKey:
    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
    def test_if_a_valid_key_is_sent_as_a_bearer_then_200_with_its_principal(
        self, api: Api, keys: Keys, scheme: str
    ) -> None:
        reply = api.get(BOOKINGS, bearer(keys.read, scheme))
        assert reply.status == 200
        assert reply.json()["team_id"] == "team_1"
        assert reply.json()["key_id"].startswith("key_")
        assert CALLS == ["list"]

    def test_if_a_valid_key_is_sent_as_x_api_key_then_200(self, api: Api, keys: Keys) -> None:
        reply = api.get(BOOKINGS, [("X-API-Key", keys.read)])
        assert reply.status == 200
        assert CALLS == ["list"]

    def test_if_the_key_has_the_write_scope_then_the_post_runs(self, api: Api, keys: Keys) -> None:
        reply = api.post(BOOKINGS, bearer(keys.read_write))
        assert (reply.status, reply.json()) == (201, {"created": True})
        assert CALLS == ["create"]

    def test_if_a_rotated_key_is_within_its_grace_then_old_and_new_keys_work(
        self, api: Api, keys: Keys
    ) -> None:
        assert api.get(BOOKINGS, bearer(keys.rotated_old)).status == 200
        assert api.get(BOOKINGS, bearer(keys.rotated_new)).status == 200

    def test_if_an_unprotected_path_is_called_with_a_valid_key_then_it_sees_the_principal(
        self, api: Api, keys: Keys
    ) -> None:
        reply = api.get("/health", bearer(keys.read))
        assert reply.status == 200
        assert reply.json()["principal"].startswith("key_")

    def test_if_an_unprotected_path_is_called_without_credentials_then_it_is_anonymous(
        self, api: Api
    ) -> None:
        reply = api.get("/health")
        assert (reply.status, reply.json()) == (200, {"principal": None})


def assert_missing(reply: Reply, adapter: str) -> None:
    """The answer to a protected endpoint without credentials. In DRF, ``HasScopes`` lets DRF
    compose permissions (``HasScopes | IsAuthenticated``) when no key is presented, so DRF
    answers with its own 401 body; status and challenge are the contract's everywhere."""
    if adapter != "drf":
        assert_refused(reply, MissingKeyError())
        return
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="api"'
    assert reply.json() == {"detail": "Authentication credentials were not provided."}
    assert CALLS == []


class TestMissingKey:
    def test_if_a_protected_endpoint_gets_no_credentials_then_401_missing(
        self, api: Api, adapter: str
    ) -> None:
        assert_missing(api.get(BOOKINGS), adapter)
        assert api.get(BOOKINGS).headers["www-authenticate"] == 'Bearer realm="api"'

    def test_if_authorization_is_basic_then_it_counts_as_absent(
        self, api: Api, adapter: str
    ) -> None:
        basic = [("Authorization", "Basic dXNlcjpwYXNz")]
        assert_missing(api.get(BOOKINGS, basic), adapter)
        reply = api.get("/health", basic)
        assert (reply.status, reply.json()) == (200, {"principal": None})


BAD_KEYS = ["malformed", "bad-checksum", "unknown", "expired", "revoked", "past-grace", "test-key"]


def _bad_key(kind: str, keys: Keys) -> str:
    return {
        "malformed": "sk_live_not-a-key",
        "bad-checksum": _corrupt_checksum(keys.read),
        "unknown": generate_key(),  # well-formed, never stored
        "expired": keys.expired,
        "revoked": keys.revoked,
        "past-grace": keys.rotated_past_grace,
        "test-key": keys.test_key,
    }[kind]


class TestInvalidKey:
    @pytest.mark.parametrize("kind", BAD_KEYS)
    def test_if_the_key_is_bad_in_any_way_then_the_same_401(
        self, api: Api, keys: Keys, kind: str
    ) -> None:
        key = _bad_key(kind, keys)
        assert_refused(api.get(BOOKINGS, bearer(key)), InvalidKeyError())
        assert_refused(api.get(BOOKINGS, [("X-API-Key", key)]), InvalidKeyError())

    def test_if_a_bad_key_calls_an_unprotected_path_then_401(self, api: Api, keys: Keys) -> None:
        assert_refused(api.get("/health", bearer(keys.revoked)), InvalidKeyError())

    def test_if_a_bad_key_calls_a_public_path_then_it_is_not_challenged(
        self, api: Api, keys: Keys
    ) -> None:
        reply = api.get("/public/status", bearer(keys.revoked))
        assert (reply.status, reply.json()) == (200, {"public": True})

    def test_if_a_bad_key_names_another_team_then_401_not_403(self, api: Api, keys: Keys) -> None:
        assert_refused(api.get("/teams/team_2/bookings", bearer(keys.expired)), InvalidKeyError())


class TestForbidden:
    def test_if_the_key_lacks_the_scope_then_403_insufficient_scope(
        self, api: Api, keys: Keys
    ) -> None:
        reply = api.post(BOOKINGS, bearer(keys.read))
        assert_refused(reply, InsufficientScopeError(["write:bookings"]))
        assert reply.headers["www-authenticate"] == (
            'Bearer realm="api", error="insufficient_scope", scope="write:bookings"'
        )

    def test_if_the_path_names_another_team_then_403(self, api: Api, keys: Keys) -> None:
        assert_refused(api.get("/teams/team_2/bookings", bearer(keys.read)), TeamMismatchError())
        assert_refused(api.get(BOOKINGS, bearer(keys.other_team)), TeamMismatchError())

    def test_if_the_keys_user_left_the_team_then_403(self, api: Api, keys: Keys) -> None:
        assert_refused(api.get(BOOKINGS, bearer(keys.left_team)), MembershipRevokedError())

    def test_if_the_user_left_after_the_key_was_cached_then_403_at_once(
        self, api: Api, keys: Keys, store: MemoryKeyStore
    ) -> None:
        assert api.get(BOOKINGS, bearer(keys.read)).status == 200
        CALLS.clear()
        store.remove_member("team_1", "user_1")
        assert_refused(api.get(BOOKINGS, bearer(keys.read)), MembershipRevokedError())


class TestInvalidRequest:
    @pytest.mark.parametrize(
        ("row", "message"),
        [
            ("both-headers", "Send the API key in one header only"),
            ("empty-bearer", "Empty bearer token"),
            ("empty-x-api-key", "Empty X-API-Key header"),
            ("query-api-key", "API keys are not accepted in the query string"),
            ("query-key-value", "API keys are not accepted in the query string"),
        ],
    )
    def test_if_the_request_is_ambiguous_or_unsafe_then_400(
        self, api: Api, keys: Keys, row: str, message: str
    ) -> None:
        headers, query = {
            "both-headers": (bearer(keys.read) + [("X-API-Key", keys.read)], ""),
            "empty-bearer": ([("Authorization", "Bearer ")], ""),
            "empty-x-api-key": ([("X-API-Key", " ")], ""),
            "query-api-key": ([], f"api_key={keys.read}"),
            "query-key-value": (bearer(keys.read), f"q={keys.read}"),
        }[row]
        assert_refused(api.get(BOOKINGS, headers, query), InvalidRequestError(message))
        assert_refused(api.get("/health", headers, query), InvalidRequestError(message))

    @pytest.mark.parametrize(
        ("row", "message"),
        [
            ("authorization", "Repeated Authorization header"),
            ("x-api-key", "Repeated X-API-Key header"),
            ("basic-then-bearer", "Repeated Authorization header"),
        ],
    )
    def test_if_a_header_is_repeated_then_400(
        self, api: Api, keys: Keys, row: str, message: str
    ) -> None:
        headers = {
            "authorization": bearer(keys.read) + bearer(keys.read),
            "x-api-key": [("X-API-Key", keys.read), ("X-API-Key", keys.read)],
            "basic-then-bearer": [("Authorization", "Basic dXNlcjpwYXNz")] + bearer(keys.read),
        }[row]
        assert_refused(api.get(BOOKINGS, headers), InvalidRequestError(message))

    def test_if_a_header_is_repeated_then_400_whatever_the_message(
        self, api: Api, keys: Keys
    ) -> None:
        reply = api.get(BOOKINGS, bearer(keys.read) + bearer(keys.read))
        assert reply.status == 400
        assert reply.json()["error"] == "invalid_request"
        assert reply.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_request"'
        assert CALLS == []


class TestPreflight:
    def test_if_a_cors_preflight_reaches_a_protected_path_then_it_is_not_challenged(
        self, api: Api
    ) -> None:
        headers = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")]
        reply = api.call("OPTIONS", BOOKINGS, headers, "")
        assert reply.status not in (400, 401, 403)
        assert "www-authenticate" not in reply.headers
        assert CALLS == []  # answered, never passed to the protected handler

    def test_if_options_is_not_a_preflight_then_it_is_challenged(self, api: Api) -> None:
        reply = api.call("OPTIONS", "/health", [("Authorization", "Bearer sk_live_x")], "")
        assert_refused(reply, InvalidKeyError())


class FailingStore(MemoryKeyStore):
    """A real store whose look-ups fail once ``down`` is set (a broken database)."""

    down = False

    def find_key(self, digest: str):  # type: ignore[no-untyped-def]
        if self.down:
            raise OSError("database is down")
        return super().find_key(digest)


class BlockingStore(MemoryKeyStore):
    """A real store whose look-ups (and, with ``block_polls``, polls) wait until ``answer`` is
    set: a store that hangs. ``answered`` counts the calls that stopped waiting."""

    def __init__(self, *, block_polls: bool = False) -> None:
        super().__init__()
        self.answer = threading.Event()
        self.answer.set()
        self.block_polls = block_polls
        self.answered = 0

    def _wait(self) -> None:
        self.answer.wait(30)  # a test that fails must not hang the suite
        self.answered += 1

    def find_key(self, digest: str):  # type: ignore[no-untyped-def]
        self._wait()
        return super().find_key(digest)

    def poll_changes(self) -> None:
        if self.block_polls:
            self._wait()


def issue_key(store: MemoryKeyStore, clock: Clock) -> str:
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return key


class Limiter:
    """A rate limiter that allows ``limit`` requests, then refuses."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, 0

    def check(self, principal: Principal, now: float) -> None:
        self.seen += 1
        if self.seen > self.limit:
            raise RateLimitedError(limit=self.limit, reset=30)


class TestFailures:
    def test_if_the_store_raises_then_503_with_retry_after(
        self, serve: Serve, clock: Clock
    ) -> None:
        store = FailingStore()
        call = serve(Authenticator(store, clock=clock))
        store.down = True
        for path in (BOOKINGS, "/health"):
            reply = call("GET", path, bearer(generate_key()), "")
            assert_refused(reply, StoreUnavailableError())
            assert reply.headers["retry-after"] == "5"

    def test_if_the_store_hangs_then_503_while_it_still_hangs_and_200_once_it_answers(
        self, serve: Serve, clock: Clock
    ) -> None:
        # Issue 9: sync adapters (Flask, plain WSGI, Django, DRF) waited out a slow store and
        # answered 200 when it did. Every adapter answers at store_timeout now.
        store = BlockingStore()
        key = issue_key(store, clock)
        call = serve(Authenticator(store, clock=clock, store_timeout=0.05))
        store.answer.clear()
        try:
            reply = call("GET", BOOKINGS, bearer(key), "")
            assert store.answered == 0  # the client has its answer; the store has not answered
        finally:
            store.answer.set()
        assert_refused(reply, StoreUnavailableError())
        assert reply.headers["retry-after"] == "5"
        # The store answers again: no restart, the next request is granted.
        reply = call("GET", BOOKINGS, bearer(key), "")
        assert reply.status == 200
        assert CALLS == ["list"]

    def test_if_the_store_hangs_on_polls_too_then_503_while_it_still_hangs(
        self, serve: Serve, clock: Clock
    ) -> None:
        store = BlockingStore(block_polls=True)
        key = issue_key(store, clock)
        call = serve(Authenticator(store, clock=clock, store_timeout=0.05))
        store.answer.clear()
        letting_go = threading.Timer(2.0, store.answer.set)  # what a hung store does at last
        letting_go.start()
        try:
            reply = call("GET", BOOKINGS, bearer(key), "")
            answered_while_hanging = store.answered == 0
        finally:
            letting_go.cancel()
            store.answer.set()
        assert answered_while_hanging
        assert_refused(reply, StoreUnavailableError())

    def test_if_the_rate_limit_is_exceeded_then_429_with_its_headers(
        self, serve: Serve, store: MemoryKeyStore, clock: Clock, keys: Keys
    ) -> None:
        call = serve(Authenticator(store, clock=clock, rate_limiter=Limiter(1)))
        assert call("GET", BOOKINGS, bearer(keys.read), "").status == 200
        CALLS.clear()
        reply = call("GET", BOOKINGS, bearer(keys.read), "")
        assert_refused(reply, RateLimitedError(limit=1, reset=30))
        assert reply.headers["retry-after"] == "30"
        assert reply.headers["x-ratelimit-limit"] == "1"
        assert reply.headers["x-ratelimit-remaining"] == "0"
        assert reply.headers["x-ratelimit-reset"] == "30"

    def test_if_the_rate_limiter_raises_then_503_not_500(
        self, serve: Serve, store: MemoryKeyStore, clock: Clock, keys: Keys
    ) -> None:
        class Broken:
            def check(self, principal: Principal, now: float) -> None:
                raise ConnectionError("the limiter's backend is down")

        call = serve(Authenticator(store, clock=clock, rate_limiter=Broken()))
        reply = call("GET", BOOKINGS, bearer(keys.read), "")
        assert_refused(reply, RateLimiterUnavailableError())
        assert reply.headers["retry-after"] == "5"
        assert CALLS == []

    def test_if_test_keys_are_accepted_then_they_work(
        self, serve: Serve, store: MemoryKeyStore, clock: Clock, keys: Keys
    ) -> None:
        call = serve(Authenticator(store, clock=clock, accept_test_keys=True))
        assert call("GET", BOOKINGS, bearer(keys.test_key), "").status == 200


class TestRateLimits:
    """Every answer carries the rate limit state: allowed ones too, in every adapter."""

    def test_if_a_limiter_is_configured_then_allowed_answers_count_down_then_429(
        self, serve: Serve, store: MemoryKeyStore, clock: Clock, keys: Keys
    ) -> None:
        pytest.importorskip("limits")
        limiter = MemoryRateLimiter(limit=3, window=60)
        call = serve(Authenticator(store, clock=clock, rate_limiter=limiter))
        for remaining in (2, 1, 0):
            reply = call("GET", BOOKINGS, bearer(keys.read), "")
            assert reply.status == 200
            assert reply.headers["x-ratelimit-limit"] == "3"
            assert reply.headers["x-ratelimit-remaining"] == str(remaining)
            assert 1 <= int(reply.headers["x-ratelimit-reset"]) <= 60
        CALLS.clear()
        reply = call("GET", BOOKINGS, bearer(keys.read), "")
        assert_refused(reply, RateLimitedError(limit=3, reset=60))
        assert reply.headers["x-ratelimit-limit"] == "3"
        assert reply.headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(reply.headers["retry-after"]) <= 60
        assert reply.headers["x-ratelimit-reset"] == reply.headers["retry-after"]

    def test_if_a_key_has_its_own_limit_then_its_answers_say_so(
        self, serve: Serve, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        pytest.importorskip("limits")
        key, _ = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings"], rate_limit="1/hour"
        )
        limiter = MemoryRateLimiter(limit=100, window=60)
        call = serve(Authenticator(store, clock=clock, rate_limiter=limiter))
        reply = call("GET", BOOKINGS, bearer(key), "")
        assert reply.status == 200
        assert reply.headers["x-ratelimit-limit"] == "1"
        assert reply.headers["x-ratelimit-remaining"] == "0"
        CALLS.clear()
        reply = call("GET", BOOKINGS, bearer(key), "")
        assert_refused(reply, RateLimitedError(limit=1, reset=3600))
        assert 3500 < int(reply.headers["retry-after"]) <= 3600

    def test_if_no_limiter_is_configured_then_no_rate_limit_headers(
        self, api: Api, keys: Keys
    ) -> None:
        reply = api.get(BOOKINGS, bearer(keys.read))
        assert reply.status == 200
        assert not any(name.startswith("x-ratelimit") for name in reply.headers)


class TestKeyPolicies:
    """A key's own restrictions answer with the contract's 401/403/429 in every adapter (the
    test clients all send from 127.0.0.1)."""

    def create(self, manager: KeyManager, **policy: object) -> tuple[str, str]:
        key, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings"], **policy
        )
        return key, record.id

    def test_if_a_key_is_disabled_then_401_invalid_and_200_once_enabled(
        self, serve: Serve, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, key_id = self.create(manager)
        call = serve(Authenticator(store, clock=clock))
        assert call("GET", BOOKINGS, bearer(key), "").status == 200  # cached now
        manager.disable_key(key_id)
        CALLS.clear()
        assert_refused(call("GET", BOOKINGS, bearer(key), ""), InvalidKeyError())
        manager.enable_key(key_id)
        assert call("GET", BOOKINGS, bearer(key), "").status == 200

    def test_if_a_key_is_used_from_outside_its_allow_list_then_403(
        self, serve: Serve, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        inside, _ = self.create(manager, allowed_ips=["127.0.0.0/8"])
        outside, _ = self.create(manager, allowed_ips=["203.0.113.0/24"])
        call = serve(Authenticator(store, clock=clock))
        assert call("GET", BOOKINGS, bearer(inside), "").status == 200
        CALLS.clear()
        # A forwarded address from an untrusted client is not read.
        forged = [*bearer(outside), ("X-Forwarded-For", "203.0.113.9")]
        assert_refused(call("GET", BOOKINGS, forged, ""), IpNotAllowedError())

    def test_if_the_client_is_a_trusted_proxy_then_the_forwarded_address_is_checked(
        self, serve: Serve, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, _ = self.create(manager, allowed_ips=["203.0.113.0/24"])
        call = serve(Authenticator(store, clock=clock, trusted_proxies=["127.0.0.1/32"]))
        forwarded = [*bearer(key), ("X-Forwarded-For", "198.51.100.1, 203.0.113.9")]
        assert call("GET", BOOKINGS, forwarded, "").status == 200
        CALLS.clear()
        spoofed = [*bearer(key), ("X-Forwarded-For", "203.0.113.9, 198.51.100.1")]
        assert_refused(call("GET", BOOKINGS, spoofed, ""), IpNotAllowedError())

    def test_if_a_key_has_used_its_uses_then_429_until_refilled(
        self, serve: Serve, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, key_id = self.create(manager, remaining=2)
        call = serve(Authenticator(store, clock=clock))
        assert [call("GET", BOOKINGS, bearer(key), "").status for _ in range(2)] == [200, 200]
        CALLS.clear()
        reply = call("GET", BOOKINGS, bearer(key), "")
        assert_refused(reply, UsageLimitExceededError())
        assert "retry-after" not in reply.headers
        manager.refill_key(key_id, 1)
        assert call("GET", BOOKINGS, bearer(key), "").status == 200

    def test_if_a_key_is_out_of_its_allow_list_then_it_uses_nothing(
        self, serve: Serve, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, key_id = self.create(manager, remaining=1, allowed_ips=["203.0.113.0/24"])
        call = serve(Authenticator(store, clock=clock))
        assert call("GET", BOOKINGS, bearer(key), "").status == 403
        assert manager.get_key(key_id).remaining == 1


class TestLogs:
    def test_if_every_outcome_is_logged_then_no_plaintext_key_appears(
        self, api: Api, keys: Keys, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        sent = [keys.read, keys.revoked, keys.test_key, generate_key(), "sk_live_malformed"]
        for key in sent:
            api.get(BOOKINGS, bearer(key))
            api.post(BOOKINGS, [("X-API-Key", key)])
            api.get("/health", bearer(key), query=f"api_key={key}")
        # httpx, Starlette's test client, logs the URLs it requests (query strings included):
        # the client's log, not the server's.
        server_side = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
        assert any("auth failure" in message for message in server_side)  # the audit log ran
        for key in sent:
            assert not any(key in message for message in server_side)
