"""Measure what clients get when the SQLite store has a bad day (the figures in
docs/operations.md). Not a test: run it by hand, on real files and a real second process::

    PYTHONPATH=. python tests/stores/measure_sqlite_faults.py

Each line: the fault, what a request got, and how long it took.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from skaala_auth import (
    Authenticator,
    AuthError,
    KeyManager,
    SQLiteKeyStore,
)


def _setup(path: Path, timeout: float = 5.0) -> tuple[SQLiteKeyStore, str, str]:
    store = SQLiteKeyStore(path, timeout=timeout)
    manager = KeyManager(store)
    manager.add_member(team_id="t", user_id="u")
    key = ""
    key_id = ""
    for _ in range(100):  # enough rows to span several pages
        key, record = manager.create_key(team_id="t", user_id="u", scopes=["read:calls"])
        key_id = record.id
    return store, key, key_id


def _answer(auth: Authenticator, key: str) -> str:
    try:
        auth.verify(key)
    except AuthError as error:
        return f"{error.status_code} {type(error).__name__}"
    return "200"


def _until(auth: Authenticator, key: str, wanted: str, limit: float = 5.0) -> float:
    started = time.monotonic()
    while _answer(auth, key) != wanted:
        if time.monotonic() - started > limit:
            return float("inf")
        time.sleep(0.005)
    return time.monotonic() - started


def locked_writer(tmp: Path) -> None:
    path = tmp / "lock.db"
    store, key, key_id = _setup(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdout.readline()
    with Authenticator(store, last_used_interval=3600) as auth:
        auth.last_used.mark(key_id, time.time())
        flusher = threading.Thread(target=auth.last_used.flush)
        flusher.start()
        time.sleep(0.2)
        started = time.monotonic()
        answer = _answer(auth, key)
        elapsed = time.monotonic() - started
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
        flusher.join()
    print(
        f"write lock held elsewhere, flush waiting (busy_timeout 5 s): "
        f"cold look-up {answer} in {elapsed * 1000:.1f} ms"
    )
    store.close()


def replaced(tmp: Path) -> None:
    path = tmp / "replaced.db"
    store, key, key_id = _setup(path)
    copy = tmp / "copy.db"
    live, target = sqlite3.connect(path), sqlite3.connect(copy)
    live.backup(target)
    live.close()
    target.close()
    other = SQLiteKeyStore(copy)
    KeyManager(other).revoke_key(key_id)
    other.close()
    with Authenticator(store, cache_ttl=30) as auth:
        assert _answer(auth, key) == "200"
        os.replace(copy, path)
        elapsed = _until(auth, key, "401 InvalidKeyError")
    print(f"file replaced by a copy with the key revoked: 401 after {elapsed * 1000:.0f} ms")
    store.close()


def deleted(tmp: Path) -> None:
    path = tmp / "deleted.db"
    store, key, _ = _setup(path)
    with Authenticator(store, cache_ttl=30) as auth:
        assert _answer(auth, key) == "200"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        elapsed = _until(auth, key, "503 StoreUnavailableError")
    print(f"file deleted: 503 after {elapsed * 1000:.0f} ms")
    store.close()


def corrupted(tmp: Path) -> None:
    path = tmp / "corrupt.db"
    store, key, _ = _setup(path)
    store.close()
    store = SQLiteKeyStore(path)
    with Authenticator(store) as auth:
        size = path.stat().st_size
        with open(path, "r+b") as file:
            file.seek(4096)
            file.write(b"\xa5" * (size - 4096))
        started = time.monotonic()
        first = _answer(auth, key)
        elapsed = time.monotonic() - started
        member = "refused" if _refused(store) else "answered from the page cache"
    print(
        f"file corrupted under a running store: cold look-up {first} in {elapsed * 1000:.1f} ms; "
        f"a cached page afterwards: {member}"
    )
    store.close()
    try:
        SQLiteKeyStore(path).close()
    except sqlite3.DatabaseError as error:
        print(f"restart on the corrupted file: {type(error).__name__}: {error}")
    else:
        print("restart on the corrupted file: opened")


def _refused(store: SQLiteKeyStore) -> bool:
    try:
        store.get_member("t", "u")
    except sqlite3.DatabaseError:
        return True
    return False


def modes(tmp: Path) -> None:
    path = tmp / "modes.db"
    old = os.umask(0o022)
    try:
        store, _, _ = _setup(path)
    finally:
        os.umask(old)
    found = {
        suffix or "db": oct(stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode))
        for suffix in ("", "-wal", "-shm")
    }
    print(f"modes of new files (umask 022): {found}")
    store.close()


def main() -> None:
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        for measure in (locked_writer, replaced, deleted, corrupted, modes):
            measure(tmp)


if __name__ == "__main__":
    main()
