"""The decision: may this key, at this instant, do this, for this team?

Rules of this module:
- no I/O, no framework imports, no locks;
- the clock is a parameter (``now``, epoch seconds), never read here;
- everything expensive (building the :class:`Principal`, converting datetimes) happens once, in
  :meth:`Grant.from_record`, when a key is loaded; :func:`decide` runs on every request.

Order of checks, and so which error wins when several apply: revoked → expired → disabled
(401, before anything else: authentication comes before authorisation) → membership (403) →
team (403) → scopes (403). A key's own restrictions (:class:`~skaala_auth.policy.KeyPolicy`:
its IP allow-list, 403; its usage limit, 429) come after all of these, with the rate limit,
once the key is granted (see :meth:`skaala_auth.flow.Flow.admit`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from .errors import (
    AuthError,
    InsufficientScopeError,
    InvalidKeyError,
    MembershipRevokedError,
    Reason,
    TeamMismatchError,
)
from .models import KeyRecord, Principal, Role, freeze_metadata
from .policy import KeyPolicy, parse_networks

__all__ = ["Grant", "decide", "refusal"]

_NEVER = float("inf")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a loaded key grants, in the form the per-request check wants.

    Attributes:
        principal: handed out as-is on success (built once per load, not per request).
        not_after: epoch seconds from which the key is refused: the earlier of its expiry and
            its revocation.
        revoked_at: epoch seconds of the revocation, or ``inf``.
        role: the user's role in the key's team at load time; ``None``: no longer a member.
        disabled_at: epoch seconds from which the key is disabled, or ``inf``.
        policy: the key's restrictions, ``None`` for a key without any (the usual case: it
            then costs nothing per request).
    """

    principal: Principal
    not_after: float
    revoked_at: float
    role: Role | None
    disabled_at: float = _NEVER
    policy: KeyPolicy | None = None

    @classmethod
    def from_record(cls, record: KeyRecord) -> Grant:
        """The grant of a loaded record.

        Raises:
            TypeError: a record no key can be (a store fault: the caller answers 503). A
                missing expiry or scopes that are not a set of names must never become a key
                that never expires or a string whose letters pass a scope check.
        """
        key = record.key
        scopes = key.scopes
        if not isinstance(scopes, frozenset) or not all(type(s) is str for s in scopes):
            raise TypeError(f"key {key.id}: scopes are not a set of names")
        if not isinstance(key.expires_at, datetime):
            raise TypeError(f"key {key.id}: no expiry")
        if key.revoked_at is not None and not isinstance(key.revoked_at, datetime):
            raise TypeError(f"key {key.id}: unreadable revocation time")
        revoked = key.revoked_at.timestamp() if key.revoked_at is not None else _NEVER
        disabled_at = getattr(key, "disabled_at", None)  # a store's record of an older shape
        if disabled_at is not None and not isinstance(disabled_at, datetime):
            raise TypeError(f"key {key.id}: unreadable disable time")
        disabled = disabled_at.timestamp() if disabled_at is not None else _NEVER
        remaining = getattr(key, "remaining", None)
        if remaining is not None and type(remaining) is not int:
            raise TypeError(f"key {key.id}: unreadable usage limit")
        networks = parse_networks(getattr(key, "allowed_ips", ()))
        policy = None
        if networks or remaining is not None:
            policy = KeyPolicy(networks, remaining is not None)
        principal = Principal(
            key_id=key.id,
            team_id=key.team_id,
            user_id=key.user_id,
            scopes=key.scopes,
            method="api_key",
            role=record.role,
            key_prefix=key.prefix,
            metadata=_frozen(getattr(key, "metadata", None)),
            rate_limit=getattr(key, "rate_limit", None),
        )
        not_after = min(key.expires_at.timestamp(), revoked, disabled)
        return cls(principal, not_after, revoked, record.role, disabled, policy)


def _frozen(metadata: object) -> Mapping[str, Any]:
    """A record's metadata, read-only (a store that hands out a plain dict gets it checked)."""
    if isinstance(metadata, MappingProxyType):
        return metadata
    return freeze_metadata(metadata)  # type: ignore[arg-type]


def refusal(
    principal: Principal, required_scopes: Collection[str] = (), team_id: str | None = None
) -> AuthError | None:
    """Why ``principal`` may not make this request, or ``None`` when it may.

    Args:
        principal: who is calling.
        required_scopes: every one of these must be granted (AND).
        team_id: the team in the request path, if any: it must be the principal's team.

    Returns:
        :class:`TeamMismatchError`, :class:`InsufficientScopeError`, or ``None``.

    .. versionadded:: 0.1.0
    """
    if team_id is not None and team_id != principal.team_id:
        return TeamMismatchError()
    if required_scopes and not principal.scopes.issuperset(required_scopes):
        return InsufficientScopeError(required_scopes)
    return None


def decide(
    grant: Grant, now: float, required_scopes: Collection[str] = (), team_id: str | None = None
) -> Principal | AuthError:
    """Decide one request for a loaded key. Returns the error rather than raising it: this runs
    on every request, and adapters render errors rather than catch them.

    Returns:
        The principal, or: :class:`InvalidKeyError` (revoked or expired at ``now``; the boundary
        instant is refused), :class:`MembershipRevokedError` (the key's user has left the key's
        team), or what :func:`refusal` returns.

    .. versionadded:: 0.1.0
    """
    if now >= grant.not_after:
        if now >= grant.revoked_at:
            return InvalidKeyError(reason=Reason.REVOKED)
        if now >= grant.disabled_at and grant.not_after == grant.disabled_at:
            return InvalidKeyError(reason=Reason.DISABLED)
        return InvalidKeyError(reason=Reason.EXPIRED)
    if grant.role is None:
        return MembershipRevokedError()
    principal = grant.principal
    # refusal(), inlined: this is the per-request path.
    if team_id is not None and team_id != principal.team_id:
        return TeamMismatchError()
    if required_scopes and not principal.scopes.issuperset(required_scopes):
        return InsufficientScopeError(required_scopes)
    return principal
