"""The Redis invalidation bus, against a real Redis: authenticators whose shared store cannot
notify them hear each other's changes within a second, and a subscriber whose connection is
killed reconnects and drops every cached key."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    KeyManager,
    MemoryKeyStore,
    Principal,
    SQLiteKeyStore,
)
from skaala_auth.stores.base import Change, Subscriber

from ..conftest import Clock


class QuietStore(SQLiteKeyStore):
    """A real SQLite store that never tells other processes anything: like a store without
    notifications (a third-party store, an ORM store), so only the bus can carry changes."""

    def poll_changes(self) -> None:
        """Nothing heard from other processes."""


@pytest.fixture
def channel() -> str:
    return f"skaala_test:{uuid.uuid4().hex}"


@pytest.fixture
def bus_factory(redis_url: str, channel: str) -> Iterator[Callable[[], Any]]:
    from skaala_auth.bus import RedisInvalidationBus

    made: list[RedisInvalidationBus] = []

    def make() -> RedisInvalidationBus:
        bus = RedisInvalidationBus(redis_url, channel=channel, heartbeat=0.2)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


@pytest.fixture
def machines(tmp_path: Path, clock: Clock, bus_factory: Callable[[], Any]) -> Iterator[Any]:
    """Two 'machines' on one database that cannot notify: each with its store, bus and
    authenticator; a manager on the first."""
    path = tmp_path / "shared.db"
    stores = [QuietStore(path), QuietStore(path)]
    manager = KeyManager(stores[0], clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    auths = [
        Authenticator(store, clock=clock, invalidation_bus=bus_factory(), unlisted_lookup_rate=0)
        for store in stores
    ]
    yield manager, auths
    for auth in auths:
        auth.close()
    for store in stores:
        store.close()


def until(condition: Callable[[], bool], seconds: float) -> float:
    """Wait for ``condition``; returns the seconds it took, or raises after ``seconds``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.005)
    return time.monotonic() - started


def granted(auth: Authenticator, key: str) -> bool:
    try:
        return isinstance(auth.verify(key), Principal)
    except InvalidKeyError:
        return False


class TestAcrossProcesses:
    def test_if_revoked_on_one_then_the_other_refuses_within_a_second(
        self, machines: Any, tmp_path: Path, clock: Clock
    ) -> None:
        manager, (here, there) = machines
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        assert granted(here, key) and granted(there, key)
        with Authenticator(QuietStore(tmp_path / "shared.db"), clock=clock) as deaf:
            assert granted(deaf, key)  # the control: no bus
            manager.revoke_key(record.id)
            took = until(lambda: not granted(there, key), 1.0)
            assert granted(deaf, key)  # still cached: only the bus carried the revocation
        assert not granted(here, key)
        print(f"revocation heard by the other machine after {took * 1000:.1f} ms")

    def test_if_key_created_on_one_then_the_others_filter_learns_it(self, machines: Any) -> None:
        manager, (_, there) = machines
        with pytest.raises(InvalidKeyError):
            there.verify("sk_live_" + "A" * 38)  # polls: the filter's first read starts
        assert there.digest_filter is not None and there.digest_filter.wait_ready(5.0)
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        # With no budget for unlisted digests, only the bus's change can make it known.
        until(lambda: granted(there, key), 1.0)

    def test_if_member_removed_on_one_then_the_other_drops_its_grant(self, machines: Any) -> None:
        manager, (_, there) = machines
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        assert granted(there, key)
        manager.remove_member(team_id="team_1", user_id="user_1")

        def refused() -> bool:
            try:
                there.verify(key)
            except Exception as error:  # 403: no longer a member
                return getattr(error, "status_code", None) == 403
            return False

        until(refused, 1.0)


class TestReconnect:
    def test_if_subscriber_killed_then_reconnects_and_drops_the_cache(
        self, machines: Any, redis_url: str, caplog: Any
    ) -> None:
        import redis

        caplog.set_level(logging.WARNING, logger="skaala_auth.bus")
        manager, (_, there) = machines
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        assert granted(there, key) and len(there.cache) == 1
        bus = there.invalidation_bus
        admin = redis.Redis.from_url(redis_url)
        try:
            ours = [
                client
                for client in admin.client_list()
                if client["name"] == bus.client_name and client["sub"] != "0"
            ]
            assert len(ours) == 1
            admin.client_kill_filter(_id=ours[0]["id"])
        finally:
            admin.close()
        until(lambda: len(there.cache) == 0, 10.0)
        until(lambda: "subscribed to Redis again" in caplog.text, 10.0)
        assert "lost its Redis subscription" in caplog.text
        assert bus.healthy()
        assert granted(there, key)  # from the store again

    def test_if_junk_on_the_channel_then_everything_dropped(
        self, machines: Any, redis_url: str, channel: str
    ) -> None:
        import redis

        manager, (_, there) = machines
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        assert granted(there, key)
        admin = redis.Redis.from_url(redis_url)
        try:
            admin.publish(channel, b"not json")
        finally:
            admin.close()
        until(lambda: len(there.cache) == 0, 1.0)

    def test_if_redis_unreachable_then_publish_logged_and_bus_unhealthy(self, caplog: Any) -> None:
        from skaala_auth.bus import RedisInvalidationBus

        bus = RedisInvalidationBus("redis://127.0.0.1:1/0", timeout=0.5)  # nothing listens
        try:
            store = MemoryKeyStore()
            bus.attach(store)
            bus.attach(store)  # idempotent
            store.add_member(_member())  # publishes: fails, logged, never raised
            assert "could not publish a change on the invalidation bus" in caplog.text
            seen: list[Change] = []
            bus.subscribe(seen.append)
            assert not bus.healthy()
        finally:
            bus.close()


class DownBus:
    """An invalidation bus that is down (the InvalidationBus protocol, no Redis)."""

    def __init__(self) -> None:
        self.up = True
        self.attached: list[Any] = []

    def attach(self, store: Any) -> None:
        self.attached.append(store)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return lambda: None

    def healthy(self) -> bool:
        return self.up


def test_if_bus_down_then_every_poll_drops_the_cache(clock: Clock) -> None:
    store = MemoryKeyStore()
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
    bus = DownBus()
    with Authenticator(store, clock=clock, invalidation_bus=bus) as auth:
        assert bus.attached == [store]
        auth.verify(key)
        generation = auth.cache.generation
        clock.advance(1)
        auth.verify(key)  # polls: healthy, nothing dropped
        assert auth.cache.generation == generation
        bus.up = False
        clock.advance(1)
        auth.verify(key)  # polls: dropped (its own load put the key back)
        assert auth.cache.generation > generation
        assert auth.digest_filter is not None and not auth.digest_filter.ready


def _member() -> Any:
    from datetime import UTC, datetime

    from skaala_auth import Member, Role

    return Member("team_1", "user_1", Role.OWNER, datetime(2027, 1, 1, tzinfo=UTC))
