from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skaala_auth import (
    AuditEvent,
    Authenticator,
    InsufficientScopeError,
    InvalidKeyError,
    InvalidRequestError,
    KeyManager,
    MembershipRevokedError,
    MemoryKeyStore,
    MissingKeyError,
    Principal,
    RateLimitedError,
    Reason,
    StoreUnavailableError,
    TeamMismatchError,
    generate_key,
)
from skaala_auth.credentials import HeadersLike
from skaala_auth.flow import Endpoint, RequestFacts
from skaala_auth.stores.base import KeyRecord

from ..conftest import Clock


class CountingStore(MemoryKeyStore):
    """A real memory store that counts look-ups and can be switched to failing."""

    def __init__(self) -> None:
        super().__init__()
        self.finds = 0
        self.failing = False
        self.delay = 0.0

    def find_key(self, digest: str) -> KeyRecord | None:
        self.finds += 1
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("store down")
        return super().find_key(digest)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def facts(headers: HeadersLike, method: str = "GET", path: str = "/") -> RequestFacts:
    return RequestFacts(method, path, headers)


def make_key(manager: KeyManager, **kwargs: Any) -> str:
    kwargs.setdefault("scopes", ["read:bookings"])
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", **kwargs)
    return key


class TestOutcomes:
    def test_if_valid_key_then_principal(self, auth: Authenticator, manager: KeyManager) -> None:
        key, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings", "write:bookings"]
        )
        principal = auth.authenticate(bearer(key), required_scopes=["read:bookings"])
        assert principal == Principal(
            key_id=record.id,
            team_id="team_1",
            user_id="user_1",
            scopes=frozenset({"read:bookings", "write:bookings"}),
            method="api_key",
            role=principal.role,
            key_prefix=record.prefix,
        )
        assert principal.role == "owner" and principal.has_scopes("read:bookings")
        assert not principal.has_scopes("read:bookings", "read:contacts")

    def test_if_x_api_key_then_same_principal(
        self, auth: Authenticator, manager: KeyManager
    ) -> None:
        key = make_key(manager)
        assert auth.authenticate({"X-API-Key": key}) == auth.authenticate(bearer(key))

    def test_if_no_credentials_then_missing_or_anonymous(self, auth: Authenticator) -> None:
        with pytest.raises(MissingKeyError):
            auth.authenticate({"Accept": "*/*"})
        assert auth.authenticate({}, required=False) is None

    def test_if_unknown_key_then_401_unknown(self, auth: Authenticator) -> None:
        with pytest.raises(InvalidKeyError) as caught:
            auth.authenticate(bearer(generate_key()))
        assert caught.value.reason is Reason.UNKNOWN

    def test_if_scope_missing_then_403(self, auth: Authenticator, manager: KeyManager) -> None:
        key = make_key(manager)
        with pytest.raises(InsufficientScopeError) as caught:
            auth.authenticate(bearer(key), required_scopes=["read:bookings", "write:bookings"])
        assert caught.value.required == ("read:bookings", "write:bookings")

    def test_if_other_team_in_path_then_403(self, auth: Authenticator, manager: KeyManager) -> None:
        key = make_key(manager)
        assert auth.authenticate(bearer(key), team_id="team_1").team_id == "team_1"
        with pytest.raises(TeamMismatchError):
            auth.authenticate(bearer(key), team_id="team_2")

    def test_if_bad_key_and_wrong_team_then_401_first(self, auth: Authenticator) -> None:
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(generate_key()), team_id="team_2")

    def test_if_test_key_then_refused_unless_accepted(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager, environment="test")
        with Authenticator(store, clock=clock) as live_only:
            with pytest.raises(InvalidKeyError) as caught:
                live_only.authenticate(bearer(key))
            assert caught.value.reason is Reason.TEST_KEY
        with Authenticator(store, clock=clock, accept_test_keys=True) as both:
            assert both.authenticate(bearer(key)).team_id == "team_1"

    @pytest.mark.parametrize("junk", ["sk_live_\ud800" + "a" * 37, "\x00" * 46, "é" * 23])
    def test_if_unencodable_or_odd_text_then_401_not_500(
        self, auth: Authenticator, junk: str
    ) -> None:
        with pytest.raises(InvalidKeyError) as caught:
            auth.verify(junk)
        assert caught.value.reason is Reason.MALFORMED

    def test_if_decide_then_outcomes_returned_not_raised(
        self, auth: Authenticator, manager: KeyManager
    ) -> None:
        key = make_key(manager)
        read, write = Endpoint(("read:bookings",)), Endpoint(("write:calls",))
        assert isinstance(auth.decide(facts(bearer(key)), read), Principal)
        for outcome in (
            auth.decide(facts(bearer("junk")), read),
            auth.decide(facts(bearer(key)), write),
        ):
            assert outcome.status_code in (401, 403)  # type: ignore[union-attr]

    def test_if_authorize_then_scopes_and_team_checked(
        self, auth: Authenticator, manager: KeyManager
    ) -> None:
        principal = auth.authenticate(bearer(make_key(manager)))
        assert auth.authorize(principal, required_scopes=["read:bookings"]) is principal
        with pytest.raises(InsufficientScopeError):
            auth.authorize(principal, required_scopes=["write:bookings"])
        with pytest.raises(TeamMismatchError):
            auth.authorize(principal, team_id="team_9")


class TestMalformedNeverReachesTheStore:
    @settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.one_of(
            st.text(max_size=60),
            st.from_regex(r"sk_(live|test)_[0-9A-Za-z]{38}", fullmatch=True),
            st.builds(lambda k, i: k[:i] + k[i + 1 :], st.just(generate_key()), st.integers(0, 45)),
        )
    )
    def test_if_not_a_valid_key_then_no_store_call(
        self, auth: Authenticator, store: CountingStore, candidate: str
    ) -> None:
        before = store.finds
        try:
            auth.authenticate({"X-API-Key": candidate})
        except InvalidKeyError as error:
            assert error.reason is Reason.MALFORMED or error.reason is Reason.TEST_KEY
        except (InvalidRequestError, MissingKeyError):
            pass
        assert store.finds == before
        assert len(auth.cache) == 0


class TestExpiry:
    def test_if_at_the_expiry_instant_then_refused(
        self, auth: Authenticator, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager, expires_in=timedelta(hours=1))
        clock.advance(3600 - 0.001)
        auth.authenticate(bearer(key))
        clock.advance(0.001)
        with pytest.raises(InvalidKeyError) as caught:
            auth.authenticate(bearer(key))
        assert caught.value.reason is Reason.EXPIRED

    def test_if_default_expiry_then_365_days(
        self, auth: Authenticator, manager: KeyManager, clock: Clock
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        assert record.expires_at - record.created_at == timedelta(days=365)
        clock.advance(timedelta(days=365))
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(key))


class TestRevocationAndMembership:
    def test_if_revoked_then_refused_at_once_despite_cache(
        self, auth: Authenticator, manager: KeyManager, store: CountingStore
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        auth.authenticate(bearer(key))
        manager.revoke_key(record.id)
        with pytest.raises(InvalidKeyError) as caught:
            auth.authenticate(bearer(key))
        assert caught.value.reason is Reason.REVOKED

    def test_if_member_removed_then_403_and_back_when_re_added(
        self, auth: Authenticator, manager: KeyManager
    ) -> None:
        key = make_key(manager)
        auth.authenticate(bearer(key))
        manager.remove_member(team_id="team_1", user_id="user_1")
        with pytest.raises(MembershipRevokedError):
            auth.authenticate(bearer(key))
        manager.add_member(team_id="team_1", user_id="user_1", role="member")
        assert auth.authenticate(bearer(key)).role == "member"

    def test_if_rotated_then_old_key_works_until_grace_ends(
        self, auth: Authenticator, manager: KeyManager, clock: Clock
    ) -> None:
        old, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        auth.authenticate(bearer(old))
        new, new_record = manager.rotate_key(record.id, grace=timedelta(hours=24))
        assert new_record.rotated_from == record.id and new_record.scopes == record.scopes
        assert auth.authenticate(bearer(new)).key_id == new_record.id
        clock.advance(timedelta(hours=24) - timedelta(seconds=1))
        assert auth.authenticate(bearer(old)).key_id == record.id
        clock.advance(1)
        with pytest.raises(InvalidKeyError) as caught:
            auth.authenticate(bearer(old))
        assert caught.value.reason is Reason.EXPIRED
        assert auth.authenticate(bearer(new)).key_id == new_record.id

    def test_if_rotated_without_grace_then_old_key_refused_at_once(
        self, auth: Authenticator, manager: KeyManager
    ) -> None:
        old, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        auth.authenticate(bearer(old))
        manager.rotate_key(record.id, grace=timedelta(0))
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(old))


class TestCache:
    def test_if_cached_then_no_store_call_until_ttl(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager)
        with Authenticator(store, clock=clock, cache_ttl=10) as auth:
            for _ in range(5):
                auth.authenticate(bearer(key))
            assert store.finds == 1
            clock.advance(9.999)
            auth.authenticate(bearer(key))
            assert store.finds == 1
            clock.advance(0.001)
            auth.authenticate(bearer(key))
            assert store.finds == 2

    def test_if_cache_disabled_then_every_request_loads(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager)
        with Authenticator(store, clock=clock, cache_size=0) as auth:
            auth.authenticate(bearer(key))
            auth.authenticate(bearer(key))
        assert store.finds == 2

    def test_if_unknown_key_repeated_then_negative_cache_answers(
        self, store: CountingStore, clock: Clock, auth: Authenticator
    ) -> None:
        junk = generate_key()
        for _ in range(3):
            with pytest.raises(InvalidKeyError):
                auth.authenticate(bearer(junk))
        assert store.finds == 1
        clock.advance(5)
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(junk))
        assert store.finds == 2

    def test_if_unknown_keys_flood_then_good_keys_stay_cached(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager)
        with Authenticator(store, clock=clock, cache_size=10, negative_cache_size=5) as auth:
            auth.authenticate(bearer(key))
            for _ in range(50):
                with pytest.raises(InvalidKeyError):
                    auth.authenticate(bearer(generate_key()))
            finds = store.finds
            auth.authenticate(bearer(key))
            assert store.finds == finds

    def test_if_key_created_after_a_negative_result_then_found_at_once(
        self, store: CountingStore, auth: Authenticator, manager: KeyManager
    ) -> None:
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(generate_key()))
        key = make_key(manager)  # the manager's change clears unknown digests
        assert auth.authenticate(bearer(key)).team_id == "team_1"

    def test_if_other_key_revoked_then_this_entry_stays(
        self, store: CountingStore, auth: Authenticator, manager: KeyManager
    ) -> None:
        keep, drop = (
            make_key(manager),
            manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])[1],
        )
        auth.authenticate(bearer(keep))
        finds = store.finds
        manager.revoke_key(drop.id)
        auth.authenticate(bearer(keep))
        assert store.finds == finds

    def test_if_concurrent_misses_then_one_store_load(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager)
        store.delay = 0.2
        results: list[str] = []
        with Authenticator(store, clock=clock) as auth:
            threads = [
                threading.Thread(target=lambda: results.append(auth.verify(key).team_id))
                for _ in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert results == ["team_1"] * 8
        assert store.finds == 1


class TestStoreFailure:
    def test_if_store_raises_then_503_and_not_cached(
        self, store: CountingStore, auth: Authenticator, manager: KeyManager
    ) -> None:
        key = make_key(manager)
        store.failing = True
        for _ in range(2):
            with pytest.raises(StoreUnavailableError) as caught:
                auth.authenticate(bearer(key))
            assert caught.value.status_code == 503
            assert isinstance(caught.value.__cause__, ConnectionError)
        assert store.finds == 2
        store.failing = False
        assert auth.authenticate(bearer(key)).team_id == "team_1"

    def test_if_store_closed_then_503(self, tmp_path: Any, clock: Clock) -> None:
        from skaala_auth import SQLiteKeyStore

        sqlite = SQLiteKeyStore(tmp_path / "k.db")
        manager = KeyManager(sqlite, clock=clock)
        manager.add_member(team_id="t", user_id="u")
        key, _ = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
        auth = Authenticator(sqlite, clock=clock)
        sqlite.close()
        with pytest.raises(StoreUnavailableError):
            auth.authenticate(bearer(key))
        auth.close()

    def test_if_async_store_slower_than_timeout_then_503(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager)
        store.delay = 0.5
        with Authenticator(store, clock=clock, store_timeout=0.05) as auth:
            with pytest.raises(StoreUnavailableError):
                asyncio.run(auth.authenticate_async(bearer(key)))


class TestAsync:
    def test_if_async_then_same_outcomes(self, auth: Authenticator, manager: KeyManager) -> None:
        key = make_key(manager)

        async def scenario() -> None:
            principal = await auth.authenticate_async(
                bearer(key), required_scopes=["read:bookings"]
            )
            assert principal is not None and principal.team_id == "team_1"
            assert await auth.authenticate_async({}, required=False) is None
            with pytest.raises(InsufficientScopeError):
                await auth.authenticate_async(bearer(key), required_scopes=["write:calls"])
            with pytest.raises(InvalidKeyError):
                await auth.authenticate_async(bearer(generate_key()))
            with pytest.raises(InvalidKeyError):
                await auth.authenticate_async(bearer("sk_live_nope"))

        asyncio.run(scenario())

    def test_if_store_is_slow_then_the_event_loop_keeps_running(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key = make_key(manager)
        store.delay = 0.3

        async def scenario(auth: Authenticator) -> int:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            principals = await asyncio.gather(
                *(auth.authenticate_async(bearer(key)) for _ in range(5))
            )
            task.cancel()
            assert {p.team_id for p in principals} == {"team_1"}
            return ticks

        with Authenticator(store, clock=clock) as auth:
            ticks = asyncio.run(scenario(auth))
        assert ticks >= 10  # the loop ran while the store slept
        assert store.finds == 1  # five waiters, one load


class TestLastUsed:
    def test_if_used_often_then_one_write_per_flush_and_forward_only(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        auth = Authenticator(store, clock=clock, last_used_interval=3600)
        for _ in range(10):
            auth.authenticate(bearer(key))
            clock.advance(1)
        assert auth.last_used.pending() == {record.id: clock.now - 10}
        assert manager.get_key(record.id).last_used_at is None  # written behind
        assert auth.last_used.flush() == 1
        first = manager.get_key(record.id).last_used_at
        assert first is not None and first.timestamp() == pytest.approx(clock.now - 10)
        store.record_last_used({record.id: first - timedelta(days=1)})
        assert manager.get_key(record.id).last_used_at == first  # never moved back
        clock.advance(3600)
        auth.authenticate(bearer(key))
        auth.close()  # flushes
        assert manager.get_key(record.id).last_used_at.timestamp() == pytest.approx(clock.now)

    def test_if_interval_passes_then_background_thread_writes(
        self, store: CountingStore, manager: KeyManager
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        with Authenticator(store, last_used_interval=0.05) as auth:
            auth.authenticate(bearer(key))
            deadline = time.monotonic() + 2
            while manager.get_key(record.id).last_used_at is None:
                assert time.monotonic() < deadline, "the background flush never ran"
                time.sleep(0.01)


class TestAudit:
    def test_if_outcomes_then_events_without_the_key(
        self,
        store: CountingStore,
        manager: KeyManager,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        events: list[AuditEvent] = []
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        unknown = generate_key()
        with caplog.at_level(logging.DEBUG, logger="skaala_auth"):
            with Authenticator(store, clock=clock, audit=events.append) as auth:
                auth.authenticate(bearer(key))
                for headers, error in [
                    (bearer(unknown), InvalidKeyError),
                    (bearer(key[:-1] + "x"), InvalidKeyError),
                    ({}, MissingKeyError),
                    ({"X-API-Key": key, "Authorization": f"Bearer {key}"}, InvalidRequestError),
                ]:
                    with pytest.raises(error) as caught:
                        auth.authenticate(headers)
                    assert key not in repr(caught.value) and key not in str(caught.value)
                with pytest.raises(InsufficientScopeError):
                    auth.authenticate(bearer(key), required_scopes=["write:calls"])
        assert [(e.outcome, e.reason) for e in events] == [
            ("success", None),
            ("failure", Reason.UNKNOWN),
            ("failure", Reason.MALFORMED),
            ("failure", Reason.MISSING),
            ("failure", Reason.INVALID_REQUEST),
            ("failure", Reason.INSUFFICIENT_SCOPE),
        ]
        assert events[0].key_id == record.id and events[0].key_prefix == record.prefix
        assert events[1].key_prefix is not None and events[1].key_prefix.endswith(unknown[-4:])
        assert events[2].key_prefix is None  # nothing of a malformed string is kept
        assert events[5].status_code == 403 and events[5].team_id == "team_1"
        text = caplog.text + "".join(repr(e) for e in events)
        for secret in (key, unknown, key[12:-4], unknown[12:-4]):
            assert secret not in text
        assert "auth failure reason=unknown" in caplog.text

    def test_if_audit_hook_raises_then_authentication_unaffected(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        def broken(event: AuditEvent) -> None:
            raise RuntimeError("audit sink down")

        key = make_key(manager)
        with Authenticator(store, clock=clock, audit=broken) as auth:
            assert auth.authenticate(bearer(key)).team_id == "team_1"


class TestRateLimiterSeam:
    def test_if_limiter_refuses_then_429(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        class OnePerKey:
            def __init__(self) -> None:
                self.seen: set[str | None] = set()

            def check(self, principal: Principal, now: float) -> None:
                if principal.key_id in self.seen:
                    raise RateLimitedError(limit=1, reset=60)
                self.seen.add(principal.key_id)

        key = make_key(manager)
        with Authenticator(store, clock=clock, rate_limiter=OnePerKey()) as auth:
            auth.authenticate(bearer(key))
            with pytest.raises(RateLimitedError) as caught:
                auth.authenticate(bearer(key))
        assert dict(caught.value.headers())["retry-after"] == "60"


class TestPepper:
    def test_if_pepper_added_later_then_old_keys_work_and_are_rehashed(
        self, store: CountingStore, clock: Clock
    ) -> None:
        plain = KeyManager(store, clock=clock)
        plain.add_member(team_id="t", user_id="u")
        key, record = plain.create_key(team_id="t", user_id="u", scopes=["read:calls"])
        pepper = b"k" * 32
        with Authenticator(store, clock=clock, pepper=pepper) as auth:
            assert auth.authenticate(bearer(key)).key_id == record.id
        stored = store.find_key(auth.hasher.stored_digest(key))
        assert stored is not None and stored.digest.startswith("blake2b-keyed$")
        assert store.find_key(KeyManager(store).hasher.stored_digest(key)) is None
        with Authenticator(store, clock=clock, pepper=pepper) as again:
            assert again.authenticate(bearer(key)).key_id == record.id


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    before = threading.active_count()
    yield
    deadline = time.monotonic() + 2
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)


class TestReopen:
    def test_if_used_after_close_then_reopens_with_a_fresh_cache(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        auth = Authenticator(store, clock=clock, last_used_interval=3600)
        auth.verify(key)
        auth.close()
        manager.revoke_key(record.id)  # not heard: the authenticator is closed
        with pytest.raises(InvalidKeyError) as caught:
            auth.verify(key)  # reopened, cache dropped: the store decides
        assert caught.value.reason is Reason.REVOKED
        other, other_record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"]
        )
        auth.verify(other)
        manager.revoke_key(other_record.id)  # heard again: listening after the reopen
        with pytest.raises(InvalidKeyError):
            auth.verify(other)
        auth.close()
        assert manager.get_key(other_record.id).last_used_at is not None  # flushed again


class TestRequestLevelCheck:
    def test_if_decide_then_every_outcome_returned(
        self, auth: Authenticator, manager: KeyManager
    ) -> None:
        key = make_key(manager)
        protected, optional = Endpoint(), Endpoint(required=False)
        assert auth.decide(facts(bearer(key)), protected).team_id == "team_1"  # type: ignore[union-attr]
        assert auth.decide(facts([]), optional) is None
        assert auth.decide(facts([])) is None  # a middleware without a table: nothing required
        missing = auth.decide(facts([]), protected)
        assert isinstance(missing, MissingKeyError) and missing.status_code == 401
        both = auth.decide(facts([("authorization", f"Bearer {key}"), ("x-api-key", key)]))
        assert isinstance(both, InvalidRequestError)
        scoped = auth.decide(facts(bearer(key)), Endpoint(("write:calls",)))
        assert isinstance(scoped, InsufficientScopeError)

    def test_if_shared_refusal_raised_then_a_fresh_copy(self, auth: Authenticator) -> None:
        errors = []
        for _ in range(2):
            with pytest.raises(MissingKeyError) as caught:
                auth.authenticate({})
            errors.append(caught.value)
        assert errors[0] is not errors[1]
        protected = Endpoint()
        shared = auth.decide(facts({}), protected)
        assert shared is auth.decide(facts({}), protected)  # shared when nobody audits

    def test_if_async_decide_then_same(self, auth: Authenticator, manager: KeyManager) -> None:
        key = make_key(manager)
        outcome = asyncio.run(auth.decide_async(facts([(b"x-api-key", key.encode())])))
        assert isinstance(outcome, Principal)
        assert asyncio.run(auth.decide_async(facts([]), Endpoint(required=False))) is None

    def test_if_not_tracking_last_used_then_nothing_written(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        with Authenticator(store, clock=clock, track_last_used=False) as auth:
            auth.verify(key)
            assert auth.last_used.pending() == {}
        assert manager.get_key(record.id).last_used_at is None

    def test_if_rendered_for_asgi_then_raw_headers_with_length(self) -> None:
        error = InvalidKeyError(reason=Reason.UNKNOWN)
        raw = dict(error.raw_headers())
        assert raw[b"content-length"] == str(len(error.body_bytes())).encode()
        assert raw[b"www-authenticate"] == b'Bearer realm="api", error="invalid_token"'
        assert error.raw_headers() is error.raw_headers()


class TestLastUsedFailures:
    def test_if_the_store_fails_a_flush_then_marks_are_kept_for_the_next(
        self,
        store: CountingStore,
        manager: KeyManager,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        from skaala_auth.lastused import LastUsedRecorder

        _, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        failing = {"left": 1}
        original = store.record_last_used

        def flaky(used: Any) -> None:
            if failing["left"]:
                failing["left"] -= 1
                raise ConnectionError("store down")
            original(used)

        store.record_last_used = flaky  # type: ignore[method-assign]
        recorder = LastUsedRecorder(store, interval=3600)
        recorder.mark(record.id, clock.now)
        with caplog.at_level(logging.WARNING, logger="skaala_auth.lastused"):
            assert recorder.flush() == 0
        assert "will retry" in caplog.text
        recorder.mark(record.id, clock.now - 5)  # older: does not move the pending mark back
        assert recorder.pending() == {record.id: clock.now}
        assert recorder.flush() == 1
        assert manager.get_key(record.id).last_used_at.timestamp() == pytest.approx(clock.now)
        assert recorder.flush() == 0
        recorder.close()

    def test_if_interval_not_positive_then_value_error(self, store: CountingStore) -> None:
        from skaala_auth.lastused import LastUsedRecorder

        with pytest.raises(ValueError, match="positive"):
            LastUsedRecorder(store, interval=0)


UNKNOWN = generate_key()


class PollFailingStore(MemoryKeyStore):
    """A real store whose change feed fails while ``down`` is set."""

    down = False

    def poll_changes(self) -> None:
        if self.down:
            raise OSError("the change feed is down")
        super().poll_changes()


def test_if_polls_keep_failing_then_one_traceback_per_outage(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = PollFailingStore()
    with Authenticator(store, clock=clock, poll_interval=0.5) as auth:
        store.down = True
        with caplog.at_level(logging.WARNING, logger="skaala_auth"):
            for _ in range(3):
                clock.advance(1)
                auth.decide(facts(bearer(UNKNOWN)))  # a well-formed key: the request that polls
            store.down = False
            clock.advance(1)
            auth.decide(facts(bearer(UNKNOWN)))
    polls = [r for r in caplog.records if "poll" in r.getMessage()]
    assert [r.exc_info is not None for r in polls] == [True, False, False, False]
    assert polls[-1].getMessage() == "the key store answers polls again"
