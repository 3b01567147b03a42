from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from skaala_auth import Authenticator, InvalidKeyError, KeyManager, SQLiteKeyStore
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
        assert rows == [(1,)]
        store.close()

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
