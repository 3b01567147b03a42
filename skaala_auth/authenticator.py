"""The authenticator: checksum → digest → cache → store → :func:`~skaala_auth.verify.decide`.

One class, two thin drivers (:meth:`Authenticator.verify` and :meth:`Authenticator.verify_async`)
that differ only in how they wait for the store on a cache miss; everything they share lives in
small methods both call.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Literal, Protocol, overload

from .audit import AuditEvent, AuditHook, audit_logger
from .cache import Entry, KeyCache, SingleFlight, fast_lookup
from .credentials import HeadersLike, extract_key
from .errors import (
    AuthError,
    InvalidKeyError,
    MissingKeyError,
    Reason,
    StoreUnavailableError,
)
from .flow import PREFLIGHT, Endpoint, RequestFacts, requirement
from .hashing import Algorithm, Hasher
from .keys import ANY_PREFIX, LIVE_ONLY, display_prefix, well_formed_bytes
from .lastused import LastUsedRecorder
from .models import Principal
from .rules import Requirement, Rules
from .stores.base import Change, KeyRecord, KeyStore
from .verify import Grant, decide, refusal

__all__ = ["Authenticator", "Clock", "RateLimiter", "override"]

# Shared refusals for junk, returned by check() when no audit listener wants a fresh event:
# a flood of junk keys then costs no allocation at all. Never raised (see AuthError.raisable).
_MALFORMED = InvalidKeyError(reason=Reason.MALFORMED)
_UNKNOWN = InvalidKeyError(reason=Reason.UNKNOWN)
_MISSING = MissingKeyError()
for _refusal in (_MALFORMED, _UNKNOWN, _MISSING):
    _refusal.shared = True
del _refusal


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


class RateLimiter(Protocol):
    """**Protocol:** decides whether an authenticated principal may make one more request.

    ``check`` returns ``None`` to allow, or raises :class:`~skaala_auth.RateLimitedError`.
    Implementations (in memory, Redis) plug in through ``Authenticator(rate_limiter=...)``.

    .. versionadded:: 0.1.0
    """

    def check(self, principal: Principal, now: float) -> None: ...


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
        store_timeout: seconds an async caller waits for the store before answering 503.
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
        self._prefixes = ANY_PREFIX if accept_test_keys else LIVE_ONLY
        self.poll_interval = poll_interval
        self.store_timeout = store_timeout
        self._audit = audit
        self._rate_limiter = rate_limiter
        self._new_hash = self.hasher.new
        # The positive cache, read directly on the hot path (see cache.fast_lookup).
        lookup = fast_lookup(self.cache.positive)
        self._cache_get, self._cache_touch = lookup
        self._flights: SingleFlight[bytes, Entry] = SingleFlight()
        self._async_flights: dict[bytes, concurrent.futures.Future[Entry]] = {}
        self._async_lock = threading.RLock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._poll_lock = threading.Lock()
        self._next_poll = 0.0
        self._poll_failing = False
        self.last_used = LastUsedRecorder(store, last_used_interval)
        self._last_used_interval = last_used_interval
        self._track_last_used = track_last_used
        self._unsubscribe = store.subscribe(self._on_change)
        self._closed = False
        self._poll_lock_for_open = threading.Lock()
        # Whether outcomes are audited: read now, and again from the logger at every poll.
        self._audit_success = self._audit_failure = True
        self._refresh_audit_flags()

    # -- the public faces ----------------------------------------------------------------------

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
        outcome = self.check_request(
            headers,
            required_scopes=required_scopes,
            team_id=team_id,
            query_string=query_string,
            required=required,
        )
        if isinstance(outcome, AuthError):
            raise outcome.raisable()
        return outcome

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
        outcome = await self.check_request_async(
            headers,
            required_scopes=required_scopes,
            team_id=team_id,
            query_string=query_string,
            required=required,
        )
        if isinstance(outcome, AuthError):
            raise outcome.raisable()
        return outcome

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

        .. versionadded:: 0.1.0
        """
        need_now = requirement(facts, need)
        if need_now.public or found is not None:
            return self._settled(need_now, found)
        if _override is not None and _override is not self:
            return _override.decide(facts, need)
        key = self._request_key(facts.headers, facts.query, need_now.required)
        if not isinstance(key, str):
            return key
        return self.check(key, need_now.scopes, need_now.team_id)

    async def decide_async(
        self,
        facts: RequestFacts,
        need: Endpoint | Rules | None = None,
        *,
        found: Principal | None = None,
    ) -> Principal | AuthError | None:
        """:meth:`decide` for async code: a cache miss waits for the store in a worker thread.

        .. versionadded:: 0.1.0
        """
        need_now = requirement(facts, need)
        if need_now.public or found is not None:
            return self._settled(need_now, found)
        if _override is not None and _override is not self:
            return await _override.decide_async(facts, need)
        # check_request_async, inlined: one coroutine fewer per request.
        key = self._request_key(facts.headers, facts.query, need_now.required)
        if not isinstance(key, str):
            return key
        return await self.check_async(key, need_now.scopes, need_now.team_id)

    def _settled(self, need: Requirement, found: Principal | None) -> Principal | AuthError | None:
        """The outcome that needs no credential read: a public request (or a preflight to
        answer), or a principal found earlier in the request against this requirement."""
        if need.public:
            return PREFLIGHT if need.required else None
        assert found is not None  # noqa: S101 - decide() calls this for one or the other
        error = refusal(found, need.scopes, need.team_id)
        if error is None:
            return found
        auth = _override if _override is not None else self
        auth._emit(AuditEvent.failure(error, found))
        return error

    def check_request(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
    ) -> Principal | AuthError | None:
        """:meth:`authenticate` without raising — the one call a middleware needs: the
        :class:`~skaala_auth.Principal`, ``None`` (no credentials and ``required=False``), or
        the :class:`~skaala_auth.AuthError` to render (see :meth:`check` about shared
        refusals).

        .. versionadded:: 0.1.0
        """
        if _override is not None and _override is not self:
            return _override.check_request(
                headers,
                required_scopes=required_scopes,
                team_id=team_id,
                query_string=query_string,
                required=required,
            )
        key = self._request_key(headers, query_string, required)
        if not isinstance(key, str):
            return key
        return self.check(key, required_scopes, team_id)

    async def check_request_async(
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
    ) -> Principal | AuthError | None:
        """:meth:`check_request` for async code.

        .. versionadded:: 0.1.0
        """
        if _override is not None and _override is not self:
            return await _override.check_request_async(
                headers,
                required_scopes=required_scopes,
                team_id=team_id,
                query_string=query_string,
                required=required,
            )
        key = self._request_key(headers, query_string, required)
        if not isinstance(key, str):
            return key
        return await self.check_async(key, required_scopes, team_id)

    def verify(
        self, key: str, *, required_scopes: Collection[str] = (), team_id: str | None = None
    ) -> Principal:
        """Authenticate one key string and decide it.

        Raises:
            AuthError: as :meth:`authenticate`.

        .. versionadded:: 0.1.0
        """
        outcome = self.check(key, required_scopes, team_id)
        if isinstance(outcome, AuthError):
            raise outcome.raisable()
        return outcome

    async def verify_async(
        self, key: str, *, required_scopes: Collection[str] = (), team_id: str | None = None
    ) -> Principal:
        """:meth:`verify` for async code.

        .. versionadded:: 0.1.0
        """
        outcome = await self.check_async(key, required_scopes, team_id)
        if isinstance(outcome, AuthError):
            raise outcome.raisable()
        return outcome

    def check(
        self, key: str, required_scopes: Collection[str] = (), team_id: str | None = None
    ) -> Principal | AuthError:
        """:meth:`verify` without raising: returns the :class:`~skaala_auth.Principal` or the
        error to render. This is the hot path; it is also the cheapest way for an adapter to
        answer a refusal (no exception is raised and caught).

        The most common refusals (malformed or known-unknown keys, when no audit listener is
        enabled) are shared instances: render them (``status_code``, ``headers()``,
        ``body_bytes()``), never raise them — :meth:`verify` raises fresh ones.

        .. versionadded:: 0.1.0
        """
        if _override is not None and _override is not self:
            return _override.check(key, required_scopes, team_id)
        try:
            data = key.encode()
        except UnicodeEncodeError:  # lone surrogates: junk, and must not become a 500
            data = b""
        if not well_formed_bytes(data, self._prefixes):
            return self._malformed(data, key)  # nothing looked up: no cache, no store
        digest: bytes = self._new_hash(data).digest()
        now = self.clock()
        if now >= self._next_poll:
            self._poll(now)
        entry = self._cache_get(digest)
        if entry is None or now >= entry.fresh_until:
            loaded = self._load(digest, key, now)
            if isinstance(loaded, AuthError):
                return loaded
            entry = loaded
        else:
            try:
                self._cache_touch(digest)  # LRU order
            except KeyError:
                pass
        return self._finish(entry, now, required_scopes, team_id)

    async def check_async(
        self, key: str, required_scopes: Collection[str] = (), team_id: str | None = None
    ) -> Principal | AuthError:
        """:meth:`check` for async code: a cache miss waits for the store in a worker thread.

        .. versionadded:: 0.1.0
        """
        if _override is not None and _override is not self:
            return await _override.check_async(key, required_scopes, team_id)
        try:
            data = key.encode()
        except UnicodeEncodeError:  # lone surrogates: junk, and must not become a 500
            data = b""
        if not well_formed_bytes(data, self._prefixes):
            return self._malformed(data, key)
        digest: bytes = self._new_hash(data).digest()
        now = self.clock()
        if now >= self._next_poll:
            await self._poll_async(now)
        entry = self.cache.peek(digest)
        if entry is None or now >= entry.fresh_until:
            loaded = await self._load_async(digest, key, now)
            if isinstance(loaded, AuthError):
                return loaded
            entry = loaded
        return self._finish(entry, now, required_scopes, team_id)

    def authorize(
        self,
        principal: Principal,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
    ) -> Principal:
        """Check an already authenticated principal against an endpoint's scopes and team, and
        audit a refusal. (Adapters call this from ``@requires_scope`` after the middleware has
        authenticated.)

        .. versionadded:: 0.1.0
        """
        if _override is not None and _override is not self:
            return _override.authorize(principal, required_scopes=required_scopes, team_id=team_id)
        error = refusal(principal, required_scopes, team_id)
        if error is None:
            return principal
        self._emit(AuditEvent.failure(error, principal))
        raise error

    def close(self) -> None:
        """Flush pending ``last_used_at`` writes, stop the background thread and stop listening
        for changes. Idempotent.

        A closed authenticator that is used again reopens itself (see :meth:`open`): an app
        whose lifespan closes it and starts again — a test client entered twice — just works,
        and never serves a cache that missed changes while it was closed.

        .. versionadded:: 0.1.0
        """
        if self._closed:
            return
        self._closed = True
        self._next_poll = 0.0  # the next request goes through _poll(), which reopens
        self._unsubscribe()
        self.last_used.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def open(self) -> None:
        """Listen for changes again after :meth:`close`, with an empty cache (changes made while
        closed were not heard). Idempotent; called by the first request after a close.

        .. versionadded:: 0.1.0
        """
        with self._poll_lock_for_open:
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

    # -- shared steps --------------------------------------------------------------------------

    def _request_key(
        self, headers: HeadersLike, query_string: str | bytes | None, required: bool
    ) -> str | AuthError | None:
        """The request's key; else the refusal (400, or 401 when a key is required), or
        ``None`` for an anonymous request that may go on."""
        try:
            key = extract_key(headers, query_string)
        except AuthError as error:
            return self._audited(error)
        if key is not None or not required:
            return key
        return self._audited(MissingKeyError()) if self._audit_failure else _MISSING

    def _malformed(self, data: bytes, key: str) -> AuthError:
        """The refusal of a key that failed the format checks, or of a test key where those are
        not accepted. Only a test key's display prefix is audited: of a malformed string,
        nothing is kept."""
        if data[:8] == b"sk_test_" and well_formed_bytes(data):
            return self._audited(InvalidKeyError(reason=Reason.TEST_KEY), display_prefix(key))
        if self._audit_failure:
            return self._audited(InvalidKeyError(reason=Reason.MALFORMED))
        return _MALFORMED

    def _finish(
        self, entry: Entry, now: float, required_scopes: Collection[str], team_id: str | None
    ) -> Principal | AuthError:
        grant = entry.grant
        outcome = decide(grant, now, required_scopes, team_id)
        if isinstance(outcome, AuthError):
            return self._audited(outcome, principal=grant.principal)
        if self._rate_limiter is not None:
            try:
                self._rate_limiter.check(outcome, now)
            except AuthError as error:
                return self._audited(error, principal=outcome)
        if now >= entry.touch_due:
            entry.touch_due = now + self._last_used_interval
            if self._track_last_used:
                self.last_used.mark(grant.principal.key_id or "", now)
        if self._audit_success:
            self._emit(AuditEvent.success(outcome))
        return outcome

    def _fetch(self, digest: bytes, key: str) -> KeyRecord | None:
        """The store look-up (I/O). A key stored under a legacy digest is found and re-hashed."""
        stored = self.hasher.stored(digest)
        try:
            record = self.store.find_key(stored)
            if record is None:
                for legacy in self.hasher.legacy_digests(key.encode()):
                    record = self.store.find_key(legacy)
                    if record is not None:
                        self._rehash(record, stored)
                        return record
            elif not hmac.compare_digest(record.digest, stored):
                return None  # a store that matched loosely (collation, truncation): refuse
        except Exception as error:
            raise StoreUnavailableError() from error
        return record

    def _rehash(self, record: KeyRecord, stored: str) -> None:
        try:
            self.store.update_digest(record.key.id, record.digest, stored)
        except Exception:
            log.warning("could not re-hash key %s; will retry on next use", record.key.id)

    def _admit(self, digest: bytes, record: KeyRecord | None, now: float, generation: int) -> Entry:
        """Turn a look-up result into a cache entry (or remember an unknown digest)."""
        if record is None:
            self.cache.put_unknown(digest, now, generation)
            raise InvalidKeyError(reason=Reason.UNKNOWN)
        try:
            grant = Grant.from_record(record)
        except Exception as error:  # a row no key can be: a store fault, never a 500
            log.error("the key store returned an unusable record: %s", error)
            raise StoreUnavailableError() from error
        return self.cache.put(digest, grant, now, generation)

    def _load(self, digest: bytes, key: str, now: float) -> Entry | AuthError:
        """Negative cache, then the store (one load in flight per digest)."""
        if self.cache.is_known_unknown(digest, now):
            if not self._audit_failure:
                return _UNKNOWN
            return self._audited(InvalidKeyError(reason=Reason.UNKNOWN), display_prefix(key))
        try:
            return self._load_shared(digest, key, now)
        except AuthError as error:
            return self._audited(error, display_prefix(key))

    async def _load_async(self, digest: bytes, key: str, now: float) -> Entry | AuthError:
        if self.cache.is_known_unknown(digest, now):
            if not self._audit_failure:
                return _UNKNOWN
            return self._audited(InvalidKeyError(reason=Reason.UNKNOWN), display_prefix(key))
        # The load runs in our executor as a concurrent future that every waiting coroutine
        # shares, whatever its event loop; a waiter that is cancelled (client gone) or times out
        # leaves the load running for the others.
        with self._async_lock:
            future = self._async_flights.get(digest)
            if future is None:
                future = self._executor().submit(self._load_shared, digest, key, now)
                self._async_flights[digest] = future
                future.add_done_callback(lambda done: self._landed(digest, done))
        try:
            return await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(future)), self.store_timeout
            )
        except TimeoutError as error:
            failure = StoreUnavailableError()
            failure.__cause__ = error
            return self._audited(failure, display_prefix(key))
        except AuthError as error:
            return self._audited(error, display_prefix(key))

    def _landed(self, digest: bytes, future: concurrent.futures.Future[Entry]) -> None:
        with self._async_lock:
            if self._async_flights.get(digest) is future:
                del self._async_flights[digest]

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="skaala-auth-store"
            )
        return self._pool

    def _load_shared(self, digest: bytes, key: str, now: float) -> Entry:
        """Fetch and admit, one call in flight per digest across threads.

        Raises:
            InvalidKeyError: unknown key.
            StoreUnavailableError: the store failed, or another thread's load took too long.
        """

        def load() -> Entry:
            generation = self.cache.generation
            return self._admit(digest, self._fetch(digest, key), now, generation)

        try:
            return self._flights.run(digest, load, timeout=self.store_timeout)
        except TimeoutError as error:
            raise StoreUnavailableError() from error

    def _poll(self, now: float) -> None:
        """Let the store deliver other processes' changes (at most every ``poll_interval``)."""
        if not self._poll_lock.acquire(blocking=False):
            return  # another thread is polling right now
        try:
            if now < self._next_poll:
                return
            self._next_poll = now + self.poll_interval
            self._poll_now()
        finally:
            self._poll_lock.release()

    def _poll_now(self) -> None:
        if self._closed:
            self.open()
        self._refresh_audit_flags()
        try:
            self.store.poll_changes()
        except Exception as error:
            # We cannot tell what changed: trust nothing cached, so the store decides the next
            # requests (and fails closed if it is down). One traceback per outage, then a line
            # per failed poll: polls come twice a second.
            if self._poll_failing:
                log.warning("could not poll the key store for changes: %s", error)
            else:
                log.warning("could not poll the key store for changes", exc_info=True)
            self._poll_failing = True
            self.cache.clear()
        else:
            if self._poll_failing:
                log.warning("the key store answers polls again")
            self._poll_failing = False

    def _refresh_audit_flags(self) -> None:
        # Whether outcomes are audited, refreshed at each poll rather than asked of the logging
        # module on every request: a logging change takes effect within one poll interval.
        hooked = self._audit is not None
        self._audit_success = hooked or audit_logger.isEnabledFor(logging.DEBUG)
        self._audit_failure = hooked or audit_logger.isEnabledFor(logging.INFO)

    async def _poll_async(self, now: float) -> None:
        # Claim the interval before the hop to a thread, so the requests that arrive while the
        # poll runs do not each hop too (they are at most one poll late, inside the bound).
        self._next_poll = now + self.poll_interval
        await asyncio.to_thread(self._poll_locked)

    def _poll_locked(self) -> None:
        with self._poll_lock:
            self._poll_now()

    def _on_change(self, change: Change) -> None:
        self.cache.invalidate(change)

    # -- failures ------------------------------------------------------------------------------

    def _audited(
        self,
        error: AuthError,
        key_prefix: str | None = None,
        principal: Principal | None = None,
    ) -> AuthError:
        """Audit a refusal (when anyone listens; store failures always) and return it."""
        if self._audit_failure or error.status_code >= 500:
            self._emit(AuditEvent.failure(error, principal, key_prefix))
        return error

    def _emit(self, event: AuditEvent) -> None:
        event.log()
        if self._audit is not None:
            try:
                self._audit(event)
            except Exception:
                log.exception("the audit hook raised")
