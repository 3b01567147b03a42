"""Fixtures shared by the whole suite: a controllable clock, stores, a manager, an authenticator.

Only core imports here: ``tests/core`` must run with no web framework installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

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


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryKeyStore]:
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
