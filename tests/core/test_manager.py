from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skaala_auth import (
    InvalidExpiryError,
    KeyManager,
    KeyNotFoundError,
    MemoryKeyStore,
    NotAMemberError,
    Role,
    ScopeRegistry,
    SQLiteKeyStore,
    UnknownScopeError,
)

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
