"""What a request needs: decided once, here, from the facts an adapter translated.

Rules of this module (they keep the invariant — *a protected handler runs only for a request
whose principal the core granted for that handler's scopes and team* — in one place):

- no I/O, no framework imports, no clock: pure functions of what the adapter handed over;
- adapters translate a request into :class:`RequestFacts` (method, the path as the router
  matches it, headers, query string, the router's path parameters) and say what protects the
  handler: an :class:`Endpoint` (a decorator, a dependency, a DRF permission) or a
  :class:`~skaala_auth.rules.Rules` table (a middleware); they never decide;
- the CORS-preflight exemption, the team parameter and the re-check of a principal a middleware
  already found are written here and nowhere else.

A CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``, method in any case) is
never challenged, and never reaches a protected handler: to a protected handler it is answered
``204`` with no body (:data:`PREFLIGHT`); a CORS middleware in front of ours answers it first
and adds the CORS headers. Elsewhere (a path no rule protects, a public path) it passes on.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Final, Literal

from .audit import AuditEvent, AuditHook, audit_logger
from .credentials import HeadersLike, environ_headers, extract_key
from .decision import decide, refusal
from .errors import (
    AuthError,
    InvalidKeyError,
    IpNotAllowedError,
    MissingKeyError,
    MissingSessionError,
    RateLimiterUnavailableError,
    Reason,
    RoleRequiredError,
    SessionRequiredError,
    UsageLimitExceededError,
)
from .hashing import Hasher
from .keys import ANY_PREFIX, LIVE_ONLY, display_prefix, well_formed_bytes
from .models import Principal, RateLimitState, Role
from .outage import Outage
from .rules import OPTIONAL, PUBLIC, UNBOUND_TEAM, Requirement, Rules
from .sessionflow import FetchKeys, Membership, SessionFlow, normalize_origins

if TYPE_CHECKING:
    from .cache import Entry, KeyCache
    from .digestfilter import DigestFilter
    from .lastused import LastUsedRecorder
    from .ratelimit import FailedAuthLimiter, RateLimiter

__all__ = [
    "AFRESH",
    "ANSWER_PREFLIGHT",
    "Admit",
    "Credentials",
    "PREFLIGHT",
    "Endpoint",
    "Flow",
    "Load",
    "Need",
    "Outcome",
    "PreflightAnswer",
    "RequestFacts",
    "is_preflight",
    "requirement",
]

log = logging.getLogger("skaala_auth")

_NO_PARAMS: Final[Mapping[str, object]] = MappingProxyType({})
_ACRM: Final = "access-control-request-method"
_ACRM_BYTES: Final = b"access-control-request-method"


class RequestFacts:
    """The whole of what an adapter translates from a framework request.

    Attributes:
        method: the request method, as the server handed it over (any case).
        path: the path as the router matches it (percent-decoded, ``root_path`` or
            ``SCRIPT_NAME`` removed).
        headers: see :data:`~skaala_auth.credentials.HeadersLike`; raw ASGI pairs, a mapping,
            or :func:`~skaala_auth.credentials.environ_headers` of a WSGI environ.
        query: the raw query string (checked for keys, which are refused there).
        path_params: the parameters the router resolved (``{"team_id": "team_1"}``); empty
            for a middleware, which runs before routing.
        websocket: a WebSocket handshake (its method is ``GET``): a session cookie on one needs
            an allowed ``Origin``, as an unsafe method does (cross-site WebSocket hijacking).
        client: the client's address as the server saw it (ASGI ``client``, WSGI
            ``REMOTE_ADDR``), or ``None``; never read from forwarded headers here.

    A plain slotted class, built once or twice per request: a frozen dataclass costs three
    times as much to build. Its ``repr`` never shows the headers (they carry the key).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_peer", "headers", "method", "path", "path_params", "query", "websocket")

    def __init__(
        self,
        method: str,
        path: str,
        headers: HeadersLike,
        query: str | bytes | None = None,
        path_params: Mapping[str, object] = _NO_PARAMS,
        websocket: bool = False,
        client: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.query = query
        self.path_params = path_params
        self.websocket = websocket
        self._peer: object = client

    @property
    def client(self) -> str | None:
        """The client's address as the server saw it, or ``None``."""
        peer = self._peer
        if type(peer) is str or peer is None:
            return peer
        try:  # ASGI's [host, port] (a list or a tuple)
            host = peer[0]  # type: ignore[index]
        except (TypeError, IndexError, KeyError):
            return None
        return host if isinstance(host, str) else None

    def __repr__(self) -> str:
        return f"RequestFacts({self.method!r}, {self.path!r})"

    @classmethod
    def from_asgi(
        cls, scope: Mapping[str, object], path_params: Mapping[str, object] | None = None
    ) -> RequestFacts:
        """The facts of an ASGI ``http`` or ``websocket`` scope (a handshake is a ``GET``).

        ``path`` is the scope's path without its ``root_path``: what Starlette's router matches.
        """
        path: str = scope["path"]  # type: ignore[assignment]
        root_path = scope.get("root_path")
        if root_path and path.startswith(root_path):  # type: ignore[arg-type]
            path = path[len(root_path) :] or "/"  # type: ignore[arg-type]
        # Built here rather than through __init__: one frame fewer, twice per request.
        facts = object.__new__(cls)
        method = scope.get("method")
        if method is None:  # a WebSocket handshake (the only scope without one): a GET
            facts.method = "GET"
            facts.websocket = True
        else:
            facts.method = method  # type: ignore[assignment]
            facts.websocket = False
        facts.path = path
        facts.headers = scope["headers"]  # type: ignore[assignment]
        facts.query = scope.get("query_string")  # type: ignore[assignment]
        facts.path_params = _NO_PARAMS if path_params is None else path_params
        facts._peer = scope.get("client")  # read into client only when asked
        return facts

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, object], path_params: Mapping[str, object] | None = None
    ) -> RequestFacts:
        """The facts of a WSGI environ (PEP 3333), or of Django's ``request.META``.

        ``path`` is ``PATH_INFO`` decoded as werkzeug's router decodes it (the server's latin-1
        string re-read as UTF-8).
        """
        path = environ.get("PATH_INFO")
        if isinstance(path, str):
            if not path.isascii():  # ASCII reads the same in latin-1 and UTF-8
                path = _utf8(path)
        else:
            path = "/"
        query = environ.get("QUERY_STRING")
        client = environ.get("REMOTE_ADDR")
        return cls(
            str(environ.get("REQUEST_METHOD", "GET")),
            path or "/",
            environ_headers(environ),
            query if isinstance(query, str) else None,
            _NO_PARAMS if path_params is None else path_params,
            client=client if isinstance(client, str) and client else None,
        )


def _utf8(path: str) -> str:
    """A WSGI path (UTF-8 bytes the server decoded as latin-1) re-read as werkzeug reads it."""
    try:
        return path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # already decoded by the caller
        return path


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a handler declares: the scopes it needs (AND) and the path parameter that carries
    its team. Built once, when the handler is decorated.

    Attributes:
        scopes: every one of these must be granted.
        team_param: the router's path parameter that carries the team id; ``None`` for no team
            check. A route with a path parameter whose name contains ``team`` but is not
            ``team_param`` is refused (403) and logged: a misnamed team parameter must not
            switch the team check off silently.
        required: ``False`` for checks that let a request with no credentials through as
            anonymous (DRF's authentication class and permission composition).
        credentials: what the handler accepts: ``"any"`` — an API key, or else a dashboard
            session when the authenticator has a ``session_verifier`` (a request that carries
            both is decided by its key) —, ``"api_key"`` or ``"session"`` (an API key is then
            refused with 403, whatever its scopes: key management).
        roles: the caller's role in the team must be one of these (``"owner"``, ``"admin"``,
            ``"member"``); ``None``: any.
        allowed_origins: origins allowed for cookie-authenticated unsafe requests to this
            handler, beside the authenticator's ``allowed_origins`` and the request's own host.

    .. versionadded:: 0.1.0
    """

    scopes: tuple[str, ...] = ()
    team_param: str | None = "team_id"
    required: bool = True
    credentials: Credentials = "any"
    roles: frozenset[str] | None = None
    allowed_origins: frozenset[str] = frozenset()
    #: Requirements already built, by team (a frozen dataclass costs ~0.5 µs to build, and an
    #: endpoint sees a handful of teams again and again).
    _bound: dict[str | None, Requirement] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _warned: ClassVar[set[tuple[str, str]]] = set()

    @classmethod
    def declare(
        cls,
        scopes: Collection[str] = (),
        team_param: str | None = "team_id",
        *,
        credentials: Credentials = "any",
        roles: Collection[str] | None = None,
        required: bool = True,
    ) -> Endpoint:
        """The endpoint a decorator or dependency declares, from its arguments as users write
        them (scopes and roles in any collection)."""
        return cls(
            tuple(scopes),
            team_param,
            required,
            credentials,
            None if roles is None else frozenset(roles),
        )

    def __post_init__(self) -> None:
        if self.credentials not in ("any", "api_key", "session"):
            raise ValueError(
                f"credentials is 'any', 'api_key' or 'session', not {self.credentials!r}"
            )
        if self.roles is not None:
            if isinstance(self.roles, str):
                raise TypeError("roles is a collection of roles, not one string")
            roles = frozenset(Role(role).value for role in self.roles)
            object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "allowed_origins", normalize_origins(self.allowed_origins))

    def bind(self, facts: RequestFacts) -> Requirement:
        """This endpoint's requirement for one request: its scopes and the team in its path."""
        team_param = self.team_param
        team: str | None = None
        if team_param is not None:
            value = facts.path_params.get(team_param)
            if value is not None:
                team = value if type(value) is str else str(value)
            elif facts.path_params:
                team = self._unbound(facts.path_params)
        found = self._bound.get(team)
        if found is None:
            if len(self._bound) >= 1024:
                self._bound.clear()
            found = Requirement(
                required=self.required,
                scopes=self.scopes,
                team_id=team,
                credentials=self.credentials,
                roles=self.roles,
                origins=self.allowed_origins,
            )
            self._bound[team] = found
        return found

    def _unbound(self, path_params: Mapping[str, object]) -> str | None:
        """:data:`UNBOUND_TEAM` when a path parameter looks like a misnamed team."""
        for name in path_params:
            if "team" in name.lower():
                self._misnamed(name)
                return UNBOUND_TEAM
        return None

    def _misnamed(self, name: str) -> None:
        assert self.team_param is not None  # noqa: S101 - bind() checked it
        if (self.team_param, name) in self._warned:
            return
        self._warned.add((self.team_param, name))
        log.error(
            "skaala_auth: a protected route has the path parameter %r but the check reads the "
            "team from %r: every request to it is refused (403). Name the parameter %r, or pass "
            "team_param=%r (team_param=None: no team check).",
            name,
            self.team_param,
            self.team_param,
            name,
        )


class PreflightAnswer(AuthError):  # noqa: N818 - an answer, rendered as refusals are
    """The answer to a CORS preflight for a protected handler: ``204`` with no body and no
    headers. Rendered by every adapter exactly as a refusal is (it carries its own rendering),
    so that no adapter can forget it; never audited, never a challenge.

    .. versionadded:: 0.1.0
    """

    status_code = 204
    error = "preflight"
    message = ""
    reason = Reason.MISSING

    def body_bytes(self) -> bytes:
        return b""

    def headers(self) -> list[tuple[str, str]]:
        return []

    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return ()

    def raisable(self) -> AuthError:
        return PreflightAnswer()


#: The one preflight answer every adapter sends (render it; :meth:`raisable` to raise it).
PREFLIGHT: Final = PreflightAnswer()
PREFLIGHT.shared = True

#: A preflight to a protected handler: answered, never passed on.
ANSWER_PREFLIGHT: Final = Requirement(public=True, required=True)


def requirement(facts: RequestFacts, need: Endpoint | Rules | None = None) -> Requirement:
    """Decide what a request needs, once for every adapter.

    Args:
        facts: what the adapter translated.
        need: the handler's :class:`Endpoint`, a middleware's :class:`~skaala_auth.rules.Rules`
            table, or ``None`` (a middleware without a table: a key is checked when one is
            sent, nothing is required).

    Returns:
        A :class:`~skaala_auth.rules.Requirement`; :data:`ANSWER_PREFLIGHT` for a preflight
        that must be answered (``public`` and ``required`` both true), ``public`` alone for a
        request to pass on unchallenged.

    .. versionadded:: 0.1.0
    """
    method = facts.method
    if need is None:
        if method == "GET" or method == "POST" or not is_preflight(facts):
            return OPTIONAL
        return PUBLIC
    preflight = method != "GET" and method != "POST" and is_preflight(facts)
    if type(need) is Endpoint:
        # A handler that declares protection never runs for a preflight.
        return ANSWER_PREFLIGHT if preflight else need.bind(facts)
    assert isinstance(need, Rules)  # noqa: S101 - the signature says so
    found = need.match(method, facts.path)
    if preflight:
        return ANSWER_PREFLIGHT if found.required else PUBLIC
    return found


def is_preflight(facts: RequestFacts) -> bool:
    """True for a CORS preflight: ``OPTIONS`` (any case) with ``Access-Control-Request-Method``.

    .. versionadded:: 0.1.0
    """
    if facts.method.upper() != "OPTIONS":
        return False
    headers = facts.headers
    if isinstance(headers, Mapping):
        if headers.get(_ACRM) is not None:
            return True  # a case-insensitive mapping (Starlette, werkzeug, Django) answers here
        names = headers.keys()  # not iteration: werkzeug's Headers iterates over pairs
        return any(isinstance(name, str) and name.lower() == _ACRM for name in names)
    for name, _ in headers:
        if type(name) is bytes:
            if name.lower() == _ACRM_BYTES:
                return True
        elif isinstance(name, str) and name.lower() == _ACRM:
            return True
    return False


# -- who is calling: from a presented key to an outcome ------------------------------------------

#: What a handler accepts (see :class:`Endpoint`).
Credentials = Literal["any", "api_key", "session"]

#: What :meth:`Flow.request`, :meth:`Flow.start` and :meth:`Flow.resume` return: the principal,
#: the refusal to render, or ``None`` (no credentials where none are required: go on anonymous).
Outcome = Principal | AuthError | None

# Shared refusals for junk, returned when no audit listener wants a fresh event: a flood of
# junk keys then costs no allocation at all. Never raised (see AuthError.raisable).
_MALFORMED: Final = InvalidKeyError(reason=Reason.MALFORMED)
_UNKNOWN: Final = InvalidKeyError(reason=Reason.UNKNOWN)
_MISSING: Final = MissingKeyError()
for _refusal in (_MALFORMED, _UNKNOWN, _MISSING):
    _refusal.shared = True
del _refusal


class _Afresh:
    """The type of :data:`AFRESH`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "AFRESH"


#: What :meth:`Flow.recheck` returns for a principal a middleware found that cannot stand for
#: this handler without I/O: a dashboard session found for another team (or none) than the
#: one in this handler's path. The driver then decides the request afresh.
AFRESH: Final = _Afresh()


class Load:
    """What the flow cannot do itself: one store look-up, for a digest the caches do not hold
    fresh. The plaintext key stops in the flow: a load carries digests and the display prefix.

    Attributes:
        digest: the raw digest the caches are keyed on.
        stored: its self-describing form, as the store indexes it.
        legacy: stored forms under older algorithms the store may still hold the key under.
        key_prefix: the key's display prefix, for the audit log.
        scopes, team_id: what the request needs, for :meth:`Flow.resume`.
        now: the request's instant (the loaded entry is fresh for ``cache_ttl`` from it).
        roles: the roles the handler allows (``None``: any), checked once the key is granted.
        client: the client's address, when failed attempts are counted per client.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.5.0
       ``client``.
    """

    __slots__ = (
        "client",
        "digest",
        "key_prefix",
        "legacy",
        "now",
        "roles",
        "scopes",
        "stored",
        "team_id",
    )

    def __init__(
        self,
        digest: bytes,
        stored: str,
        legacy: list[str],
        key_prefix: str,
        scopes: Collection[str],
        team_id: str | None,
        now: float,
    ) -> None:
        self.digest = digest
        self.stored = stored
        self.legacy = legacy
        self.key_prefix = key_prefix
        self.scopes = scopes
        self.team_id = team_id
        self.now = now
        self.roles: frozenset[str] | None = None
        self.client: str | None = None

    def __repr__(self) -> str:
        return f"Load({self.key_prefix!r})"


class _Stage:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: What an :class:`Admit` asks of its driver (see :meth:`Flow.admit`).
CLIENT: Final = _Stage("CLIENT")
LIMIT: Final = _Stage("LIMIT")
USE: Final = _Stage("USE")
DONE: Final = _Stage("DONE")


class Admit:
    """A granted key that needs its driver before it is admitted: the request's client address
    (the key has an IP allow-list), a call to a rate limiter that waits on the network (Redis),
    or one use counted in the store (the key has a usage limit). The driver performs
    :attr:`need` and hands the result to :meth:`Flow.admit`, until an outcome comes back.

    Attributes:
        entry: the cached grant.
        principal: the granted principal.
        now: the request's instant.
        need: ``CLIENT``, ``LIMIT`` or ``USE`` (``None`` before the first stage).
        state: the rate limit state found so far.

    .. versionadded:: 0.4.0
    """

    __slots__ = ("entry", "limited", "need", "now", "principal", "state")

    _ORDER: ClassVar[tuple[_Stage, ...]] = (CLIENT, LIMIT, USE, DONE)

    def __init__(self, entry: Entry, principal: Principal, now: float, limited: bool) -> None:
        self.entry = entry
        self.principal = principal
        self.now = now
        self.limited = limited
        self.need: _Stage | None = None
        self.state: RateLimitState | None = None

    def advance(self) -> _Stage:
        """Move to the next stage that applies: client → limit → use → done."""
        policy = self.entry.grant.policy
        order = self._ORDER
        start = 0 if self.need is None else order.index(self.need) + 1
        for stage in order[start:]:
            if (
                (stage is CLIENT and (policy is None or not policy.networks))
                or (stage is LIMIT and not self.limited)
                or (stage is USE and (policy is None or not policy.counted))
            ):
                continue
            self.need = stage
            return stage
        raise AssertionError("unreachable: DONE always applies")  # pragma: no cover

    def __repr__(self) -> str:
        return f"Admit({self.principal.key_prefix!r}, {self.need!r})"


#: The steps a driver performs for the flow: a key look-up, the session JWKS, a session's role,
#: the admission of a restricted key.
Need = Load | FetchKeys | Membership | Admit


class Flow:
    """The decision of one request, without I/O: the flow either reaches an :data:`Outcome`
    or returns a :class:`Load` for its driver (:class:`~skaala_auth.Authenticator`) to perform,
    sync or async, and hand back to :meth:`resume`. A cached key needs no load.

    Order: cheap shape checks (length, prefix, alphabet) → digest → positive cache → on a miss,
    the checksum → negative cache → digest filter → :class:`Load`. A malformed key never reaches
    the negative cache or the store; a digest found in the positive cache proves an issued,
    well-formed key, so a hit skips the checksum. A digest the filter does not list is unknown
    without a load (but for the filter's small budget of look-ups, see
    :class:`~skaala_auth.digestfilter.DigestFilter`).

    Failed attempts (a 401 "Invalid API key": malformed, unknown, expired, revoked) are counted
    per client address when a :class:`~skaala_auth.ratelimit.FailedAuthLimiter` is set, and a
    client over its limit is answered 429 for them. Only a refusal is ever turned into a 429,
    and only at the point where the key is known to fail: a cached grant is decided first (the
    hot path does not look at the client), a digest the filter lists is looked up, and only what
    the filter does not list, or what the store says is unknown, expired or revoked, is refused.

    Args:
        hasher: makes the digests.
        cache: read here; written by the loader (and here only for the last-used due time).
        accept_test_keys: accept ``sk_test_`` keys too.
        last_used: where last-used marks go (written behind by the recorder).
        last_used_interval: seconds between two marks of one key.
        track_last_used: mark at all.
        rate_limiter: consulted once a key is granted.
        audit: the audit hook, if any.
        digest_filter: the filter of stored digests, if any.
        failed_auth: the limiter of failed attempts per client, if any.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.5.0
       ``digest_filter`` and ``failed_auth``.
    """

    def __init__(
        self,
        hasher: Hasher,
        cache: KeyCache,
        *,
        accept_test_keys: bool,
        last_used: LastUsedRecorder,
        last_used_interval: float,
        track_last_used: bool,
        rate_limiter: RateLimiter | None,
        audit: AuditHook | None,
        digest_filter: DigestFilter | None = None,
        failed_auth: FailedAuthLimiter | None = None,
    ) -> None:
        self.hasher = hasher
        self._filter = digest_filter
        self._failures = failed_auth
        self._new_hash = hasher.new
        self._cache_get = cache.get
        self._cache = cache
        self._prefixes = ANY_PREFIX if accept_test_keys else LIVE_ONLY
        self._last_used = last_used
        self._interval = last_used_interval
        self._track = track_last_used
        self._limiter = self.limiter = rate_limiter
        #: The limiter waits on the network: the driver calls it (see :class:`Admit`).
        self._limiter_blocking = bool(getattr(rate_limiter, "blocking", False))
        self._limiter_outage = Outage(
            log,
            "the rate limiter failed: requests are refused (503)",
            "the rate limiter answers again",
        )
        self._audit = audit
        #: The session half, when the authenticator verifies dashboard sessions.
        self.sessions: SessionFlow | None = None
        # Whether outcomes are audited, and so whether a grant needs more than its principal;
        # refreshed at every poll (see refresh()).
        self.audit_success = self.audit_failure = True
        self._plain = False
        self.refresh()

    def refresh(self) -> None:
        """Re-read whether outcomes are audited: asked of the logging module at each poll
        rather than on every request, so a logging change takes effect within one poll."""
        hooked = self._audit is not None
        self.audit_success = hooked or audit_logger.isEnabledFor(logging.DEBUG)
        self.audit_failure = hooked or audit_logger.isEnabledFor(logging.INFO)
        # A grant that needs nothing but its principal (no audit, no limiter) returns at once.
        self._plain = not self.audit_success and self._limiter is None

    def request(
        self, facts: RequestFacts, need: Endpoint | Rules | None, now: float
    ) -> Outcome | Need:
        """Start deciding a request: what it needs, its credential, then :meth:`start` (or the
        session half, for a request that presents no key)."""
        need_now = requirement(facts, need)
        if need_now.public:
            return self.settled(need_now, None)
        if self.sessions is None and need_now.plain:
            return self.headers(
                facts.headers,
                facts.query,
                need_now.scopes,
                need_now.team_id,
                need_now.required,
                now,
                facts.client,
            )
        # A WebSocket handshake's method is unknown to the CSRF check: a cookie needs an Origin.
        method = None if facts.websocket else facts.method
        return self.either(facts.headers, facts.query, method, need_now, now, facts.client)

    def either(
        self,
        headers: HeadersLike,
        query: str | bytes | None,
        method: str | None,
        need: Requirement,
        now: float,
        client: str | None = None,
    ) -> Outcome | Need:
        """Decide by an API key, or else by a dashboard session: the key decides whenever one
        is presented (a bad key is refused beside a good session); a handler that takes
        sessions only refuses any key (403)."""
        credentials = need.credentials
        sessions = self.sessions
        try:
            if credentials == "session":
                if extract_key(headers, query) is not None:
                    return self.audited(SessionRequiredError())
                outcome: Outcome | Load | Admit = None
            else:
                outcome = self.start(
                    extract_key(headers, query),
                    need.scopes,
                    need.team_id,
                    now,
                    need.required and (sessions is None or credentials == "api_key"),
                    client,
                )
        except AuthError as error:  # extract_key's 400s
            return self.audited(error)
        if outcome is None:
            if sessions is not None and credentials != "api_key":
                return sessions.start(headers, method, need, now)
            if credentials == "session" and need.required:
                return self.audited(MissingSessionError())
            return None
        roles = need.roles
        if roles is not None:
            if type(outcome) is Load:
                outcome.roles = roles
            elif isinstance(outcome, Principal):
                return self._role_checked(outcome, roles)
            elif type(outcome) is Admit:  # checked before the key is admitted (and counted)
                checked = self._role_checked(outcome.principal, roles)
                if checked is not outcome.principal:
                    return checked
        return outcome

    def recheck(
        self, facts: RequestFacts, need: Endpoint | Rules | None, found: Principal
    ) -> Principal | AuthError | _Afresh | None:
        """Decide a request whose principal a middleware already found: against what this
        handler needs (a preflight is still answered), with no credential read. Returns
        :data:`AFRESH` for a dashboard session found for another team than this handler's."""
        method = facts.method
        if type(need) is Endpoint and (method == "GET" or method == "POST"):
            need_now = need.bind(facts)  # what requirement() does for these: no preflight
            team_id, scopes = need_now.team_id, need_now.scopes
            if (
                need_now.plain
                and (team_id is None or team_id == found.team_id)
                and (not scopes or found.scopes.issuperset(scopes))
            ):
                return found  # refusal(), inlined: the endpoint check of every request
        else:
            need_now = requirement(facts, need)
        if need_now.public:
            return self.settled(need_now, None)
        if found.method == "session":
            if need_now.credentials == "api_key":
                return (
                    self.audited(MissingKeyError(), principal=found) if need_now.required else None
                )
            if need_now.team_id is not None and need_now.team_id != found.team_id:
                return AFRESH  # its role in this team is not known here
        elif need_now.credentials == "session":
            return self.audited(SessionRequiredError(), principal=found)
        if need_now.roles is not None:
            checked = self._role_checked(found, need_now.roles)
            if checked is not found:
                return checked
        return self.settled(need_now, found)

    def _role_checked(self, principal: Principal, roles: frozenset[str]) -> Principal | AuthError:
        """``principal``, or the 403 for a role the handler does not allow."""
        if principal.role is not None and principal.role.value in roles:
            return principal
        return self.audited(RoleRequiredError(roles), principal=principal)

    def headers(
        self,
        headers: HeadersLike,
        query: str | bytes | None,
        scopes: Collection[str],
        team_id: str | None,
        required: bool,
        now: float,
        client: str | None = None,
    ) -> Outcome | Load | Admit:
        """Start deciding by a request's headers (and query string)."""
        # The key goes straight into start(), never into a local here: a frame up the stack
        # of a rate limiter or an audit hook (what Sentry-style capture shows) holds no key.
        try:
            return self.start(extract_key(headers, query), scopes, team_id, now, required, client)
        except AuthError as error:  # extract_key's 400s (start() returns its refusals)
            return self.audited(error)

    def start(
        self,
        key: str | None,
        scopes: Collection[str],
        team_id: str | None,
        now: float,
        required: bool = True,
        client: str | None = None,
    ) -> Outcome | Load | Admit:
        """Start deciding a presented key (``None``: none was presented; ``required`` says
        whether that is a 401 or anonymous; ``client``: the client's address, for the count of
        failed attempts). This is the hot path: a cached key is decided here, in one call (what
        :func:`~skaala_auth.decision.decide` does is written out)."""
        if key is None:
            if not required:
                return None
            return self.audited(MissingKeyError()) if self.audit_failure else _MISSING
        try:
            data = key.encode()
        except UnicodeEncodeError:  # lone surrogates: junk, and must not become a 500
            return self._malformed(b"", key, client, now)
        if len(data) != 46 or data[:8] not in self._prefixes or not data[8:].isalnum():
            return self._malformed(data, key, client, now)  # nothing looked up: no cache, no store
        digest: bytes = self._new_hash(data).digest()
        entry = self._cache_get(digest)
        if entry is None or now >= entry.fresh_until:
            return self._miss(data, digest, key, scopes, team_id, now, client)
        grant = entry.grant
        principal = grant.principal
        if (
            now < grant.not_after
            and grant.role is not None
            and (team_id is None or team_id == principal.team_id)
            and (not scopes or principal.scopes.issuperset(scopes))
        ):
            if self._plain and now < entry.touch_due:
                return principal
            del key, data  # the limiter and the audit hook run below this frame
            return self._granted(entry, principal, now)
        del key, data
        return self._decide(entry, scopes, team_id, now, client)

    def resume(
        self, load: Load, loaded: Entry | AuthError, now: float
    ) -> Principal | AuthError | Admit:
        """Finish deciding after the driver performed ``load``: ``loaded`` is the cache entry of
        the record found, or the refusal (unknown key: 401; store failure: 503)."""
        if isinstance(loaded, AuthError):
            if load.client is not None and type(loaded) is InvalidKeyError:
                limited = self._limited(load.client, now)
                if limited is not None:
                    return limited
            return self.audited(loaded, load.key_prefix)
        outcome = self._decide(loaded, load.scopes, load.team_id, now, load.client)
        if load.roles is not None:
            if isinstance(outcome, Principal):
                return self._role_checked(outcome, load.roles)
            if type(outcome) is Admit:  # checked before the key is admitted (and counted)
                checked = self._role_checked(outcome.principal, load.roles)
                if checked is not outcome.principal:
                    return checked
        return outcome

    def settled(self, need: Requirement, found: Principal | None) -> Principal | AuthError | None:
        """The outcome that needs no credential read: a public request (or a preflight to
        answer), or a principal found earlier in the request, checked against this one."""
        if need.public:
            return PREFLIGHT if need.required else None
        assert found is not None  # noqa: S101 - request() calls this for one or the other
        error = refusal(found, need.scopes, need.team_id)
        if error is None:
            return found
        self.emit(AuditEvent.failure(error, found))
        return error

    def _miss(
        self,
        data: bytes,
        digest: bytes,
        key: str,
        scopes: Collection[str],
        team_id: str | None,
        now: float,
        client: str | None = None,
    ) -> AuthError | Load:
        if not well_formed_bytes(data, self._prefixes):
            # Bad checksum: no negative cache, no store.
            return self._malformed(data, key, client, now)
        if self._cache.is_known_unknown(digest, now):
            return self._unknown(key, client, now)
        hasher = self.hasher
        legacy = hasher.legacy_digests(data)
        listed = self._filter
        if listed is not None and listed.ready and not listed.lists(digest, legacy):
            # Not in the store, unless created elsewhere moments ago: a client over its limit
            # is refused at once, the others spend the filter's small budget of look-ups.
            failures = self._failures
            if client is not None and failures is not None:
                limited = failures.refusal(client, now)
                if limited is not None:
                    return self.audited(limited)
            if not listed.spare(now):
                return self._unknown(key, client, now)
        load = Load(
            digest,
            hasher.stored(digest),
            legacy,
            display_prefix(key),
            scopes,
            team_id,
            now,
        )
        load.client = client
        return load

    def _unknown(self, key: str, client: str | None, now: float) -> AuthError:
        """The refusal of a well-formed key known not to be in the store (or the 429)."""
        if client is not None:
            limited = self._limited(client, now)
            if limited is not None:
                return limited
        if not self.audit_failure:
            return _UNKNOWN
        return self.audited(InvalidKeyError(reason=Reason.UNKNOWN), display_prefix(key))

    def _limited(self, client: str, now: float) -> AuthError | None:
        """Count a failed attempt by ``client``: ``None``, or the 429 (audited) for a client
        over its limit."""
        failures = self._failures
        if failures is None:
            return None
        limited = failures.failed(client, now)
        return None if limited is None else self.audited(limited)

    def _decide(
        self,
        entry: Entry,
        scopes: Collection[str],
        team_id: str | None,
        now: float,
        client: str | None = None,
    ) -> Principal | AuthError | Admit:
        grant = entry.grant
        outcome = decide(grant, now, scopes, team_id)
        if isinstance(outcome, AuthError):
            if client is not None and type(outcome) is InvalidKeyError:  # expired, revoked
                limited = self._limited(client, now)
                if limited is not None:
                    return limited
            return self.audited(outcome, principal=grant.principal)
        return self._granted(entry, outcome, now)

    def _granted(
        self, entry: Entry, principal: Principal, now: float
    ) -> Principal | AuthError | Admit:
        """A granted request's side effects: the rate limiter, the last-used mark, the audit.

        A key with restrictions (an IP allow-list, a usage limit), or a limiter that waits on
        the network, needs more than the flow has: an :class:`Admit` step for the driver, which
        hands it back to :meth:`admit`. A key without any, with no limiter or an inline one, is
        settled here, as before.
        """
        limiter = self._limiter
        if entry.grant.policy is not None or self._limiter_blocking:
            return self._proceed(Admit(entry, principal, now, limiter is not None))
        if limiter is not None:
            try:
                state = limiter.check(principal, now)
            except AuthError as error:
                return self.audited(error, principal=principal)
            except Exception as error:  # its backend is down: fail closed, never a 500
                return self.audited(self._limiter_failed(error), principal=principal)
            if self._limiter_outage.failing:
                self._limiter_outage.succeeded()
            if state is not None:
                principal = dataclasses.replace(principal, rate_limit_state=state)
        if now >= entry.touch_due:
            entry.touch_due = now + self._interval
            if self._track:
                self._last_used.mark(principal.key_id or "", now)
        if self.audit_success:
            self.emit(AuditEvent.success(principal))
        return principal

    def admit(self, step: Admit, result: object = None) -> Principal | AuthError | Admit:
        """Go on admitting a granted key after the driver performed ``step.need``:

        - ``CLIENT`` — ``result`` is the client address (``None``: unknown): checked against the
          key's IP allow-list (outside it, or unknown: 403);
        - ``LIMIT`` — ``result`` is what the blocking limiter's ``check`` returned, or the
          exception it raised (429 / 503);
        - ``USE`` — ``result`` is what the store's ``use_key`` returned: ``True`` when a use
          was left, ``False`` when none was (429), or the :class:`~skaala_auth.AuthError` of a
          store failure (503).

        Order: IP allow-list → rate limit → usage (a refused request uses nothing). Returns the
        next step, or the outcome.

        .. versionadded:: 0.4.0
        """
        principal = step.principal
        need = step.need
        if need is CLIENT:
            policy = step.entry.grant.policy
            assert policy is not None  # noqa: S101 - only a policy asks for the client
            if not policy.allows(result if isinstance(result, str) else None):
                return self.audited(IpNotAllowedError(), principal=principal)
        elif need is LIMIT:
            refused = self._limit_result(step, result)
            if refused is not None:
                return refused
        elif need is USE:
            if isinstance(result, AuthError):
                return self.audited(result, principal=principal)
            if result is not True:
                return self.audited(UsageLimitExceededError(), principal=principal)
        return self._proceed(step)

    def _limit_result(self, step: Admit, result: object) -> AuthError | None:
        """Take a limiter's answer (a state, ``None``, or what it raised) into ``step``."""
        if isinstance(result, AuthError):
            return self.audited(result, principal=step.principal)
        if isinstance(result, Exception):
            return self.audited(self._limiter_failed(result), principal=step.principal)
        if self._limiter_outage.failing:
            self._limiter_outage.succeeded()
        if isinstance(result, RateLimitState):
            step.state = result
        return None

    def _proceed(self, step: Admit) -> Principal | AuthError | Admit:
        """The next stage of ``step`` (an inline limiter is called here), or its outcome."""
        while True:
            need = step.advance()
            if need is LIMIT and not self._limiter_blocking:
                assert self._limiter is not None  # noqa: S101 - LIMIT means a limiter
                result: object
                try:
                    result = self._limiter.check(step.principal, step.now)
                except Exception as error:  # AuthError (429) included: _limit_result sorts
                    result = error
                refused = self._limit_result(step, result)
                if refused is not None:
                    return refused
                continue
            if need is not DONE:
                return step
            break
        principal, entry, now = step.principal, step.entry, step.now
        if step.state is not None:
            principal = dataclasses.replace(principal, rate_limit_state=step.state)
        if entry.grant.policy is not None:
            # touch_due stays 0 for this entry: every request of the key comes back here.
            due = entry.mark_due
            if now >= due:
                entry.mark_due = now + self._interval
        else:
            due = entry.touch_due
            if now >= due:
                entry.touch_due = now + self._interval
        if now >= due and self._track:
            self._last_used.mark(principal.key_id or "", now)
        if self.audit_success:
            self.emit(AuditEvent.success(principal))
        return principal

    def _limiter_failed(self, error: Exception) -> AuthError:
        """The 503 for a limiter that raised (logged once per outage with its traceback)."""
        self._limiter_outage.failed(error)
        failure = RateLimiterUnavailableError()
        failure.__cause__ = error
        return failure

    def _malformed(
        self, data: bytes, key: str, client: str | None = None, now: float = 0.0
    ) -> AuthError:
        """The refusal of a key that failed the format checks, or of a test key where those are
        not accepted. Only a test key's display prefix is audited: of a malformed string,
        nothing is kept."""
        if client is not None:
            limited = self._limited(client, now)
            if limited is not None:
                return limited
        if data[:8] == b"sk_test_" and well_formed_bytes(data):
            return self.audited(InvalidKeyError(reason=Reason.TEST_KEY), display_prefix(key))
        if self.audit_failure:
            return self.audited(InvalidKeyError(reason=Reason.MALFORMED))
        return _MALFORMED

    def audited(
        self,
        error: AuthError,
        key_prefix: str | None = None,
        principal: Principal | None = None,
    ) -> AuthError:
        """Audit a refusal (when anyone listens; store failures always) and return it."""
        if self.audit_failure or error.status_code >= 500:
            self.emit(AuditEvent.failure(error, principal, key_prefix))
        return error

    def emit(self, event: AuditEvent) -> None:
        event.log()
        if self._audit is not None:
            try:
                self._audit(event)
            except Exception:
                log.exception("the audit hook raised")
