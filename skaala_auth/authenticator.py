"""The authenticator: one flow, two drivers.

:class:`~skaala_auth.flow.Flow` decides a request without I/O: it reaches an outcome, or asks
for one store look-up (a :class:`~skaala_auth.flow.Load`). The drivers here perform that load —
the sync ones wait on a thread, the async ones await it — through the
:class:`~skaala_auth.loading.KeyLoader`, which holds everything that waits. A cached key needs
no load, so the per-request path is one call into the flow.

The faces, one meaning per name:

- :meth:`Authenticator.decide` / :meth:`~Authenticator.decide_async` — what every adapter
  calls: a request's facts and what protects its handler in, the outcome out (never raises);
- :meth:`Authenticator.authenticate` / :meth:`~Authenticator.authenticate_async` — the same by a
  request's headers, raising the refusal;
- :meth:`Authenticator.verify` — one key string, raising (scripts, the CLI);
- :meth:`Authenticator.authorize` — an already authenticated principal against an endpoint.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Literal, overload

from .audit import AuditEvent, AuditHook
from .cache import KeyCache
from .credentials import HeadersLike
from .decision import refusal
from .digestfilter import DigestFilter
from .errors import AuthError, ConfigurationError, JwksUnavailableError, StoreUnavailableError
from .flow import AFRESH, CLIENT, LIMIT, Admit, Endpoint, Flow, Load, Need, Outcome, RequestFacts
from .hashing import Algorithm, Hasher
from .lastused import LastUsedRecorder
from .loading import KeyLoader
from .models import Principal, RateLimitState, Role
from .policy import Network, client_address, parse_networks
from .ratelimit import FailedAuthLimiter, RateLimiter
from .rules import Requirement, Rules
from .scopes import ScopeRegistry
from .sessionflow import (
    FetchKeys,
    Membership,
    RoleResolver,
    SessionFlow,
    SessionVerifier,
    default_role_scopes,
    normalize_origins,
)
from .stores.base import Change, DigestSource, InvalidationBus, KeyStore, PolicyStore

__all__ = ["Authenticator", "Clock", "RateLimiter", "override"]


#: The authenticator every Authenticator defers to while a test overrides them (see
#: :func:`override` and ``skaala_auth.testing``). ``None`` in production: one global read per
#: request.
_override: Authenticator | None = None


def override(authenticator: Authenticator | None) -> Authenticator | None:
    """Make every :class:`Authenticator` in this process defer to ``authenticator`` (``None``
    ends the override). Returns the previous override.

    This is how a test runs a real app — whose middleware was built with the production
    authenticator at import time — against a test store and clock, with no change to the app.
    Use it through ``skaala_auth.testing.override_authenticator`` or the pytest fixture
    ``skaala_auth_override``; never in production code.

    .. versionadded:: 0.1.0
    """
    global _override
    previous, _override = _override, authenticator
    return previous


log = logging.getLogger("skaala_auth")

#: A zero-argument callable returning epoch seconds, like :func:`time.time`.
Clock = Callable[[], float]


class Authenticator:
    """Authenticates API keys against a store, with caching, and decides each request.

    Args:
        store: the :class:`~skaala_auth.stores.base.KeyStore`.
        cache_size: positive cache entries (LRU). ``0`` disables the positive cache.
        cache_ttl: seconds a cached key is trusted before it is reloaded (at most 30 is wise:
            it bounds how long a change the store could not announce goes unseen).
        negative_cache_size: unknown keys remembered, so junk does not reach the store.
        negative_cache_ttl: seconds an unknown key is remembered.
        clock: epoch seconds, injectable for tests (default :func:`time.time`).
        pepper: server-side secret for keyed digests; must match the
            :class:`~skaala_auth.KeyManager`'s.
        hash_algorithm: ``"blake2b-keyed"`` or ``"hmac-sha256"`` with a pepper.
        accept_test_keys: also accept ``sk_test_`` keys (refused by default).
        last_used_interval: seconds between batched ``last_used_at`` writes.
        track_last_used: record ``last_used_at`` at all (``False`` for tools that only
            inspect keys, such as ``skaala-auth keys verify``).
        poll_interval: seconds between checks for changes made by other processes.
        store_timeout: seconds a request waits for the store before answering 503 (sync and
            async alike).
        audit: called with an :class:`~skaala_auth.audit.AuditEvent` for every outcome.
        rate_limiter: a :class:`RateLimiter`, consulted after a key authenticates.
        session_verifier: verifies dashboard sessions (a
            :class:`~skaala_auth.session.StackAuthVerifier`): a request that presents no API
            key is then decided by its session, if it carries one (see "Dashboard sessions").
        session_scopes: the scopes of a session by role (``{"owner": [...], "admin": [...],
            "member": [...]}``), or a :class:`~skaala_auth.scopes.ScopeRegistry` whose scopes
            owners and admins get (members its ``read:*`` ones). Default: the documented
            scopes, that way.
        role_resolver: ``(team_id, user_id) -> role | None``: a session user's role in a team.
            Default: the store's membership table. Runs in a worker thread under
            ``store_timeout``; raising is an outage (503).
        allowed_origins: origins (``https://dashboard.example.com``) allowed to send
            cookie-authenticated unsafe requests (``POST``, ``PUT``, ``PATCH``, ``DELETE``),
            beside the request's own host; any other is refused (403, CSRF).
        digest_filter: keep a filter of every stored digest in memory (8 bytes a key), so that
            a well-formed key nobody issued is refused without a store look-up (see
            :class:`~skaala_auth.digestfilter.DigestFilter`). On by default; off by itself for
            a store that cannot list its digests (not a
            :class:`~skaala_auth.stores.base.DigestSource`).
        unlisted_lookup_rate: store look-ups per second still allowed for digests the filter
            does not list, which covers keys created by another process that this one has not
            heard of yet (within a poll for SQLite, milliseconds for PostgreSQL): a service that
            creates keys in one process and hands them to clients of another needs it. Beyond
            it (a flood), unlisted digests are refused without a look-up. ``0``: the filter's
            word is final.
        failed_auth_limit: failed attempts (401 "Invalid API key") allowed per client address
            in a burst, and per ``failed_auth_window`` sustained; past it, that client's failed
            attempts are answered 429 with ``Retry-After``. A valid key is never refused by it.
            Counted by :meth:`decide` (which knows the client's address), not by
            :meth:`authenticate` or :meth:`verify`. ``None`` (default): off.
        failed_auth_window: seconds (see ``failed_auth_limit``).
        invalidation_bus: carries changes between processes whose store cannot (a
            :class:`~skaala_auth.bus.RedisInvalidationBus`): this store's changes are published
            on it, the other processes' heard from it; while it is down, every poll drops the
            cache, as for a PostgreSQL store whose listener is down.
        trusted_proxies: the networks (CIDRs) of the reverse proxies in front of the service:
            only when the server's client address is one of them is ``X-Forwarded-For`` read
            for the client address (its right-most address that is not a trusted proxy), which
            keys with an IP allow-list are checked against. Default: none — the server's
            client address is the client.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``trusted_proxies``; keys' restrictions (IP allow-lists, usage limits, disabling).
    .. versionchanged:: 0.5.0
       ``digest_filter``, ``unlisted_lookup_rate``, ``failed_auth_limit``,
       ``failed_auth_window`` and ``invalidation_bus``.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        cache_size: int = 10_000,
        cache_ttl: float = 30.0,
        negative_cache_size: int = 1_000,
        negative_cache_ttl: float = 5.0,
        clock: Clock = time.time,
        pepper: bytes | str | None = None,
        hash_algorithm: Algorithm | None = None,
        accept_test_keys: bool = False,
        last_used_interval: float = 60.0,
        track_last_used: bool = True,
        poll_interval: float = 0.5,
        store_timeout: float = 5.0,
        audit: AuditHook | None = None,
        rate_limiter: RateLimiter | None = None,
        session_verifier: SessionVerifier | None = None,
        session_scopes: Mapping[str, Iterable[str]] | ScopeRegistry | None = None,
        role_resolver: RoleResolver | None = None,
        allowed_origins: Iterable[str] = (),
        digest_filter: bool = True,
        unlisted_lookup_rate: float = 50.0,
        failed_auth_limit: int | None = None,
        failed_auth_window: float = 60.0,
        invalidation_bus: InvalidationBus | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.store = store
        self.trusted_proxies: tuple[Network, ...] = parse_networks(
            trusted_proxies, "trusted_proxies"
        )
        self.hasher = Hasher(pepper, hash_algorithm)
        self.cache = KeyCache(cache_size, cache_ttl, negative_cache_size, negative_cache_ttl)
        self.clock = clock
        self.accept_test_keys = accept_test_keys
        self.last_used = LastUsedRecorder(store, last_used_interval)
        #: The filter of stored digests (``None``: off, or the store cannot list its digests).
        self.digest_filter: DigestFilter | None = None
        if digest_filter and isinstance(store, DigestSource):
            self.digest_filter = DigestFilter(
                unlisted_rate=unlisted_lookup_rate,
                reload_interval=max(poll_interval, 1.0),
                clock=clock,
            )
        #: The limiter of failed attempts per client address (``None``: off).
        self.failed_auth: FailedAuthLimiter | None = None
        if failed_auth_limit is not None:
            self.failed_auth = FailedAuthLimiter(failed_auth_limit, failed_auth_window)
        self._flow = Flow(
            self.hasher,
            self.cache,
            accept_test_keys=accept_test_keys,
            last_used=self.last_used,
            last_used_interval=last_used_interval,
            track_last_used=track_last_used,
            rate_limiter=rate_limiter,
            audit=audit,
            digest_filter=self.digest_filter,
            failed_auth=self.failed_auth,
        )
        self._loader = KeyLoader(
            store,
            self.cache,
            timeout=store_timeout,
            poll_interval=poll_interval,
            before_poll=self._before_poll,
            digest_filter=self.digest_filter,
        )
        if session_verifier is not None:
            self._flow.sessions = SessionFlow(
                session_verifier,
                resolver=self._member_role if role_resolver is None else role_resolver,
                role_scopes=_role_scopes(session_scopes),
                allowed_origins=normalize_origins(allowed_origins),
                ttl=cache_ttl,
                maxsize=cache_size,
                auditor=self._flow,
            )
        elif role_resolver is not None or session_scopes is not None:
            raise ConfigurationError(
                "role_resolver and session_scopes need a session_verifier",
                setting="session_verifier",
            )
        self.session_verifier = session_verifier
        self.invalidation_bus = invalidation_bus
        self._unsubscribe = self._listen()
        self._closed = False

    @property
    def store_timeout(self) -> float:
        """Seconds a request waits for the store before answering 503."""
        return self._loader.timeout

    @property
    def poll_interval(self) -> float:
        """Seconds between polls for other processes' changes."""
        return self._loader.poll_interval

    # -- the faces -----------------------------------------------------------------------------

    def decide(
        self,
        facts: RequestFacts,
        need: Endpoint | Rules | None = None,
        *,
        found: Principal | None = None,
    ) -> Principal | AuthError | None:
        """Decide one request, as every adapter does: the one place where what a request needs
        (public path, CORS preflight, scopes, team) meets who is calling.

        Args:
            facts: what the adapter translated from the request.
            need: what protects the handler — its :class:`~skaala_auth.flow.Endpoint`, a
                middleware's :class:`~skaala_auth.rules.Rules`, or ``None`` (a middleware
                without a table).
            found: the principal a middleware already authenticated for this request: it is
                checked against the endpoint (scopes, team) without reading credentials again.

        Returns:
            The :class:`~skaala_auth.Principal`; ``None`` for a request that may go on
            anonymous (or unchallenged); or the :class:`~skaala_auth.AuthError` to render —
            :data:`skaala_auth.flow.PREFLIGHT` (204, no body) for a CORS preflight to a
            protected handler. The handler runs only for a principal, or for ``None`` where
            ``need`` does not require a key.

            The most common refusals (malformed or known-unknown keys, when no audit listener
            is enabled) are shared instances: render them (``status_code``, ``headers()``,
            ``body_bytes()``), and call ``raisable()`` before raising one.

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        if found is not None:  # no credential to read: no clock, no poll, no I/O
            checked = auth._flow.recheck(facts, need, found)
            if checked is not AFRESH:
                return checked  # type: ignore[return-value]
        now = auth.clock()
        waited = auth._loader.poll(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.request(facts, need, now)
        if type(step) is Principal:
            return step
        if isinstance(step, Load):
            step = auth._flow.resume(step, auth._loader.load(step, waited), now)
        if type(step) is Admit:
            return auth._admit(step, facts, waited)
        if type(step) is Membership or type(step) is FetchKeys:
            return auth._session_steps(step, now, waited)
        return step  # type: ignore[return-value]

    async def decide_async(
        self,
        facts: RequestFacts,
        need: Endpoint | Rules | None = None,
        *,
        found: Principal | None = None,
    ) -> Principal | AuthError | None:
        """:meth:`decide` for async code: a cache miss waits for the store in a worker thread,
        never on the event loop.

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        if found is not None:
            checked = auth._flow.recheck(facts, need, found)
            if checked is not AFRESH:
                return checked  # type: ignore[return-value]
        now = auth.clock()
        waited = await auth._loader.poll_async(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.request(facts, need, now)
        if type(step) is Principal:
            return step
        if isinstance(step, Load):
            step = auth._flow.resume(step, await auth._loader.load_async(step, waited), now)
        if type(step) is Admit:
            return await auth._admit_async(step, facts, waited)
        if type(step) is Membership or type(step) is FetchKeys:
            return await auth._session_steps_async(step, now, waited)
        return step  # type: ignore[return-value]

    @overload
    def authenticate(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: Literal[True] = True,
        method: str | None = None,
        client: str | None = None,
    ) -> Principal: ...

    @overload
    def authenticate(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool,
        method: str | None = None,
        client: str | None = None,
    ) -> Principal | None: ...

    def authenticate(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
        method: str | None = None,
        client: str | None = None,
    ) -> Principal | None:
        """Authenticate a request by its headers and decide it.

        Args:
            headers: the request headers (see :data:`~skaala_auth.credentials.HeadersLike`).
            required_scopes: scopes the endpoint needs (AND).
            team_id: the team in the request path, if any.
            query_string: the raw query string, checked for keys (refused with 400).
            required: when ``False``, a request without credentials returns ``None``
                (anonymous) instead of raising :class:`~skaala_auth.MissingKeyError`.
            method: the request method, for dashboard sessions: a session cookie on an unsafe
                method (or an unknown one: ``None``) needs an allowed ``Origin``.
            client: the client's address as the server saw it, for keys with an IP
                allow-list (unknown: such a key is refused); ``X-Forwarded-For`` in
                ``headers`` is read only when it is one of ``trusted_proxies``.

        Returns:
            The :class:`~skaala_auth.Principal`.

        Raises:
            AuthError: a subclass that carries the HTTP answer (400, 401, 403, 429, 503).

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        now = auth.clock()
        waited = auth._loader.poll(now) if now >= auth._loader.next_poll else 0.0
        step: Outcome | Need
        if auth._flow.sessions is None:
            step = auth._flow.headers(
                headers, query_string, required_scopes, team_id, required, now
            )
        else:
            need = Requirement(required=required, scopes=tuple(required_scopes), team_id=team_id)
            step = auth._flow.either(headers, query_string, method, need, now)
        if client is not None and auth.trusted_proxies:  # behind a proxy: read it while here
            client = client_address(client, headers, auth.trusted_proxies)
        del headers  # they carry the key: out of this frame while the store is asked
        if type(step) is Principal:  # a cached key: nothing more to do
            return step
        if isinstance(step, Load):
            step = auth._flow.resume(step, auth._loader.load(step, waited), now)
        elif isinstance(step, (Membership, FetchKeys)):
            step = auth._session_steps(step, now, waited)
        if type(step) is Admit:
            step = auth._admit(step, client, waited)
        if isinstance(step, AuthError):
            raise step.raisable()
        return step  # type: ignore[return-value]

    @overload
    async def authenticate_async(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: Literal[True] = True,
        method: str | None = None,
        client: str | None = None,
    ) -> Principal: ...

    @overload
    async def authenticate_async(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool,
        method: str | None = None,
        client: str | None = None,
    ) -> Principal | None: ...

    async def authenticate_async(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
        method: str | None = None,
        client: str | None = None,
    ) -> Principal | None:
        """:meth:`authenticate` for async code: a cache miss waits for the store in a worker
        thread, never on the event loop.

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        now = auth.clock()
        waited = await auth._loader.poll_async(now) if now >= auth._loader.next_poll else 0.0
        step: Outcome | Need
        if auth._flow.sessions is None:
            step = auth._flow.headers(
                headers, query_string, required_scopes, team_id, required, now
            )
        else:
            need = Requirement(required=required, scopes=tuple(required_scopes), team_id=team_id)
            step = auth._flow.either(headers, query_string, method, need, now)
        if client is not None and auth.trusted_proxies:  # behind a proxy: read it while here
            client = client_address(client, headers, auth.trusted_proxies)
        del headers
        if type(step) is Principal:
            return step
        if isinstance(step, Load):
            step = auth._flow.resume(step, await auth._loader.load_async(step, waited), now)
        elif isinstance(step, (Membership, FetchKeys)):
            step = await auth._session_steps_async(step, now, waited)
        if type(step) is Admit:
            step = await auth._admit_async(step, client, waited)
        if isinstance(step, AuthError):
            raise step.raisable()
        return step  # type: ignore[return-value]

    def verify(
        self, key: str, *, required_scopes: Collection[str] = (), team_id: str | None = None
    ) -> Principal:
        """Authenticate one key string and decide it (scripts and the CLI; a request goes
        through :meth:`decide` or :meth:`authenticate`).

        Raises:
            AuthError: as :meth:`authenticate`.

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        now = auth.clock()
        waited = auth._loader.poll(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.start(key, required_scopes, team_id, now)
        del key  # the plaintext stays out of this frame while the store is asked
        if step is None:  # pragma: no cover - start() returns None only for no key at all
            raise TypeError("verify() needs a key")
        if isinstance(step, Load):
            step = auth._flow.resume(step, auth._loader.load(step, waited), now)
        if type(step) is Admit:  # no client address: a key with an IP allow-list is refused
            step = auth._admit(step, None, waited)
        if isinstance(step, AuthError):
            raise step.raisable()
        return step  # type: ignore[return-value]

    def authorize(
        self,
        principal: Principal,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
    ) -> Principal:
        """Check an already authenticated principal against an endpoint's scopes and team, and
        audit a refusal.

        Raises:
            AuthError: the 403 to render.

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        error = refusal(principal, required_scopes, team_id)
        if error is None:
            return principal
        auth._flow.emit(AuditEvent.failure(error, principal))
        raise error

    def close(self) -> None:
        """Flush pending ``last_used_at`` writes, stop the background threads and stop listening
        for changes. Idempotent.

        A closed authenticator that is used again reopens itself (see :meth:`open`): an app
        whose lifespan closes it and starts again — a test client entered twice — just works,
        and never serves a cache that missed changes while it was closed.

        .. versionadded:: 0.1.0
        """
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self.last_used.close()
        self._loader.close()  # the next request polls, which reopens

    def open(self) -> None:
        """Listen for changes again after :meth:`close`, with an empty cache (changes made while
        closed were not heard). Idempotent; called by the first request after a close.

        .. versionadded:: 0.1.0
        """
        if not self._closed:
            return
        self._loader.forget()
        if self._flow.sessions is not None:
            self._flow.sessions.clear()
        self._unsubscribe = self._listen()
        self.last_used.reopen()
        self._closed = False

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Authenticator(store={self.store!r}, cached={len(self.cache)})"

    def _listen(self) -> Callable[[], None]:
        """Subscribe to the store's changes (and the bus's); returns what unsubscribes."""
        unsubscribe = self.store.subscribe(self._on_change)
        bus = self.invalidation_bus
        if bus is None:
            return unsubscribe
        bus.attach(self.store)
        unsubscribe_bus = bus.subscribe(self._on_change)

        def both() -> None:
            unsubscribe()
            unsubscribe_bus()

        return both

    def _before_poll(self) -> None:
        # Called under the loader's poll lock: one thread reopens.
        if self._closed:
            self.open()
        self._flow.refresh()
        bus = self.invalidation_bus
        if bus is not None and not bus.healthy():
            # Other processes' changes go unheard: trust nothing cached (as for a store whose
            # own listener is down), until the bus is back.
            self._on_change(Change("all"))

    def _on_change(self, change: Change) -> None:
        self.cache.invalidate(change)
        self._loader.changed(change)
        sessions = self._flow.sessions
        if sessions is not None:
            sessions.invalidate(change)

    # -- admitting a restricted key (I/O) --------------------------------------------------------

    def client_address(self, facts: RequestFacts) -> str | None:
        """The request's client address: the server's, or behind one of ``trusted_proxies``
        the right-most untrusted ``X-Forwarded-For`` address.

        .. versionadded:: 0.4.0
        """
        return client_address(facts.client, facts.headers, self.trusted_proxies)

    def _client(self, source: RequestFacts | str | None, headers: HeadersLike = ()) -> str | None:
        if isinstance(source, RequestFacts):
            return self.client_address(source)
        return client_address(source, headers, self.trusted_proxies)

    def _admit(self, step: Admit, source: RequestFacts | str | None, waited: float) -> Outcome:
        """Perform a granted key's admission steps, waiting in this thread (a blocking rate
        limiter is called here: the sync driver's thread waits anyway)."""
        flow = self._flow
        while True:
            need = step.need
            result: object
            if need is CLIENT:
                result = self._client(source)
            elif need is LIMIT:
                result = _limit(flow, step)
            else:
                result = self._loader.run(functools.partial(_use, self.store, step), waited)
            outcome = flow.admit(step, result)
            if not isinstance(outcome, Admit):
                return outcome
            step = outcome

    async def _admit_async(
        self, step: Admit, source: RequestFacts | str | None, waited: float
    ) -> Outcome:
        """:meth:`_admit` for async callers: the limiter and the store are called in a worker
        thread, never on the event loop."""
        flow = self._flow
        while True:
            need = step.need
            result: object
            if need is CLIENT:
                result = self._client(source)
            elif need is LIMIT:
                result = await self._loader.run_async(functools.partial(_limit, flow, step), waited)
                if isinstance(result, StoreUnavailableError):  # it did not answer in time
                    result = result.__cause__ or TimeoutError("the rate limiter did not answer")
            else:
                job = functools.partial(_use, self.store, step)
                result = await self._loader.run_async(job, waited)
            outcome = flow.admit(step, result)
            if not isinstance(outcome, Admit):
                return outcome
            step = outcome

    # -- the session steps (I/O) -----------------------------------------------------------------

    def _session_steps(
        self, step: FetchKeys | Membership, now: float, waited: float
    ) -> Principal | AuthError | None:
        """Perform the session half's steps (the JWKS, a role), waiting in this thread."""
        sessions = self._flow.sessions
        assert sessions is not None  # noqa: S101 - only the session half returns these
        while True:
            if type(step) is FetchKeys:
                fetch = functools.partial(sessions.verifier.fetch_keys, now)
                if isinstance(self._loader.run(fetch, waited), AuthError):
                    return self._flow.audited(_jwks_timeout())
                outcome = sessions.fetched(step, now)
            else:
                assert type(step) is Membership  # noqa: S101
                lookup = functools.partial(sessions.lookup, step)
                outcome = sessions.resume(step, self._loader.run(lookup, waited), now)
            if not isinstance(outcome, (FetchKeys, Membership)):
                return outcome
            step = outcome

    async def _session_steps_async(
        self, step: FetchKeys | Membership, now: float, waited: float
    ) -> Principal | AuthError | None:
        """:meth:`_session_steps`, awaiting the worker threads."""
        sessions = self._flow.sessions
        assert sessions is not None  # noqa: S101
        while True:
            if type(step) is FetchKeys:
                fetch = functools.partial(sessions.verifier.fetch_keys, now)
                if isinstance(await self._loader.run_async(fetch, waited), AuthError):
                    return self._flow.audited(_jwks_timeout())
                outcome = sessions.fetched(step, now)
            else:
                assert type(step) is Membership  # noqa: S101
                lookup = functools.partial(sessions.lookup, step)
                outcome = sessions.resume(step, await self._loader.run_async(lookup, waited), now)
            if not isinstance(outcome, (FetchKeys, Membership)):
                return outcome
            step = outcome

    def _member_role(self, team_id: str, user_id: str) -> Role | None:
        """The default role resolver: the store's membership table."""
        member = self.store.get_member(team_id, user_id)
        return None if member is None else member.role


def _limit(flow: Flow, step: Admit) -> RateLimitState | BaseException | None:
    """Call the flow's (blocking) limiter for ``step``: its answer, or what it raised."""
    limiter = flow.limiter
    assert limiter is not None  # noqa: S101 - a LIMIT step means a limiter
    try:
        return limiter.check(step.principal, step.now)
    except Exception as error:  # a 429, or its backend's failure: the flow sorts them
        return error


def _use(store: KeyStore, step: Admit) -> bool:
    """Take one use of the key in the store (a usage limit): ``False`` when none was left.

    Raises:
        TypeError: the store cannot count uses (a 503: the limit cannot be enforced).
    """
    if not isinstance(store, PolicyStore):
        raise TypeError(f"{type(store).__name__} cannot count a key's uses (no use_key)")
    return store.use_key(step.principal.key_id or "")


def _jwks_timeout() -> JwksUnavailableError:
    error = JwksUnavailableError()
    error.__cause__ = TimeoutError("the session JWKS did not answer within store_timeout")
    return error


def _role_scopes(
    setting: Mapping[str, Iterable[str]] | ScopeRegistry | None,
) -> dict[Role, frozenset[str]]:
    """The ``session_scopes`` setting, as scopes by role."""
    if setting is None:
        return default_role_scopes()
    if isinstance(setting, ScopeRegistry):
        return default_role_scopes(setting)
    if not isinstance(setting, Mapping):
        raise ConfigurationError(
            "session_scopes is a mapping of role to scopes, or a ScopeRegistry",
            setting="session_scopes",
        )
    scopes: dict[Role, frozenset[str]] = {role: frozenset() for role in Role}
    for name, granted in setting.items():
        try:
            role = Role(name)
        except ValueError:
            raise ConfigurationError(
                f"session_scopes: {name!r} is not a role (owner, admin, member)",
                setting="session_scopes",
            ) from None
        if isinstance(granted, str):
            raise ConfigurationError(
                f"session_scopes[{name!r}] is a list of scopes, not one string",
                setting="session_scopes",
            )
        scopes[role] = frozenset(granted)
    return scopes
