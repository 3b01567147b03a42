"""Dashboard sessions in the flow: from a carried token to a principal of the team in the path.

Rules of this module (the rules of :mod:`skaala_auth.flow`, which drives it):

- no I/O and no clock: the instant is a parameter; what needs I/O is returned as a step for
  the driver (:class:`FetchKeys`: the JWKS; :class:`Membership`: the caller's role in a team);
- no PyJWT import: the verifier (:class:`~skaala_auth.session.StackAuthVerifier`) is handed
  in, so ``import skaala_auth`` works without the ``session`` extra;
- it runs only where no API key was presented: when a request carries both, the key decides.

The order: the token (its carrier; a refused token is a 401) → the verified-token cache, or the
signature and claims → the CSRF check of a cookie-authenticated unsafe request → the caller's
role in the team of the path (cached, invalidated by the store's membership changes) → the
endpoint's roles and scopes.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

from .audit import AuditEvent
from .errors import (
    AuthError,
    ConfigurationError,
    InsufficientScopeError,
    MissingKeyError,
    MissingSessionError,
    NotTeamMemberError,
    OriginRejectedError,
    RoleRequiredError,
)
from .models import Principal, Role
from .rules import UNBOUND_TEAM, Requirement
from .scopes import DEFAULT_SCOPES

if TYPE_CHECKING:
    from .credentials import HeadersLike
    from .stores.base import Change

__all__ = [
    "Auditor",
    "CarriedToken",
    "FetchKeys",
    "Membership",
    "NeedKeys",
    "RoleResolver",
    "SessionClaims",
    "SessionFlow",
    "SessionVerifier",
    "default_role_scopes",
    "normalize_origins",
    "origin_allowed",
]

#: Methods that change nothing: a cookie-authenticated request with one needs no CSRF check.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a verified session token says, and nothing that could replay it (never the token).

    Attributes:
        user_id: the Stack Auth user (``sub``).
        expires_at: when the token stops being accepted, leeway excluded (``exp``, epoch
            seconds). A principal built from it must not outlive ``expires_at + leeway``.
        issued_at: ``iat`` (epoch seconds), when the token carries it.
        session_id: Stack Auth's ``refresh_token_id``: which sign-in the token belongs to (an
            identifier, not a secret), for the audit log.
        anonymous: an anonymous Stack Auth user (only with ``allow_anonymous=True``).
        restricted: a restricted Stack Auth user, e.g. an unverified e-mail address (only with
            ``allow_restricted=True`` or ``allow_anonymous=True``).
        key_id: the ``kid`` of the JWKS key that signed it, for the audit log.

    .. versionadded:: 0.1.0
    """

    user_id: str
    expires_at: float
    issued_at: float | None = None
    session_id: str | None = None
    anonymous: bool = False
    restricted: bool = False
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class CarriedToken:
    """A session token as a request carries it (not yet verified), and where it was found.

    Attributes:
        token: the access token (kept out of ``repr``).
        carrier: ``"access_token_cookie"``, ``"sdk_cookie"`` or ``"header"``.

    .. versionadded:: 0.1.0
    """

    token: str = field(repr=False)
    carrier: Literal["access_token_cookie", "sdk_cookie", "header"]

    @property
    def by_cookie(self) -> bool:
        """True for the cookies: the browser sends them by itself, so an unsafe request
        authenticated by one needs the CSRF (``Origin``) check."""
        return self.carrier != "header"


@dataclass(frozen=True, slots=True)
class NeedKeys:
    """What :meth:`StackAuthVerifier.decode` cannot do itself: the JWKS must be fetched (no keys
    yet, a ``kid`` it does not know while a refetch is allowed, or keys older than
    ``jwks_max_age``). Perform :meth:`StackAuthVerifier.fetch_keys`, then decode again with
    ``fetched=True``. Carries no token.

    Attributes:
        key_id: the token's ``kid``.

    .. versionadded:: 0.1.0
    """

    key_id: str


class SessionVerifier(Protocol):
    """**Protocol:** what the flow needs of a session verifier
    (:class:`~skaala_auth.session.StackAuthVerifier` is the one this package ships).

    .. versionadded:: 0.1.0
    """

    @property
    def leeway(self) -> float: ...

    def find(self, headers: HeadersLike) -> CarriedToken | None: ...

    def decode(
        self, token: str, now: float, *, fetched: bool = False
    ) -> SessionClaims | NeedKeys | AuthError: ...

    def fetch_keys(self, now: float) -> bool: ...


class Auditor(Protocol):
    """**Protocol:** where the session half's outcomes are audited (the
    :class:`~skaala_auth.flow.Flow` that drives it: its audit settings and hook).

    .. versionadded:: 0.1.0
    """

    audit_success: bool
    audit_failure: bool

    def audited(
        self,
        error: AuthError,
        key_prefix: str | None = None,
        principal: Principal | None = None,
    ) -> AuthError: ...

    def emit(self, event: AuditEvent) -> None: ...


#: Answers a user's role in a team (``None``: not a member). Called in the authenticator's
#: worker threads, under its ``store_timeout``; raising is an outage (503).
RoleResolver = Callable[[str, str], "Role | str | None"]


class FetchKeys:
    """A step for the driver: fetch the session JWKS (:meth:`SessionVerifier.fetch_keys`), then
    call :meth:`SessionFlow.fetched`. Holds the carried token until then (never in its
    ``repr``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("carried", "headers", "method", "need")

    def __init__(
        self, carried: CarriedToken, headers: HeadersLike, method: str | None, need: Requirement
    ) -> None:
        self.carried = carried
        self.headers = headers
        self.method = method
        self.need = need

    def __repr__(self) -> str:
        return "FetchKeys()"


class Membership:
    """A step for the driver: the role of ``user_id`` in ``team_id`` (run
    :meth:`SessionFlow.lookup` in a worker, hand its result to :meth:`SessionFlow.resume`).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("claims", "generation", "need", "team_id")

    def __init__(
        self, team_id: str, claims: SessionClaims, need: Requirement, generation: int
    ) -> None:
        self.team_id = team_id
        self.claims = claims
        self.need = need
        self.generation = generation

    def __repr__(self) -> str:
        return f"Membership({self.team_id!r}, {self.claims.user_id!r})"


def default_role_scopes(scopes: Iterable[str] = DEFAULT_SCOPES) -> dict[Role, frozenset[str]]:
    """The default scopes of a session by role: owners and admins every scope of ``scopes``
    (the registered ones), members the ``read:*`` ones.

    .. versionadded:: 0.1.0
    """
    every = frozenset(scopes)
    return {
        Role.OWNER: every,
        Role.ADMIN: every,
        Role.MEMBER: frozenset(scope for scope in every if scope.startswith("read:")),
    }


def normalize_origins(origins: Iterable[str], setting: str = "allowed_origins") -> frozenset[str]:
    """Origins as browsers send them: ``scheme://host[:port]``, lower-case, no path.

    Raises:
        ConfigurationError: a value that is not an origin (a path, no scheme, a wildcard).

    .. versionadded:: 0.1.0
    """
    if isinstance(origins, str):
        raise ConfigurationError(f"{setting} is a list of origins, not one string", setting=setting)
    found: set[str] = set()
    for origin in origins:
        value = origin.strip().lower().rstrip("/") if isinstance(origin, str) else ""
        parts = urllib.parse.urlsplit(value)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
            or "*" in value
            or "@" in parts.netloc
        ):
            raise ConfigurationError(
                f"{setting}: {origin!r} is not an origin (scheme://host[:port], e.g. "
                "'https://dashboard.example.com')",
                setting=setting,
            )
        found.add(value)
    return frozenset(found)


def origin_allowed(headers: HeadersLike, allowed: Collection[str]) -> bool:
    """Whether an unsafe request authenticated by a cookie comes from an allowed origin: its
    ``Origin`` (or, without one, its ``Referer``'s origin) is in ``allowed`` or is the
    request's own (same host as its ``Host`` header). No origin, ``Origin: null``, several
    different origins: refused.

    .. versionadded:: 0.1.0
    """
    values = _header_values(headers, ("origin", "referer", "host"))
    origins = values.get("origin")
    if origins:
        if len(set(origins)) != 1:
            return False
        origin = origins[0].strip().lower().rstrip("/")
    else:
        referers = values.get("referer")
        if not referers or len(set(referers)) != 1:
            return False
        parts = urllib.parse.urlsplit(referers[0].strip())
        if not parts.scheme or not parts.netloc:
            return False
        origin = f"{parts.scheme}://{parts.netloc}".lower()
    if not origin or origin == "null":
        return False
    if origin in allowed:
        return True
    parts = urllib.parse.urlsplit(origin)
    hosts = values.get("host")
    return (
        parts.scheme in ("http", "https")
        and bool(hosts)
        and hosts is not None
        and len(hosts) == 1
        and parts.netloc == hosts[0].strip().lower()
        and "@" not in parts.netloc
    )


def _header_values(headers: HeadersLike, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The values of a few headers (names lower-case), from any :data:`HeadersLike`."""
    found: dict[str, list[str]] = {}
    items: Iterable[tuple[object, object]]
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if not isinstance(name, str):
            continue
        lowered = name.lower()
        if lowered not in names:
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            found.setdefault(lowered, []).append(value)
    if isinstance(headers, Mapping) and hasattr(headers, "getlist"):
        # werkzeug's Headers and Django's HttpHeaders: items() may show one value per name
        for name in names:
            values = headers.getlist(name)
            if values:
                found[name] = [v for v in values if isinstance(v, str)]
    return found


def _asks_nothing(need: Requirement) -> bool:
    """Where a request needs nothing (a middleware before routing, a public page), a cookie
    the browser sent by itself — stale, or on a cross-site POST — is not the caller's doing:
    the request goes on anonymous (the refusal is audited), and a protected handler behind
    decides it again. A token sent in a header is checked, as a key is; and a check that names
    scopes, a team or roles (a DRF permission, which may let anonymous requests through for
    composition) renders the refusal."""
    return not need.required and not need.scopes and need.team_id is None and need.roles is None


class _Verified:
    """A verified token, by its digest: its claims, good from ``since`` until ``until``."""

    __slots__ = ("claims", "since", "until")

    def __init__(self, claims: SessionClaims, since: float, until: float) -> None:
        self.claims = claims
        self.since = since
        self.until = until


class _Member:
    """A user's role in a team as last looked up, with the principal it makes."""

    __slots__ = ("principal", "role", "since", "until")

    def __init__(
        self, role: Role | None, principal: Principal | None, since: float, until: float
    ) -> None:
        self.role = role
        self.principal = principal
        self.since = since
        self.until = until


class SessionFlow:
    """The session half of the flow. Built by the :class:`~skaala_auth.Authenticator` when it is
    given a ``session_verifier``; driven by :class:`~skaala_auth.flow.Flow` for requests that
    present no API key.

    Args:
        verifier: verifies tokens (pure ``decode``; ``fetch_keys`` is I/O for the driver).
        resolver: the role of a user in a team (I/O, run by the driver).
        role_scopes: the scopes of a session by role.
        allowed_origins: origins allowed for cookie-authenticated unsafe requests (beside the
            request's own host), normalised.
        ttl: seconds a verified token and a looked-up role are trusted before they are checked
            again (the authenticator's ``cache_ttl``); a membership change made through the
            store drops the role at once.
        maxsize: verified tokens and roles remembered (each).
        auditor: the :class:`~skaala_auth.flow.Flow` whose audit settings and hook apply.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        verifier: SessionVerifier,
        *,
        resolver: RoleResolver,
        role_scopes: Mapping[Role, frozenset[str]],
        allowed_origins: frozenset[str],
        ttl: float,
        maxsize: int,
        auditor: Auditor,
    ) -> None:
        self.verifier = verifier
        self.resolver = resolver
        self.role_scopes = dict(role_scopes)
        self.allowed_origins = allowed_origins
        self.ttl = ttl
        self.maxsize = max(maxsize, 1)
        self._auditor = auditor
        self._audited = auditor.audited
        self._emit = auditor.emit
        self._tokens: dict[bytes, _Verified] = {}
        self._members: dict[tuple[str, str], _Member] = {}
        self._lock = threading.Lock()
        #: Bumped by every membership change: a look-up that started before one does not
        #: cache its (possibly stale) answer.
        self.generation = 0

    # -- steps ---------------------------------------------------------------------------------

    def start(
        self,
        headers: HeadersLike,
        method: str | None,
        need: Requirement,
        now: float,
    ) -> Principal | AuthError | FetchKeys | Membership | None:
        """Decide a request that presented no API key, by its session (if any).

        ``method`` ``None`` (unknown) counts as unsafe: a cookie then needs an allowed origin.
        """
        try:
            carried = self.verifier.find(headers)
        except AuthError as error:  # a repeated carrier (400), a bad SDK cookie (401)
            return self._audited(error)
        if carried is None:
            if not need.required:
                return None
            missing = MissingSessionError() if need.credentials == "session" else MissingKeyError()
            return self._audited(missing)
        outcome = self._verify(carried, headers, method, need, now, fetched=False)
        if isinstance(outcome, AuthError) and carried.by_cookie and _asks_nothing(need):
            return None  # see fetched()
        return outcome

    def fetched(self, step: FetchKeys, now: float) -> Principal | AuthError | Membership | None:
        """Go on after the driver fetched the JWKS (or tried to)."""
        outcome = self._verify(step.carried, step.headers, step.method, step.need, now, True)
        assert not isinstance(outcome, FetchKeys)  # noqa: S101 - decode(fetched=True) says so
        if isinstance(outcome, AuthError) and step.carried.by_cookie and _asks_nothing(step.need):
            return None
        return outcome

    def lookup(self, step: Membership) -> Role | None:
        """The role ``step`` asks for (I/O, in the driver's worker thread).

        Raises:
            Exception: whatever the resolver raised (the driver answers 503).
        """
        role = self.resolver(step.team_id, step.claims.user_id)
        return None if role is None else Role(role)

    def resume(
        self, step: Membership, role: Role | None | AuthError, now: float
    ) -> Principal | AuthError:
        """Finish a request after the driver performed ``step``: ``role`` is the looked-up
        role (``None``: not a member) or the refusal (the store failed: 503)."""
        if isinstance(role, AuthError):
            return self._audited(role)
        member = self._member(role, step.team_id, step.claims.user_id, now)
        with self._lock:
            if step.generation == self.generation:
                if len(self._members) >= self.maxsize:
                    self._members.clear()
                self._members[(step.team_id, step.claims.user_id)] = member
        return self._grant(member, step.claims, step.need)

    # -- the decision --------------------------------------------------------------------------

    def _verify(
        self,
        carried: CarriedToken,
        headers: HeadersLike,
        method: str | None,
        need: Requirement,
        now: float,
        fetched: bool,
    ) -> Principal | AuthError | FetchKeys | Membership:
        digest = hashlib.sha256(carried.token.encode("utf-8", "surrogatepass")).digest()
        known = self._tokens.get(digest)
        if known is not None and known.since <= now < known.until:
            claims = known.claims
        else:
            outcome = self.verifier.decode(carried.token, now, fetched=fetched)
            if isinstance(outcome, NeedKeys):
                return FetchKeys(carried, headers, method, need)
            if isinstance(outcome, AuthError):
                return self._audited(outcome)
            claims = outcome
            until = min(claims.expires_at + self.verifier.leeway, now + self.ttl)
            with self._lock:
                if len(self._tokens) >= self.maxsize:
                    self._tokens.clear()
                self._tokens[digest] = _Verified(claims, now, until)
        if (
            carried.by_cookie
            and (method is None or method.upper() not in SAFE_METHODS)
            and not origin_allowed(headers, self.allowed_origins | need.origins)
        ):
            return self._refused(OriginRejectedError(), claims, need.team_id)
        team_id = need.team_id
        if team_id is None:
            # No team in the path: the user is authenticated, and acts for no team.
            if need.roles is not None:
                return self._refused(NotTeamMemberError(), claims, None)
            principal = Principal(None, "", claims.user_id, frozenset(), "session")
            if need.scopes:
                return self._refused(InsufficientScopeError(need.scopes), claims, None)
            if self._auditor.audit_success:
                self._emit(AuditEvent.success(principal))
            return principal
        if team_id == UNBOUND_TEAM:
            return self._refused(NotTeamMemberError(), claims, None)
        member = self._members.get((team_id, claims.user_id))
        if member is None or not member.since <= now < member.until:
            return Membership(team_id, claims, need, self.generation)
        return self._grant(member, claims, need)

    def _member(self, role: Role | None, team_id: str, user_id: str, now: float) -> _Member:
        principal = None
        if role is not None:
            scopes = self.role_scopes.get(role, frozenset())
            principal = Principal(None, team_id, user_id, scopes, "session", role)
        return _Member(role, principal, now, now + self.ttl)

    def _grant(
        self, member: _Member, claims: SessionClaims, need: Requirement
    ) -> Principal | AuthError:
        principal = member.principal
        if principal is None or member.role is None:
            return self._refused(NotTeamMemberError(), claims, need.team_id)
        if need.roles is not None and member.role not in need.roles:
            return self._audited(RoleRequiredError(need.roles), principal=principal)
        if need.scopes and not principal.scopes.issuperset(need.scopes):
            return self._audited(InsufficientScopeError(need.scopes), principal=principal)
        if self._auditor.audit_success:
            self._emit(AuditEvent.success(principal))
        return principal

    def _refused(self, error: AuthError, claims: SessionClaims, team_id: str | None) -> AuthError:
        """Audit a refusal of a verified session: the user is known, the principal is not."""
        if not self._auditor.audit_failure:
            return error
        self._emit(
            AuditEvent(
                "failure",
                error.reason,
                error.status_code,
                team_id=team_id,
                user_id=claims.user_id,
                method="session",
            )
        )
        return error

    # -- invalidation --------------------------------------------------------------------------

    def invalidate(self, change: Change) -> None:
        """Drop the roles ``change`` may have made wrong (every role on ``"all"``)."""
        if change.kind == "key":
            return
        with self._lock:
            self.generation += 1
            if change.kind == "all" or change.team_id is None or change.user_id is None:
                self._members.clear()
            else:
                self._members.pop((change.team_id, change.user_id), None)

    def clear(self) -> None:
        """Forget every verified token and role (a closed authenticator reopening)."""
        with self._lock:
            self.generation += 1
            self._members.clear()
            self._tokens.clear()
