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
  changes other processes made (SQLite's ``data_version``): the poll runs in a worker thread too,
  and the request waits for it at most ``timeout`` seconds — its look-up, if it needs one,
  waits what is left of them. A poll that fails, or that has not answered by then, empties the
  cache, so the store decides the next requests, and fails closed
  while it is down or hangs; a poll still hanging a whole interval later empties it again.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .cache import Entry, KeyCache
from .decision import Grant
from .errors import AuthError, InvalidKeyError, Reason, StoreUnavailableError
from .flow import Load
from .models import KeyRecord
from .outage import Outage
from .stores.base import KeyStore

__all__ = ["KeyLoader"]

log = logging.getLogger("skaala_auth")

T = TypeVar("T")


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
        self._polling: concurrent.futures.Future[None] | None = None
        self._poll_outage = Outage(
            log, "could not poll the key store for changes", "the key store answers polls again"
        )
        self._job_outage = Outage(
            log,
            "a session look-up (a role in the store, or the JWKS) failed: sessions that need "
            "one are refused (503)",
            "session look-ups answer again",
        )

    # -- loads ---------------------------------------------------------------------------------

    def load(self, need: Load, waited: float = 0.0) -> Entry | AuthError:
        """Perform ``need``, waiting at most ``timeout`` seconds in all (``waited``: what this
        request already waited for a poll). Never raises: the refusal (unknown key, store
        failure) is returned for the flow to audit."""
        try:
            return self._flight(need).result(max(self.timeout - waited, 0.0))
        except TimeoutError as error:
            return _unavailable(error)
        except AuthError as error:
            return error

    async def load_async(self, need: Load, waited: float = 0.0) -> Entry | AuthError:
        """:meth:`load` for async callers: the event loop never waits on the store."""
        future = asyncio.wrap_future(self._flight(need))
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(self.timeout - waited, 0.0))
        except TimeoutError as error:
            return _unavailable(error)
        except AuthError as error:
            return error

    def run(self, job: Callable[[], T], waited: float = 0.0) -> T | AuthError:
        """Run ``job`` (a session's JWKS fetch or role look-up) in a worker thread, waiting at
        most what is left of ``timeout``. Never raises: a job that raised or did not answer in
        time is a :class:`~skaala_auth.StoreUnavailableError` (503), logged once per outage."""
        with self._lock:
            future = self._executor().submit(job)
        try:
            result = future.result(max(self.timeout - waited, 0.0))
        except Exception as error:  # TimeoutError, or whatever the job raised
            return self._job_failed(error)
        self._job_outage.succeeded()
        return result

    async def run_async(self, job: Callable[[], T], waited: float = 0.0) -> T | AuthError:
        """:meth:`run` for async callers: the event loop never waits on the job."""
        with self._lock:
            future = asyncio.wrap_future(self._executor().submit(job))
        try:
            result = await asyncio.wait_for(asyncio.shield(future), max(self.timeout - waited, 0.0))
        except Exception as error:
            return self._job_failed(error)
        self._job_outage.succeeded()
        return result

    def _job_failed(self, error: Exception) -> AuthError:
        self._job_outage.failed(error)
        return _unavailable(error)

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
            entry = self.cache.fresh(digest, need.now)
            if entry is not None:  # a load landed since the caller missed: no second look-up
                future = concurrent.futures.Future()
                future.set_result(entry)
                return future
            future = self._executor().submit(self._fetch, need)
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

    def poll(self, now: float) -> float:
        """Let the store deliver other processes' changes, at most every ``poll_interval``:
        the request that finds a poll due starts one in a worker thread and waits for it at
        most ``timeout`` seconds; the others go on without waiting (at most one poll late).
        Returns the seconds this caller waited, which its look-up, if any, waits less."""
        future = self._start_poll(now)
        if future is None:
            return 0.0
        started = time.monotonic()
        try:
            future.result(self.timeout)
        except TimeoutError:
            self._poll_stuck()
        return time.monotonic() - started

    async def poll_async(self, now: float) -> float:
        """:meth:`poll` for async callers: the event loop never waits on the store."""
        future = self._start_poll(now)
        if future is None:
            return 0.0
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout)
        except TimeoutError:
            self._poll_stuck()
        return time.monotonic() - started

    def _start_poll(self, now: float) -> concurrent.futures.Future[None] | None:
        """The poll this caller waits for, or ``None`` (not due, or one is running)."""
        with self._lock:
            if now < self.next_poll:
                return None
            self.next_poll = now + self.poll_interval
            running = self._polling
            if running is None or running.done():
                self._polling = future = self._executor().submit(self._poll_now)
                return future
        # The last poll has not answered for a whole interval: what changed cannot be told.
        self._poll_stuck()
        return None

    def _poll_stuck(self) -> None:
        """A poll slower than ``timeout``: trust nothing cached (as for a failed poll), so the
        store decides the next requests, and fails closed if it hangs too."""
        self._poll_outage.failed(TimeoutError(f"no answer within {self.timeout} s"))
        self.cache.clear()

    def _poll_now(self) -> None:
        """One poll, in a worker thread."""
        self._before_poll()
        try:
            self.store.poll_changes()
        except Exception as error:
            # We cannot tell what changed: trust nothing cached, so the store decides the next
            # requests (and fails closed if it is down).
            self._poll_outage.failed(error)
            self.cache.clear()
        else:
            self._poll_outage.succeeded()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        # Called under self._lock.
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._workers, thread_name_prefix="skaala-auth-store"
            )
        return self._pool

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
