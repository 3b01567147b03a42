"""Everything that waits, and no decisions: store look-ups, one in flight per digest, under a
timeout for sync and async callers alike; and the polls that bring other processes' changes.

- **One flight table.** A :class:`~skaala_auth.flow.Load` runs in the loader's worker threads
  as a :class:`concurrent.futures.Future` that every caller asking for the same digest shares,
  sync or async, whatever its event loop. A sync caller waits on it with
  ``Future.result(timeout)``; an async caller awaits it, shielded, with
  :func:`asyncio.wait_for`. Either way a store slower than ``timeout`` is answered 503 at
  ``timeout``, and a waiter that gives up (timeout, client gone) leaves the load running for the
  others; its result still reaches the cache.
- **Polls.** At most every ``poll_interval`` seconds a request lets the store deliver the
  changes other processes made (SQLite's ``data_version``); a poll that fails empties the cache,
  so the store decides the next requests, and fails closed while it is down.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import threading
from collections.abc import Callable

from .cache import Entry, KeyCache
from .decision import Grant
from .errors import AuthError, InvalidKeyError, Reason, StoreUnavailableError
from .flow import Load
from .models import KeyRecord
from .stores.base import KeyStore

__all__ = ["KeyLoader"]

log = logging.getLogger("skaala_auth")


class KeyLoader:
    """Performs the flow's loads against a store, and polls it for changes.

    Args:
        store: the key store.
        cache: where loaded grants (and unknown digests) go.
        timeout: seconds a caller waits for a load before answering 503.
        poll_interval: seconds between polls.
        before_poll: called before each poll (the authenticator reopens itself there, and
            re-reads its audit settings).
        workers: threads that run loads.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        store: KeyStore,
        cache: KeyCache,
        *,
        timeout: float,
        poll_interval: float,
        before_poll: Callable[[], None],
        workers: int = 8,
    ) -> None:
        self.store = store
        self.cache = cache
        self.timeout = timeout
        self.poll_interval = poll_interval
        #: When the next poll is due (epoch seconds); ``0`` makes the next request poll.
        self.next_poll = 0.0
        self._before_poll = before_poll
        self._workers = workers
        self._lock = threading.Lock()
        self._flights: dict[bytes, concurrent.futures.Future[Entry]] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._poll_lock = threading.Lock()
        self._poll_failing = False

    # -- loads ---------------------------------------------------------------------------------

    def load(self, need: Load) -> Entry | AuthError:
        """Perform ``need``, waiting at most ``timeout`` seconds. Never raises: the refusal
        (unknown key, store failure) is returned for the flow to audit."""
        try:
            return self._flight(need).result(self.timeout)
        except TimeoutError as error:
            return _unavailable(error)
        except AuthError as error:
            return error

    async def load_async(self, need: Load) -> Entry | AuthError:
        """:meth:`load` for async callers: the event loop never waits on the store."""
        future = asyncio.wrap_future(self._flight(need))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError as error:
            return _unavailable(error)
        except AuthError as error:
            return error

    def in_flight(self) -> int:
        """Loads running now."""
        with self._lock:
            return len(self._flights)

    def _flight(self, need: Load) -> concurrent.futures.Future[Entry]:
        """The load in flight for ``need``'s digest, started if there is none."""
        digest = need.digest
        with self._lock:
            future = self._flights.get(digest)
            if future is not None:
                return future
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix="skaala-auth-store"
                )
            future = self._pool.submit(self._fetch, need)
            self._flights[digest] = future
        future.add_done_callback(lambda done: self._landed(digest, done))
        return future

    def _landed(self, digest: bytes, future: concurrent.futures.Future[Entry]) -> None:
        with self._lock:
            if self._flights.get(digest) is future:
                del self._flights[digest]

    def _fetch(self, need: Load) -> Entry:
        """The look-up (in a worker thread), and its admission to the cache.

        Raises:
            InvalidKeyError: unknown key (remembered in the negative cache).
            StoreUnavailableError: the store failed, or returned something no key can be.
        """
        cache = self.cache
        generation = cache.generation  # read before the look-up: see KeyCache.put
        try:
            record = self._find(need)
        except Exception as error:
            raise StoreUnavailableError() from error
        if record is None:
            cache.put_unknown(need.digest, need.now, generation)
            raise InvalidKeyError(reason=Reason.UNKNOWN)
        try:
            grant = Grant.from_record(record)
        except Exception as error:  # a row no key can be: a store fault, never a 500
            log.error("the key store returned an unusable record: %s", error)
            raise StoreUnavailableError() from error
        return cache.put(need.digest, grant, need.now, generation)

    def _find(self, need: Load) -> KeyRecord | None:
        """The record stored under ``need``'s digest, or under a legacy digest of the same key
        (then re-hashed to the current digest)."""
        store = self.store
        record = store.find_key(need.stored)
        if record is not None:
            # A store that matched loosely (collation, truncation) must not grant: refuse.
            return record if hmac.compare_digest(record.digest, need.stored) else None
        for legacy in need.legacy:
            record = store.find_key(legacy)
            if record is not None and hmac.compare_digest(record.digest, legacy):
                try:
                    store.update_digest(record.key.id, record.digest, need.stored)
                except Exception:
                    log.warning("could not re-hash key %s; will retry on next use", record.key.id)
                return record
        return None

    # -- polls ---------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        """Let the store deliver other processes' changes (at most every ``poll_interval``;
        a request that finds another thread polling goes on without waiting)."""
        if not self._poll_lock.acquire(blocking=False):
            return
        try:
            if now < self.next_poll:
                return
            self.next_poll = now + self.poll_interval
            self._poll_now()
        finally:
            self._poll_lock.release()

    async def poll_async(self, now: float) -> None:
        """:meth:`poll` for async callers, in a worker thread."""
        # Claim the interval before the hop to a thread, so the requests that arrive while the
        # poll runs do not each hop too (they are at most one poll late, inside the bound).
        self.next_poll = now + self.poll_interval
        await asyncio.to_thread(self._poll_locked)

    def _poll_locked(self) -> None:
        with self._poll_lock:
            self._poll_now()

    def _poll_now(self) -> None:
        self._before_poll()
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

    def close(self) -> None:
        """Stop the worker threads (loads in flight finish on their own) and poll at the next
        request."""
        self.next_poll = 0.0
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


def _unavailable(cause: BaseException) -> StoreUnavailableError:
    error = StoreUnavailableError()
    error.__cause__ = cause
    return error
