"""The authenticator's caches: what it remembers about digests between requests.

- **Positive cache**: a plain ``dict`` from digest to :class:`Entry`, bounded, that evicts the
  entry loaded longest ago. Each entry carries the instant until which it is fresh (fetch time +
  ``ttl``); a stale entry is never served, it is reloaded, and a reload puts it back at the young
  end. A hit is one ``dict.get``: no LRU bookkeeping on the per-request path. Since every entry
  is reloaded at least every ``ttl`` seconds, "loaded longest ago" is close to "used longest
  ago" for any key used within a ``ttl``, and it costs nothing per hit.
- **Negative cache**: a separate, small ``cachetools.LRUCache`` of digests known not to exist,
  each with a short expiry, so a flood of unknown keys neither hammers the store nor evicts
  good keys. Read only after the positive cache missed.
- **Generations**: every invalidation bumps a counter; a load that started before an
  invalidation does not put its (possibly stale) result in the cache.

Thread-safety: reads take no lock (a ``dict.get`` is atomic). Writers serialise on one lock,
which is never held across I/O.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cachetools import LRUCache

from .decision import Grant
from .stores.base import Change

__all__ = ["Entry", "KeyCache"]


class Entry:
    """A cached grant. ``touch_due`` is when the next last-used mark is owed (mutable); for a
    grant with restrictions it stays ``0`` (so that every request of the key reaches the checks
    in :meth:`~skaala_auth.flow.Flow.admit`) and ``mark_due`` holds that instant instead."""

    __slots__ = ("fresh_until", "grant", "mark_due", "touch_due")

    def __init__(self, grant: Grant, fresh_until: float) -> None:
        self.grant = grant
        self.fresh_until = fresh_until
        self.touch_due = 0.0
        self.mark_due = 0.0


class KeyCache:
    """Positive and negative caches with invalidation by :class:`~skaala_auth.stores.base.Change`.

    Args:
        maxsize: positive entries kept (the one loaded longest ago goes first). ``0`` disables
            the positive cache.
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
        self.maxsize = maxsize
        self._entries: dict[bytes, Entry] = {}
        #: ``get(digest)``: the entry, fresh or not, or ``None`` (the hot path's one read).
        self.get: Callable[[bytes], Entry | None] = self._entries.get
        self._negative: LRUCache[bytes, float] = LRUCache(max(negative_maxsize, 1))
        self._enabled = maxsize > 0 and ttl > 0
        self._negative_enabled = negative_maxsize > 0 and negative_ttl > 0
        self._lock = threading.Lock()
        self.generation = 0

    def fresh(self, digest: bytes, now: float) -> Entry | None:
        """The fresh entry for ``digest``, or ``None``."""
        entry = self._entries.get(digest)
        return entry if entry is not None and now < entry.fresh_until else None

    def is_known_unknown(self, digest: bytes, now: float) -> bool:
        """True while ``digest`` is remembered as not in the store."""
        expiry = self._negative.get(digest)
        return expiry is not None and now < expiry

    def put(self, digest: bytes, grant: Grant, now: float, generation: int) -> Entry:
        """Cache ``grant`` unless an invalidation happened since ``generation`` was read."""
        entry = Entry(grant, now + self.ttl)
        if self._enabled:
            entries = self._entries
            with self._lock:
                if generation == self.generation:
                    entries.pop(digest, None)  # a reload goes to the young end
                    entries[digest] = entry
                    while len(entries) > self.maxsize:
                        del entries[next(iter(entries))]
        return entry

    def put_unknown(self, digest: bytes, now: float, generation: int) -> None:
        if self._negative_enabled:
            with self._lock:
                if generation == self.generation:
                    self._negative[digest] = now + self.negative_ttl

    def invalidate(self, change: Change) -> None:
        """Drop every entry ``change`` may have made wrong. Unknown digests are all forgotten
        (a new key may be among them)."""
        with self._lock:
            self.generation += 1
            self._negative.clear()
            if change.kind == "all":
                self._entries.clear()
                return
            for digest, entry in list(self._entries.items()):
                principal = entry.grant.principal
                if (change.kind == "key" and principal.key_id == change.key_id) or (
                    change.kind == "member"
                    and principal.team_id == change.team_id
                    and principal.user_id == change.user_id
                ):
                    del self._entries[digest]

    def clear(self) -> None:
        self.invalidate(Change("all"))

    def __len__(self) -> int:
        return len(self._entries)
