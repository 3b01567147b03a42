"""Fixtures of the contract suite: the keys of every situation in DESIGN.md's table, and the
bookings API served by each adapter (``adapter`` is parametrized over all of them)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import pytest

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore

from ..conftest import Clock
from .apps import ADAPTERS, CALLS, Call, Reply

# The framework each adapter needs; a missing one skips that adapter's rows, with the reason.
_NEEDS = {
    "starlette": ("starlette", "skaala_auth.starlette"),
    "fastapi": ("fastapi", "skaala_auth.fastapi"),
    "flask": ("flask", "skaala_auth.flask"),
    "wsgi": ("werkzeug", "skaala_auth.wsgi"),
    "django": ("django", "skaala_auth.django"),
    "django-asgi": ("django", "skaala_auth.django"),
    "drf": ("rest_framework", "skaala_auth.django.rest_framework"),
}


def _missing(adapter: str) -> str | None:
    for module in _NEEDS[adapter]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            return f"{module} is not importable: the {adapter} adapter is not there yet"
    return None


@dataclass
class Keys:
    read: str  # team_1, read:bookings
    read_write: str  # team_1, read:bookings + write:bookings
    other_team: str  # team_2, read:bookings
    expired: str
    revoked: str
    rotated_old: str  # rotated with 24 h grace: still works
    rotated_new: str
    rotated_past_grace: str  # rotated with 1 h grace, 2 h ago
    test_key: str  # sk_test_…, refused by default
    left_team: str  # its user was removed from team_1


@pytest.fixture
def keys(store: MemoryKeyStore, manager: KeyManager, clock: Clock) -> Keys:
    manager.add_member(team_id="team_1", user_id="user_2", role="member")
    manager.add_member(team_id="team_2", user_id="user_9", role="owner")

    def create(
        *scopes: str,
        team: str = "team_1",
        user: str = "user_1",
        expires_in: timedelta | None = None,
        environment: Literal["live", "test"] = "live",
    ) -> str:
        key, _ = manager.create_key(
            team_id=team,
            user_id=user,
            scopes=scopes,
            expires_in=expires_in,
            environment=environment,
        )
        return key

    revoked, revoked_record = manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"]
    )
    manager.revoke_key(revoked_record.id)
    old, old_record = manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"]
    )
    new, _ = manager.rotate_key(old_record.id, grace=timedelta(hours=24))
    past, past_record = manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"]
    )
    manager.rotate_key(past_record.id, grace=timedelta(hours=1))
    keys = Keys(
        read=create("read:bookings"),
        read_write=create("read:bookings", "write:bookings"),
        other_team=create("read:bookings", team="team_2", user="user_9"),
        expired=create("read:bookings", expires_in=timedelta(hours=1)),
        revoked=revoked,
        rotated_old=old,
        rotated_new=new,
        rotated_past_grace=past,
        test_key=create("read:bookings", environment="test"),
        left_team=create("read:bookings", user="user_2"),
    )
    manager.remove_member(team_id="team_1", user_id="user_2")
    clock.advance(timedelta(hours=2))  # the expired key and the 1 h grace are over
    return keys


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> str:
    reason = _missing(request.param)
    if reason is not None:
        pytest.skip(reason)
    return str(request.param)


Serve = Callable[[Authenticator], Call]


@pytest.fixture
def serve(adapter: str) -> Iterator[Serve]:
    """``serve(authenticator)`` → a call function on the bookings API of ``adapter``."""
    with ExitStack() as stack:

        def start(auth: Authenticator) -> Call:
            stack.callback(auth.close)
            return stack.enter_context(ADAPTERS[adapter](auth))

        CALLS.clear()
        yield start
        CALLS.clear()


@dataclass
class Api:
    """The bookings API of one adapter, on the default authenticator."""

    call: Call

    def get(self, path: str, headers: Sequence[tuple[str, str]] = (), query: str = "") -> Reply:
        return self.call("GET", path, list(headers), query)

    def post(self, path: str, headers: Sequence[tuple[str, str]] = (), query: str = "") -> Reply:
        return self.call("POST", path, list(headers), query)


@pytest.fixture
def api(serve: Serve, store: MemoryKeyStore, clock: Clock, keys: Keys) -> Api:
    return Api(serve(Authenticator(store, clock=clock)))
