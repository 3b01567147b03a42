"""The authenticator's caches and its single-flight loader.

- **Positive cache**: a ``cachetools.LRUCache`` from digest to :class:`Entry`. Each entry carries
  the instant until which it is fresh (fetch time + ``ttl``); a stale entry is never served, it is
  reloaded. We use the plain LRU and check freshness ourselves because ``TTLCache.get`` costs ten
  times an ``LRUCache`` look-up, and this is the per-request path.
- **Negative cache**: a separate, small LRU of digests known not to exist, each with a short
  expiry, so a flood of unknown keys neither hammers the store nor evicts good keys.
- **Generations**: every invalidation bumps a counter; a load that started before an
  invalidation does not put its (possibly stale) result in the cache.

Hot-path reads go around ``LRUCache.__getitem__`` (two Python-level calls, and a ``KeyError``
raised on every miss) to the cache's own dict and ``OrderedDict`` (``dict.get`` plus
``move_to_end``: the same LRU bookkeeping in two C calls). :func:`fast_lookup` checks that those
internals are there and falls back to the public API if a cachetools release changes them.

Thread-safety: reads take no lock. ``LRUCache.__getitem__`` is a dict read plus an
``OrderedDict.move_to_end``; racing a writer, the worst it can do is raise ``KeyError`` (read as a
miss). Writers serialise on a lock and retry the rare ``RuntimeError`` an eviction can see when a
reader reorders the LRU under it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from .stores.base import Change
from .verify import Grant

__all__ = ["Entry", "KeyCache", "SingleFlight", "fast_lookup"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class Entry:
    """A cached grant. ``touch_due`` is when the next last-used mark is owed (mutable)."""

    grant: Grant
    fresh_until: float
    touch_due: float = 0.0


def fast_lookup(
    lru: LRUCache[bytes, V],
) -> tuple[Callable[[bytes], V | None], Callable[[bytes], None]]:
    """``(get, touch)`` for the hot path: ``get(k)`` returns the entry or ``None`` without
    raising, ``touch(k)`` marks it recently used (and may raise ``KeyError`` if a writer evicted
    it meanwhile: ignore that)."""
    data = getattr(lru, "_Cache__data", None)
    order = getattr(lru, "_LRUCache__order", None)
    if type(data) is dict and type(order) is OrderedDict:
        return data.get, order.move_to_end

    def get(key: bytes) -> V | None:  # pragma: no cover - only on a changed cachetools
        try:
            return lru[key]
        except KeyError:
            return None

    def touch(key: bytes) -> None:  # pragma: no cover - get() already did it
        pass

    return get, touch


class KeyCache:
    """Positive and negative caches with invalidation by :class:`~skaala_auth.stores.base.Change`.

    Args:
        maxsize: positive entries kept (LRU beyond that). ``0`` disables the positive cache.
        ttl: seconds an entry is served after its fetch.
        negative_maxsize: unknown digests remembered.
        negative_ttl: seconds an unknown digest is remembered.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, maxsize: int, ttl: float, negative_maxsize: int, negative_ttl: float
    ) -> None:
        if ttl < 0 or negative_ttl < 0 or maxsize < 0 or negative_maxsize < 0:
            raise ValueError("cache sizes and lifetimes must not be negative")
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.positive: LRUCache[bytes, Entry] = LRUCache(max(maxsize, 1))
        self._negative: LRUCache[bytes, float] = LRUCache(max(negative_maxsize, 1))
        lookup = fast_lookup(self.positive)
        self._get, self._touch = lookup
        self._negative_get = fast_lookup(self._negative)[0]
        self._enabled = maxsize > 0 and ttl > 0
        self._negative_enabled = negative_maxsize > 0 and negative_ttl > 0
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, digest: bytes, now: float) -> Entry | None:
        """The fresh entry for ``digest``, or ``None``."""
        try:
            entry = self.positive[digest]
        except KeyError:
            return None
        return entry if now < entry.fresh_until else None

    def peek(self, digest: bytes) -> Entry | None:
        """The entry for ``digest``, fresh or not (the caller checks ``fresh_until``)."""
        entry = self._get(digest)
        if entry is not None:
            try:
                self._touch(digest)
            except KeyError:  # evicted by a writer since the get: still a valid answer
                pass
        return entry

    def is_known_unknown(self, digest: bytes, now: float) -> bool:
        """True while ``digest`` is remembered as not in the store."""
        expiry = self._negative_get(digest)
        return expiry is not None and now < expiry

    def put(self, digest: bytes, grant: Grant, now: float, generation: int) -> Entry:
        """Cache ``grant`` unless an invalidation happened since ``generation`` was read."""
        entry = Entry(grant, now + self.ttl)
        if self._enabled:
            self._write(lambda: self.positive.__setitem__(digest, entry), generation)
        return entry

    def put_unknown(self, digest: bytes, now: float, generation: int) -> None:
        if self._negative_enabled:
            expiry = now + self.negative_ttl
            self._write(lambda: self._negative.__setitem__(digest, expiry), generation)

    def _write(self, action: Callable[[], None], generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            for _ in range(3):
                try:
                    action()
                    return
                except RuntimeError:  # a lock-free reader reordered the LRU during eviction
                    continue

    def invalidate(self, change: Change) -> None:
        """Drop every entry ``change`` may have made wrong. Unknown digests are all forgotten
        (a new key may be among them)."""
        with self._lock:
            self.generation += 1
            self._negative.clear()
            if change.kind == "all":
                self.positive.clear()
                return
            for digest, entry in list(self.positive.items()):
                principal = entry.grant.principal
                if (change.kind == "key" and principal.key_id == change.key_id) or (
                    change.kind == "member"
                    and principal.team_id == change.team_id
                    and principal.user_id == change.user_id
                ):
                    self.positive.pop(digest, None)

    def clear(self) -> None:
        self.invalidate(Change("all"))

    def __len__(self) -> int:
        return len(self.positive)


class _Call(Generic[V]):
    # A plain lock, held by the leader until the result is in, is the cheapest "done" signal:
    # a threading.Event builds a Condition and a second lock on every load.
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[K, V]):
    """At most one call in flight per key: concurrent callers for the same key wait for the
    first one and share its result (or its exception).

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[K, _Call[V]] = {}

    def run(self, key: K, load: Callable[[], V], timeout: float | None = None) -> V:
        """Run ``load()`` unless a call for ``key`` is already in flight; then wait for it.

        Raises:
            TimeoutError: waited ``timeout`` seconds for another caller's load.
        """
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            if not call.done.acquire(timeout=-1 if timeout is None else timeout):
                raise TimeoutError("timed out waiting for a concurrent load")
            call.done.release()  # let the next waiter through
            if call.error is not None:
                raise call.error
            return call.value  # type: ignore[return-value]
        try:
            call.value = load()
            return call.value
        except BaseException as error:
            call.error = error
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.release()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)
