"""One contract for every KeyStore: memory and SQLite (PostgreSQL joins when it exists)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from skaala_auth import ApiKey, Member, MemoryKeyStore, RateLimit, Role
from skaala_auth.models import freeze_metadata
from skaala_auth.stores.base import Change, DigestSource, KeyStore, PolicyStore

T0 = datetime(2027, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def key(number: int = 1, team: str = "team_1", user: str = "user_1") -> ApiKey:
    return ApiKey(
        id=f"key_{number}",
        team_id=team,
        user_id=user,
        name=f"key {number}",
        scopes=frozenset({"read:bookings", "write:bookings"}),
        prefix=f"sk_live_AbC{number}…wxyz",
        created_at=T0 + timedelta(seconds=number),
        expires_at=T0 + timedelta(days=365),
    )


@pytest.fixture
def store(any_store: KeyStore) -> KeyStore:
    any_store.add_member(Member("team_1", "user_1", Role.OWNER, T0))
    return any_store


@pytest.fixture
def changes(store: KeyStore) -> list[Change]:
    seen: list[Change] = []
    store._test_callback = seen.append  # type: ignore[attr-defined]  # keep a strong ref
    store.subscribe(store._test_callback)  # type: ignore[attr-defined]
    return seen


class TestKeys:
    def test_if_inserted_then_found_by_digest_with_role(self, store: KeyStore) -> None:
        store.insert_key(key(), "sha256$aa")
        record = store.find_key("sha256$aa")
        assert record is not None
        assert record.key == key() and record.digest == "sha256$aa" and record.role is Role.OWNER
        assert store.find_key("sha256$ab") is None
        assert "sha256$aa" not in repr(record)

    def test_if_times_stored_then_exact_to_the_microsecond(self, store: KeyStore) -> None:
        store.insert_key(key(), "d1")
        assert store.get_key("key_1") == key()

    def test_if_member_gone_then_role_is_none(self, store: KeyStore) -> None:
        store.insert_key(key(), "d1")
        assert store.remove_member("team_1", "user_1") is True
        assert store.remove_member("team_1", "user_1") is False
        record = store.find_key("d1")
        assert record is not None and record.role is None

    def test_if_duplicate_digest_then_refused(self, store: KeyStore) -> None:
        store.insert_key(key(1), "d1")
        with pytest.raises(Exception):  # noqa: B017 - each store raises its own integrity error
            store.insert_key(key(2), "d1")
        assert store.get_key("key_2") is None

    def test_if_listed_then_team_only_newest_first(self, store: KeyStore) -> None:
        store.insert_key(key(1), "d1")
        store.insert_key(key(2), "d2")
        store.insert_key(key(3, team="team_2"), "d3")
        assert [k.id for k in store.list_keys("team_1")] == ["key_2", "key_1"]
        assert store.list_keys("nobody") == []

    def test_if_revoked_twice_then_first_time_kept(self, store: KeyStore) -> None:
        store.insert_key(key(), "d1")
        first = store.revoke_key("key_1", T0 + timedelta(hours=1))
        assert first is not None and first.revoked_at == T0 + timedelta(hours=1)
        again = store.revoke_key("key_1", T0 + timedelta(hours=2))
        assert again is not None and again.revoked_at == T0 + timedelta(hours=1)
        assert store.revoke_key("key_404", T0) is None

    def test_if_rotated_then_old_expiry_shortened_and_new_inserted(self, store: KeyStore) -> None:
        store.insert_key(key(1), "d1")
        successor = dataclasses.replace(key(2), rotated_from="key_1")
        store.rotate_key("key_1", T0 + timedelta(days=1), successor, "d2")
        old = store.get_key("key_1")
        assert old is not None and old.expires_at == T0 + timedelta(days=1)
        found = store.find_key("d2")
        assert found is not None and found.key.rotated_from == "key_1"

    def test_if_rehashed_then_found_under_the_new_digest_only(self, store: KeyStore) -> None:
        store.insert_key(key(), "sha256$old")
        store.update_digest("key_1", "sha256$old", "blake2b-keyed$new")
        assert store.find_key("sha256$old") is None
        assert store.find_key("blake2b-keyed$new") is not None
        store.update_digest("key_1", "sha256$gone", "x$y")  # stale: nothing happens
        assert store.find_key("blake2b-keyed$new") is not None

    def test_if_last_used_recorded_then_only_forward(self, store: KeyStore) -> None:
        store.insert_key(key(), "d1")
        store.record_last_used({"key_1": T0 + timedelta(minutes=5), "key_404": T0})
        store.record_last_used({"key_1": T0 + timedelta(minutes=1)})
        stored = store.get_key("key_1")
        assert stored is not None and stored.last_used_at == T0 + timedelta(minutes=5)
        store.record_last_used({})


class TestBulk:
    def test_if_many_inserted_then_each_found_and_one_change_announced(
        self, store: KeyStore, changes: list[Change]
    ) -> None:
        batch = [(key(n), f"d{n}") for n in range(1, 51)]
        store.insert_keys(iter(batch))
        for inserted, digest in batch:
            record = store.find_key(digest)
            assert record is not None and record.key == inserted and record.role is Role.OWNER
        assert len(store.list_keys("team_1")) == 50
        assert changes == [Change("key")]

    @pytest.mark.parametrize(
        "clash",
        [
            pytest.param([(key(4), "d2")], id="digest-twice-in-the-batch"),
            pytest.param([(key(2), "d4")], id="id-twice-in-the-batch"),
            pytest.param([(key(4), "d1")], id="digest-already-stored"),
            pytest.param([(key(1), "d4")], id="id-already-stored"),
        ],
    )
    def test_if_any_pair_clashes_then_none_inserted_and_nothing_announced(
        self, store: KeyStore, changes: list[Change], clash: list[tuple[ApiKey, str]]
    ) -> None:
        store.insert_key(key(1), "d1")
        changes.clear()
        with pytest.raises(Exception):  # noqa: B017 - each store raises its own integrity error
            store.insert_keys([(key(2), "d2"), (key(3), "d3"), *clash])
        assert [k.id for k in store.list_keys("team_1")] == ["key_1"]
        assert store.find_key("d2") is None and store.find_key("d4") is None
        assert changes == []

    def test_if_the_pairs_fail_half_way_then_none_inserted(
        self, store: KeyStore, changes: list[Change]
    ) -> None:
        def pairs() -> Iterator[tuple[ApiKey, str]]:
            yield key(1), "d1"
            raise RuntimeError("the source broke")

        with pytest.raises(RuntimeError, match="source broke"):
            store.insert_keys(pairs())
        assert store.get_key("key_1") is None and store.find_key("d1") is None
        assert changes == []

    def test_if_empty_then_nothing_announced(self, store: KeyStore, changes: list[Change]) -> None:
        store.insert_keys([])
        assert changes == [] and store.list_keys("team_1") == []


class TestDigests:
    """The optional DigestSource half, which every built-in store offers."""

    def test_if_listed_then_every_digest_once_revoked_included(self, store: KeyStore) -> None:
        assert isinstance(store, DigestSource)
        assert list(store.digests()) == []
        store.insert_key(key(1), "sha256$aa")
        store.insert_keys([(key(n), f"sha256${n:02x}") for n in range(2, 40)])
        store.revoke_key("key_1", T0)
        expected = {"sha256$aa", *(f"sha256${n:02x}" for n in range(2, 40))}
        listed = list(store.digests())
        assert sorted(listed) == sorted(expected)

    def test_if_more_than_a_chunk_then_all_listed(
        self, store: KeyStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import sys

        module = sys.modules[type(store).__module__]
        if hasattr(module, "DIGEST_CHUNK"):
            monkeypatch.setattr(module, "DIGEST_CHUNK", 7)
        store.insert_keys([(key(n), f"sha256${n:04x}") for n in range(1, 31)])
        assert isinstance(store, DigestSource)
        assert sorted(store.digests()) == sorted(f"sha256${n:04x}" for n in range(1, 31))

    def test_if_asked_by_id_then_current_digest(self, store: KeyStore) -> None:
        assert isinstance(store, DigestSource)
        store.insert_key(key(1), "sha256$aa")
        assert store.key_digest("key_1") == "sha256$aa"
        store.update_digest("key_1", "sha256$aa", "blake2b-keyed$bb")
        assert store.key_digest("key_1") == "blake2b-keyed$bb"
        assert store.key_digest("key_404") is None


class TestMembers:
    def test_if_added_then_listed_and_role_updatable(self, store: KeyStore) -> None:
        store.add_member(Member("team_1", "user_2", Role.MEMBER, T0))
        store.add_member(Member("team_1", "user_2", Role.ADMIN, T0))
        assert [(m.user_id, m.role) for m in store.list_members("team_1")] == [
            ("user_1", Role.OWNER),
            ("user_2", Role.ADMIN),
        ]
        assert store.get_member("team_1", "user_2") == Member("team_1", "user_2", Role.ADMIN, T0)
        assert store.get_member("team_2", "user_2") is None


class TestChanges:
    def test_if_validity_changes_then_subscribers_hear_it(
        self, store: KeyStore, changes: list[Change]
    ) -> None:
        store.insert_key(key(), "d1")
        store.revoke_key("key_1", T0)
        store.remove_member("team_1", "user_1")
        assert changes == [
            Change("key", key_id="key_1"),
            Change("key", key_id="key_1"),
            Change("member", team_id="team_1", user_id="user_1"),
        ]

    def test_if_unsubscribed_then_silent(self, store: KeyStore) -> None:
        seen: list[Change] = []
        unsubscribe = store.subscribe(seen.append)
        unsubscribe()
        unsubscribe()
        store.insert_key(key(), "d1")
        assert seen == []

    def test_if_polled_without_other_writers_then_nothing(
        self, store: KeyStore, changes: list[Change]
    ) -> None:
        store.poll_changes()
        assert changes == []


class TestThreads:
    def test_if_many_threads_write_and_read_then_consistent(self, store: KeyStore) -> None:
        errors: list[BaseException] = []

        def work(offset: int) -> None:
            try:
                for n in range(offset, offset + 25):
                    store.insert_key(key(n), f"d{n}")
                    assert store.find_key(f"d{n}") is not None
                    store.record_last_used({f"key_{n}": T0})
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(i * 100,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(store.list_keys("team_1")) == 100


def test_if_memory_store_then_repr_counts() -> None:
    assert repr(MemoryKeyStore()) == "MemoryKeyStore(keys=0, members=0)"


class TestPolicies:
    """Keys' policies (:class:`~skaala_auth.stores.base.PolicyStore`) in every store."""

    def policied(self) -> ApiKey:
        return dataclasses.replace(
            key(),
            disabled_at=T0 + timedelta(hours=1),
            rate_limit=RateLimit(5, 60),
            remaining=3,
            allowed_ips=("203.0.113.0/24", "2001:db8::/32"),
            metadata=freeze_metadata({"plan": "pro", "seats": [1, 2], "nested": {"a": None}}),
        )

    def test_if_a_key_with_policies_is_inserted_then_every_field_reads_back(
        self, store: KeyStore
    ) -> None:
        store.insert_key(self.policied(), "d1")
        assert store.get_key("key_1") == self.policied()
        record = store.find_key("d1")
        assert record is not None and record.key == self.policied()
        assert store.list_keys("team_1") == [self.policied()]

    def test_if_policies_are_set_then_they_read_back_and_caches_hear_of_it(
        self, store: KeyStore, changes: list[Change]
    ) -> None:
        assert isinstance(store, PolicyStore)
        store.insert_key(key(), "d1")
        changes.clear()
        updated = store.set_policy(
            "key_1", {"disabled_at": T0, "metadata": freeze_metadata({"a": 1})}
        )
        assert (
            updated is not None and updated.disabled_at == T0 and dict(updated.metadata) == {"a": 1}
        )
        assert changes == [Change("key", key_id="key_1")]
        cleared = store.set_policy(
            "key_1", {"disabled_at": None, "metadata": freeze_metadata(None)}
        )
        assert cleared == key()
        assert store.set_policy("key_missing", {"remaining": 1}) is None
        with pytest.raises(ValueError):
            store.set_policy("key_1", {"scopes": frozenset()})

    def test_if_a_key_is_used_then_its_uses_run_out_and_a_refill_brings_them_back(
        self, store: KeyStore
    ) -> None:
        assert isinstance(store, PolicyStore)
        store.insert_key(dataclasses.replace(key(), remaining=2), "d1")
        assert [store.use_key("key_1") for _ in range(3)] == [True, True, False]
        assert store.get_key("key_1").remaining == 0  # type: ignore[union-attr]
        store.set_policy("key_1", {"remaining": 1})
        assert [store.use_key("key_1") for _ in range(2)] == [True, False]
        store.set_policy("key_1", {"remaining": None})  # no limit any more
        assert store.use_key("key_1") is True
        assert store.use_key("key_missing") is False

    def test_if_threads_use_a_key_at_once_then_exactly_its_uses_are_granted(
        self, store: KeyStore
    ) -> None:
        assert isinstance(store, PolicyStore)
        store.insert_key(dataclasses.replace(key(), remaining=25), "d1")
        granted: list[bool] = []
        lock = threading.Lock()

        def use() -> None:
            for _ in range(10):
                used = store.use_key("key_1")  # type: ignore[attr-defined]
                with lock:
                    granted.append(used)

        threads = [threading.Thread(target=use) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert granted.count(True) == 25 and len(granted) == 60
