"""The embedded default store: one SQLite file, zero set-up.

- WAL mode: readers never wait for the writer; several processes can share the file.
- A ``schema_version`` table and forward-only migrations, applied under ``BEGIN IMMEDIATE`` so
  two processes opening a new file at once do not both migrate it.
- Digests are ``UNIQUE``-indexed: look-ups are one index probe.
- Times are stored as integer microseconds since the epoch (exact, sortable).
- Cross-process invalidation: every change that affects validity is also appended to a
  ``changes`` table. :meth:`SQLiteKeyStore.poll_changes` first asks ``PRAGMA data_version``
  (answered from shared memory, no disk read) whether any other connection committed since the
  last poll, and only then reads the new rows. Rows older than :data:`CHANGE_RETENTION` are
  pruned by every write, through an index on their time, so writes cost the same however long
  the log is.
- Bulk inserts (:meth:`SQLiteKeyStore.insert_keys`) write a whole batch in one transaction and
  one change row.

.. versionadded:: 0.1.0
.. versionchanged:: 0.3.0
   Schema 2 (the change log's time index); ``insert_keys``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import operator
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar, cast

from ..models import ApiKey, Member, RateLimit, Role, freeze_metadata
from ..policy import parse_networks
from ..scopes import _SCOPE_SYNTAX
from .base import POLICY_FIELDS, Change, ChangeFeed, KeyRecord, Subscriber

__all__ = ["DatabaseFileError", "InvalidRowError", "SQLiteKeyStore"]

log = logging.getLogger("skaala_auth.store")
_T = TypeVar("_T")

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
    # 2: the change log's prune finds its old rows through an index, not by walking the log
    # (every write prunes, and the log holds every change of the last hour: a walk made each
    # write cost O(writes in the last hour)).
    """
    CREATE INDEX changes_at ON changes (at);
    """,
    # 3: keys' policies — disabling, a rate limit of their own, a usage limit, an IP allow-list,
    # metadata. All NULL for a key without them, which is every key written before.
    """
    ALTER TABLE api_keys ADD COLUMN disabled_at INTEGER;
    ALTER TABLE api_keys ADD COLUMN rate_limit TEXT;
    ALTER TABLE api_keys ADD COLUMN remaining INTEGER;
    ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT;
    ALTER TABLE api_keys ADD COLUMN metadata TEXT;
    """,
)

# INDEXED BY: left to itself, SQLite's min/max optimisation answers max(seq) by walking the
# log backwards from its newest row until one is old enough: every row of the retention window,
# on every write. Through the index it visits only the rows about to be pruned (none, mostly).
_PRUNE_SQL: Final = "SELECT max(seq) FROM changes INDEXED BY changes_at WHERE at < ?"

_KEY_COLUMNS: Final = (
    "k.id, k.team_id, k.user_id, k.name, k.scopes, k.prefix, k.created_at, k.expires_at, "
    "k.revoked_at, k.last_used_at, k.rotated_from, k.disabled_at, k.rate_limit, k.remaining, "
    "k.allowed_ips, k.metadata"
)
#: The look-up by digest: one index probe, and the key's user's role in the same query.
_FIND_SQL: Final = (
    f"SELECT {_KEY_COLUMNS}, k.digest, m.role FROM api_keys k "  # noqa: S608
    "LEFT JOIN members m ON m.team_id = k.team_id AND m.user_id = k.user_id "
    "WHERE k.digest = ?"
)


_INSERT_SQL: Final = (
    "INSERT INTO api_keys (id, digest, team_id, user_id, name, scopes, prefix, created_at, "
    "expires_at, revoked_at, last_used_at, rotated_from, disabled_at, rate_limit, remaining, "
    "allowed_ips, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The policy columns :meth:`SQLiteKeyStore.set_policy` may write.
_POLICY_COLUMNS: Final = POLICY_FIELDS
_DIGEST: Final = operator.itemgetter(1)
#: Rows a bulk insert sorts and writes at a time (see :meth:`SQLiteKeyStore.insert_keys`).
BULK_CHUNK: Final = 50_000
#: The write connection's page cache during a bulk insert, in KiB (SQLite's default: 2 MiB).
BULK_CACHE_KIB: Final = 64 * 1024
#: Digests :meth:`SQLiteKeyStore.digests` reads at a time (each chunk under the read lock).
DIGEST_CHUNK: Final = 10_000


def _key_row(key: ApiKey, digest: str) -> tuple[Any, ...]:
    return (
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
        *_policy_row(key),
    )


def _policy_row(key: ApiKey) -> tuple[Any, ...]:
    """The policy columns of ``key``, as stored."""
    return tuple(_policy_value(name, getattr(key, name)) for name in _POLICY_COLUMNS)


def _policy_value(name: str, value: Any) -> Any:
    """One policy field as its column stores it (``NULL`` for "none")."""
    if name == "disabled_at":
        return None if value is None else _micros(value)
    if name == "rate_limit":
        return None if value is None else str(value)
    if name == "allowed_ips":
        return " ".join(value) if value else None
    if name == "metadata":
        return json.dumps(dict(value), separators=(",", ":")) if value else None
    return value  # remaining


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return (moment - _EPOCH) // _MICRO


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + micros * _MICRO


class DatabaseFileError(sqlite3.DatabaseError):
    """The database file cannot be used: damaged, not a database, missing, or unopenable.

    The message names the file and what to do about it, because it is what an operator reads in
    the log at 3 a.m. A store that raised it for a damaged or deleted file keeps raising it for
    every call (fail closed: the authenticator answers 503) until the file is replaced.

    It subclasses :class:`sqlite3.DatabaseError` so that code written against the driver's errors
    (the CLI's "cannot open" handler) keeps catching it.

    .. versionadded:: 0.2.0
    """


class InvalidRowError(sqlite3.DatabaseError):
    """A row read from the database cannot become a valid record (written by another tool or
    edited by hand): the store refuses it rather than hand back a half-built key.

    Attributes:
        key_id: the key's id when the row has a usable one, else ``None``. The message names it
            and the column at fault, never the digest or the column's value.

    .. versionadded:: 0.2.0
    """

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26


def _sql_type(value: object) -> str:
    """How SQLite would name ``value``'s type: errors show the type, never the value."""
    if value is None:
        return "NULL"
    return {int: "integer", float: "real", str: "text", bytes: "blob"}.get(type(value), "?")


class _Row:
    """Checks the columns of one ``api_keys`` row as it becomes an :class:`ApiKey`.

    SQLite stores whatever it is given (a hand edit, another tool, a schema without ``NOT
    NULL``), so nothing read back is trusted to have the type the schema declares.
    """

    __slots__ = ("key_id", "path", "row")

    def __init__(self, row: tuple[Any, ...], path: str) -> None:
        self.row = row
        self.path = path
        key_id = row[0]
        if not isinstance(key_id, str) or not key_id:
            raise InvalidRowError(
                f"a key row in {path} is unusable: its id is {_sql_type(key_id)}, expected "
                "non-empty text (sqlite3's typeof(id) finds it)"
            )
        self.key_id = key_id

    def _invalid(self, column: str, expected: str, found: str | None = None) -> InvalidRowError:
        return InvalidRowError(
            f"the row of key {self.key_id} in {self.path} is unusable: {column} is "
            f"{found or _sql_type(self.row[_COLUMN_INDEX[column]])}, expected {expected}",
            key_id=self.key_id,
        )

    def text(self, column: str) -> str:
        value = self.row[_COLUMN_INDEX[column]]
        if not isinstance(value, str):
            raise self._invalid(column, "text")
        return value

    def optional_text(self, column: str) -> str | None:
        value = self.row[_COLUMN_INDEX[column]]
        if value is not None and not isinstance(value, str):
            raise self._invalid(column, "text or NULL")
        return value

    def time(self, column: str) -> datetime:
        moment = self.optional_time(column)
        if moment is None:
            raise self._invalid(column, "integer microseconds since the epoch")
        return moment

    def optional_time(self, column: str) -> datetime | None:
        value = self.row[_COLUMN_INDEX[column]]
        if value is None:
            return None
        if type(value) is not int:
            raise self._invalid(column, "integer microseconds since the epoch")
        try:
            return _moment(value)
        except OverflowError:
            raise self._invalid(
                column, "a time between the years 1 and 9999", "an integer out of range"
            ) from None

    def policy(self) -> dict[str, Any]:
        """The policy columns as :class:`ApiKey` fields (defaults for ``NULL``)."""
        fields: dict[str, Any] = {}
        disabled = self.optional_time("disabled_at")
        if disabled is not None:
            fields["disabled_at"] = disabled
        limit = self.optional_text("rate_limit")
        if limit is not None:
            try:
                fields["rate_limit"] = RateLimit.parse(limit)
            except (TypeError, ValueError):
                raise self._invalid("rate_limit", "a rate limit ('100/60s')", "text") from None
        remaining = self.row[_COLUMN_INDEX["remaining"]]
        if remaining is not None:
            if type(remaining) is not int or remaining < 0:
                raise self._invalid("remaining", "a count of uses (0 or more) or NULL")
            fields["remaining"] = remaining
        networks = self.optional_text("allowed_ips")
        if networks:
            try:
                fields["allowed_ips"] = tuple(
                    str(network) for network in parse_networks(networks.split())
                )
            except ValueError:
                raise self._invalid(
                    "allowed_ips", "space-separated networks", "text of another shape"
                ) from None
        metadata = self.optional_text("metadata")
        if metadata:
            try:
                fields["metadata"] = freeze_metadata(json.loads(metadata))
            except (TypeError, ValueError):
                raise self._invalid("metadata", "a JSON object", "text of another shape") from None
        return fields

    def scopes(self) -> frozenset[str]:
        value = self.row[_COLUMN_INDEX["scopes"]]
        if not isinstance(value, str):
            raise self._invalid("scopes", "text (space-separated scope names)")
        scopes = value.split()
        if not all(_SCOPE_SYNTAX.fullmatch(scope) for scope in scopes):
            raise self._invalid(
                "scopes", "space-separated 'resource:action' names", "text of another shape"
            )
        granted = frozenset(scopes)
        if len(_SCOPE_SETS) >= _SCOPE_SETS_MAX:
            _SCOPE_SETS.clear()
        _SCOPE_SETS[value] = granted
        return granted


_COLUMN_INDEX: Final = {
    name: index
    for index, name in enumerate(
        "id team_id user_id name scopes prefix created_at expires_at revoked_at last_used_at "
        "rotated_from disabled_at rate_limit remaining allowed_ips metadata digest role".split()
    )
}


#: Scope texts already checked against the scope syntax, with their sets. A store holds few
#: distinct texts (one per combination of scopes in use), and checking each name costs more than
#: the rest of a row; bounded, in case a store holds many.
_SCOPE_SETS: Final[dict[str, frozenset[str]]] = {}
_SCOPE_SETS_MAX: Final = 4096
_ROLES: Final[dict[object, Role]] = {role.value: role for role in Role}
_NO_POLICY: Final = (None, None, None, None, None)


def _checked_key(row: tuple[Any, ...], path: str) -> ApiKey:
    """The slow path: each column checked on its own, so that an error names the one at fault."""
    checked = _Row(row, path)
    return ApiKey(
        id=checked.key_id,
        team_id=checked.text("team_id"),
        user_id=checked.text("user_id"),
        name=checked.text("name"),
        scopes=checked.scopes(),
        prefix=checked.text("prefix"),
        created_at=checked.time("created_at"),
        expires_at=checked.time("expires_at"),
        revoked_at=checked.optional_time("revoked_at"),
        last_used_at=checked.optional_time("last_used_at"),
        rotated_from=checked.optional_text("rotated_from"),
        **checked.policy(),
    )


def _key(row: tuple[Any, ...], path: str) -> ApiKey:
    """An ``api_keys`` row as an :class:`ApiKey`.

    The fast path tests every column's type in one expression and builds the key; a row it
    doubts (a type it does not expect, scopes not seen yet, a time out of range) goes to
    :func:`_checked_key`, which builds it too or raises :class:`InvalidRowError` naming the
    column. Both accept exactly the same rows.
    """
    (key_id, team_id, user_id, name, scopes, prefix, created, expires, revoked, used, rotated) = (
        row[:11]
    )
    granted = _SCOPE_SETS.get(scopes)
    if (
        granted is not None
        and row[11:16] == _NO_POLICY  # a key with a policy is read by the slow path
        and type(key_id) is str
        and key_id
        and type(team_id) is str
        and type(user_id) is str
        and type(name) is str
        and type(prefix) is str
        and type(created) is int
        and type(expires) is int
        and (revoked is None or type(revoked) is int)
        and (used is None or type(used) is int)
        and (rotated is None or type(rotated) is str)
    ):
        try:
            return ApiKey(
                key_id,
                team_id,
                user_id,
                name,
                granted,
                prefix,
                _EPOCH + created * _MICRO,
                _EPOCH + expires * _MICRO,
                None if revoked is None else _EPOCH + revoked * _MICRO,
                None if used is None else _EPOCH + used * _MICRO,
                rotated,
            )
        except OverflowError:
            pass  # a time out of range: the slow path names the column
    return _checked_key(row, path)


def _record(row: tuple[Any, ...], path: str) -> KeyRecord:
    """A :data:`_FIND_SQL` row (the key's columns, its digest, its user's role) as a
    :class:`KeyRecord`."""
    key = _key(row, path)
    digest, role = row[16], row[17]
    if type(digest) is not str:
        raise _Row(row, path)._invalid("digest", "text")
    if role is None:
        return KeyRecord(key, digest, None)
    found = _ROLES.get(role)
    if found is None:
        raise _Row(row, path)._invalid("role", "owner, admin or member", "another value")
    return KeyRecord(key, digest, found)


def _precreate(path: str) -> None:
    """Create a missing database file as 0600 before SQLite opens it.

    SQLite would create it 0644 (less the umask): readable by every local user, and a key
    database holds digests and the team map. SQLite gives the ``-wal`` and ``-shm`` files the
    main file's permissions, so they follow. An existing file keeps its mode: the operator chose
    it.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise DatabaseFileError(f"cannot create the key database {path}: {error}") from error
    os.close(descriptor)


def _open_error(path: str, error: sqlite3.Error) -> DatabaseFileError:
    """The constructor's error: which file, what SQLite said, and what to do."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_NOTADB:
        return DatabaseFileError(
            f"{path} is not an SQLite database (SQLite: {error}). Check that the path names the "
            "key database; if it does, the file was overwritten: restore it from a backup."
        )
    if code == _SQLITE_CORRUPT:
        return DatabaseFileError(_damaged(path, error, "The store cannot open until then."))
    return DatabaseFileError(f"cannot open the key database {path} (SQLite: {error})")


def _damaged(path: str, error: sqlite3.Error, consequence: str) -> str:
    return (
        f"the key database {path} is damaged (SQLite: {error}). Stop the services that use it, "
        f"see the damage with: sqlite3 {path} 'PRAGMA integrity_check', and restore the file "
        f"from a backup (or salvage what is readable with sqlite3's .recover). {consequence}"
    )


class SQLiteKeyStore:
    """A :class:`~skaala_auth.stores.base.KeyStore` in one SQLite file.

    Args:
        path: the database file (created 0600, with its schema, if missing), or ``":memory:"``.
        timeout: seconds to wait for another process's write lock before giving up (the
            authenticator then answers 503).

    Safe to share between threads and between processes on the same file (WAL). Reads and writes
    use separate connections, each behind its own lock: WAL lets a reader run while a writer
    (this process's or another's) holds the write lock, so a write waiting out ``timeout`` (a
    last-used flush behind another process's long transaction) never delays a look-up.
    Revocations and membership changes made through another process reach this one's
    authenticators at their next :meth:`poll_changes` (every 0.5 s by default).

    The poll also notices when the file at ``path`` is no longer the one the store has open
    (replaced, or deleted): see :meth:`poll_changes`. A damaged file fails closed: every call
    raises :class:`DatabaseFileError`.

    Raises:
        DatabaseFileError: the file cannot be created or opened, is not an SQLite database, or
            is damaged; the message names the file and the fix.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Separate read and write connections; new files are 0600; a replaced file is reopened and
       a deleted or damaged one fails closed.
    """

    def __init__(self, path: str | os.PathLike[str] = "skaala_auth.db", *, timeout: float = 5.0):
        self.path = os.fspath(path)
        self.timeout = timeout
        self._feed = ChangeFeed()
        # ":memory:" and "" are private to one connection: reads and writes must share it.
        self._private = self.path in (":memory:", "")
        self._absolute = "" if self._private else os.path.abspath(self.path)
        self._write_lock = threading.RLock()
        self._read_lock = self._write_lock if self._private else threading.RLock()
        self._failure: str | None = None  # set: the file is damaged or gone, every call raises
        self._missing = False
        self._closed = False
        self._warned_rows: set[str] = set()
        # Sequence numbers of the change rows this store wrote: already published in-process,
        # so poll_changes skips them (the read connection sees them as another's commits).
        self._own_lock = threading.Lock()
        self._own: set[int] = set()
        self._uncommitted: list[int] = []
        if not self._private:
            _precreate(self.path)
        self._writer, self._reader, self._identity = self._open()
        self._data_version = self._scalar("PRAGMA data_version")
        self._cursor = self._scalar("SELECT coalesce(max(seq), 0) FROM changes")

    # -- plumbing ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._private:
            target, uri = self.path, False
        else:
            # mode=rw: never create the file here. It exists (pre-created 0600); if it vanished
            # since, an empty store in its place would refuse every key without a word.
            target, uri = f"file:{urllib.parse.quote(self._absolute)}?mode=rw", True
        conn = sqlite3.connect(
            target, timeout=self.timeout, isolation_level=None, check_same_thread=False, uri=uri
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return conn

    def _open(self) -> tuple[sqlite3.Connection, sqlite3.Connection, tuple[int, int] | None]:
        """Open the write and read connections (migrating the file) and note its identity."""
        opened: list[sqlite3.Connection] = []
        try:
            try:
                writer = self._connect()
                opened.append(writer)
                if not self._private:
                    writer.execute("PRAGMA journal_mode = WAL")
                writer.execute("PRAGMA synchronous = NORMAL")
                self._migrate(writer)
                if self._private:
                    return writer, writer, None
                reader = self._connect()
                opened.append(reader)
                reader.execute("PRAGMA query_only = ON")
                reader.execute("SELECT count(*) FROM schema_version").fetchone()
                status = os.stat(self._absolute)
            except sqlite3.Error as error:
                raise _open_error(self.path, error) from error
            except OSError as error:
                raise DatabaseFileError(
                    f"cannot open the key database {self.path}: {error}"
                ) from error
        except BaseException:
            for conn in opened:
                conn.close()
            raise
        return writer, reader, (status.st_dev, status.st_ino)

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._reading() as conn:
            row = conn.execute(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise DatabaseFileError(self._failure)

    def _fault(self, error: sqlite3.Error) -> None:
        """Turn a damaged-file error into fail-closed: every later call raises, even those SQLite
        could still answer from its page cache, because nothing in the file can be trusted."""
        if isinstance(error, DatabaseFileError | InvalidRowError):
            return
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return  # busy, locked, I/O: this call fails (503), the next may succeed
        if self._failure is None:
            self._failure = _damaged(self.path, error, "Until then every look-up is refused (503).")
            log.error("%s", self._failure)
        raise DatabaseFileError(self._failure) from error

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection. Never waits for a writer: WAL readers see the last commit."""
        with self._read_lock:
            self._raise_if_failed()
            try:
                yield self._reader
            except sqlite3.Error as error:
                self._fault(error)
                raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``BEGIN IMMEDIATE`` takes the write lock up front, so a
        transaction never fails half-way on a lock upgrade."""
        with self._write_lock:
            self._raise_if_failed()
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._uncommitted = []
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                # Only now: a rolled-back row's seq may be reused by another process's change.
                with self._own_lock:
                    self._own.update(self._uncommitted)
            except sqlite3.Error as error:
                self._fault(error)
                raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
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
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _log_change(self, conn: sqlite3.Connection, change: Change) -> None:
        now = _micros(datetime.now(UTC))
        inserted = conn.execute(
            "INSERT INTO changes (kind, key_id, team_id, user_id, at) VALUES (?, ?, ?, ?, ?)",
            (change.kind, change.key_id, change.team_id, change.user_id, now),
        )
        if inserted.lastrowid is not None:
            self._uncommitted.append(inserted.lastrowid)
        horizon = now - CHANGE_RETENTION // _MICRO
        old = conn.execute(_PRUNE_SQL, (horizon,)).fetchone()[0]
        if old is not None:
            conn.execute("DELETE FROM changes WHERE seq <= ?", (old,))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'pruned_through'", (old,))

    def _checked(self, row: tuple[Any, ...], convert: Callable[[tuple[Any, ...], str], _T]) -> _T:
        """Convert a row, logging an unusable one once per key (the authenticator turns the
        exception into a 503 on every request for that key; the log says why, once)."""
        try:
            return convert(row, self.path)
        except InvalidRowError as error:
            self._warn_once(error)
            raise

    def _warn_once(self, error: InvalidRowError) -> None:
        name = error.key_id or ""
        if name not in self._warned_rows:
            self._warned_rows.add(name)
            log.error("%s", error)

    @property
    def schema_version(self) -> int:
        return self._scalar("SELECT max(version) FROM schema_version")

    # -- keys ----------------------------------------------------------------------------------

    def find_key(self, digest: str) -> KeyRecord | None:
        # The authenticator's miss path: _reading() inlined (a generator context manager costs
        # a tenth of the query), the SQL a constant (the statement cache hashes it once).
        with self._read_lock:
            if self._failure is not None:
                raise DatabaseFileError(self._failure)
            try:
                # A fresh cursor, dropped at once, resets the statement: a kept cursor whose
                # statement was not stepped to its end would hold its read snapshot open.
                row = self._reader.execute(_FIND_SQL, (digest,)).fetchone()
            except sqlite3.Error as error:
                self._fault(error)
                raise
        if row is None:
            return None
        try:
            return _record(row, self.path)
        except InvalidRowError as error:
            self._warn_once(error)
            raise

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.id = ?",  # noqa: S608
                (key_id,),
            ).fetchone()
        return None if row is None else self._checked(row, _key)

    def digests(self) -> Iterator[str]:
        """Every stored digest (see :class:`~skaala_auth.stores.base.DigestSource`), read
        :data:`DIGEST_CHUNK` at a time in digest order through the digest index, each chunk under
        the read lock on its own: look-ups wait for one chunk at most, never for the whole read.

        .. versionadded:: 0.5.0
        """
        after = ""
        while True:
            with self._reading() as conn:
                rows = conn.execute(
                    "SELECT digest FROM api_keys WHERE digest > ? ORDER BY digest LIMIT ?",
                    (after, DIGEST_CHUNK),
                ).fetchall()
            for (digest,) in rows:
                if isinstance(digest, str):
                    yield digest
            if len(rows) < DIGEST_CHUNK:
                return
            after = rows[-1][0]

    def key_digest(self, key_id: str) -> str | None:
        """The digest stored for ``key_id``.

        .. versionadded:: 0.5.0
        """
        with self._reading() as conn:
            row = conn.execute("SELECT digest FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return row[0] if row is not None and isinstance(row[0], str) else None

    def list_keys(self, team_id: str) -> list[ApiKey]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.team_id = ? "  # noqa: S608
                "ORDER BY k.created_at DESC, k.id DESC",
                (team_id,),
            ).fetchall()
        return [self._checked(row, _key) for row in rows]

    def _insert(self, conn: sqlite3.Connection, key: ApiKey, digest: str) -> None:
        conn.execute(_INSERT_SQL, _key_row(key, digest))
        self._log_change(conn, Change("key", key_id=key.id))

    def insert_key(self, key: ApiKey, digest: str) -> None:
        with self._write() as conn:
            self._insert(conn, key, digest)
        self._feed.publish(Change("key", key_id=key.id))

    def insert_keys(self, keys: Iterable[tuple[ApiKey, str]]) -> None:
        """Insert many keys in one transaction (see the protocol).

        The pairs are read as they are inserted, :data:`BULK_CHUNK` at a time, so an iterator
        of a million is never held at once; if it raises, nothing is inserted. Each chunk goes
        in digest order, and the write connection's page cache is raised to
        :data:`BULK_CACHE_KIB` for the transaction: random digests inserted one by one land on
        random pages of the digest index, and at a million keys that index outgrows SQLite's
        default 2 MiB cache, so each insert would read and write back a page of its own.
        """
        rows = (_key_row(key, digest) for key, digest in keys)
        chunk = sorted(itertools.islice(rows, BULK_CHUNK), key=_DIGEST)
        if not chunk:
            return
        cache_size: int | None = None
        try:
            with self._write() as conn:
                cache_size = int(conn.execute("PRAGMA cache_size").fetchone()[0])
                conn.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")
                while chunk:
                    conn.executemany(_INSERT_SQL, chunk)
                    chunk = sorted(itertools.islice(rows, BULK_CHUNK), key=_DIGEST)
                self._log_change(conn, Change("key"))
        finally:
            if cache_size is not None:  # back to the usual size, which frees the pages
                with self._write_lock, contextlib.suppress(sqlite3.Error):
                    self._writer.execute(f"PRAGMA cache_size = {cache_size}")
        self._feed.publish(Change("key"))

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

    def set_policy(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Write some of a key's policy fields (see the protocol); ``None`` for an unknown id."""
        unknown = set(changes) - set(_POLICY_COLUMNS)
        if unknown:
            raise ValueError(f"not policy fields: {', '.join(sorted(unknown))}")
        if not changes:
            return self.get_key(key_id)
        names = sorted(changes)
        assignments = ", ".join(f"{name} = ?" for name in names)
        values = [_policy_value(name, changes[name]) for name in names]
        with self._write() as conn:
            updated = conn.execute(
                f"UPDATE api_keys SET {assignments} WHERE id = ?",  # noqa: S608 - fixed names
                (*values, key_id),
            ).rowcount
            if updated:
                self._log_change(conn, Change("key", key_id=key_id))
        if not updated:
            return None
        self._feed.publish(Change("key", key_id=key_id))
        return self.get_key(key_id)

    def use_key(self, key_id: str) -> bool:
        """Take one use of a key with a usage limit, atomically (see the protocol)."""
        with self._write() as conn:
            row = conn.execute(
                "UPDATE api_keys SET remaining = remaining - 1 "
                "WHERE id = ? AND remaining > 0 RETURNING remaining",
                (key_id,),
            ).fetchone()
            if row is not None:
                return True
            left = conn.execute("SELECT remaining FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return left is not None and left[0] is None  # no usage limit (any more): allowed

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
        with self._reading() as conn:
            row = conn.execute(
                "SELECT team_id, user_id, role, added_at FROM members "
                "WHERE team_id = ? AND user_id = ?",
                (team_id, user_id),
            ).fetchone()
        return None if row is None else self._checked(row, _member)

    def list_members(self, team_id: str) -> list[Member]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT team_id, user_id, role, added_at FROM members WHERE team_id = ? "
                "ORDER BY user_id",
                (team_id,),
            ).fetchall()
        return [self._checked(row, _member) for row in rows]

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
        """Deliver other processes' changes, and notice a file that is no longer ours.

        A file replaced at ``path`` (a new device/inode: ``mv`` of a restored copy) is reopened
        and ``Change("all")`` is published, since nothing says what differs between the two
        files. A deleted file fails closed: this and every later call raise
        :class:`DatabaseFileError` (logged once, with the path) until a file appears at ``path``
        again, which is then reopened the same way. Otherwise the open, unlinked file would keep
        answering with its old keys forever, and no revocation would ever arrive.

        A change log that went backwards (content restored in place, through SQLite's backup
        API) or was pruned past this store's cursor also publishes ``Change("all")``.

        Raises:
            DatabaseFileError: the file is deleted or damaged.
        """
        if not self._private and not self._closed:
            self._check_identity()
        with self._reading() as conn:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            self._data_version = version
            pruned, newest = conn.execute(
                "SELECT (SELECT value FROM meta WHERE name = 'pruned_through'), "
                "(SELECT coalesce(max(seq), 0) FROM changes)"
            ).fetchone()
            rows = conn.execute(
                "SELECT seq, kind, key_id, team_id, user_id FROM changes WHERE seq > ? "
                "ORDER BY seq",
                (self._cursor,),
            ).fetchall()
            missed = pruned > self._cursor or newest < self._cursor
            if rows:
                self._cursor = rows[-1][0]
            elif missed:
                self._cursor = max(pruned, newest)
        with self._own_lock:
            own = self._own
            self._own = {seq for seq in own if seq > self._cursor}
        if missed:
            self._feed.publish(Change("all"))
            return
        for seq, kind, key_id, team_id, user_id in rows:
            if seq not in own:
                self._feed.publish(Change(kind, key_id=key_id, team_id=team_id, user_id=user_id))

    def _check_identity(self) -> None:
        """Compare the file at ``path`` with the one open (device and inode numbers)."""
        try:
            status = os.stat(self._absolute)
        except FileNotFoundError:
            identity = None
        else:
            identity = (status.st_dev, status.st_ino)
        if identity is None:
            if not self._missing:
                self._missing = True
                self._failure = (
                    f"the key database {self.path} was deleted: every look-up is refused (503) "
                    "until the file is restored at that path"
                )
                log.error("%s", self._failure)
                with self._write_lock, self._read_lock:
                    self._empty_old_wal()
            raise DatabaseFileError(self._failure)
        # A deleted file that comes back may reuse the inode number: reopen it all the same.
        if identity != self._identity or self._missing:
            self._reopen(identity)

    def _reopen(self, identity: tuple[int, int]) -> None:
        with self._write_lock, self._read_lock:
            # Close the old connections first: SQLite names the -wal/-shm files after the path,
            # so the old file's must be let go before the new file's are opened.
            self._empty_old_wal()
            self._writer.close()
            self._reader.close()
            try:
                self._writer, self._reader, self._identity = self._open()
            except (DatabaseFileError, RuntimeError) as error:
                # Fail closed, and retry only when yet another file takes this one's place.
                self._failure = str(error)
                self._identity, self._missing = identity, False
                self._writer = self._reader = _closed()
                log.error("could not reopen the replaced key database: %s", error)
                raise DatabaseFileError(self._failure) from error
            self._failure = None
            self._missing = False
            with self._own_lock:
                self._own.clear()
            self._warned_rows.clear()
            self._data_version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            self._cursor = self._reader.execute(
                "SELECT coalesce(max(seq), 0) FROM changes"
            ).fetchone()[0]
        log.warning("the key database %s was replaced: reopened it, dropping all caches", self.path)
        self._feed.publish(Change("all"))

    def _empty_old_wal(self) -> None:
        """Checkpoint the old file and truncate ``<path>-wal``, which is still its WAL.

        SQLite does not checkpoint or delete the WAL of a file that was renamed or unlinked
        while open, and a connection to whatever file next appears at ``path`` would replay the
        old file's frames over it (the old keys, revocations undone). Emptying the WAL first
        avoids that in this process; see docs/operations.md for several processes.
        """
        try:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.ProgrammingError:
            pass  # already closed (an earlier reopen failed): nothing of the old file is held
        except sqlite3.Error:
            log.warning("could not empty the WAL of the old %s", self.path, exc_info=True)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._closed = True
            self._writer.close()
            self._reader.close()

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self.path!r})"


def _closed() -> sqlite3.Connection:
    """A closed connection, standing in after a failed reopen (every use raises, and the store's
    failure is raised before any use anyway)."""
    conn = sqlite3.connect(":memory:")
    conn.close()
    return conn


def _member(row: tuple[Any, ...], path: str) -> Member:
    team_id, user_id, role, added_at = row
    if not (isinstance(team_id, str) and isinstance(user_id, str) and type(added_at) is int):
        raise InvalidRowError(f"a member row in {path} has a column of the wrong type")
    try:
        return Member(
            team_id=team_id,
            user_id=user_id,
            role=Role(role),
            added_at=cast(datetime, _moment(added_at)),
        )
    except (ValueError, OverflowError):
        raise InvalidRowError(f"a member row in {path} has an unusable role or time") from None
