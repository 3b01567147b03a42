"""The values the library hands out: key records, members, principals.

All are frozen, slotted dataclasses. None of them ever holds a plaintext key or a digest.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

__all__ = ["ApiKey", "KeyRecord", "Member", "Principal", "Role", "from_epoch", "to_epoch"]


class Role(StrEnum):
    """A user's role in a team. Owners and admins manage keys; members use them.

    .. versionadded:: 0.1.0
    """

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def can_manage_keys(self) -> bool:
        return self is not Role.MEMBER


@dataclass(frozen=True, slots=True)
class ApiKey:
    """The record of one API key, as dashboards and the CLI show it.

    Attributes:
        id: ``key_…``, stable, safe to show and to log.
        team_id: the team the key acts for.
        user_id: the team member who owns the key.
        name: a label chosen at creation.
        scopes: what the key may do.
        prefix: the display prefix, ``sk_live_AbCd…wxyz``.
        created_at: when it was created (UTC).
        expires_at: when it stops working (UTC); the key is refused from that instant on.
        revoked_at: when it was revoked, or ``None``.
        last_used_at: roughly when it last authenticated (written behind, see the docs).
        rotated_from: for a key made by :meth:`KeyManager.rotate_key`, the id of the old key.

    .. versionadded:: 0.1.0
    """

    id: str
    team_id: str
    user_id: str
    name: str
    scopes: frozenset[str]
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    rotated_from: str | None = None

    @property
    def environment(self) -> Literal["live", "test"]:
        return "test" if self.prefix.startswith("sk_test_") else "live"

    def is_active(self, now: datetime) -> bool:
        """True when the key is neither revoked nor expired at ``now``."""
        return (self.revoked_at is None or now < self.revoked_at) and now < self.expires_at

    def status(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        """``"active"``, ``"expired"`` or ``"revoked"`` at ``now``."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        return "active" if now < self.expires_at else "expired"


@dataclass(frozen=True, slots=True)
class Member:
    """A user's membership in a team.

    .. versionadded:: 0.1.0
    """

    team_id: str
    user_id: str
    role: Role
    added_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a digest look-up returns: the key, its stored digest, and its user's role in the
    key's team at that moment (``None`` when the user is no longer a member).

    Stores return it; it lives with the models (``skaala_auth.stores.base`` exports it too) so
    that the decision needs no store import.

    .. versionadded:: 0.1.0
    """

    key: ApiKey
    digest: str
    role: Role | None

    def __repr__(self) -> str:  # the digest stays out of logs and tracebacks
        return f"KeyRecord(key={self.key!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, once authenticated.

    Attributes:
        key_id: the API key's id (``None`` for a dashboard session).
        team_id: the team the caller acts for.
        user_id: the user behind the key or session.
        scopes: what the caller may do.
        method: ``"api_key"`` or ``"session"``.
        role: the user's role in the team when known (always for sessions).
        key_prefix: the key's display prefix, for logs.

    .. versionadded:: 0.1.0
    """

    key_id: str | None
    team_id: str
    user_id: str
    scopes: frozenset[str]
    method: Literal["api_key", "session"] = "api_key"
    role: Role | None = None
    key_prefix: str | None = None

    def has_scopes(self, *scopes: str) -> bool:
        """True when every one of ``scopes`` is granted (AND)."""
        return self.scopes.issuperset(scopes)


def to_epoch(moment: datetime) -> float:
    """Seconds since the epoch for an aware datetime.

    Raises:
        ValueError: ``moment`` is naive (no time zone): it cannot be placed on the clock.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (e.g. datetime.now(UTC))")
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    """An aware UTC datetime for epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)
