"""Fixtures shared by the whole suite: a controllable clock, stores, a manager, an authenticator.

Only core imports here: ``tests/core`` must run with no web framework installed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, SQLiteKeyStore

# The leak check runs after every test (see tests/leakcheck.py); the ORM store's databases are
# fixtures of the whole session (see tests/django_orm.py: Django is imported only when used).
pytest_plugins = ("tests.leakcheck", "tests.django_orm")

START = 1_800_000_000.0  # 2027-01-15, a fixed instant for every test clock


class Clock:
    """A clock the test moves by hand (epoch seconds, like ``time.time``)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float | timedelta) -> None:
        self.now += seconds.total_seconds() if isinstance(seconds, timedelta) else seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


#: The PostgreSQL server the tests that need one use (see DESIGN.md, "Services in tests").
POSTGRES_DSN = os.environ.get(
    "SKAALA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test server's DSN, once it has answered. Without a server (or without psycopg) the
    tests that need it skip, saying why; under ``CI=true`` they fail instead, so a broken CI
    service cannot pass as a green run."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401 - the store needs it too

        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as error:
        reason = f"no PostgreSQL at SKAALA_TEST_POSTGRES_DSN ({POSTGRES_DSN}): {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI runs a PostgreSQL service: this must not skip)")
        pytest.skip(reason)
    return POSTGRES_DSN


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema of this test's own (the store creates it), dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"skaala_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


#: The Redis server the tests that need one use (see DESIGN.md, "Services in tests").
REDIS_URL = os.environ.get("SKAALA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis server's URL, once it has answered; skips without one (or without
    redis-py), and fails under ``CI=true``. Tests use a channel or key prefix of their own."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        reason = f"no Redis at SKAALA_TEST_REDIS_URL ({REDIS_URL}): {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI runs a Redis service: this must not skip)")
        pytest.skip(reason)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"skaala_test_{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for name in client.scan_iter(f"{prefix}*"):
        client.delete(name)
    client.close()


@pytest.fixture
def postgres_store(postgres_dsn: str, postgres_schema: str) -> Iterator[Any]:
    """A :class:`~skaala_auth.stores.postgres.PostgresKeyStore` on a schema of its own."""
    from skaala_auth.stores.postgres import PostgresKeyStore

    store = PostgresKeyStore(postgres_dsn, schema=postgres_schema, timeout=10.0)
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryKeyStore]:
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_store")
        return
    store = MemoryKeyStore() if request.param == "memory" else SQLiteKeyStore(tmp_path / "k.db")
    yield store  # type: ignore[misc]
    store.close()


@pytest.fixture
def store() -> MemoryKeyStore:
    return MemoryKeyStore()


@pytest.fixture
def manager(store: MemoryKeyStore, clock: Clock) -> KeyManager:
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    return manager


@pytest.fixture
def auth(store: MemoryKeyStore, clock: Clock) -> Iterator[Authenticator]:
    with Authenticator(store, clock=clock) as authenticator:
        yield authenticator
