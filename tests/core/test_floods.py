"""Floods of checksum-valid junk: the digest filter keeps unknown keys off the store, and the
failed-attempt limiter answers a flooding client 429, never a valid key."""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    KeyManager,
    MemoryKeyStore,
    Principal,
    RateLimitedError,
    Reason,
    SQLiteKeyStore,
    generate_key,
)
from skaala_auth.digestfilter import DigestFilter, prefix_of
from skaala_auth.errors import AuthError
from skaala_auth.flow import Endpoint, Load, RequestFacts
from skaala_auth.ratelimit import FailedAuthLimiter
from skaala_auth.stores.base import Change, KeyRecord

from ..conftest import Clock

READ = Endpoint(("read:bookings",))


class CountingStore(MemoryKeyStore):
    """A real memory store that records the digests it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.digests_fail = False

    def find_key(self, digest: str) -> KeyRecord | None:
        self.asked.append(digest)
        return super().find_key(digest)

    def digests(self) -> Iterator[str]:
        if self.digests_fail:
            raise ConnectionError("store down")
        return super().digests()


class NoListing:
    """A store that cannot list its digests (as a third-party store may be): every method but
    the DigestSource ones, delegated to a memory store."""

    def __init__(self, inner: CountingStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("digests", "key_digest"):
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def request(auth: Authenticator, key: str, client: str | None = "192.0.2.1") -> Any:
    return auth.decide(RequestFacts("GET", "/", bearer(key), client=client), READ)


def make_key(manager: KeyManager) -> str:
    return manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])[0]


def settle(auth: Authenticator, clock: Clock) -> None:
    """Let the next request poll (and so start any full read the filter wants), make one, and
    wait for the filter to be sure."""
    clock.advance(1.0)  # past poll_interval and the filter's reload_interval
    request(auth, "junk", client=None)
    assert auth.digest_filter is not None
    assert auth.digest_filter.wait_ready(5.0)


class TestDigestFilter:
    def test_if_ready_then_unknown_keys_cost_no_store_call(
        self, store: CountingStore, manager: KeyManager, clock: Clock, make_auth: Any
    ) -> None:
        keys = [make_key(manager) for _ in range(20)]
        auth: Authenticator = make_auth(store, clock=clock, unlisted_lookup_rate=0)
        settle(auth, clock)
        store.asked.clear()
        for _ in range(2000):
            outcome = request(auth, generate_key())
            assert isinstance(outcome, InvalidKeyError) and outcome.reason is Reason.UNKNOWN
        assert store.asked == []
        for key in keys:  # listed: looked up, granted
            assert isinstance(request(auth, key), Principal)
        assert len(store.asked) == len(keys)

    def test_if_not_loaded_yet_then_unknown_keys_are_looked_up(
        self, store: CountingStore, clock: Clock
    ) -> None:
        with Authenticator(store, clock=clock, unlisted_lookup_rate=0) as auth:
            assert auth.digest_filter is not None and not auth.digest_filter.ready
            # No request has polled yet, so nothing was read: the store decides.
            assert isinstance(auth._flow.start(generate_key(), (), None, clock()), Load)

    def test_if_budget_then_that_many_unlisted_look_ups_per_second(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        make_key(manager)
        with Authenticator(store, clock=clock, unlisted_lookup_rate=5) as auth:
            settle(auth, clock)
            store.asked.clear()
            for _ in range(100):
                request(auth, generate_key())
            assert len(store.asked) == 5  # the burst
            clock.advance(1.0)
            for _ in range(100):
                request(auth, generate_key())
            # one second's worth more (the poll the advance allowed asks nothing)
            assert len(store.asked) == 10

    def test_if_key_created_in_process_then_accepted_at_once(
        self, store: CountingStore, manager: KeyManager, clock: Clock, make_auth: Any
    ) -> None:
        auth: Authenticator = make_auth(store, clock=clock, unlisted_lookup_rate=0)
        settle(auth, clock)
        for _ in range(20):  # the filter is unsure from the change until it has the digest
            assert isinstance(request(auth, make_key(manager)), Principal)
        assert auth.digest_filter is not None and auth.digest_filter.wait_ready(5.0)
        key = make_key(manager)
        assert auth.digest_filter.wait_ready(5.0)
        auth.cache.clear()
        assert auth.digest_filter.wait_ready(5.0)  # learnt the digest, not just unsure
        store.asked.clear()
        assert isinstance(request(auth, key), Principal)
        assert isinstance(request(auth, generate_key()), InvalidKeyError)
        assert len(store.asked) == 1

    def test_if_bulk_import_or_change_all_then_fails_open_until_read_again(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        make_key(manager)
        with Authenticator(store, clock=clock, unlisted_lookup_rate=0) as auth:
            settle(auth, clock)
            created = manager.create_keys(
                [{"team_id": "team_1", "user_id": "user_1", "scopes": ["read:bookings"]}] * 3
            )
            assert auth.digest_filter is not None and not auth.digest_filter.ready
            for key, _ in created:
                assert isinstance(request(auth, key), Principal)
            settle(auth, clock)
            store._feed.publish(Change("all"))  # a listener reconnected, a file replaced
            assert not auth.digest_filter.ready
            store.asked.clear()
            request(auth, generate_key())
            assert len(store.asked) == 1  # looked up: the filter is not sure
            settle(auth, clock)
            auth.cache.clear()
            settle(auth, clock)
            for key, _ in created:
                assert isinstance(request(auth, key), Principal)

    def test_if_key_created_by_another_process_then_accepted_once_heard_or_by_budget(
        self, tmp_path: Path, clock: Clock
    ) -> None:
        mine, theirs = SQLiteKeyStore(tmp_path / "k.db"), SQLiteKeyStore(tmp_path / "k.db")
        elsewhere = KeyManager(theirs, clock=clock)
        elsewhere.add_member(team_id="team_1", user_id="user_1", role="owner")
        strict = Authenticator(mine, clock=clock, unlisted_lookup_rate=0)
        lenient = Authenticator(mine, clock=clock, unlisted_lookup_rate=1)
        with strict, lenient:
            settle(lenient, clock)
            settle(strict, clock)
            request(lenient, "junk", client=None)  # its poll, due since the clock moved
            key = make_key(elsewhere)
            # Not heard of yet (the next poll is due in 0.5 s): the budget covers it...
            assert isinstance(request(lenient, key), Principal)
            # ...and without one, it is refused until this process hears of it:
            assert isinstance(request(strict, key), InvalidKeyError)
            clock.advance(0.5)
            strict.cache.clear()
            request(strict, "junk", client=None)  # polls: the change arrives
            assert strict.digest_filter is not None and strict.digest_filter.wait_ready(5.0)
            assert isinstance(request(strict, key), Principal)
        mine.close()
        theirs.close()

    def test_if_key_under_a_legacy_digest_then_listed(
        self, store: CountingStore, clock: Clock
    ) -> None:
        plain = KeyManager(store, clock=clock)
        plain.add_member(team_id="team_1", user_id="user_1", role="owner")
        key = make_key(plain)  # stored as sha256$…
        pepper = b"p" * 32
        with Authenticator(store, clock=clock, pepper=pepper, unlisted_lookup_rate=0) as auth:
            settle(auth, clock)
            assert isinstance(request(auth, key), Principal)  # found, then re-hashed
            assert auth.digest_filter is not None and auth.digest_filter.wait_ready(5.0)
            auth.cache.clear()
            settle(auth, clock)
            assert isinstance(request(auth, key), Principal)  # under the new digest

    def test_if_store_cannot_list_then_no_filter_and_look_ups_as_before(
        self, store: CountingStore, clock: Clock
    ) -> None:
        with Authenticator(NoListing(store), clock=clock) as auth:  # type: ignore[arg-type]
            assert auth.digest_filter is None
            request(auth, generate_key())
            assert len(store.asked) == 1
        with Authenticator(store, clock=clock, digest_filter=False) as auth:
            assert auth.digest_filter is None

    def test_if_reading_digests_fails_then_fails_open_and_logged_once(
        self, store: CountingStore, manager: KeyManager, clock: Clock, caplog: Any
    ) -> None:
        store.digests_fail = True
        with Authenticator(store, clock=clock, unlisted_lookup_rate=0) as auth:
            request(auth, generate_key())
            assert auth.digest_filter is not None
            assert not auth.digest_filter.wait_ready(0.3)
            store.asked.clear()
            for _ in range(5):
                request(auth, generate_key())
            assert len(store.asked) == 5  # looked up: the filter never answers unloaded
            failures = [
                r for r in caplog.records if "could not read the key store's digests" in r.message
            ]
            assert len(failures) == 1
            store.digests_fail = False
            clock.advance(2.0)  # the re-read backs off: 1 s, then 2 s
            settle(auth, clock)
            assert "reads the key store's digests again" in caplog.text


class TestDigestFilterAlone:
    def filter(self) -> DigestFilter:
        return DigestFilter(unlisted_rate=0, reload_interval=0, clock=lambda: 0.0)

    @given(
        st.lists(st.binary(min_size=32, max_size=32), max_size=300),
        st.binary(min_size=32, max_size=32),
    )
    def test_if_read_then_every_digest_listed(self, digests: list[bytes], other: bytes) -> None:
        edges = [bytes(32), b"\xff" * 32, b"\x00\x01" + bytes(30), b"\xff\xfe" + b"\xff" * 30]
        stored = [*digests, *edges]
        listed = self.filter()
        assert listed.wants_reload()
        listed.reloaded(listed.read(f"sha256${d.hex()}" for d in stored), listed.reloading())
        assert listed.ready
        assert all(listed.lists(d) for d in stored)
        assert listed.lists(other) == any(d[:8] == other[:8] for d in stored)

    def test_if_many_learnt_then_merged_and_still_listed(self) -> None:
        listed = self.filter()
        assert listed.wants_reload()
        listed.reloaded(listed.read(()), listed.reloading())
        digests = [os.urandom(32) for _ in range(5000)]
        for digest in digests:
            assert listed.changed(Change("key", key_id="key_x")) == "key_x"
            assert not listed.ready
            listed.learned(f"blake2b-keyed${digest.hex()}")
        assert listed.ready and len(listed._snapshot[2]) < 5000  # merged into the array
        assert all(listed.lists(d) for d in digests)
        assert isinstance(listed._snapshot[0], array)

    def test_if_change_during_a_read_then_still_unsure_after_it(self) -> None:
        listed = self.filter()
        assert listed.wants_reload()
        generation = listed.reloading()
        listed.changed(Change("all"))
        listed.reloaded(listed.read(["sha256$" + "ab" * 32]), generation)
        assert not listed.ready and listed.wants_reload()

    def test_if_listener_keeps_saying_all_then_open_and_no_reads_until_quiet(self) -> None:
        clock = Clock()
        listed = DigestFilter(unlisted_rate=0, reload_interval=1.0, clock=clock)
        assert listed.wants_reload()
        listed.reloaded(listed.read(()), listed.reloading())
        assert listed.ready
        for _ in range(20):  # a store whose listener is down: Change("all") at every poll
            clock.advance(0.5)
            listed.changed(Change("all"))
            assert not listed.ready and not listed.wants_reload()
        clock.advance(0.999)
        assert not listed.wants_reload()
        clock.advance(0.001)  # a whole reload_interval without one: back, read again
        assert listed.wants_reload()
        listed.reloaded(listed.read(()), listed.reloading())
        assert listed.ready

    def test_if_read_fails_then_retried_with_backoff(self) -> None:
        clock = Clock()
        listed = DigestFilter(unlisted_rate=0, reload_interval=1.0, clock=clock)
        waits = []
        for _ in range(8):
            started = clock.now
            while not listed.wants_reload():
                clock.advance(0.5)
            waits.append(clock.now - started)
            listed.reloading()
            listed.reload_failed()
        assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
        assert not listed.ready

    @pytest.mark.parametrize(
        ("stored", "prefix"),
        [
            pytest.param("sha256$" + "0123456789abcdef" * 4, 0x0123456789ABCDEF, id="sha256"),
            pytest.param("hmac-sha256$" + "f" * 64, 2**64 - 1, id="hmac"),
            pytest.param("nodollar", None, id="no-algorithm"),
            pytest.param("sha256$zz", None, id="not-hex"),
            pytest.param("sha256$", None, id="empty"),
        ],
    )
    def test_if_stored_digest_then_its_prefix(self, stored: str, prefix: int | None) -> None:
        assert prefix_of(stored) == prefix


class TestFailedAuthLimiter:
    def test_if_client_fails_past_the_limit_then_429_but_valid_keys_pass(
        self, store: CountingStore, manager: KeyManager, clock: Clock, make_auth: Any
    ) -> None:
        cached, cold = make_key(manager), make_key(manager)
        auth: Authenticator = make_auth(
            store, clock=clock, failed_auth_limit=3, failed_auth_window=60
        )
        settle(auth, clock)
        assert isinstance(request(auth, cached), Principal)
        for junk in (generate_key(), "sk_live_nope", generate_key()):
            outcome = request(auth, junk)
            assert isinstance(outcome, InvalidKeyError)
        store.asked.clear()
        limited = request(auth, generate_key())
        assert isinstance(limited, RateLimitedError) and limited.status_code == 429
        assert ("retry-after", "20") in limited.headers()
        assert isinstance(request(auth, "malformed"), RateLimitedError)
        assert store.asked == []  # refused before any look-up
        # The same address with a valid key: cached, or not (the filter lists it: looked up).
        assert isinstance(request(auth, cached), Principal)
        assert isinstance(request(auth, cold), Principal)
        # Another address is not affected, nor a face without an address.
        assert isinstance(request(auth, generate_key(), client="192.0.2.99"), InvalidKeyError)
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(generate_key()))
        clock.advance(20)  # one failure's worth
        assert isinstance(request(auth, generate_key()), InvalidKeyError)
        assert isinstance(request(auth, generate_key()), RateLimitedError)

    def test_if_no_filter_then_valid_cold_key_still_passes(
        self, store: CountingStore, manager: KeyManager, clock: Clock, make_auth: Any
    ) -> None:
        auth: Authenticator = make_auth(
            NoListing(store), clock=clock, failed_auth_limit=1, failed_auth_window=60
        )
        key = make_key(manager)
        assert isinstance(request(auth, generate_key()), InvalidKeyError)
        assert isinstance(request(auth, generate_key()), RateLimitedError)  # after its look-up
        assert isinstance(request(auth, key), Principal)

    def test_if_revoked_key_then_counted_as_a_failure(
        self, store: CountingStore, manager: KeyManager, clock: Clock, make_auth: Any
    ) -> None:
        key, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings"]
        )
        auth: Authenticator = make_auth(store, clock=clock, failed_auth_limit=2)
        assert isinstance(request(auth, key), Principal)
        manager.revoke_key(record.id)
        assert isinstance(request(auth, key), InvalidKeyError)  # loaded again: revoked
        assert isinstance(request(auth, key), InvalidKeyError)  # cached: revoked
        assert isinstance(request(auth, key), RateLimitedError)

    def test_if_off_then_never_429(self, store: CountingStore, clock: Clock) -> None:
        with Authenticator(store, clock=clock) as auth:
            assert auth.failed_auth is None
            for _ in range(200):
                assert isinstance(request(auth, generate_key()), InvalidKeyError)

    def test_if_ipv6_then_counted_by_its_64(self) -> None:
        limiter = FailedAuthLimiter(1, 60)
        assert limiter.failed("2001:db8:1:2::1", 0.0) is None
        assert limiter.failed("2001:db8:1:2:ffff::9", 0.0) is not None  # same /64
        assert limiter.failed("2001:db8:1:3::1", 0.0) is None  # another /64
        assert limiter.failed("::ffff:192.0.2.7", 0.0) is None
        assert limiter.failed("192.0.2.7", 0.0) is not None  # the same IPv4 client

    def test_if_many_clients_then_bounded(self) -> None:
        limiter = FailedAuthLimiter(1, 60, max_clients=100)
        for number in range(1000):
            limiter.failed(f"10.0.{number // 256}.{number % 256}", 0.0)
        assert len(limiter) == 100
        assert limiter.refusal("10.0.3.231", 0.0) is not None  # the newest are kept

    @pytest.mark.parametrize(
        "options", [{"limit": 0, "window": 1}, {"limit": 1, "window": 0}], ids=["limit", "window"]
    )
    def test_if_not_positive_then_value_error(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            FailedAuthLimiter(**options)


class TestFloodFigure:
    """Issue 12's figure, scaled down: a flood of unique well-formed unknown keys from many
    addresses reaches the store for at most 1 % of them, while legitimate traffic keeps a
    cache hit ratio of at least 99 %."""

    def test_if_flood_then_at_most_1_percent_reach_the_store(
        self, store: CountingStore, manager: KeyManager, clock: Clock
    ) -> None:
        legit = [make_key(manager) for _ in range(50)]
        with Authenticator(store, clock=clock, failed_auth_limit=50) as auth:
            settle(auth, clock)
            for key in legit:  # the service was serving them before the flood
                assert isinstance(request(auth, key, "203.0.113.5"), Principal)
            store.asked.clear()
            flood, requests, statuses = 10_000, 0, set()
            for number in range(flood):
                clock.advance(0.00005)  # 20,000 junk keys a second
                client = f"198.51.100.{number % 100}"
                outcome = request(auth, generate_key(), client)
                assert isinstance(outcome, AuthError)
                statuses.add(outcome.status_code)
                if number % 10 == 0:
                    key = legit[(number // 10) % len(legit)]
                    assert isinstance(request(auth, key, "203.0.113.5"), Principal)
                    requests += 1
            legit_digests = {auth.hasher.stored_digest(key) for key in legit}
            legit_loads = sum(1 for digest in store.asked if digest in legit_digests)
            junk_loads = len(store.asked) - legit_loads
        assert statuses == {401, 429}
        assert junk_loads <= flood // 100
        assert 1 - legit_loads / requests >= 0.99


def test_if_filter_is_logged_then_no_digest_in_the_log(
    store: CountingStore, manager: KeyManager, clock: Clock, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="skaala_auth")
    make_key(manager)
    with Authenticator(store, clock=clock) as auth:
        settle(auth, clock)
    digest = next(store.digests())
    assert digest.partition("$")[2][:16] not in caplog.text
    assert "the digest filter read 1 digests" in caplog.text
