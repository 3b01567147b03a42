from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from skaala_auth import (
    ApiKey,
    Authenticator,
    InvalidBatchError,
    InvalidExpiryError,
    InvalidKeyError,
    KeyManagementError,
    KeyManager,
    KeyNotFoundError,
    Member,
    MemoryKeyStore,
    NotAMemberError,
    Role,
    ScopeRegistry,
    SQLiteKeyStore,
    UnknownScopeError,
    display_prefix,
    generate_key,
    is_well_formed,
)
from skaala_auth.manager import DEFAULT_EXPIRY
from skaala_auth.stores.base import Change

from ..conftest import Clock


class TestCreate:
    def test_if_created_then_plaintext_once_and_only_a_digest_stored(
        self, manager: KeyManager, store: MemoryKeyStore
    ) -> None:
        key, record = manager.create_key(
            team_id="team_1", user_id="user_1", name="CI", scopes=["read:bookings"]
        )
        assert record.id.startswith("key_") and record.name == "CI"
        assert record.prefix == f"{key[:12]}…{key[-4:]}"
        assert key not in repr(record) and key not in repr(store.__dict__)
        found = store.find_key(manager.hasher.stored_digest(key))
        assert found is not None and found.key == record

    def test_if_not_a_member_then_refused_and_nothing_stored(
        self, manager: KeyManager, store: MemoryKeyStore
    ) -> None:
        with pytest.raises(NotAMemberError):
            manager.create_key(team_id="team_1", user_id="stranger", scopes=["read:calls"])
        assert manager.list_keys(team_id="team_1") == []

    @pytest.mark.parametrize(
        ("scopes", "error"),
        [(["read:invoices"], UnknownScopeError), ([], ValueError), ("read:calls", TypeError)],
    )
    def test_if_bad_scopes_then_refused(
        self, manager: KeyManager, scopes: object, error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            manager.create_key(team_id="team_1", user_id="user_1", scopes=scopes)  # type: ignore[arg-type]
        assert manager.list_keys(team_id="team_1") == []

    def test_if_custom_scope_registered_then_accepted(self, store: MemoryKeyStore) -> None:
        registry = ScopeRegistry()
        registry.register("read:invoices")
        manager = KeyManager(store, scopes=registry)
        manager.add_member(team_id="t", user_id="u")
        _, record = manager.create_key(team_id="t", user_id="u", scopes=["read:invoices"])
        assert record.scopes == {"read:invoices"}

    def test_if_expiry_options_then_respected(self, manager: KeyManager, clock: Clock) -> None:
        now = datetime.fromtimestamp(clock.now, UTC)
        _, a = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"], expires_in=timedelta(days=90)
        )
        at = now + timedelta(days=7)
        _, b = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"], expires_at=at
        )
        assert a.expires_at == now + timedelta(days=90) and b.expires_at == at

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"expires_in": timedelta(days=1), "expires_at": datetime(2030, 1, 1, tzinfo=UTC)},
            {"expires_at": datetime(2030, 1, 1)},  # naive
            {"expires_in": timedelta(seconds=-1)},
            {"expires_at": datetime(2020, 1, 1, tzinfo=UTC)},
        ],
        ids=["both", "naive", "negative", "past"],
    )
    def test_if_bad_expiry_then_refused(
        self, manager: KeyManager, kwargs: dict[str, object]
    ) -> None:
        with pytest.raises(InvalidExpiryError):
            manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"], **kwargs)  # type: ignore[arg-type]


GOOD = {"team_id": "team_1", "user_id": "user_1", "scopes": ["read:calls"]}
A_KEY = "sk_live_" + "A" * 38


class TestCreateMany:
    def test_if_created_then_in_order_each_found_and_one_change(
        self, manager: KeyManager, store: MemoryKeyStore, clock: Clock
    ) -> None:
        seen: list[Change] = []
        store.subscribe(seen.append)
        at = datetime.fromtimestamp(clock.now, UTC) + timedelta(days=7)
        specs: list[dict[str, Any]] = [{**GOOD, "name": f"device {n}"} for n in range(100)]
        specs[1] = {**GOOD, "expires_at": at, "environment": "test", "scopes": ("write:calls",)}
        specs[2] = {**GOOD, "expires_in": timedelta(days=30), "name": "short"}
        created = manager.create_keys(iter(specs))
        assert len(created) == 100 and len({record.id for _, record in created}) == 100
        now = datetime.fromtimestamp(clock.now, UTC)
        for n, (key, record) in enumerate(created):
            found = store.find_key(manager.hasher.stored_digest(key))
            assert found is not None and found.key == record and record.created_at == now
            assert record.prefix == display_prefix(key) and is_well_formed(key)
            assert key not in repr(record)
            if n > 2:
                assert record.name == f"device {n}" and record.scopes == {"read:calls"}
                assert record.expires_at == now + DEFAULT_EXPIRY and record.environment == "live"
        assert created[1][0].startswith("sk_test_") and created[1][1].expires_at == at
        assert created[1][1].scopes == {"write:calls"}
        assert created[2][1].expires_at == now + timedelta(days=30)
        assert seen == [Change("key")]

    def test_if_created_then_scope_sets_are_shared_and_members_looked_up_once_a_pair(
        self, manager: KeyManager, store: MemoryKeyStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        manager.add_member(team_id="team_1", user_id="user_2")
        looked_up: list[tuple[str, str]] = []
        get_member = store.get_member

        def spy(team_id: str, user_id: str) -> Member | None:
            looked_up.append((team_id, user_id))
            return get_member(team_id, user_id)

        monkeypatch.setattr(store, "get_member", spy)
        created = manager.create_keys([GOOD, {**GOOD, "user_id": "user_2"}] * 50)
        assert sorted(looked_up) == [("team_1", "user_1"), ("team_1", "user_2")]
        assert created[0][1].scopes is created[99][1].scopes

    def test_if_a_key_was_remembered_as_unknown_then_a_bulk_insert_makes_it_work_at_once(
        self, manager: KeyManager, store: MemoryKeyStore, auth: Authenticator, clock: Clock
    ) -> None:
        """The batch announces one Change("key") without a key id: unknown digests go."""
        key = generate_key()
        with pytest.raises(InvalidKeyError):
            auth.verify(key)  # now in the negative cache
        now = datetime.fromtimestamp(clock.now, UTC)
        record = ApiKey(
            "key_bulk", "team_1", "user_1", "", frozenset({"read:calls"}), display_prefix(key),
            now, now + DEFAULT_EXPIRY,
        )  # fmt: skip
        store.insert_keys([(record, manager.hasher.stored_digest(key))])
        assert auth.verify(key).key_id == "key_bulk"

    def test_if_empty_then_nothing(self, manager: KeyManager, store: MemoryKeyStore) -> None:
        seen: list[Change] = []
        store.subscribe(seen.append)
        assert manager.create_keys([]) == []
        assert seen == []

    def test_if_any_item_is_bad_then_every_bad_one_named_and_none_created(
        self, manager: KeyManager, store: MemoryKeyStore
    ) -> None:
        bad: list[tuple[object, type[Exception], str]] = [
            ({**GOOD, "scopes": ["read:invoices"]}, UnknownScopeError, "read:invoices"),
            ({**GOOD, "user_id": "stranger"}, NotAMemberError, "stranger"),
            ({**GOOD, "expires_in": timedelta(-1)}, InvalidExpiryError, "future"),
            ({**GOOD, "expires_at": datetime(2030, 1, 1)}, InvalidExpiryError, "aware"),
            ({**GOOD, "expires_in": 90}, TypeError, "timedelta"),
            ({**GOOD, "expires_at": "2030-01-01"}, TypeError, "datetime"),
            ({**GOOD, "name": A_KEY}, ValueError, "holds an API key"),
            ({**GOOD, "team_id": 7}, TypeError, "team_id must be text"),
            ({**GOOD, "scopes": "read:calls"}, TypeError, "list of scope names"),
            ({**GOOD, "scopes": [1]}, TypeError, "list of scope names"),
            ({**GOOD, "scopes": []}, ValueError, "at least one scope"),
            ({**GOOD, "environment": "staging"}, ValueError, "environment"),
            ({**GOOD, "scope": ["read:calls"]}, TypeError, "unknown field(s) 'scope'"),
            ({**GOOD, A_KEY: 1}, TypeError, "(a key, not shown)"),
            ({"team_id": "team_1", "user_id": "user_1"}, TypeError, "missing field(s): scopes"),
            (["team_1", "user_1"], TypeError, "mapping"),
        ]
        specs: list[Any] = [GOOD]
        for spec, _, _ in bad:
            specs += [spec, GOOD]
        with pytest.raises(InvalidBatchError) as caught:
            manager.create_keys(specs)
        error = caught.value
        assert isinstance(error, KeyManagementError) and isinstance(error, ValueError)
        assert error.refused == len(bad) and error.total == len(specs)
        assert [index for index, _ in error.errors] == list(range(1, 2 * len(bad), 2))
        for (index, item_error), (_, kind, text) in zip(error.errors, bad, strict=True):
            assert isinstance(item_error, kind) and text in str(item_error), index
        assert str(error).startswith(f"{len(bad)} of {len(specs)} items refused, no key created")
        assert "item 1: unknown scope(s): read:invoices" in str(error)
        assert f"and {len(bad) - 5} more" in str(error) and A_KEY not in str(error)
        assert store.list_keys("team_1") == []

    def test_if_many_items_are_bad_then_all_counted_and_the_first_hundred_kept(
        self, manager: KeyManager
    ) -> None:
        with pytest.raises(InvalidBatchError) as caught:
            manager.create_keys([{**GOOD, "user_id": "stranger"}] * 250)
        assert caught.value.refused == 250 and len(caught.value.errors) == 100


class TestLifecycle:
    def test_if_listed_then_records_without_secrets(
        self, manager: KeyManager, clock: Clock
    ) -> None:
        _, a = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        clock.advance(1)
        _, b = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        manager.revoke_key(a.id)
        assert [k.id for k in manager.list_keys(team_id="team_1")] == [b.id, a.id]
        assert [k.id for k in manager.list_keys(team_id="team_1", include_inactive=False)] == [b.id]
        assert manager.get_key(a.id).status(datetime.fromtimestamp(clock.now, UTC)) == "revoked"

    def test_if_unknown_id_then_key_not_found(self, manager: KeyManager) -> None:
        for call in (manager.get_key, manager.revoke_key, manager.rotate_key):
            with pytest.raises(KeyNotFoundError):
                call("key_404")

    def test_if_rotating_a_revoked_key_then_refused(self, manager: KeyManager) -> None:
        _, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        manager.revoke_key(record.id)
        with pytest.raises(InvalidExpiryError, match="revoked"):
            manager.rotate_key(record.id)
        with pytest.raises(InvalidExpiryError):
            manager.rotate_key(record.id, grace=timedelta(seconds=-1))

    def test_if_rotated_then_new_key_has_the_same_lifetime_and_test_env(
        self, manager: KeyManager, clock: Clock
    ) -> None:
        _, old = manager.create_key(
            team_id="team_1",
            user_id="user_1",
            scopes=["read:calls"],
            expires_in=timedelta(days=30),
            environment="test",
        )
        clock.advance(timedelta(days=10))
        plaintext, new = manager.rotate_key(old.id, grace=timedelta(days=100))
        assert plaintext.startswith("sk_test_") and new.environment == "test"
        assert new.expires_at - new.created_at == timedelta(days=30)
        assert manager.get_key(old.id).expires_at == old.expires_at  # grace past its own expiry

    def test_if_rotated_again_during_the_first_grace_then_the_new_key_gets_a_full_lifetime(
        self, manager: KeyManager, clock: Clock
    ) -> None:
        """The second rotation's key does not die with the first rotation's grace."""
        _, old = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"], expires_in=timedelta(days=90)
        )
        _, first = manager.rotate_key(old.id, grace=timedelta(hours=24))
        clock.advance(timedelta(hours=1))
        key, second = manager.rotate_key(old.id, grace=timedelta(hours=24))
        assert second.expires_at - second.created_at == timedelta(days=90)
        assert first.expires_at - first.created_at == timedelta(days=90)
        clock.advance(timedelta(days=2))  # both graces are over: the old key is dead
        assert manager.get_key(old.id).status(second.created_at + timedelta(days=2)) == "expired"
        assert second.is_active(second.created_at + timedelta(days=2))

    def test_if_the_new_key_is_rotated_during_the_grace_then_a_full_lifetime_too(
        self, manager: KeyManager, clock: Clock
    ) -> None:
        _, old = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"], expires_in=timedelta(days=90)
        )
        _, first = manager.rotate_key(old.id)
        clock.advance(timedelta(hours=1))
        _, second = manager.rotate_key(first.id)
        assert second.expires_at - second.created_at == timedelta(days=90)


class TestPlaintextWhereAnIdBelongs:
    """A key pasted where an id, a team, a user or a name belongs is refused, never echoed and
    never stored."""

    def test_if_a_key_is_given_as_a_key_id_then_not_found_without_echo(
        self, manager: KeyManager
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        for call in (manager.get_key, manager.revoke_key, manager.rotate_key):
            with pytest.raises(KeyNotFoundError, match="it is an API key") as caught:
                call(key)
            assert key[8:24] not in str(caught.value)

    @pytest.mark.parametrize("field", ["team_id", "user_id"])
    def test_if_a_key_is_given_as_a_member_id_then_refused_and_nothing_stored(
        self, manager: KeyManager, store: MemoryKeyStore, field: str
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        ids = {"team_id": "team_2", "user_id": "user_2", field: key}
        with pytest.raises(ValueError, match=f"{field} holds an API key") as caught:
            manager.add_member(**ids)
        assert key[8:24] not in str(caught.value)
        assert key not in repr(vars(store))

    def test_if_a_key_is_given_as_a_name_then_refused(self, manager: KeyManager) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        with pytest.raises(ValueError, match="name holds an API key"):
            manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"], name=key)
        assert len(manager.list_keys(team_id="team_1")) == 1

    def test_if_a_key_is_found_by_its_plaintext_then_its_record_even_when_revoked(
        self, manager: KeyManager
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        manager.revoke_key(record.id)
        assert manager.find_key(key).id == record.id
        with pytest.raises(KeyNotFoundError, match="not a skaala_auth key"):
            manager.find_key(key[:-1] + ("A" if key[-1] != "A" else "B"))
        with pytest.raises(KeyNotFoundError, match="no key in this store"):
            manager.find_key(_other())

    def test_if_a_key_made_before_the_pepper_then_found_with_the_pepper(
        self, store: MemoryKeyStore
    ) -> None:
        manager = KeyManager(store)
        manager.add_member(team_id="t", user_id="u")
        key, record = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
        assert KeyManager(store, pepper="p" * 16).find_key(key).id == record.id


def _other() -> str:
    store = MemoryKeyStore()
    manager = KeyManager(store)
    manager.add_member(team_id="t", user_id="u")
    return manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])[0]


def test_if_an_unknown_id_is_revoked_then_nothing_is_written(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "k.db")
    before = _changes(tmp_path / "k.db")
    with pytest.raises(KeyNotFoundError):
        KeyManager(store).revoke_key("key_404")
    assert _changes(tmp_path / "k.db") == before
    store.close()


def _changes(path: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT * FROM changes").fetchall()


class TestMembers:
    def test_if_members_managed_then_roles_kept(self, manager: KeyManager) -> None:
        manager.add_member(team_id="team_1", user_id="user_2")
        assert manager.set_role(team_id="team_1", user_id="user_2", role="admin").role is Role.ADMIN
        member = manager.get_member(team_id="team_1", user_id="user_2")
        assert member is not None and member.role.can_manage_keys
        assert not Role.MEMBER.can_manage_keys
        assert [m.user_id for m in manager.list_members(team_id="team_1")] == ["user_1", "user_2"]
        manager.remove_member(team_id="team_1", user_id="user_2")
        with pytest.raises(NotAMemberError):
            manager.remove_member(team_id="team_1", user_id="user_2")
        with pytest.raises(NotAMemberError):
            manager.set_role(team_id="team_1", user_id="user_2", role="admin")

    @pytest.mark.parametrize(
        "kwargs",
        [{"team_id": "", "user_id": "u"}, {"team_id": "t", "user_id": "u", "role": "boss"}],
    )
    def test_if_bad_member_then_value_error(
        self, manager: KeyManager, kwargs: dict[str, str]
    ) -> None:
        with pytest.raises(ValueError):
            manager.add_member(**kwargs)  # type: ignore[arg-type]
