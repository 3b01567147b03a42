"""The values the library hands out: key records, members, principals.

All are frozen, slotted dataclasses. None of them ever holds a plaintext key or a digest.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "METADATA_MAX_BYTES",
    "ApiKey",
    "KeyRecord",
    "Member",
    "Principal",
    "RateLimit",
    "RateLimitState",
    "Role",
    "from_epoch",
    "freeze_metadata",
    "to_epoch",
]

#: The largest metadata a key may carry, as compact JSON (UTF-8 bytes).
METADATA_MAX_BYTES: Final = 4096
_NO_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})


def _no_metadata() -> Mapping[str, Any]:
    return _NO_METADATA


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


_UNITS: Final = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE: Final = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*([a-z]+?)s?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A rate limit: at most :attr:`limit` requests in any :attr:`window` seconds.

    Written ``"100/minute"``, ``"100 per minute"``, ``"5000/hour"``, ``"10/30s"`` or
    ``"10/30"`` (seconds); :meth:`parse` reads those, ``str()`` writes ``"100/60s"``.

    .. versionadded:: 0.4.0
    """

    limit: int
    window: int

    def __post_init__(self) -> None:
        if type(self.limit) is not int or type(self.window) is not int:
            raise TypeError("a rate limit is an integer count per an integer of seconds")
        if self.limit < 1 or self.window < 1:
            raise ValueError("a rate limit needs a count and a window of at least 1")

    @classmethod
    def parse(cls, text: str | RateLimit) -> RateLimit:
        """A rate limit from its written form.

        Raises:
            ValueError: text that is not a rate limit.
        """
        if isinstance(text, RateLimit):
            return text
        if not isinstance(text, str):
            raise TypeError(f"a rate limit is written '100/minute', not {type(text).__name__}")
        found = _RATE.fullmatch(text)
        if found is None:
            plain = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
            if plain is None:
                raise ValueError(f"not a rate limit: {text[:40]!r} (write it '100/minute')")
            return cls(int(plain.group(1)), int(plain.group(2)))
        count, multiple, unit = found.groups()
        seconds = _UNITS.get(unit.lower())
        if seconds is None:
            raise ValueError(f"unknown time unit {unit[:20]!r}: second, minute, hour or day")
        return cls(int(count), int(multiple or 1) * seconds)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window}s"


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """Where a key stands in its rate limit after a request: what the ``X-RateLimit-*``
    headers say, on allowed answers and on 429s alike.

    Attributes:
        limit: requests allowed per window.
        remaining: requests left in the current window after this one.
        reset: seconds until the window frees a request again (``X-RateLimit-Reset``).

    .. versionadded:: 0.4.0
    """

    limit: int
    remaining: int
    reset: float

    def headers(self) -> list[tuple[str, str]]:
        """The ``X-RateLimit-*`` headers (lower-case names) of an allowed answer."""
        return [
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(max(self.remaining, 0))),
            ("x-ratelimit-reset", str(max(1, int(self.reset + 0.999)))),
        ]

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """:meth:`headers`, latin-1 encoded, for ASGI."""
        return [(name.encode(), value.encode()) for name, value in self.headers()]


def freeze_metadata(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Check a key's metadata and return it read-only.

    Metadata is a small JSON object the service attaches to a key: string keys, JSON values, at
    most :data:`METADATA_MAX_BYTES` as compact JSON. It is never logged.

    Raises:
        TypeError: not a JSON object of JSON values.
        ValueError: larger than :data:`METADATA_MAX_BYTES`.

    .. versionadded:: 0.4.0
    """
    if metadata is None:
        return _NO_METADATA
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata is a JSON object (a mapping of names to JSON values)")
    if not metadata:
        return _NO_METADATA
    try:
        text = json.dumps(dict(metadata), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must be plain JSON: {error}") from None
    if len(text.encode()) > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is limited to {METADATA_MAX_BYTES} bytes of JSON")
    loaded = json.loads(text)
    if not all(isinstance(name, str) for name in metadata):
        raise TypeError("metadata names must be strings")
    return MappingProxyType(loaded)


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
        disabled_at: when the key was disabled (:meth:`KeyManager.disable_key`), or ``None``;
            reversible, unlike a revocation.
        rate_limit: the key's own :class:`RateLimit`, over the limiter's default; ``None``:
            the default.
        remaining: uses left (a usage limit), or ``None`` for no limit.
        allowed_ips: the networks (CIDRs) the key may be used from; empty: anywhere.
        metadata: a small JSON object the service attaches to the key (never logged).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``disabled_at``, ``rate_limit``, ``remaining``, ``allowed_ips``, ``metadata``.
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
    disabled_at: datetime | None = None
    rate_limit: RateLimit | None = None
    remaining: int | None = None
    allowed_ips: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=_no_metadata, hash=False)

    @property
    def environment(self) -> Literal["live", "test"]:
        return "test" if self.prefix.startswith("sk_test_") else "live"

    @property
    def restricted(self) -> bool:
        """True when the key carries a restriction the authenticator checks per request."""
        return self.remaining is not None or bool(self.allowed_ips)

    def is_active(self, now: datetime) -> bool:
        """True when the key is neither revoked nor expired at ``now`` (a disabled key is still
        active: it is turned off, not ended)."""
        return (self.revoked_at is None or now < self.revoked_at) and now < self.expires_at

    def status(self, now: datetime) -> Literal["active", "expired", "revoked", "disabled"]:
        """``"active"``, ``"expired"``, ``"revoked"`` or ``"disabled"`` at ``now``."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if self.disabled_at is not None and now >= self.disabled_at:
            return "disabled"
        return "active"


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
        metadata: the key's metadata (read-only; empty for sessions). Never logged.
        rate_limit: the key's own rate limit, when it has one (what a limiter applies instead
            of its default).
        rate_limit_state: where this request left the key in its rate limit (the
            ``X-RateLimit-*`` headers adapters add to the answer); ``None`` without a limiter.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``metadata``, ``rate_limit``, ``rate_limit_state``.
    """

    key_id: str | None
    team_id: str
    user_id: str
    scopes: frozenset[str]
    method: Literal["api_key", "session"] = "api_key"
    role: Role | None = None
    key_prefix: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=_no_metadata, hash=False, repr=False)
    rate_limit: RateLimit | None = field(default=None, repr=False)
    rate_limit_state: RateLimitState | None = field(
        default=None, compare=False, hash=False, repr=False
    )

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
