from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skaala_auth import (
    ApiKey,
    Authenticator,
    Hasher,
    InvalidKeyError,
    KeyManager,
    SQLiteKeyStore,
    display_prefix,
    generate_key,
)
from skaala_auth.stores import sqlite as sqlite_module
from skaala_auth.stores.base import Change


class TestSchema:
    def test_if_new_file_then_wal_and_versioned_schema(self, tmp_path: Path) -> None:
        store = SQLiteKeyStore(tmp_path / "k.db")
        assert store.schema_version == len(sqlite_module.MIGRATIONS)
        conn = sqlite3.connect(tmp_path / "k.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(api_keys)")}
        assert any("autoindex" in name for name in indexes)  # the UNIQUE digest index
        plan = " ".join(
            str(row)
            for row in conn.execute("EXPLAIN QUERY PLAN SELECT id FROM api_keys WHERE digest = 'x'")
        )
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
        store.close()

    def test_if_reopened_then_not_migrated_again(self, tmp_path: Path) -> None:
        SQLiteKeyStore(tmp_path / "k.db").close()
        store = SQLiteKeyStore(tmp_path / "k.db")
        rows = store._reader.execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(number,) for number in range(1, len(sqlite_module.MIGRATIONS) + 1)]
        store.close()

    def test_if_file_has_the_first_schema_then_upgraded_on_open_with_its_data(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "k.db"
        key = generate_key()
        record = ApiKey(
            id="key_old",
            team_id="t",
            user_id="u",
            name="",
            scopes=frozenset({"read:calls"}),
            prefix=display_prefix(key),
            created_at=datetime(2024, 1, 1, tzinfo=UTC),
            expires_at=datetime(2124, 1, 1, tzinfo=UTC),
        )
        with monkeypatch.context() as patch:  # a file written by the release before migration 2
            patch.setattr(sqlite_module, "MIGRATIONS", sqlite_module.MIGRATIONS[:1])
            patch.setattr(sqlite_module, "_PRUNE_SQL", "SELECT max(seq) FROM changes WHERE at < ?")
            old = SQLiteKeyStore(path)
            KeyManager(old).add_member(team_id="t", user_id="u")
            with old._write() as conn:  # that release's row: twelve columns
                conn.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    sqlite_module._key_row(record, Hasher().stored_digest(key))[:12],
                )
                old._log_change(conn, Change("key", key_id=record.id))
            assert old.schema_version == 1
            old.close()
        assert "changes_at" not in _indexes(path, "changes")

        store = SQLiteKeyStore(path)
        assert store.schema_version == len(sqlite_module.MIGRATIONS) == 3
        assert "changes_at" in _indexes(path, "changes")
        assert KeyManager(store).find_key(key) == record  # no policy: every new column NULL
        logged = store._reader.execute("SELECT kind, key_id FROM changes").fetchall()
        assert logged == [("member", None), ("key", record.id)]
        with Authenticator(store) as auth:
            assert auth.verify(key).key_id == record.id
        # The upgraded file keeps policies.
        manager = KeyManager(store)
        manager.disable_key(record.id)
        manager.update_key(record.id, rate_limit="5/minute", metadata={"plan": "pro"})
        reread = SQLiteKeyStore(path).get_key(record.id)
        assert reread is not None and reread.status(datetime.now(UTC)) == "disabled"
        assert str(reread.rate_limit) == "5/60s" and dict(reread.metadata) == {"plan": "pro"}
        store.close()


DAY = timedelta(days=1)


def _count(store: SQLiteKeyStore, table: str) -> int:
    return int(store._reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def _indexes(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA index_list({table})")}
    finally:
        conn.close()


def _write_path(store: SQLiteKeyStore) -> list[str]:
    """Every statement the writes of a key's life run: create, use, re-hash, rotate, revoke,
    and a membership added, changed and removed."""
    statements: list[str] = []
    store._writer.set_trace_callback(statements.append)
    store._reader.set_trace_callback(statements.append)
    manager = KeyManager(store)
    manager.add_member(team_id="t", user_id="v")
    manager.set_role(team_id="t", user_id="v", role="admin")
    _, record = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
    store.record_last_used({record.id: datetime.now(UTC)})
    store.update_digest(record.id, "sha256$gone", "sha256$new")
    _, successor = manager.rotate_key(record.id)
    manager.revoke_key(successor.id)
    manager.remove_member(team_id="t", user_id="v")
    store._writer.set_trace_callback(None)
    store._reader.set_trace_callback(None)
    return [s for s in statements if s.split()[0] in ("SELECT", "INSERT", "UPDATE", "DELETE")]


def _batch(count: int) -> list[tuple[ApiKey, str]]:
    now = datetime.now(UTC)
    scopes = frozenset({"read:calls"})
    return [
        (ApiKey(f"key_{n}", "t", "u", "", scopes, "p", now, now + DAY), f"sha256${n:064x}")
        for n in range(count)
    ]


class TestBulkInsert:
    @pytest.fixture
    def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteKeyStore]:
        monkeypatch.setattr(sqlite_module, "BULK_CHUNK", 3)
        store = SQLiteKeyStore(tmp_path / "k.db")
        KeyManager(store).add_member(team_id="t", user_id="u")
        yield store
        store.close()

    def test_if_more_than_a_chunk_then_all_inserted_and_the_cache_size_restored(
        self, store: SQLiteKeyStore
    ) -> None:
        usual = store._writer.execute("PRAGMA cache_size").fetchone()[0]
        batch = _batch(10)
        store.insert_keys(reversed(batch))
        assert all(store.find_key(digest) is not None for _, digest in batch)
        assert store._writer.execute("PRAGMA cache_size").fetchone()[0] == usual
        assert _count(store, "changes") == 2  # the member, the batch

    def test_if_the_pairs_fail_in_a_later_chunk_then_none_inserted_and_cache_restored(
        self, store: SQLiteKeyStore
    ) -> None:
        usual = store._writer.execute("PRAGMA cache_size").fetchone()[0]

        def pairs() -> Iterator[tuple[ApiKey, str]]:
            yield from _batch(7)
            raise RuntimeError("the source broke")

        with pytest.raises(RuntimeError, match="source broke"):
            store.insert_keys(pairs())
        assert _count(store, "api_keys") == 0 and _count(store, "changes") == 1
        assert store._writer.execute("PRAGMA cache_size").fetchone()[0] == usual

    def test_if_a_digest_clashes_in_a_later_chunk_then_none_inserted(
        self, store: SQLiteKeyStore
    ) -> None:
        batch = _batch(8)
        with pytest.raises(sqlite3.IntegrityError):
            store.insert_keys([*batch, (_batch(9)[8][0], batch[0][1])])
        assert _count(store, "api_keys") == 0


class TestGrowth:
    """Writes cost the same in a big store: no statement walks a table or the change log."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteKeyStore]:
        store = SQLiteKeyStore(tmp_path / "k.db")
        KeyManager(store).add_member(team_id="t", user_id="u")
        yield store
        store.close()

    def test_if_a_key_lives_its_life_then_every_statement_uses_an_index(
        self, store: SQLiteKeyStore
    ) -> None:
        statements = _write_path(store)
        assert any("INDEXED BY changes_at" in s for s in statements)  # the prune ran
        for statement in statements:
            plan = store._reader.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
            scans = [row[3] for row in plan if row[3].startswith("SCAN")]
            assert scans == [], statement

    def test_if_the_change_log_is_long_then_a_write_runs_as_few_steps_as_in_a_short_one(
        self, store: SQLiteKeyStore
    ) -> None:
        """Counted in SQLite virtual-machine steps, not timed: a walk over the log's rows (the
        prune before migration 2) shows as tens of thousands of steps."""

        def steps() -> int:
            count = 0

            def tick() -> int:
                nonlocal count
                count += 1
                return 0

            store._writer.set_progress_handler(tick, 1)
            KeyManager(store).create_key(team_id="t", user_id="u", scopes=["read:calls"])
            store._writer.set_progress_handler(None, 1)
            return count

        short = steps()
        recent = sqlite_module._micros(datetime.now(UTC))
        store._writer.executemany(
            "INSERT INTO changes (kind, key_id, at) VALUES ('key', ?, ?)",
            ((f"key_{n}", recent) for n in range(20_000)),
        )
        long = steps()
        assert long < short * 1.5, (short, long)

    def test_if_file_is_newer_than_the_library_then_clear_error(self, tmp_path: Path) -> None:
        SQLiteKeyStore(tmp_path / "k.db").close()
        conn = sqlite3.connect(tmp_path / "k.db")
        conn.execute("INSERT INTO schema_version VALUES (99)")
        conn.commit()
        conn.close()
        with pytest.raises(RuntimeError, match="upgrade skaala_auth"):
            SQLiteKeyStore(tmp_path / "k.db")

    def test_if_memory_path_then_works(self) -> None:
        store = SQLiteKeyStore(":memory:")
        seen: list[Change] = []
        store.subscribe(seen.append)
        KeyManager(store).add_member(team_id="t", user_id="u")
        assert len(store.list_members("t")) == 1
        store.poll_changes()  # one connection: its own writes are not "another's"
        assert seen == [Change("member", team_id="t", user_id="u")]
        assert repr(store) == "SQLiteKeyStore(':memory:')"


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60)


class TestAcrossProcesses:
    def test_if_another_process_revokes_then_refused_within_a_second(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        store = SQLiteKeyStore(path)
        manager = KeyManager(store)
        manager.add_member(team_id="t", user_id="u")
        key, record = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
        with Authenticator(store, cache_ttl=30) as auth:
            auth.verify(key)  # now cached for 30 s
            _run(
                f"""
                from skaala_auth import KeyManager, SQLiteKeyStore
                KeyManager(SQLiteKeyStore({str(path)!r})).revoke_key({record.id!r})
                """
            )
            revoked_at = time.monotonic()
            while True:
                try:
                    auth.verify(key)
                except InvalidKeyError:
                    break
                assert time.monotonic() - revoked_at < 1.0, "still accepted after 1 s"
                time.sleep(0.02)
        store.close()

    def test_if_another_process_removes_the_member_then_seen(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        store = SQLiteKeyStore(path)
        seen: list[Change] = []
        store.subscribe(seen.append)
        _run(
            f"""
            from skaala_auth import KeyManager, SQLiteKeyStore
            m = KeyManager(SQLiteKeyStore({str(path)!r}))
            m.add_member(team_id="t", user_id="u")
            m.remove_member(team_id="t", user_id="u")
            """
        )
        store.poll_changes()
        assert Change("member", team_id="t", user_id="u") in seen
        seen.clear()
        store.poll_changes()  # nothing new
        assert seen == []
        store.close()

    def test_if_change_log_was_pruned_past_us_then_everything_dropped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "k.db"
        store = SQLiteKeyStore(path)
        seen: list[Change] = []
        store.subscribe(seen.append)
        other = SQLiteKeyStore(path)
        KeyManager(other).add_member(team_id="t", user_id="u")
        other._writer.execute("UPDATE changes SET at = 0")  # make them ancient
        KeyManager(other).add_member(team_id="t", user_id="v")  # prunes them
        store.poll_changes()
        assert seen == [Change("all")]
        other.close()
        store.close()

    def test_if_another_store_imports_keys_then_one_change_and_unknown_digests_forgotten(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "k.db"
        store, other = SQLiteKeyStore(path), SQLiteKeyStore(path)
        KeyManager(store).add_member(team_id="t", user_id="u")
        plaintexts = [generate_key() for _ in range(1000)]
        now = datetime.now(UTC)
        batch = [
            (
                ApiKey(f"key_{n}", "t", "u", "", frozenset({"read:calls"}), "p", now, now + DAY),
                Hasher().stored_digest(plaintext),
            )
            for n, plaintext in enumerate(plaintexts)
        ]
        with Authenticator(store) as auth:
            with pytest.raises(InvalidKeyError):
                auth.verify(plaintexts[0])  # remembered as unknown
            logged = _count(store, "changes")
            other.insert_keys(batch)
            assert _count(store, "changes") == logged + 1
            seen: list[Change] = []
            store.subscribe(seen.append)
            store.poll_changes()
            assert seen == [Change("key")]
            assert auth.verify(plaintexts[0]).key_id == "key_0"
            assert auth.verify(plaintexts[-1]).key_id == "key_999"
        other.close()
        store.close()

    def test_if_several_processes_write_at_once_then_nothing_lost(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        SQLiteKeyStore(path).close()
        code = textwrap.dedent(
            f"""
            import sys
            from skaala_auth import KeyManager, SQLiteKeyStore
            m = KeyManager(SQLiteKeyStore({str(path)!r}))
            n = sys.argv[1]
            m.add_member(team_id="t", user_id="u" + n)
            for _ in range(20):
                m.create_key(team_id="t", user_id="u" + n, scopes=["read:calls"])
            """
        )
        procs = [subprocess.Popen([sys.executable, "-c", code, str(i)]) for i in range(3)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
        store = SQLiteKeyStore(path)
        assert len(store.list_keys("t")) == 60
        store.close()


def test_if_process_exits_without_close_then_last_used_is_flushed(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = SQLiteKeyStore(path)
    manager = KeyManager(store)
    manager.add_member(team_id="t", user_id="u")
    key, record = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
    code = textwrap.dedent(
        f"""
        import sys
        from skaala_auth import Authenticator, SQLiteKeyStore
        auth = Authenticator(SQLiteKeyStore({str(path)!r}), last_used_interval=3600)
        auth.verify(sys.stdin.readline().strip())
        # no close(): the atexit hook must write the pending mark
        """
    )
    subprocess.run([sys.executable, "-c", code], input=key + "\n", text=True, check=True)
    stored = store.get_key(record.id)
    assert stored is not None and stored.last_used_at is not None
    store.close()
