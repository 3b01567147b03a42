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

import logging
import time
from collections.abc import Callable, Collection
from typing import Literal, overload

from .audit import AuditEvent, AuditHook
from .cache import KeyCache
from .credentials import HeadersLike
from .decision import refusal
from .errors import AuthError
from .flow import Endpoint, Flow, Load, RequestFacts
from .hashing import Algorithm, Hasher
from .lastused import LastUsedRecorder
from .loading import KeyLoader
from .models import Principal
from .ratelimit import RateLimiter
from .rules import Rules
from .stores.base import Change, KeyStore

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

    .. versionadded:: 0.1.0
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
    ) -> None:
        self.store = store
        self.hasher = Hasher(pepper, hash_algorithm)
        self.cache = KeyCache(cache_size, cache_ttl, negative_cache_size, negative_cache_ttl)
        self.clock = clock
        self.accept_test_keys = accept_test_keys
        self.last_used = LastUsedRecorder(store, last_used_interval)
        self._flow = Flow(
            self.hasher,
            self.cache,
            accept_test_keys=accept_test_keys,
            last_used=self.last_used,
            last_used_interval=last_used_interval,
            track_last_used=track_last_used,
            rate_limiter=rate_limiter,
            audit=audit,
        )
        self._loader = KeyLoader(
            store,
            self.cache,
            timeout=store_timeout,
            poll_interval=poll_interval,
            before_poll=self._before_poll,
        )
        self._unsubscribe = store.subscribe(self._on_change)
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
            return auth._flow.recheck(facts, need, found)
        now = auth.clock()
        waited = auth._loader.poll(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.request(facts, need, now)
        if isinstance(step, Load):
            return auth._flow.resume(step, auth._loader.load(step, waited), now)
        return step

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
            return auth._flow.recheck(facts, need, found)
        now = auth.clock()
        waited = await auth._loader.poll_async(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.request(facts, need, now)
        if isinstance(step, Load):
            return auth._flow.resume(step, await auth._loader.load_async(step, waited), now)
        return step

    @overload
    def authenticate(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: Literal[True] = True,
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
    ) -> Principal | None: ...

    def authenticate(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
    ) -> Principal | None:
        """Authenticate a request by its headers and decide it.

        Args:
            headers: the request headers (see :data:`~skaala_auth.credentials.HeadersLike`).
            required_scopes: scopes the endpoint needs (AND).
            team_id: the team in the request path, if any.
            query_string: the raw query string, checked for keys (refused with 400).
            required: when ``False``, a request without credentials returns ``None``
                (anonymous) instead of raising :class:`~skaala_auth.MissingKeyError`.

        Returns:
            The :class:`~skaala_auth.Principal`.

        Raises:
            AuthError: a subclass that carries the HTTP answer (400, 401, 403, 429, 503).

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        now = auth.clock()
        waited = auth._loader.poll(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.headers(headers, query_string, required_scopes, team_id, required, now)
        del headers  # they carry the key: out of this frame while the store is asked
        if isinstance(step, Load):
            step = auth._flow.resume(step, auth._loader.load(step, waited), now)
        if isinstance(step, AuthError):
            raise step.raisable()
        return step

    @overload
    async def authenticate_async(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: Literal[True] = True,
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
    ) -> Principal | None: ...

    async def authenticate_async(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
    ) -> Principal | None:
        """:meth:`authenticate` for async code: a cache miss waits for the store in a worker
        thread, never on the event loop.

        .. versionadded:: 0.1.0
        """
        auth = self if _override is None else _override
        now = auth.clock()
        waited = await auth._loader.poll_async(now) if now >= auth._loader.next_poll else 0.0
        step = auth._flow.headers(headers, query_string, required_scopes, team_id, required, now)
        del headers
        if isinstance(step, Load):
            step = auth._flow.resume(step, await auth._loader.load_async(step, waited), now)
        if isinstance(step, AuthError):
            raise step.raisable()
        return step

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
        if isinstance(step, AuthError):
            raise step.raisable()
        return step

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
        self.cache.clear()
        self._unsubscribe = self.store.subscribe(self._on_change)
        self.last_used.reopen()
        self._closed = False

    def __enter__(self) -> Authenticator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Authenticator(store={self.store!r}, cached={len(self.cache)})"

    def _before_poll(self) -> None:
        # Called under the loader's poll lock: one thread reopens.
        if self._closed:
            self.open()
        self._flow.refresh()

    def _on_change(self, change: Change) -> None:
        self.cache.invalidate(change)
