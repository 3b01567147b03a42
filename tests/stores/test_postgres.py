"""The PostgreSQL store against a real server: its schema, LISTEN/NOTIFY invalidation (in one
process and across two), the listener's reconnection, and outages (an unreachable server, an
exhausted pool, a lock held elsewhere, a server that closed the pooled connections).

The store contract itself runs on PostgreSQL in test_store_contract.py. Every test gets a schema
of its own (the ``postgres_schema`` fixture); without a server they skip (fail under CI=true).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from skaala_auth import (
    ApiKey,
    Authenticator,
    KeyManager,
    Member,
    Role,
    StoreUnavailableError,
    generate_key,
)
from skaala_auth.stores.base import Change

if os.environ.get("CI") == "true":  # CI has the extra installed: a missing one is a failure
    postgres = importlib.import_module("skaala_auth.stores.postgres")
else:
    postgres = pytest.importorskip("skaala_auth.stores.postgres", reason="needs psycopg")

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PostgresKeyStore = postgres.PostgresKeyStore
ROOT = Path(__file__).resolve().parents[2]
WATCHER = Path(__file__).with_name("pg_watcher.py")
T0 = datetime(2027, 1, 1, tzinfo=UTC)
#: Runs per measurement of the cross-process bound.
RUNS = 20


def key(number: int, team: str = "team_1", user: str = "user_1") -> ApiKey:
    return ApiKey(
        id=f"key_{number}",
        team_id=team,
        user_id=user,
        name=f"key {number}",
        scopes=frozenset({"read:bookings"}),
        prefix="sk_live_AbCd…wxyz",
        created_at=T0,
        expires_at=T0 + timedelta(days=365),
    )


def eventually(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Wait for ``condition`` (a liveness bound for background work, not a latency claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.01)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def open_store(postgres_dsn: str, postgres_schema: str) -> Iterator[Callable[..., Any]]:
    """Opens more stores on the test's schema (other 'processes' in this one), closed after."""
    opened: list[Any] = []

    def open_(**options: Any) -> Any:
        store = PostgresKeyStore(postgres_dsn, schema=postgres_schema, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


class TestSchema:
    def test_if_first_used_then_schema_tables_and_version_created(
        self, postgres_store: Any, postgres_dsn: str, postgres_schema: str
    ) -> None:
        assert postgres_store.schema_version == len(postgres.MIGRATIONS)
        with admin(postgres_dsn) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (postgres_schema,),
                )
            }
        assert tables == {"api_keys", "members", "schema_version"}

    def test_if_looked_up_by_digest_then_the_unique_index_answers(
        self, postgres_store: Any, postgres_dsn: str, postgres_schema: str
    ) -> None:
        postgres_store.insert_keys((key(n), f"sha256$d{n}") for n in range(2000))
        with admin(postgres_dsn) as conn:
            conn.execute(sql.SQL("ANALYZE {}.api_keys").format(sql.Identifier(postgres_schema)))
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    sql.SQL("EXPLAIN SELECT id FROM {}.api_keys WHERE digest = 'x'").format(
                        sql.Identifier(postgres_schema)
                    )
                )
            )
        assert "api_keys_digest_key" in plan and "Seq Scan" not in plan

    def test_if_two_stores_migrate_a_new_schema_at_once_then_one_migration(
        self, open_store: Callable[..., Any], postgres_dsn: str, postgres_schema: str
    ) -> None:
        stores = [open_store() for _ in range(4)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(stores))

        def migrate(store: Any) -> None:
            barrier.wait()
            try:
                store.migrate()
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=migrate, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with admin(postgres_dsn) as conn:
            rows = conn.execute(
                sql.SQL("SELECT version FROM {}.schema_version").format(
                    sql.Identifier(postgres_schema)
                )
            ).fetchall()
        assert rows == [(n,) for n in range(1, len(postgres.MIGRATIONS) + 1)]

    def test_if_the_schema_is_newer_than_the_code_then_refused(
        self, postgres_store: Any, open_store: Callable[..., Any], postgres_dsn: str
    ) -> None:
        postgres_store.migrate()
        with admin(postgres_dsn) as conn:
            conn.execute(
                sql.SQL("INSERT INTO {}.schema_version VALUES (99)").format(
                    sql.Identifier(postgres_store.schema)
                )
            )
        with pytest.raises(RuntimeError, match="upgrade skaala_auth"):
            open_store().find_key("d")

    def test_if_a_key_clashes_then_the_error_does_not_quote_the_digest(
        self, postgres_store: Any
    ) -> None:
        postgres_store.insert_key(key(1), "sha256$secretdigest")
        with pytest.raises(postgres.DuplicateKeyError) as caught:
            postgres_store.insert_key(key(2), "sha256$secretdigest")
        assert "secretdigest" not in str(caught.value) and caught.value.__cause__ is None
        with pytest.raises(postgres.DuplicateKeyError):
            postgres_store.insert_keys([(key(3), "sha256$secretdigest")])

    def test_if_repr_then_no_password(self, postgres_schema: str) -> None:
        store = PostgresKeyStore(
            f"postgresql://app:hunter2@127.0.0.1:{closed_port()}/keys", schema=postgres_schema
        )
        try:
            assert "hunter2" not in repr(store) + str(store)
            assert "127.0.0.1" in repr(store) and postgres_schema in repr(store)
        finally:
            store.close()


class TestNotify:
    """Changes reach the other stores on the database, as they commit."""

    def test_if_another_store_changes_keys_and_members_then_heard_here(
        self, open_store: Callable[..., Any]
    ) -> None:
        here, there = open_store(), open_store()
        heard: list[Change] = []
        here.subscribe(heard.append)
        there.add_member(Member("team_1", "user_1", Role.OWNER, T0))
        there.insert_key(key(1), "d1")
        there.insert_keys([(key(2), "d2"), (key(3), "d3")])
        there.revoke_key("key_1", T0)
        there.rotate_key("key_2", T0 + timedelta(days=1), key(4), "d4")
        there.update_digest("key_3", "d3", "d3b")
        there.remove_member("team_1", "user_1")
        expected = [
            Change("member", team_id="team_1", user_id="user_1"),
            Change("key", key_id="key_1"),
            Change("key"),
            Change("key", key_id="key_1"),
            Change("key", key_id="key_2"),
            Change("key", key_id="key_4"),
            Change("key", key_id="key_3"),
            Change("member", team_id="team_1", user_id="user_1"),
        ]
        eventually(lambda: len(heard) >= len(expected), "every change heard")
        assert heard == expected

    def test_if_this_store_changes_then_subscribers_hear_it_once(
        self, open_store: Callable[..., Any]
    ) -> None:
        here, there = open_store(), open_store()
        heard: list[Change] = []
        here.subscribe(heard.append)
        here.insert_key(key(1), "d1")
        # Notifications arrive in commit order: once `there`'s is heard, here's own came back
        # before it (and was skipped, having been published when it committed).
        there.revoke_key("key_1", T0)
        eventually(lambda: len(heard) >= 2, "the other store's change heard")
        assert heard == [Change("key", key_id="key_1"), Change("key", key_id="key_1")]

    def test_if_a_transaction_fails_then_nothing_is_announced(
        self, open_store: Callable[..., Any]
    ) -> None:
        here, there = open_store(), open_store()
        there.insert_key(key(1), "d1")
        heard: list[Change] = []
        here.subscribe(heard.append)
        with pytest.raises(LookupError):
            there.rotate_key("key_404", T0, key(2), "d2")
        with pytest.raises(postgres.DuplicateKeyError):
            there.insert_keys([(key(3), "d3"), (key(4), "d1")])
        there.remove_member("team_1", "nobody")  # nothing removed: nothing to announce
        there.revoke_key("key_1", T0)  # the marker: everything before it has been delivered
        eventually(lambda: bool(heard), "the marker heard")
        assert heard == [Change("key", key_id="key_1")]

    def test_if_another_store_revokes_then_the_authenticator_here_refuses(
        self, open_store: Callable[..., Any]
    ) -> None:
        here, there = open_store(), open_store()
        manager = KeyManager(there)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        plain, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings"]
        )
        # Polls would not help: the cache lives 60 s and nothing else announces the change.
        with Authenticator(here, cache_ttl=60, poll_interval=60) as auth:
            assert auth.authenticate(bearer(plain)).key_id == record.id
            assert len(auth.cache) == 1
            manager.revoke_key(record.id)
            eventually(lambda: len(auth.cache) == 0, "the cached grant dropped")
            with pytest.raises(Exception) as refused:
                auth.authenticate(bearer(plain))
            assert getattr(refused.value, "status_code", None) == 401


class TestTwoProcesses:
    """An authenticator in another process refuses within one second (DESIGN.md)."""

    @pytest.fixture
    def watcher(self, postgres_dsn: str, postgres_schema: str) -> Iterator[subprocess.Popen[str]]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        child = subprocess.Popen(
            [sys.executable, str(WATCHER), postgres_dsn, postgres_schema],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert child.stdout is not None
        ready = child.stdout.readline().strip()
        assert ready == "ready", child.stderr.read() if child.stderr else ""
        yield child
        try:
            child.communicate("stop\n", timeout=15)  # closes the pipes too
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung child fails the test
            child.kill()
            child.communicate()
            raise
        assert child.returncode == 0

    def measure(
        self,
        child: subprocess.Popen[str],
        prepare: Callable[[int], tuple[str, str]],
        change: Callable[[int], float],
        status: int,
    ) -> list[float]:
        """Per run: ``prepare`` a key (returns team and key), let the child cache its grant,
        make ``change`` (returns the epoch second from which the key must be refused), and
        read when the child first refused it."""
        lags: list[float] = []
        for run in range(RUNS):
            team, plain = prepare(run)
            assert child.stdin is not None
            child.stdin.write(f"watch {team} {plain}\n")
            child.stdin.flush()
            del plain
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "granted"
            must_refuse_from = change(run)
            answer = child.stdout.readline().split()
            assert answer[:2] == ["refused", str(status)], answer
            lags.append(float(answer[2]) - must_refuse_from)
        return lags

    @staticmethod
    def p99(lags: list[float]) -> float:
        return statistics.quantiles(lags, n=100, method="inclusive")[98]

    def report(self, what: str, lags: list[float]) -> None:
        """Shown with ``pytest -s`` (the numbers in the PostgreSQL docs page come from here)."""
        p50, p99 = statistics.median(lags) * 1000, self.p99(lags) * 1000
        print(f"{what}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lags) * 1000:.1f} ms")

    def test_if_revoked_in_one_process_then_refused_in_the_other_within_a_second(
        self, watcher: subprocess.Popen[str], postgres_store: Any
    ) -> None:
        manager = KeyManager(postgres_store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        ids: dict[int, str] = {}

        def prepare(run: int) -> tuple[str, str]:
            plain, record = manager.create_key(
                team_id="team_1", user_id="user_1", scopes=["read:bookings"]
            )
            ids[run] = record.id
            return "team_1", plain

        def change(run: int) -> float:
            started = time.time()
            manager.revoke_key(ids[run])
            return started

        lags = self.measure(watcher, prepare, change, 401)
        self.report("revocation", lags)
        assert self.p99(lags) < 1.0, lags

    def test_if_a_member_is_removed_in_one_process_then_refused_in_the_other_within_a_second(
        self, watcher: subprocess.Popen[str], postgres_store: Any
    ) -> None:
        manager = KeyManager(postgres_store)

        def prepare(run: int) -> tuple[str, str]:
            manager.add_member(team_id="team_1", user_id=f"user_{run}", role="member")
            plain, _ = manager.create_key(
                team_id="team_1", user_id=f"user_{run}", scopes=["read:bookings"]
            )
            return "team_1", plain

        def change(run: int) -> float:
            started = time.time()
            manager.remove_member(team_id="team_1", user_id=f"user_{run}")
            return started

        lags = self.measure(watcher, prepare, change, 403)
        self.report("membership", lags)
        assert self.p99(lags) < 1.0, lags

    def test_if_rotated_in_one_process_then_the_other_refuses_the_old_key_when_grace_ends(
        self, watcher: subprocess.Popen[str], postgres_store: Any
    ) -> None:
        """The end of a grace is no event: the rotation's notification must bring the old key's
        shortened expiry into the other process's cache, which then refuses it on time (without
        it, the cached grant would carry the old expiry for the cache's 30 s)."""
        manager = KeyManager(postgres_store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        ids: dict[int, str] = {}
        grace = timedelta(milliseconds=300)

        def prepare(run: int) -> tuple[str, str]:
            plain, record = manager.create_key(
                team_id="team_1", user_id="user_1", scopes=["read:bookings"]
            )
            ids[run] = record.id
            return "team_1", plain

        def change(run: int) -> float:
            manager.rotate_key(ids[run], grace=grace)
            old = postgres_store.get_key(ids[run])
            return float(old.expires_at.timestamp())

        lags = self.measure(watcher, prepare, change, 401)
        self.report("end of grace", lags)
        assert min(lags) >= 0, "refused before the grace ended"
        assert self.p99(lags) < 1.0, lags


class TestLastUsed:
    EXIT_WITHOUT_CLOSE = (
        "import sys\n"
        "from skaala_auth import Authenticator\n"
        "from skaala_auth.stores.postgres import PostgresKeyStore\n"
        "store = PostgresKeyStore(sys.argv[1], schema=sys.argv[2])\n"
        "auth = Authenticator(store)\n"
        "auth.authenticate({'authorization': 'Bearer ' + sys.stdin.read().strip()})\n"
    )

    def test_if_a_process_exits_without_closing_then_its_last_used_marks_are_written(
        self, postgres_dsn: str, postgres_store: Any
    ) -> None:
        """The exit flush goes through the store's pool: the store must not close it first."""
        manager = KeyManager(postgres_store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        plain, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"]
        )
        done = subprocess.run(
            [sys.executable, "-c", self.EXIT_WITHOUT_CLOSE, postgres_dsn, postgres_store.schema],
            input=plain,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        del plain
        assert done.returncode == 0 and done.stderr == "", done.stderr
        used = postgres_store.get_key(record.id)
        assert used is not None and used.last_used_at is not None


class TestListener:
    def test_if_its_connection_is_terminated_then_it_reconnects_and_clears_the_caches(
        self,
        open_store: Callable[..., Any],
        postgres_dsn: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        store = open_store()
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        plain, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        heard: list[Change] = []
        with Authenticator(store) as auth:
            store.subscribe(heard.append)
            auth.authenticate(bearer(plain))
            assert len(auth.cache) == 1
            before = store.listener_pid
            assert before is not None
            caplog.set_level(logging.WARNING, logger="skaala_auth.store")
            with admin(postgres_dsn) as conn:
                assert conn.execute("SELECT pg_terminate_backend(%s)", (before,)).fetchone() == (
                    True,
                )
            eventually(
                lambda: store.listener_pid not in (None, before) and len(heard) >= 2,
                "the listener back, and the drop and the reconnection announced",
            )
            assert heard == [Change("all"), Change("all")]
            assert len(auth.cache) == 0
            # It listens again: another store's revocation is heard.
            other = open_store()
            other.revoke_key("key_x", T0)
            eventually(lambda: len(heard) == 3, "a change after the reconnection")
        warnings = [r for r in caplog.records if r.name == "skaala_auth.store"]
        assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
        assert "no connection" in warnings[0].getMessage()
        assert "again" in warnings[1].getMessage()

    def test_if_it_cannot_connect_then_one_warning_and_every_poll_drops_the_caches(
        self, postgres_schema: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="skaala_auth.store")
        store = PostgresKeyStore(
            f"postgresql://postgres@127.0.0.1:{closed_port()}/test", schema=postgres_schema
        )
        try:
            heard: list[Change] = []
            store.subscribe(heard.append)
            time.sleep(1.0)  # several reconnection attempts (backoff 0.1, 0.2, 0.4 s)
            store.poll_changes()
            store.poll_changes()
            assert heard == [Change("all"), Change("all")]
        finally:
            store.close()
        records = [r for r in caplog.records if r.name == "skaala_auth.store"]
        assert len(records) == 1 and records[0].levelno == logging.WARNING
        assert "no connection to PostgreSQL" in records[0].getMessage()

    def test_if_healthy_then_polls_announce_nothing(self, postgres_store: Any) -> None:
        heard: list[Change] = []
        postgres_store.subscribe(heard.append)
        postgres_store.poll_changes()
        assert heard == []

    def test_if_a_foreign_notification_arrives_then_everything_is_dropped(
        self, postgres_store: Any, postgres_dsn: str
    ) -> None:
        heard: list[Change] = []
        postgres_store.subscribe(heard.append)
        with admin(postgres_dsn) as conn:
            conn.execute(
                "SELECT pg_notify(%s, 'not json')", (postgres._channel(postgres_store.schema),)
            )
        eventually(lambda: bool(heard), "the notification heard")
        assert heard == [Change("all")]


class TestOutages:
    def test_if_the_server_is_unreachable_then_503_never_401(self, postgres_schema: str) -> None:
        dsn = f"postgresql://postgres:hunter2@127.0.0.1:{closed_port()}/test"
        store = PostgresKeyStore(dsn, schema=postgres_schema, timeout=0.5)
        try:
            with pytest.raises(postgres.DatabaseUnavailableError) as caught:
                store.find_key("sha256$x")
            assert "cannot connect" in str(caught.value) and "hunter2" not in str(caught.value)
            with Authenticator(store, store_timeout=1.0) as auth:
                for _ in range(2):  # not remembered as unknown either
                    with pytest.raises(StoreUnavailableError):
                        auth.authenticate(bearer(generate_key()))
                with pytest.raises(StoreUnavailableError):
                    asyncio.run(auth.authenticate_async(bearer(generate_key())))
        finally:
            store.close()

    def test_if_the_pool_is_exhausted_then_503_and_back_when_a_connection_frees(
        self, open_store: Callable[..., Any]
    ) -> None:
        store = open_store(min_size=1, max_size=1, timeout=0.3)
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        plain, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        with Authenticator(store, store_timeout=2.0) as auth:
            with store.pool.connection():  # the only connection, held elsewhere
                with pytest.raises(postgres.DatabaseUnavailableError) as caught:
                    store.find_key("sha256$x")
                assert "busy" in str(caught.value)
                with pytest.raises(StoreUnavailableError):
                    auth.authenticate(bearer(plain))
            assert auth.authenticate(bearer(plain)).team_id == "team_1"

    def test_if_a_lock_is_held_elsewhere_then_the_statement_times_out(
        self, open_store: Callable[..., Any], postgres_dsn: str
    ) -> None:
        store = open_store(statement_timeout=0.3)
        store.insert_key(key(1), "d1")
        with admin(postgres_dsn) as conn, conn.transaction():
            conn.execute(
                sql.SQL("LOCK TABLE {}.api_keys IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(store.schema)
                )
            )
            with pytest.raises(postgres.DatabaseUnavailableError, match="statement timeout"):
                store.find_key("d1")
        assert store.find_key("d1") is not None

    def test_if_the_server_closed_the_pooled_connection_then_the_next_read_reconnects(
        self, open_store: Callable[..., Any], postgres_dsn: str
    ) -> None:
        store = open_store(min_size=1, max_size=1)
        store.insert_key(key(1), "d1")
        with store.pool.connection() as conn:
            pid = conn.info.backend_pid
        with admin(postgres_dsn) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        eventually(lambda: _gone(postgres_dsn, pid), "the backend gone")
        record = store.find_key("d1")
        assert record is not None and record.key.id == "key_1"

    def test_if_the_server_goes_away_and_comes_back_then_503_meanwhile_and_recovery_alone(
        self, postgres_dsn: str, postgres_schema: str, postgres_store: Any
    ) -> None:
        params = conninfo_to_dict(postgres_dsn)
        proxy = Proxy((str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))))
        proxy.start()
        manager = KeyManager(postgres_store)  # on the server directly: never cut
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        plain, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:calls"]
        )
        store = PostgresKeyStore(
            make_conninfo(postgres_dsn, host="127.0.0.1", port=proxy.port),
            schema=postgres_schema,
            timeout=0.5,
        )
        try:
            with Authenticator(store, store_timeout=1.0) as auth:
                assert auth.authenticate(bearer(plain)).key_id == record.id
                proxy.stop()
                eventually(lambda: store.listener_pid is None, "the listener noticed")
                for _ in range(3):  # the cached grant is not trusted while nothing is heard
                    with pytest.raises(StoreUnavailableError):
                        auth.authenticate(bearer(plain))
                proxy.start()

                def granted() -> bool:
                    try:
                        return auth.authenticate(bearer(plain)).key_id == record.id
                    except StoreUnavailableError:
                        return False

                eventually(granted, "the store back by itself", seconds=30)
                eventually(lambda: store.listener_pid is not None, "the listener back")
                manager.revoke_key(record.id)
                eventually(lambda: len(auth.cache) == 0, "a change heard after the outage")
        finally:
            store.close()
            proxy.stop()

    def test_if_closed_then_calls_refused(self, postgres_store: Any) -> None:
        postgres_store.close()
        postgres_store.close()
        with pytest.raises(postgres.DatabaseUnavailableError, match="closed"):
            postgres_store.find_key("d")


class Proxy:
    """A TCP relay to the server that the test can cut (an outage: connections dropped, new ones
    refused) and restore, on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = closed_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*sockets, *([listener] if listener else [])]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _gone(dsn: str, pid: int) -> bool:
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return row == (0,)


class TestFaces:
    """The CLI and the demo on ``--dsn``."""

    @staticmethod
    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "skaala_auth", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=ROOT,
        )

    @pytest.mark.shows_key("output")
    def test_if_managed_with_the_cli_then_every_command_works_on_the_schema(
        self, postgres_dsn: str, postgres_schema: str, postgres_store: Any
    ) -> None:
        where = ["--dsn", postgres_dsn, "--schema", postgres_schema]
        init = self.cli(*where, "init")
        assert init.returncode == 0 and postgres_schema in init.stdout, init.stderr
        added = self.cli(
            *where, "members", "add", "--team", "t1", "--user", "u1", "--role", "owner"
        )
        assert added.returncode == 0, added.stderr
        made = self.cli(
            *where, "keys", "create", "--team", "t1", "--user", "u1", "--scope", "read:calls",
            "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        key_id = json.loads(made.stdout)["id"]
        # The store the test holds sees what the CLI made, in the same schema.
        assert [k.id for k in postgres_store.list_keys("t1")] == [key_id]
        listed = self.cli(*where, "keys", "list", "--team", "t1", "--json")
        assert [k["id"] for k in json.loads(listed.stdout)] == [key_id]
        assert self.cli(*where, "keys", "revoke", key_id).returncode == 0
        revoked = postgres_store.get_key(key_id)
        assert revoked is not None and revoked.revoked_at is not None

    def test_if_the_server_is_unreachable_then_the_cli_says_so_in_one_line(self) -> None:
        dsn = f"postgresql://postgres:hunter2@127.0.0.1:{closed_port()}/test"
        result = self.cli("--dsn", dsn, "keys", "list", "--team", "t1")
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "cannot connect to PostgreSQL" in result.stderr
        assert "hunter2" not in result.stderr

    @pytest.mark.skipif(
        importlib.util.find_spec("uvicorn") is None, reason="the demo needs uvicorn"
    )
    def test_if_the_demo_runs_on_a_dsn_then_a_key_revoked_with_the_cli_is_refused(
        self, postgres_dsn: str, postgres_schema: str
    ) -> None:
        import httpx

        where = ["--dsn", postgres_dsn, "--schema", postgres_schema]
        port = closed_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            [sys.executable, "-m", "skaala_auth", *where, "demo", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            lines: list[str] = []
            deadline = time.monotonic() + 30
            while not any("sk_live_" in line for line in lines):
                line = server.stdout.readline()
                assert line and time.monotonic() < deadline, "the demo stopped"
                lines.append(line)
            banner = "".join(lines)
            assert "PostgreSQL" in banner and postgres_schema in banner
            plain = next(w for line in lines for w in line.split() if w.startswith("sk_live_"))
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": plain}, timeout=5
            ) as http:
                del plain
                while True:
                    try:
                        if http.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, "the demo did not start"
                        time.sleep(0.05)
                assert http.get("/api/v1/bookings").status_code == 200
                listed = self.cli(*where, "keys", "list", "--team", "team_demo", "--json")
                [record] = json.loads(listed.stdout)
                assert self.cli(*where, "keys", "revoke", record["id"]).returncode == 0
                eventually(
                    lambda: http.get("/api/v1/bookings").status_code == 401, "the key refused"
                )
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.communicate(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
                server.kill()
                server.communicate()
                raise
        assert server.returncode == 0


def test_if_settings_name_a_dsn_and_schema_then_the_authenticator_uses_that_store(
    postgres_dsn: str, postgres_schema: str, postgres_store: Any
) -> None:
    """What Flask's SKAALA_AUTH_DSN / Django's "DSN" go through."""
    from skaala_auth.config import authenticator_from_settings

    manager = KeyManager(postgres_store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    plain, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
    auth = authenticator_from_settings({"DSN": postgres_dsn, "SCHEMA": postgres_schema})
    try:
        assert isinstance(auth.store, PostgresKeyStore)
        assert auth.authenticate(bearer(plain)).key_id == record.id
    finally:
        auth.close()
        auth.store.close()
