"""The store for services on many machines: PostgreSQL, through psycopg 3 and psycopg_pool.

- Its own schema (``skaala_auth`` by default, created if missing), so that its tables never
  meet the service's own: ``api_keys``, ``members`` and ``schema_version``.
- A ``schema_version`` table and forward-only migrations, applied on first use (or by
  ``skaala-auth init --dsn …``) under a transaction-scoped advisory lock, so two processes
  starting at once do not both migrate.
- Digests are ``UNIQUE``-indexed (a B-tree): a look-up, found or not, is one index probe, as
  fast at a million keys as at a thousand (``benchmarks/bench_postgres.py``).
- Times are ``timestamptz`` (microseconds, exact); every connection's session runs in UTC.
- **Invalidation.** Every change that affects validity (a revocation, a rotation, a re-hash, a
  new key, a membership change) sends a ``NOTIFY`` on the store's channel *inside its
  transaction*, so it is delivered if and only if the change commits. One ``LISTEN`` per store,
  on a dedicated connection in a background thread, turns the notifications of other processes
  into :class:`~skaala_auth.stores.base.Change` events for the store's subscribers (its own
  changes are published in-process at once, and skipped when they come back). If that
  connection drops, the thread reconnects with backoff and publishes ``Change("all")``, since
  notifications sent meanwhile are lost; while it is down, :meth:`PostgresKeyStore.poll_changes`
  publishes ``Change("all")`` at every poll, so authenticators ask the database on every request
  rather than trust a cache that may have missed a revocation.
- **Bounded calls.** A call waits at most ``timeout`` seconds for a pooled connection, each
  connection attempt at most ``connect_timeout``, each statement at most ``statement_timeout``
  (server side); an exhausted pool or an unreachable server raises
  :class:`DatabaseUnavailableError` instead of hanging, and the pool reconnects by itself.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout, TooManyRequests
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "the PostgreSQL store needs psycopg and psycopg_pool: pip install 'skaala-auth[postgres]'",
        name=error.name,
    ) from error

from ..models import ApiKey, Member, RateLimit, Role, freeze_metadata
from .base import POLICY_FIELDS, Change, ChangeFeed, KeyRecord, Subscriber

__all__ = ["DatabaseUnavailableError", "DuplicateKeyError", "PostgresKeyStore"]

log = logging.getLogger("skaala_auth.store")
_T = TypeVar("_T")

#: Forward-only migrations; ``{s}`` is the store's schema (a quoted identifier).
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: keys and members
    """
    CREATE TABLE {s}.api_keys (
        id           text PRIMARY KEY,
        digest       text NOT NULL UNIQUE,
        team_id      text NOT NULL,
        user_id      text NOT NULL,
        name         text NOT NULL,
        scopes       text[] NOT NULL,
        prefix       text NOT NULL,
        created_at   timestamptz NOT NULL,
        expires_at   timestamptz NOT NULL,
        revoked_at   timestamptz,
        last_used_at timestamptz,
        rotated_from text
    );
    CREATE INDEX api_keys_team ON {s}.api_keys (team_id, created_at DESC, id DESC);
    CREATE TABLE {s}.members (
        team_id  text NOT NULL,
        user_id  text NOT NULL,
        role     text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        added_at timestamptz NOT NULL,
        PRIMARY KEY (team_id, user_id)
    )
    """,
    # 2: keys' policies (all NULL for a key without them, which is every key written before)
    """
    ALTER TABLE {s}.api_keys
        ADD COLUMN disabled_at timestamptz,
        ADD COLUMN rate_limit text,
        ADD COLUMN remaining bigint CHECK (remaining >= 0),
        ADD COLUMN allowed_ips text[],
        ADD COLUMN metadata jsonb
    """,
)

_KEY_COLUMNS: Final = (
    "k.id, k.team_id, k.user_id, k.name, k.scopes, k.prefix, k.created_at, k.expires_at, "
    "k.revoked_at, k.last_used_at, k.rotated_from, k.disabled_at, k.rate_limit, k.remaining, "
    "k.allowed_ips, k.metadata::text"
)
_ALL_COLUMNS: Final = (
    "id, digest, team_id, user_id, name, scopes, prefix, created_at, expires_at, revoked_at, "
    "last_used_at, rotated_from, disabled_at, rate_limit, remaining, allowed_ips, metadata"
)
_SQL: Final = {
    # The look-up by digest: one probe of the digest index, and the role in the same query.
    "find": f"SELECT {_KEY_COLUMNS}, k.digest, m.role FROM {{s}}.api_keys k "  # noqa: S608
    "LEFT JOIN {s}.members m ON m.team_id = k.team_id AND m.user_id = k.user_id "
    "WHERE k.digest = %s",
    "get": f"SELECT {_KEY_COLUMNS} FROM {{s}}.api_keys k WHERE k.id = %s",  # noqa: S608
    "list": f"SELECT {_KEY_COLUMNS} FROM {{s}}.api_keys k WHERE k.team_id = %s "  # noqa: S608
    "ORDER BY k.created_at DESC, k.id DESC",
    "insert": f"INSERT INTO {{s}}.api_keys ({_ALL_COLUMNS}) VALUES "  # noqa: S608
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
    "copy": f"COPY {{s}}.api_keys ({_ALL_COLUMNS}) FROM STDIN",
    # A use is taken only while one is left: concurrent uses serialise on the row's lock.
    "use": "UPDATE {s}.api_keys SET remaining = remaining - 1 "
    "WHERE id = %s AND remaining > 0 RETURNING remaining",
    "limited": "SELECT remaining IS NULL FROM {s}.api_keys WHERE id = %s",
    "revoke": "UPDATE {s}.api_keys SET revoked_at = %s "
    "WHERE id = %s AND (revoked_at IS NULL OR revoked_at > %s)",
    "rotate": "UPDATE {s}.api_keys SET expires_at = %s WHERE id = %s",
    "rehash": "UPDATE {s}.api_keys SET digest = %s WHERE id = %s AND digest = %s",
    # One statement per flush, whatever the number of keys; only ever forward.
    "last_used": "UPDATE {s}.api_keys k SET last_used_at = v.at "
    "FROM unnest(%s::text[], %s::timestamptz[]) AS v(id, at) "
    "WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)",
    "add_member": "INSERT INTO {s}.members VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
    "get_member": "SELECT team_id, user_id, role, added_at FROM {s}.members "
    "WHERE team_id = %s AND user_id = %s",
    "list_members": "SELECT team_id, user_id, role, added_at FROM {s}.members "
    "WHERE team_id = %s ORDER BY user_id",
    "remove_member": "DELETE FROM {s}.members WHERE team_id = %s AND user_id = %s",
    "version": "SELECT max(version) FROM {s}.schema_version",
    # Keyset pagination through the digest index: no connection held between chunks.
    "digests": "SELECT digest FROM {s}.api_keys WHERE digest > %s ORDER BY digest LIMIT %s",
    "key_digest": "SELECT digest FROM {s}.api_keys WHERE id = %s",
}
#: Digests :meth:`PostgresKeyStore.digests` reads per query.
DIGEST_CHUNK: Final = 10_000

#: Seconds the listener waits for notifications at a time: how long ``close()`` may wait for it.
_TICK: Final = 0.2
#: The listener's reconnection backoff: first wait, and the longest.
_BACKOFF: Final = (0.1, 5.0)
#: libpq's TCP settings, unless the DSN sets them (ignored on Unix-domain sockets).
_TCP_DEFAULTS: Final = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}
_ROLES: Final[dict[str, Role]] = {role.value: role for role in Role}
_KINDS: Final = frozenset({"key", "member", "all"})


class DatabaseUnavailableError(ConnectionError):
    """The database cannot answer: unreachable, refusing connections, every pooled connection
    busy for ``timeout`` seconds, or a statement cut short by ``statement_timeout``.

    The authenticator answers 503 for it (as for any store error); the CLI prints it as one
    line. The message never holds the DSN's password.

    .. versionadded:: 0.4.0
    """


class DuplicateKeyError(ValueError):
    """A key id or digest is already stored (or twice in one batch).

    Raised instead of psycopg's ``UniqueViolation``, whose message quotes the clashing value:
    a digest does not belong in a log.

    .. versionadded:: 0.4.0
    """


class PostgresKeyStore:
    """A :class:`~skaala_auth.stores.base.KeyStore` in a PostgreSQL database, for services that
    run on many machines.

    Args:
        dsn: a libpq connection string or URI (``postgresql://user@host:5432/dbname``).
        schema: the schema that holds the store's tables (created on first use if missing).
            Stores on different schemas of one database are separate stores.
        min_size: pooled connections kept open.
        max_size: pooled connections at most; a call that finds them all busy waits for one
            at most ``timeout`` seconds.
        timeout: seconds a call waits for a pooled connection before raising
            :class:`DatabaseUnavailableError` (an exhausted pool, an unreachable server).
        connect_timeout: seconds each connection attempt may take (libpq's
            ``connect_timeout``, unless the DSN sets it).
        statement_timeout: seconds each statement may run (the server's
            ``statement_timeout``), so a lock held elsewhere cannot stall a call.
        heartbeat: seconds between the listener's checks that its connection still answers; a
            listener silent for three of them counts as down (see :meth:`poll_changes`).

    Every method is thread-safe. The store starts its ``LISTEN`` thread with its first
    subscriber (an :class:`~skaala_auth.Authenticator`), so a short-lived CLI command holds no
    listening connection. The constructor does not wait for the database: a service starts
    while it is down, and answers 503 until it is back.

    .. versionadded:: 0.4.0
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "skaala_auth",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
        heartbeat: float = 1.0,
    ) -> None:
        if not schema:
            raise ValueError("schema must not be empty")
        self.schema = schema
        self.timeout = timeout
        self.heartbeat = heartbeat
        self._dsn = dsn
        try:  # a malformed DSN fails now, not in a background thread
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            # libpq's message may quote a piece of the string: it stays out of this one.
            raise ValueError(
                "not a valid PostgreSQL connection string (see "
                "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING)"
            ) from None
        self._where = _describe(params)
        self._connect_kwargs: dict[str, Any] = {}
        if "connect_timeout" not in params:
            # libpq counts whole seconds, and treats anything under 2 as 2.
            self._connect_kwargs["connect_timeout"] = max(2, round(connect_timeout))
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "skaala_auth"
        # A peer that vanished without closing (a network partition, a frozen host) is noticed
        # in seconds, not after the kernel's default of minutes: unacknowledged data times out
        # after _TCP_USER_TIMEOUT, an idle connection is probed by keepalives.
        for name, value in _TCP_DEFAULTS.items():
            if name not in params:
                self._connect_kwargs[name] = value
        self._session = (
            "SELECT set_config('statement_timeout', %s, false), "
            "set_config('TimeZone', 'UTC', false)",
            (f"{max(1, round(statement_timeout * 1000))}ms",),
        )
        quoted = sql.Identifier(schema).as_string(None)
        self._sql = {name: text.replace("{s}", quoted) for name, text in _SQL.items()}
        self._migrations = tuple(script.replace("{s}", quoted) for script in MIGRATIONS)
        self._channel = _channel(schema)
        self._origin = secrets.token_hex(8)
        self._feed = ChangeFeed()
        self._lock = threading.Lock()
        self._migrate_lock = threading.Lock()
        self._migrated = False
        self._closed = False
        self._connect_error: BaseException | None = None
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True, **self._connect_kwargs},
            configure=self._configure,
            connection_class=_connection_class(weakref.ref(self)),
            name=f"skaala_auth:{schema}",
            open=False,
        )
        self._pool.open(wait=False)
        self._listener: _Listener | None = None
        self._finalizer = _finalizer(self, [])

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The connection pool (for its statistics: ``store.pool.get_stats()``)."""
        return self._pool

    @property
    def listener_pid(self) -> int | None:
        """The server process id of the ``LISTEN`` connection, while it is connected."""
        listener = self._listener
        return None if listener is None else listener.pid

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(*self._session)

    def _connected(self, error: BaseException | None) -> None:
        """Called by every connection attempt: remember why the last one failed."""
        self._connect_error = error

    def _unavailable(self, error: Exception) -> DatabaseUnavailableError:
        if isinstance(error, PoolTimeout | TooManyRequests):
            failed = self._connect_error
            if failed is not None:
                return DatabaseUnavailableError(
                    f"cannot connect to PostgreSQL at {self._where} within {self.timeout:g} s: "
                    f"{_first_line(failed)}"
                )
            stats = self._pool.get_stats()
            return DatabaseUnavailableError(
                f"no free connection to PostgreSQL at {self._where} within {self.timeout:g} s: "
                f"all {stats.get('pool_size', '?')} pooled connections are busy (max_size "
                f"{self._pool.max_size}; {stats.get('requests_waiting', 0)} calls waiting)"
            )
        return DatabaseUnavailableError(f"PostgreSQL at {self._where}: {_first_line(error)}")

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T], *, retry: bool = False) -> _T:
        """Run ``work`` on a pooled connection; ``retry``: once more on a fresh connection when
        the first one turns out dead (the server restarted since it was pooled). Only for work
        that may run twice."""
        if self._closed:
            raise DatabaseUnavailableError(f"{self!r} is closed")
        if not self._migrated:
            self.migrate()
        attempts = 2 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                with self._pool.connection(timeout=self.timeout) as conn:
                    try:
                        return work(conn)
                    except psycopg.OperationalError:
                        if attempt < attempts and conn.closed:
                            continue
                        raise
            except psycopg.errors.UniqueViolation as error:
                raise DuplicateKeyError(
                    f"a key id or digest is already stored ({error.diag.constraint_name})"
                ) from None
            except (PoolTimeout, TooManyRequests, psycopg.OperationalError) as error:
                raise self._unavailable(error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate(self) -> int:
        """Create the schema and tables, or bring them up to date; returns the schema version.
        Called on first use; ``skaala-auth init --dsn …`` calls it to create them up front.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            RuntimeError: the database has a newer schema than this version knows.
        """
        with self._migrate_lock:
            if self._migrated:
                return len(self._migrations)
            try:
                with self._pool.connection(timeout=self.timeout) as conn:
                    version = self._migrate(conn)
            except (PoolTimeout, TooManyRequests, psycopg.OperationalError) as error:
                raise self._unavailable(error) from error
            self._migrated = True
            return version

    def _migrate(self, conn: psycopg.Connection[Any]) -> int:
        table = f"{sql.Identifier(self.schema).as_string(None)}.schema_version"
        known = len(self._migrations)
        # Read-only first: a service whose role may not create tables still starts on an
        # up-to-date schema.
        found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if found is not None and found[0] is not None:
            row = conn.execute(self._sql["version"]).fetchone()
            if row is not None and row[0] == known:
                return known
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"skaala_auth:{table}",))
            exists = conn.execute("SELECT to_regnamespace(%s)", (self.schema,)).fetchone()
            if exists is None or exists[0] is None:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_version (version integer NOT NULL)"
                ).format(sql.Identifier(self.schema))
            )
            row = conn.execute(self._sql["version"]).fetchone()
            version = (row[0] if row else None) or 0
            if version > known:
                raise RuntimeError(
                    f"the key store in schema {self.schema} has schema version {version}, newer "
                    f"than this skaala_auth knows ({known}): upgrade skaala_auth"
                )
            for number, script in enumerate(self._migrations[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement.encode())
                conn.execute(
                    sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(
                        sql.Identifier(self.schema)
                    ),
                    (number,),
                )
        return known

    @property
    def schema_version(self) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(self._sql["version"]).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return self._run(work, retry=True)

    def _notify(self, conn: psycopg.Connection[Any], change: Change) -> None:
        """Queue ``change`` for the other processes: sent when the transaction commits."""
        payload = {"o": self._origin, "k": change.kind}
        for field, value in (("i", change.key_id), ("t", change.team_id), ("u", change.user_id)):
            if value is not None:
                payload[field] = value
        conn.execute(
            "SELECT pg_notify(%s, %s)", (self._channel, json.dumps(payload, separators=(",", ":")))
        )

    # -- keys ----------------------------------------------------------------------------------

    def find_key(self, digest: str) -> KeyRecord | None:
        query = self._sql["find"]
        row = self._run(lambda conn: conn.execute(query, (digest,)).fetchone(), retry=True)
        if row is None:
            return None
        role = row[17]
        return KeyRecord(_key(row), row[16], None if role is None else _ROLES[role])

    def get_key(self, key_id: str) -> ApiKey | None:
        query = self._sql["get"]
        row = self._run(lambda conn: conn.execute(query, (key_id,)).fetchone(), retry=True)
        return None if row is None else _key(row)

    def digests(self) -> Iterator[str]:
        """Every stored digest (see :class:`~skaala_auth.stores.base.DigestSource`), read
        :data:`DIGEST_CHUNK` at a time in digest order through the digest index, one query (and
        one pooled connection, given back at once) per chunk.

        .. versionadded:: 0.5.0
        """
        query = self._sql["digests"]
        after = ""
        while True:

            def chunk(conn: psycopg.Connection[Any], after: str = after) -> list[tuple[Any, ...]]:
                return conn.execute(query, (after, DIGEST_CHUNK)).fetchall()

            rows = self._run(chunk, retry=True)
            for (digest,) in rows:
                yield digest
            if len(rows) < DIGEST_CHUNK:
                return
            after = rows[-1][0]

    def key_digest(self, key_id: str) -> str | None:
        """The digest stored for ``key_id``.

        .. versionadded:: 0.5.0
        """
        query = self._sql["key_digest"]
        row = self._run(lambda conn: conn.execute(query, (key_id,)).fetchone(), retry=True)
        return None if row is None else str(row[0])

    def list_keys(self, team_id: str) -> list[ApiKey]:
        query = self._sql["list"]
        rows = self._run(lambda conn: conn.execute(query, (team_id,)).fetchall(), retry=True)
        return [_key(row) for row in rows]

    def insert_key(self, key: ApiKey, digest: str) -> None:
        change = Change("key", key_id=key.id)

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(self._sql["insert"], _key_row(key, digest))
                self._notify(conn, change)

        self._run(work)
        self._feed.publish(change)

    def insert_keys(self, keys: Iterable[tuple[ApiKey, str]]) -> None:
        """Insert many keys in one transaction with ``COPY`` (see the protocol). The pairs are
        streamed to the server as they are read: an iterator of a million is never held at
        once, and if it raises, nothing is inserted."""
        rows = (_key_row(key, digest) for key, digest in keys)
        first = next(rows, None)
        if first is None:
            return
        change = Change("key")

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                with conn.cursor() as cursor, cursor.copy(self._sql["copy"]) as copy:
                    copy.write_row(first)
                    for row in rows:
                        copy.write_row(row)
                self._notify(conn, change)

        self._run(work)
        self._feed.publish(change)

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        _aware(at)
        change = Change("key", key_id=key_id)

        def work(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
            with conn.transaction():
                conn.execute(self._sql["revoke"], (at, key_id, at))
                self._notify(conn, change)
                return conn.execute(self._sql["get"], (key_id,)).fetchone()

        row = self._run(work)
        self._feed.publish(change)
        return None if row is None else _key(row)

    def set_policy(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Write some of a key's policy fields (see the protocol); ``None`` for an unknown id."""
        unknown = set(changes) - set(POLICY_FIELDS)
        if unknown:
            raise ValueError(f"not policy fields: {', '.join(sorted(unknown))}")
        if not changes:
            return self.get_key(key_id)
        names = sorted(changes)
        query = sql.SQL("UPDATE {}.api_keys SET {} WHERE id = %s").format(
            sql.Identifier(self.schema),
            sql.SQL(", ").join(
                sql.SQL("{} = %s" + ("::jsonb" if name == "metadata" else "")).format(
                    sql.Identifier(name)
                )
                for name in names
            ),
        )
        values = [_policy_value(name, changes[name]) for name in names]
        change = Change("key", key_id=key_id)

        def work(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
            with conn.transaction():
                if conn.execute(query, (*values, key_id)).rowcount != 1:
                    return None
                self._notify(conn, change)
                return conn.execute(self._sql["get"], (key_id,)).fetchone()

        row = self._run(work)
        if row is None:
            return None
        self._feed.publish(change)
        return _key(row)

    def use_key(self, key_id: str) -> bool:
        """Take one use of a key with a usage limit, atomically (see the protocol)."""

        def work(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                if conn.execute(self._sql["use"], (key_id,)).fetchone() is not None:
                    return True
                row = conn.execute(self._sql["limited"], (key_id,)).fetchone()
                return row is not None and bool(row[0])

        return self._run(work)

    def rotate_key(
        self, old_id: str, old_expires_at: datetime, new_key: ApiKey, new_digest: str
    ) -> None:
        _aware(old_expires_at)
        old, new = Change("key", key_id=old_id), Change("key", key_id=new_key.id)

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                if conn.execute(self._sql["rotate"], (old_expires_at, old_id)).rowcount != 1:
                    raise LookupError(old_id)
                conn.execute(self._sql["insert"], _key_row(new_key, new_digest))
                self._notify(conn, old)
                self._notify(conn, new)

        self._run(work)
        self._feed.publish(old)
        self._feed.publish(new)

    def update_digest(self, key_id: str, old_digest: str, new_digest: str) -> None:
        change = Change("key", key_id=key_id)

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(self._sql["rehash"], (new_digest, key_id, old_digest))
                self._notify(conn, change)

        self._run(work)
        self._feed.publish(change)

    def record_last_used(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        ids = list(used)
        times = [_aware(used[key_id]) for key_id in ids]
        query = self._sql["last_used"]
        # Safe to retry: moving a time forward twice moves it as far as once.
        self._run(lambda conn: conn.execute(query, (ids, times)), retry=True)

    # -- members -------------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        change = Change("member", team_id=member.team_id, user_id=member.user_id)
        row = (member.team_id, member.user_id, member.role.value, _aware(member.added_at))

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(self._sql["add_member"], row)
                self._notify(conn, change)

        self._run(work)
        self._feed.publish(change)

    def get_member(self, team_id: str, user_id: str) -> Member | None:
        query = self._sql["get_member"]
        row = self._run(lambda conn: conn.execute(query, (team_id, user_id)).fetchone(), retry=True)
        return None if row is None else _member(row)

    def list_members(self, team_id: str) -> list[Member]:
        query = self._sql["list_members"]
        rows = self._run(lambda conn: conn.execute(query, (team_id,)).fetchall(), retry=True)
        return [_member(row) for row in rows]

    def remove_member(self, team_id: str, user_id: str) -> bool:
        change = Change("member", team_id=team_id, user_id=user_id)

        def work(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                removed = conn.execute(self._sql["remove_member"], (team_id, user_id)).rowcount
                if removed:
                    self._notify(conn, change)
                return bool(removed)

        removed = self._run(work)
        if removed:
            self._feed.publish(change)
        return removed

    # -- changes -------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every :class:`Change`, this process's and (through ``LISTEN``)
        every other's. The first subscriber starts the listener and waits for its first
        connection attempt (at most ``timeout`` seconds): once it returns, a change committed
        by another process reaches ``callback``, or the listener is down and
        :meth:`poll_changes` says so."""
        unsubscribe = self._feed.subscribe(callback)
        with self._lock:
            listener = self._listener
            started = listener is None and not self._closed
            if started:
                listener = self._listener = _Listener(
                    self._dsn,
                    {"autocommit": True, **self._connect_kwargs},
                    self._channel,
                    self._origin,
                    self._feed,
                    heartbeat=self.heartbeat,
                    where=self._where,
                )
                self._finalizer.detach()
                self._finalizer = _finalizer(self, [listener])
                listener.start()
        if started and listener is not None:
            listener.attempted.wait(self.timeout)
        return unsubscribe

    def poll_changes(self) -> None:
        """A health check, without I/O: other processes' changes arrive through ``LISTEN`` as
        they commit, not at polls.

        While the listener is not connected (the database restarted, the connection was cut, or
        it has not answered its heartbeat for three ``heartbeat`` intervals), changes made
        elsewhere go unheard: every poll then publishes ``Change("all")``, so authenticators
        keep nothing cached and ask the database (or answer 503) until the listener is back.
        """
        listener = self._listener
        if listener is not None and not listener.healthy():
            self._feed.publish(Change("all"))

    def close(self) -> None:
        """Stop the listener and close the pool's connections. Idempotent."""
        with self._lock:
            self._closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"PostgresKeyStore({self._where}, schema={self.schema!r})"

    def __str__(self) -> str:
        return f"PostgreSQL {self._where}, schema {self.schema}"


# -- the listener -------------------------------------------------------------------------------


class _Listener:
    """One ``LISTEN`` connection in a daemon thread, reconnecting with backoff.

    Holds no reference to the store (a store dropped without ``close()`` is collected, and its
    finalizer stops this thread).
    """

    def __init__(
        self,
        dsn: str,
        kwargs: dict[str, Any],
        channel: str,
        origin: str,
        feed: ChangeFeed,
        *,
        heartbeat: float,
        where: str,
    ) -> None:
        self._dsn = dsn
        self._kwargs = kwargs
        self._channel = channel
        self._origin = origin
        self._feed = feed
        self._heartbeat = heartbeat
        self._where = where
        self._stop = threading.Event()
        #: Set once the first connection attempt has succeeded or failed.
        self.attempted = threading.Event()
        self.pid: int | None = None
        self._heard = 0.0  # time.monotonic() of the last sign of life of the connection
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="skaala-auth-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def healthy(self) -> bool:
        return self.pid is not None and time.monotonic() - self._heard < 3 * self._heartbeat

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_TICK * 5)

    def _run(self) -> None:
        backoff = _BACKOFF[0]
        first = True
        while not self._stop.is_set():
            try:
                self._listen(first)
            except psycopg.Error as error:
                self._lost(error)
            except Exception as error:  # never let the thread die: a dead listener hears nothing
                log.exception("the key store's listener failed")
                self._lost(error)
            else:
                return  # stopped
            finally:
                self.pid = None
                self.attempted.set()
            first = False
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, _BACKOFF[1])

    def _listen(self, first: bool) -> None:
        with psycopg.connect(self._dsn, **self._kwargs) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._heard = time.monotonic()
            self.pid = conn.info.backend_pid
            self.attempted.set()
            if self._down_since is not None:
                log.warning(
                    "the key store's listener is connected to PostgreSQL at %s again after "
                    "%.1f s: dropped every cached key (changes made meanwhile were not heard)",
                    self._where,
                    time.monotonic() - self._down_since,
                )
                self._down_since = None
            if not first:
                # Notifications sent while the connection was down are lost: trust nothing.
                self._feed.publish(Change("all"))
            pinged = time.monotonic()
            while not self._stop.is_set():
                for notify in conn.notifies(timeout=_TICK):
                    self._heard = time.monotonic()
                    self._deliver(notify.payload)
                now = time.monotonic()
                if now - pinged >= self._heartbeat:
                    conn.execute("SELECT 1")
                    self._heard = pinged = time.monotonic()

    def _lost(self, error: BaseException) -> None:
        if self._stop.is_set():
            return
        was_up = self.pid is not None
        self.pid = None
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "the key store's listener has no connection to PostgreSQL at %s (%s): every "
                "poll drops the caches until it reconnects",
                self._where,
                _first_line(error),
            )
        if was_up:
            self._feed.publish(Change("all"))

    def _deliver(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin, kind = message["o"], message["k"]
            if kind not in _KINDS:
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError):
            # Not ours to read (another version, a hand-sent NOTIFY): assume the worst.
            self._feed.publish(Change("all"))
            return
        if origin == self._origin:
            return  # this store's own change: published in-process when it committed
        get = message.get
        self._feed.publish(Change(kind, key_id=get("i"), team_id=get("t"), user_id=get("u")))


# -- helpers -------------------------------------------------------------------------------------


def _finalizer(
    store: PostgresKeyStore, listeners: list[_Listener]
) -> weakref.finalize[[ConnectionPool[psycopg.Connection[Any]], list[_Listener]], PostgresKeyStore]:
    """What closes the pool and stops the listener when the store is closed or collected.

    Not at interpreter exit: the authenticators' last-used marks are flushed then (an ``atexit``
    hook of skaala_auth.lastused), through this pool, and weakref's own exit hook may run
    first. The process's end closes the connections anyway.
    """
    finalizer = weakref.finalize(store, _release, store._pool, listeners)
    finalizer.atexit = False
    return finalizer


def _release(pool: ConnectionPool[psycopg.Connection[Any]], listeners: list[_Listener]) -> None:
    for listener in listeners:
        listener.stop()
    pool.close(timeout=1.0)


def _connection_class(
    store: Callable[[], PostgresKeyStore | None],
) -> type[psycopg.Connection[Any]]:
    """A connection class that tells the store how each pool connection attempt went, so that a
    pool timeout can say why (psycopg_pool's own error does not)."""

    class Connection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Connection:
            try:
                conn = super().connect(conninfo, **kwargs)
            except psycopg.Error as error:
                owner = store()
                if owner is not None:
                    owner._connected(error)
                raise
            owner = store()
            if owner is not None:
                owner._connected(None)
            return conn

    return Connection


def _channel(schema: str) -> str:
    """The ``NOTIFY`` channel of a schema's store (an identifier: at most 63 bytes)."""
    channel = f"skaala_auth:{schema}"
    if len(channel.encode()) <= 63:
        return channel
    import hashlib

    return "skaala_auth:" + hashlib.sha256(schema.encode()).hexdigest()[:32]


def _describe(params: Mapping[str, Any]) -> str:
    """Where a DSN points, for messages: host, port and database, never the password."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{dbname}"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment


def _key_row(key: ApiKey, digest: str) -> tuple[Any, ...]:
    return (
        key.id,
        digest,
        key.team_id,
        key.user_id,
        key.name,
        sorted(key.scopes),
        key.prefix,
        _aware(key.created_at),
        _aware(key.expires_at),
        None if key.revoked_at is None else _aware(key.revoked_at),
        None if key.last_used_at is None else _aware(key.last_used_at),
        key.rotated_from,
        *(_policy_value(name, getattr(key, name)) for name in POLICY_FIELDS),
    )


def _policy_value(name: str, value: Any) -> Any:
    """One policy field as its column stores it (``NULL`` for "none")."""
    if name == "disabled_at":
        return None if value is None else _aware(value)
    if name == "rate_limit":
        return None if value is None else str(value)
    if name == "allowed_ips":
        return list(value) if value else None
    if name == "metadata":
        return json.dumps(dict(value), separators=(",", ":")) if value else None
    return value  # remaining


def _key(row: tuple[Any, ...]) -> ApiKey:
    key = ApiKey(row[0], row[1], row[2], row[3], frozenset(row[4]), *row[5:11])
    disabled, limit, remaining, networks, metadata = row[11:16]
    if disabled is None and limit is None and remaining is None and not networks and not metadata:
        return key
    return dataclasses.replace(
        key,
        disabled_at=disabled,
        rate_limit=None if limit is None else RateLimit.parse(limit),
        remaining=remaining,
        allowed_ips=tuple(networks or ()),
        metadata=freeze_metadata(json.loads(metadata) if metadata else None),
    )


def _member(row: tuple[Any, ...]) -> Member:
    team_id, user_id, role, added_at = row
    return Member(team_id=team_id, user_id=user_id, role=_ROLES[role], added_at=added_at)
