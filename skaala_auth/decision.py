"""The decision: may this key, at this instant, do this, for this team?

Rules of this module:
- no I/O, no framework imports, no locks;
- the clock is a parameter (``now``, epoch seconds), never read here;
- everything expensive (building the :class:`Principal`, converting datetimes) happens once, in
  :meth:`Grant.from_record`, when a key is loaded; :func:`decide` runs on every request.

Order of checks, and so which error wins when several apply: revoked → expired (401, before
anything else: authentication comes before authorisation) → membership (403) → team (403) →
scopes (403).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from .errors import (
    AuthError,
    InsufficientScopeError,
    InvalidKeyError,
    MembershipRevokedError,
    Reason,
    TeamMismatchError,
)
from .models import KeyRecord, Principal, Role

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
    """

    principal: Principal
    not_after: float
    revoked_at: float
    role: Role | None

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
        principal = Principal(
            key_id=key.id,
            team_id=key.team_id,
            user_id=key.user_id,
            scopes=key.scopes,
            method="api_key",
            role=record.role,
            key_prefix=key.prefix,
        )
        return cls(principal, min(key.expires_at.timestamp(), revoked), revoked, record.role)


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
        revoked = now >= grant.revoked_at
        return InvalidKeyError(reason=Reason.REVOKED if revoked else Reason.EXPIRED)
    if grant.role is None:
        return MembershipRevokedError()
    principal = grant.principal
    # refusal(), inlined: this is the per-request path.
    if team_id is not None and team_id != principal.team_id:
        return TeamMismatchError()
    if required_scopes and not principal.scopes.issuperset(required_scopes):
        return InsufficientScopeError(required_scopes)
    return principal
