"""The SQLite store on its worst days: a writer elsewhere, a file swapped or deleted underneath,
rows it cannot use, a corrupted file, and the modes of the files it creates.

Real files and real second processes throughout; nothing here mocks the store.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    KeyManager,
    SQLiteKeyStore,
    StoreUnavailableError,
)
from skaala_auth.lastused import LastUsedRecorder
from skaala_auth.stores import sqlite as sqlite_module
from skaala_auth.stores.base import Change
from skaala_auth.stores.sqlite import DatabaseFileError, InvalidRowError


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60)


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock (``BEGIN IMMEDIATE``) until the block ends."""
    code = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def _store_with_key(path: Path, timeout: float = 5.0) -> tuple[SQLiteKeyStore, str, str]:
    store = SQLiteKeyStore(path, timeout=timeout)
    manager = KeyManager(store)
    manager.add_member(team_id="t", user_id="u")
    key, record = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
    return store, key, record.id


class TestWriterElsewhere:
    def test_if_a_flush_waits_for_the_write_lock_then_cold_look_ups_do_not(
        self, tmp_path: Path
    ) -> None:
        """A last-used flush stuck behind another process's writer never delays a look-up."""
        timeout = 2.0
        path = tmp_path / "k.db"
        store, key, key_id = _store_with_key(path, timeout=timeout)
        with Authenticator(store, last_used_interval=3600) as auth:
            auth.last_used.mark(key_id, time.time())
            with write_lock_held(path):
                flusher = threading.Thread(target=auth.last_used.flush)
                flusher.start()
                time.sleep(0.2)
                assert flusher.is_alive(), "the flush should be waiting for the write lock"
                started = time.monotonic()
                auth.verify(key)  # cold: nothing cached yet
                elapsed = time.monotonic() - started
                flusher.join(timeout=10)
            assert elapsed < timeout / 4, f"a cold look-up waited {elapsed:.2f} s"
            assert key_id in auth.last_used.pending()  # the failed batch is kept for later
        stored = store.get_key(key_id)
        assert stored is not None and stored.last_used_at is not None  # close() wrote it
        store.close()

    def test_if_the_write_lock_is_held_then_polling_does_not_wait_either(
        self, tmp_path: Path
    ) -> None:
        timeout = 2.0
        path = tmp_path / "k.db"
        store, _, key_id = _store_with_key(path, timeout=timeout)
        with write_lock_held(path):
            failures: list[BaseException] = []

            def revoke() -> None:
                try:
                    store.revoke_key(key_id, datetime.now(UTC))
                except sqlite3.OperationalError as error:  # "database is locked"
                    failures.append(error)

            writer = threading.Thread(target=revoke)
            writer.start()
            time.sleep(0.2)
            started = time.monotonic()
            store.poll_changes()
            assert store.get_member("t", "u") is not None
            elapsed = time.monotonic() - started
            writer.join(timeout=10)
        assert elapsed < timeout / 4
        assert len(failures) == 1
        store.close()


class TestFileReplaced:
    def test_if_file_replaced_then_reopened_and_its_revocations_arrive(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "k.db"
        store, key, key_id = _store_with_key(path)
        seen: list[Change] = []
        store.subscribe(seen.append)
        with Authenticator(store, cache_ttl=30) as auth:
            auth.verify(key)  # cached for 30 s
            # Another process restores a copy in which the key is revoked, and moves it over the
            # live file (a new inode at the same path).
            _run(
                f"""
                import os, sqlite3
                from skaala_auth import KeyManager, SQLiteKeyStore
                live = sqlite3.connect({str(path)!r})
                copy = sqlite3.connect({str(tmp_path / "new.db")!r})
                live.backup(copy)
                live.close(); copy.close()
                replacement = SQLiteKeyStore({str(tmp_path / "new.db")!r})
                KeyManager(replacement).revoke_key({key_id!r})
                replacement.close()
                os.replace({str(tmp_path / "new.db")!r}, {str(path)!r})
                """
            )
            replaced_at = time.monotonic()
            while True:
                try:
                    auth.verify(key)
                except InvalidKeyError:
                    break
                assert time.monotonic() - replaced_at < 1.0, "still accepted after 1 s"
                time.sleep(0.02)
        assert Change("all") in seen
        assert os.stat(path).st_ino == store._identity[1]
        # the reopened store writes to the new file
        KeyManager(store).add_member(team_id="t", user_id="v")
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM members WHERE user_id = 'v'").fetchone() == (1,)
        conn.close()
        store.close()

    def test_if_file_deleted_then_fail_closed_and_logged_with_the_path(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "k.db"
        store, key, key_id = _store_with_key(path)
        with Authenticator(store, cache_ttl=30) as auth:
            auth.verify(key)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            with caplog.at_level(logging.ERROR, logger="skaala_auth.store"):
                with pytest.raises(DatabaseFileError, match="deleted"):
                    store.poll_changes()
            assert str(path) in caplog.text
            with pytest.raises(DatabaseFileError, match=str(path)):
                store.find_key("sha256$anything")
            deleted_at = time.monotonic()
            while True:  # the authenticator's next poll (poll_interval) drops its cache
                try:
                    auth.verify(key)
                except StoreUnavailableError:
                    break
                assert time.monotonic() - deleted_at < 1.0, "still accepted after 1 s"
                time.sleep(0.02)
            assert not path.exists()  # a look-up never recreates an empty store

            # The file comes back (restored from a backup): the store reopens it.
            SQLiteKeyStore(path).close()
            store.poll_changes()
            assert store.find_key("sha256$anything") is None
        store.close()

    def test_if_replaced_by_a_damaged_file_then_fail_closed_until_a_good_one_arrives(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "k.db"
        store, _, _ = _store_with_key(path)
        damaged = tmp_path / "damaged.db"
        damaged.write_bytes(b"not a database\n" * 500)
        os.replace(damaged, path)
        with caplog.at_level(logging.ERROR, logger="skaala_auth.store"):
            with pytest.raises(DatabaseFileError, match="not an SQLite database"):
                store.poll_changes()
        assert "could not reopen" in caplog.text and str(path) in caplog.text
        with pytest.raises(DatabaseFileError):
            store.get_member("t", "u")
        with pytest.raises(DatabaseFileError):
            store.poll_changes()  # the same bad file: no retry, still closed
        good = tmp_path / "good.db"
        replacement = SQLiteKeyStore(good)
        KeyManager(replacement).add_member(team_id="t", user_id="w")
        replacement.close()  # checkpointed: everything is in the file that moves
        os.replace(good, path)
        store.poll_changes()
        assert store.get_member("t", "w") is not None
        store.close()

    def test_if_content_restored_in_place_then_everything_dropped(self, tmp_path: Path) -> None:
        """An online restore (``sqlite3 k.db ".restore backup.db"``) keeps the inode but moves the
        change log back: the store cannot tell what changed."""
        path = tmp_path / "k.db"
        store, _, _ = _store_with_key(path)
        backup = tmp_path / "backup.db"
        source = sqlite3.connect(path)
        target = sqlite3.connect(backup)
        source.backup(target)
        source.close()
        target.close()
        manager = KeyManager(SQLiteKeyStore(path))
        for user in ("a", "b", "c"):
            manager.add_member(team_id="t", user_id=user)
        store.poll_changes()
        seen: list[Change] = []
        store.subscribe(seen.append)
        live = sqlite3.connect(path)
        restored = sqlite3.connect(backup)
        restored.backup(live)
        restored.close()
        live.close()
        store.poll_changes()
        assert seen == [Change("all")]
        store.close()


_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(1_600_000_000_000_000, 1_900_000_000_000_000),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["read:calls", "read:calls write:calls", " read:calls ", "READ:calls"]),
    st.binary(max_size=4),
)
#: An api_keys row as any tool might have written it: any SQLite value in any column, mostly
#: plausible ones.
_ROWS = st.tuples(
    *(
        st.one_of(plausible, _VALUES)
        for plausible in (
            st.just("key_1"),
            st.just("t"),
            st.just("u"),
            st.just("name"),
            st.sampled_from(["read:calls", "read:calls write:calls", ""]),
            st.just("sk_live_AbCd…wxyz"),
            st.integers(1_700_000_000_000_000, 1_800_000_000_000_000),
            st.integers(1_700_000_000_000_000, 1_900_000_000_000_000),
            st.one_of(st.none(), st.integers(1_700_000_000_000_000, 1_900_000_000_000_000)),
            st.one_of(st.none(), st.integers(1_700_000_000_000_000, 1_900_000_000_000_000)),
            st.one_of(st.none(), st.just("key_0")),
            # the policy columns: mostly none, as most keys have
            st.one_of(st.none(), st.integers(1_700_000_000_000_000, 1_900_000_000_000_000)),
            st.one_of(st.none(), st.sampled_from(["5/60s", "5/minute", "five"])),
            st.one_of(st.none(), st.integers(-1, 3)),
            st.one_of(st.none(), st.sampled_from(["10.0.0.0/8", "10.0.0.0/8 ::1", "10.0.0.1/8"])),
            st.one_of(st.none(), st.sampled_from(['{"a":1}', "[1]", "{", ""])),
        )
    )
)


def _hand_made(path: Path, **overrides: object) -> SQLiteKeyStore:
    """A store file whose one key row was written by some other tool, with ``overrides``."""
    SQLiteKeyStore(path).close()
    conn = sqlite3.connect(path)
    # the columns as another tool might have declared them: no NOT NULL, no types
    conn.executescript(
        """
        ALTER TABLE api_keys RENAME TO old_keys;
        CREATE TABLE api_keys (id, digest UNIQUE, team_id, user_id, name, scopes, prefix,
                               created_at, expires_at, revoked_at, last_used_at, rotated_from,
                               disabled_at, rate_limit, remaining, allowed_ips, metadata);
        DROP TABLE old_keys;
        """
    )
    row: dict[str, object] = {
        "id": "key_odd",
        "digest": "sha256$secretdigest",
        "team_id": "t",
        "user_id": "u",
        "name": "odd",
        "scopes": "read:calls",
        "prefix": "sk_live_AbCd…wxyz",
        "created_at": 1_700_000_000_000_000,
        "expires_at": 1_900_000_000_000_000,
        "revoked_at": None,
        "last_used_at": None,
        "rotated_from": None,
    }
    row.update(overrides)
    conn.execute(
        f"INSERT INTO api_keys ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
        tuple(row.values()),
    )
    conn.commit()
    conn.close()
    return SQLiteKeyStore(path)


class TestOddRows:
    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"expires_at": None}, id="null-expiry"),
            pytest.param({"expires_at": "2030-01-01"}, id="text-expiry"),
            pytest.param({"expires_at": 2**62}, id="expiry-out-of-range"),
            pytest.param({"created_at": 1.5}, id="float-creation"),
            pytest.param({"scopes": None}, id="null-scopes"),
            pytest.param({"scopes": 42}, id="number-scopes"),
            pytest.param({"scopes": '["read:calls"]'}, id="json-scopes"),
            pytest.param({"team_id": None}, id="null-team"),
            pytest.param({"name": b"bytes"}, id="blob-name"),
            pytest.param({"revoked_at": "yesterday"}, id="text-revocation"),
            pytest.param({"rotated_from": 7}, id="number-rotated-from"),
            pytest.param({"disabled_at": "today"}, id="text-disabled"),
            pytest.param({"rate_limit": "lots"}, id="junk-rate-limit"),
            pytest.param({"remaining": -1}, id="negative-remaining"),
            pytest.param({"remaining": "3"}, id="text-remaining"),
            pytest.param({"allowed_ips": "10.0.0.0/33"}, id="junk-network"),
            pytest.param({"metadata": "[1, 2]"}, id="metadata-not-an-object"),
            pytest.param({"metadata": 5}, id="number-metadata"),
        ],
    )
    def test_if_a_row_cannot_be_a_key_then_a_clear_error_naming_the_id(
        self, tmp_path: Path, overrides: dict[str, object]
    ) -> None:
        store = _hand_made(tmp_path / "k.db", **overrides)
        reads = [
            lambda: store.find_key("sha256$secretdigest"),
            lambda: store.get_key("key_odd"),
        ]
        if "team_id" not in overrides:
            reads.append(lambda: store.list_keys("t"))
        for read in reads:
            with pytest.raises(InvalidRowError, match="key_odd") as caught:
                read()
            assert "secretdigest" not in str(caught.value)
            assert caught.value.key_id == "key_odd"
        store.close()

    def test_if_a_row_has_no_usable_id_then_the_error_says_so_without_the_digest(
        self, tmp_path: Path
    ) -> None:
        store = _hand_made(tmp_path / "k.db", id=None)
        with pytest.raises(InvalidRowError, match="id") as caught:
            store.find_key("sha256$secretdigest")
        assert "secretdigest" not in str(caught.value)
        store.close()

    @settings(max_examples=400, deadline=None)
    @given(row=_ROWS)
    def test_if_any_row_then_the_fast_path_agrees_with_the_checked_one(
        self, row: tuple[object, ...]
    ) -> None:
        """find_key's conversion tests all types at once and hands any doubt to the column by
        column checks: it must accept exactly the rows they accept, and build the same key."""
        try:
            checked: object = sqlite_module._checked_key(row, "k.db")
        except InvalidRowError as error:
            checked = str(error)
        for _ in range(2):  # cold, then with the scopes remembered
            try:
                fast: object = sqlite_module._key(row, "k.db")
            except InvalidRowError as error:
                fast = str(error)
            assert fast == checked

    @pytest.mark.parametrize("role", ["superuser", "", 1, None])
    def test_if_a_role_is_odd_then_a_clear_error_or_no_role(
        self, tmp_path: Path, role: object
    ) -> None:
        path = tmp_path / "k.db"
        store, key, key_id = _store_with_key(path)
        conn = sqlite3.connect(path)
        conn.executescript(  # the members table as another tool might have made it
            "ALTER TABLE members RENAME TO old_members;"
            "CREATE TABLE members (team_id, user_id, role, added_at,"
            "                      PRIMARY KEY (team_id, user_id));"
            "DROP TABLE old_members;"
        )
        conn.execute("INSERT INTO members VALUES ('t', 'u', ?, 0)", (role,))
        conn.commit()
        conn.close()
        digest = KeyManager(store).hasher.stored_digest(key)
        if role is None:
            record = store.find_key(digest)
            assert record is not None and record.role is None
        else:
            with pytest.raises(InvalidRowError, match=f"{key_id}.*role"):
                store.find_key(digest)
        store.close()

    def test_if_a_row_is_odd_then_the_authenticator_answers_503(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        store, key, key_id = _store_with_key(path)
        conn = sqlite3.connect(path)
        conn.execute("UPDATE api_keys SET expires_at = 'soon' WHERE id = ?", (key_id,))
        conn.commit()
        conn.close()
        with Authenticator(store) as auth, pytest.raises(StoreUnavailableError) as caught:
            auth.verify(key)
        assert isinstance(caught.value.__cause__, InvalidRowError)
        store.close()


def _corrupt(path: Path) -> None:
    """Overwrite every page after the first with junk, as a failing disk or a stray ``dd``
    would."""
    size = path.stat().st_size
    page = 4096
    assert size > page
    with open(path, "r+b") as file:
        file.seek(page)
        file.write(bytes([0xA5]) * (size - page))


def _many_keys(path: Path) -> str:
    """A closed store (checkpointed: everything in the main file) with enough keys to span
    pages; returns one key."""
    store = SQLiteKeyStore(path)
    manager = KeyManager(store)
    manager.add_member(team_id="t", user_id="u")
    key = ""
    for _ in range(100):
        key, _ = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
    store.close()
    assert not Path(f"{path}-wal").exists()
    return key


class TestCorruption:
    def test_if_the_file_is_corrupt_then_the_constructor_names_the_file_and_the_fix(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "k.db"
        _many_keys(path)
        _corrupt(path)
        with pytest.raises(DatabaseFileError) as caught:
            SQLiteKeyStore(path)
        message = str(caught.value)
        assert str(path) in message
        assert "integrity_check" in message and "backup" in message
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    def test_if_the_file_is_not_a_database_then_the_constructor_says_so(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "k.db"
        path.write_bytes(b"this is a text file, not a database\n" * 200)
        with pytest.raises(DatabaseFileError, match="not an SQLite database"):
            SQLiteKeyStore(path)

    def test_if_corrupted_while_running_then_fail_closed_and_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "k.db"
        key = _many_keys(path)
        store = SQLiteKeyStore(path)
        assert store.get_member("t", "u") is not None  # a page now in SQLite's page cache
        _corrupt(path)
        with Authenticator(store) as auth:
            with caplog.at_level(logging.ERROR, logger="skaala_auth.store"):
                with pytest.raises(StoreUnavailableError) as caught:
                    auth.verify(key)
            assert isinstance(caught.value.__cause__, DatabaseFileError)
            assert str(path) in caplog.text and "integrity_check" in caplog.text
            # Everything fails closed now, even what SQLite could still answer from its cache.
            with pytest.raises(DatabaseFileError):
                store.get_member("t", "u")
            with pytest.raises(DatabaseFileError):
                store.poll_changes()
        store.close()


class TestCannotOpen:
    def test_if_the_directory_is_missing_then_the_error_names_the_path(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "no-such-dir" / "k.db"
        with pytest.raises(DatabaseFileError, match="cannot create the key database"):
            SQLiteKeyStore(path)
        assert not path.parent.exists()

    def test_if_the_path_is_a_directory_then_the_error_names_it(self, tmp_path: Path) -> None:
        with pytest.raises(DatabaseFileError, match=f"cannot open the key database {tmp_path}"):
            SQLiteKeyStore(tmp_path)

    def test_if_a_member_row_is_odd_then_a_clear_error(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        store, _, _ = _store_with_key(path)
        conn = sqlite3.connect(path)
        conn.execute("UPDATE members SET added_at = 'long ago'")
        conn.commit()
        conn.close()
        with pytest.raises(InvalidRowError, match="member row"):
            store.get_member("t", "u")
        store.close()


class TestFileModes:
    def test_if_created_then_database_and_wal_files_are_private(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        old = os.umask(0o022)
        try:
            store, _, _ = _store_with_key(path)
        finally:
            os.umask(old)
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
            assert mode == 0o600, f"{path}{suffix} is {mode:o}"
        store.close()

    def test_if_the_file_exists_then_its_mode_is_left_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "k.db"
        SQLiteKeyStore(path).close()
        path.chmod(0o640)
        SQLiteKeyStore(path).close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640

    def test_if_memory_store_then_no_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        SQLiteKeyStore(":memory:").close()
        assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 shell")
def test_if_operator_runs_integrity_check_then_it_reports_the_damage(tmp_path: Path) -> None:
    """The command the error message recommends works on the damaged file."""
    path = tmp_path / "k.db"
    _many_keys(path)
    _corrupt(path)
    result = subprocess.run(
        ["sqlite3", str(path), "PRAGMA integrity_check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "ok" != result.stdout.strip()


def test_if_flushes_keep_failing_then_one_traceback_per_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that stays down fails every flush: the log gets one traceback, then one line."""
    path = tmp_path / "k.db"
    store, _, key_id = _store_with_key(path)
    recorder = LastUsedRecorder(store, interval=3600)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(DatabaseFileError):
        store.poll_changes()
    with caplog.at_level(logging.INFO, logger="skaala_auth.lastused"):
        for _ in range(3):
            recorder.mark(key_id, time.time())
            assert recorder.flush() == 0
        records = [r for r in caplog.records if r.name == "skaala_auth.lastused"]
        assert [bool(r.exc_info) for r in records] == [True, False, False]
        assert "was deleted" in records[-1].getMessage()
        SQLiteKeyStore(path).close()
        store.poll_changes()  # the file is back: reopened (an empty store, but a usable one)
        assert recorder.flush() == 1
        assert caplog.records[-1].getMessage() == "recorded last-used times again"
    recorder.close()
    store.close()
