"""The embedded default store: one SQLite file, zero set-up.

- WAL mode: readers never wait for the writer; several processes can share the file.
- A ``schema_version`` table and forward-only migrations, applied under ``BEGIN IMMEDIATE`` so
  two processes opening a new file at once do not both migrate it.
- Digests are ``UNIQUE``-indexed: look-ups are one index probe.
- Times are stored as integer microseconds since the epoch (exact, sortable).
- Cross-process invalidation: every change that affects validity is also appended to a
  ``changes`` table. :meth:`SQLiteKeyStore.poll_changes` first asks ``PRAGMA data_version``
  (answered from shared memory, no disk read) whether any other connection committed since the
  last poll, and only then reads the new rows.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from ..models import ApiKey, Member, Role
from .base import Change, ChangeFeed, KeyRecord, Subscriber

__all__ = ["SQLiteKeyStore"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)
#: Change rows older than this are pruned; a process that has not polled for that long drops
#: its whole cache instead of replaying them.
CHANGE_RETENTION: Final = timedelta(hours=1)

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: keys, members, the change log
    """
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        digest       TEXT NOT NULL UNIQUE,
        team_id      TEXT NOT NULL,
        user_id      TEXT NOT NULL,
        name         TEXT NOT NULL,
        scopes       TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        revoked_at   INTEGER,
        last_used_at INTEGER,
        rotated_from TEXT
    );
    CREATE INDEX api_keys_team ON api_keys (team_id, created_at);
    CREATE TABLE members (
        team_id  TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        role     TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        added_at INTEGER NOT NULL,
        PRIMARY KEY (team_id, user_id)
    );
    CREATE TABLE changes (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        kind    TEXT NOT NULL,
        key_id  TEXT,
        team_id TEXT,
        user_id TEXT,
        at      INTEGER NOT NULL
    );
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('pruned_through', 0);
    """,
)

_KEY_COLUMNS: Final = (
    "k.id, k.team_id, k.user_id, k.name, k.scopes, k.prefix, k.created_at, k.expires_at, "
    "k.revoked_at, k.last_used_at, k.rotated_from"
)


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return (moment - _EPOCH) // _MICRO


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + micros * _MICRO


def _key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        team_id=row[1],
        user_id=row[2],
        name=row[3],
        scopes=frozenset(row[4].split()),
        prefix=row[5],
        created_at=cast(datetime, _moment(row[6])),
        expires_at=cast(datetime, _moment(row[7])),
        revoked_at=_moment(row[8]),
        last_used_at=_moment(row[9]),
        rotated_from=row[10],
    )


class SQLiteKeyStore:
    """A :class:`~skaala_auth.stores.base.KeyStore` in one SQLite file.

    Args:
        path: the database file (created, with its schema, if missing), or ``":memory:"``.
        timeout: seconds to wait for another process's write lock before giving up (the
            authenticator then answers 503).

    Safe to share between threads (one connection behind a lock) and between processes on the
    same file (WAL). Revocations and membership changes made through another process reach this
    one's authenticators at their next :meth:`poll_changes` (every 0.5 s by default).

    .. versionadded:: 0.1.0
    """

    def __init__(self, path: str | os.PathLike[str] = "skaala_auth.db", *, timeout: float = 5.0):
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._feed = ChangeFeed()
        self._conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()
        self._data_version = self._scalar("PRAGMA data_version")
        self._cursor = self._scalar("SELECT coalesce(max(seq), 0) FROM changes")

    # -- plumbing ------------------------------------------------------------------------------

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``BEGIN IMMEDIATE`` takes the write lock up front, so a
        transaction never fails half-way on a lock upgrade."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this skaala_auth "
                    f"knows ({len(MIGRATIONS)}): upgrade skaala_auth"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (number,))

    def _log_change(self, conn: sqlite3.Connection, change: Change) -> None:
        now = _micros(datetime.now(UTC))
        conn.execute(
            "INSERT INTO changes (kind, key_id, team_id, user_id, at) VALUES (?, ?, ?, ?, ?)",
            (change.kind, change.key_id, change.team_id, change.user_id, now),
        )
        horizon = now - CHANGE_RETENTION // _MICRO
        old = conn.execute("SELECT max(seq) FROM changes WHERE at < ?", (horizon,)).fetchone()[0]
        if old is not None:
            conn.execute("DELETE FROM changes WHERE seq <= ?", (old,))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'pruned_through'", (old,))

    @property
    def schema_version(self) -> int:
        return self._scalar("SELECT max(version) FROM schema_version")

    # -- keys ----------------------------------------------------------------------------------

    def find_key(self, digest: str) -> KeyRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_KEY_COLUMNS}, k.digest, m.role FROM api_keys k "  # noqa: S608
                "LEFT JOIN members m ON m.team_id = k.team_id AND m.user_id = k.user_id "
                "WHERE k.digest = ?",
                (digest,),
            ).fetchone()
        if row is None:
            return None
        return KeyRecord(_key(row), row[11], Role(row[12]) if row[12] else None)

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.id = ?",  # noqa: S608
                (key_id,),
            ).fetchone()
        return None if row is None else _key(row)

    def list_keys(self, team_id: str) -> list[ApiKey]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.team_id = ? "  # noqa: S608
                "ORDER BY k.created_at DESC, k.id DESC",
                (team_id,),
            ).fetchall()
        return [_key(row) for row in rows]

    def _insert(self, conn: sqlite3.Connection, key: ApiKey, digest: str) -> None:
        conn.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                digest,
                key.team_id,
                key.user_id,
                key.name,
                " ".join(sorted(key.scopes)),
                key.prefix,
                _micros(key.created_at),
                _micros(key.expires_at),
                None if key.revoked_at is None else _micros(key.revoked_at),
                None if key.last_used_at is None else _micros(key.last_used_at),
                key.rotated_from,
            ),
        )
        self._log_change(conn, Change("key", key_id=key.id))

    def insert_key(self, key: ApiKey, digest: str) -> None:
        with self._write() as conn:
            self._insert(conn, key, digest)
        self._feed.publish(Change("key", key_id=key.id))

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        with self._write() as conn:
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? "
                "WHERE id = ? AND (revoked_at IS NULL OR revoked_at > ?)",
                (_micros(at), key_id, _micros(at)),
            )
            self._log_change(conn, Change("key", key_id=key_id))
        self._feed.publish(Change("key", key_id=key_id))
        return self.get_key(key_id)

    def rotate_key(
        self, old_id: str, old_expires_at: datetime, new_key: ApiKey, new_digest: str
    ) -> None:
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE api_keys SET expires_at = ? WHERE id = ?", (_micros(old_expires_at), old_id)
            ).rowcount
            if updated != 1:
                raise LookupError(old_id)
            self._log_change(conn, Change("key", key_id=old_id))
            self._insert(conn, new_key, new_digest)
        self._feed.publish(Change("key", key_id=old_id))
        self._feed.publish(Change("key", key_id=new_key.id))

    def update_digest(self, key_id: str, old_digest: str, new_digest: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE api_keys SET digest = ? WHERE id = ? AND digest = ?",
                (new_digest, key_id, old_digest),
            )
            self._log_change(conn, Change("key", key_id=key_id))
        self._feed.publish(Change("key", key_id=key_id))

    def record_last_used(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        rows = [(_micros(when), key_id, _micros(when)) for key_id, when in used.items()]
        with self._write() as conn:
            conn.executemany(
                "UPDATE api_keys SET last_used_at = ? "
                "WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                rows,
            )

    # -- members -------------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        change = Change("member", team_id=member.team_id, user_id=member.user_id)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?) ON CONFLICT (team_id, user_id) "
                "DO UPDATE SET role = excluded.role",
                (member.team_id, member.user_id, member.role.value, _micros(member.added_at)),
            )
            self._log_change(conn, change)
        self._feed.publish(change)

    def get_member(self, team_id: str, user_id: str) -> Member | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT team_id, user_id, role, added_at FROM members "
                "WHERE team_id = ? AND user_id = ?",
                (team_id, user_id),
            ).fetchone()
        return None if row is None else _member(row)

    def list_members(self, team_id: str) -> list[Member]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT team_id, user_id, role, added_at FROM members WHERE team_id = ? "
                "ORDER BY user_id",
                (team_id,),
            ).fetchall()
        return [_member(row) for row in rows]

    def remove_member(self, team_id: str, user_id: str) -> bool:
        change = Change("member", team_id=team_id, user_id=user_id)
        with self._write() as conn:
            removed = conn.execute(
                "DELETE FROM members WHERE team_id = ? AND user_id = ?", (team_id, user_id)
            ).rowcount
            if removed:
                self._log_change(conn, change)
        if removed:
            self._feed.publish(change)
        return bool(removed)

    # -- changes -------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self._feed.subscribe(callback)

    def poll_changes(self) -> None:
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            self._data_version = version
            pruned = self._conn.execute(
                "SELECT value FROM meta WHERE name = 'pruned_through'"
            ).fetchone()[0]
            rows = self._conn.execute(
                "SELECT seq, kind, key_id, team_id, user_id FROM changes WHERE seq > ? "
                "ORDER BY seq",
                (self._cursor,),
            ).fetchall()
            missed = pruned > self._cursor
            if rows:
                self._cursor = rows[-1][0]
            elif missed:
                self._cursor = pruned
        if missed:
            self._feed.publish(Change("all"))
            return
        for _, kind, key_id, team_id, user_id in rows:
            self._feed.publish(Change(kind, key_id=key_id, team_id=team_id, user_id=user_id))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self.path!r})"


def _member(row: tuple[Any, ...]) -> Member:
    return Member(
        team_id=row[0], user_id=row[1], role=Role(row[2]), added_at=cast(datetime, _moment(row[3]))
    )
