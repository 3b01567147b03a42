"""Fixtures of the management API tests: two teams, their members and keys, on one store."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from skaala_auth import KeyManager, MemoryKeyStore, Principal, Role
from skaala_auth.management import ManagementApi, ManagementEvent

from ..conftest import Clock


@dataclass
class Team:
    """team_1: user_1 owner, user_3 admin, user_2 member, with one key each of user_1 and
    user_3; team_2: user_9 owner, with one key. ``keys`` hold the plaintexts, ``ids`` the ids."""

    own_key: str
    own_key_id: str
    admin_key: str
    admin_key_id: str
    other_key: str
    other_key_id: str


@pytest.fixture
def team(manager: KeyManager) -> Team:
    manager.add_member(team_id="team_1", user_id="user_2", role="member")
    manager.add_member(team_id="team_1", user_id="user_3", role="admin")
    manager.add_member(team_id="team_2", user_id="user_9", role="owner")
    own, own_record = manager.create_key(
        team_id="team_1", user_id="user_1", name="CI", scopes=["read:bookings"]
    )
    admin, admin_record = manager.create_key(
        team_id="team_1",
        user_id="user_3",
        name="sync",
        scopes=["read:bookings", "write:bookings"],
    )
    other, other_record = manager.create_key(
        team_id="team_2", user_id="user_9", name="theirs", scopes=["read:bookings"]
    )
    return Team(own, own_record.id, admin, admin_record.id, other, other_record.id)


def session(user_id: str = "user_1", role: Role = Role.OWNER, team_id: str = "team_1") -> Principal:
    """The principal the core grants a dashboard session of ``user_id``."""
    return Principal(
        key_id=None,
        team_id=team_id,
        user_id=user_id,
        scopes=frozenset({"read:bookings"}),
        method="session",
        role=role,
    )


@pytest.fixture
def events() -> list[ManagementEvent]:
    return []


@pytest.fixture
def layer(manager: KeyManager, clock: Clock, events: list[ManagementEvent]) -> ManagementApi:
    return ManagementApi(manager, clock=clock, audit=events.append)


def snapshot(store: MemoryKeyStore) -> object:
    """Everything the API can change, to compare before and after a refused request."""
    return [(store.list_keys(team), store.list_members(team)) for team in ("team_1", "team_2", "x")]
