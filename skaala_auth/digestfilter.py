"""The digest filter: every stored digest, in memory, so that a well-formed key nobody issued
is refused without a store look-up.

The checksum of a key is public, so anyone can mint well-formed keys; before this filter each
unique one cost a store look-up (the negative cache only helps with repeats). The filter holds
the first 8 bytes of every digest the store lists (:class:`~skaala_auth.stores.base.DigestSource`),
whatever its algorithm, and the flow asks it after the checksum and the negative cache: a digest
it does not list — under the current algorithm nor under any legacy one the store may still hold
the key under — is unknown.

**It must never refuse a key that exists**, so it answers only while it is sure, and otherwise
lets the look-up happen (fails open):

- until its first full read of the store's digests has finished;
- while a key change is being learnt: every ``Change("key", key_id)`` (a key created, rotated,
  re-hashed — or revoked, which adds nothing) makes it ask the store for that key's digest,
  and it is unsure from the moment the change arrives until the answer is in;
- after a change it cannot follow (``Change("all")``: a listener that reconnected, a replaced
  file; ``Change("key")`` without an id: a bulk import) or a read that failed, until a full
  re-read has finished that started after ``reload_interval`` seconds without another one. A
  store (or bus) whose listener is down says ``Change("all")`` at every poll: the filter then
  stays open, and reads nothing, until the listener is back. Re-reads run one at a time; after
  a failed one the next waits ``reload_interval``, doubling to 60 s while they keep failing.

What it cannot know is a key created in *another* process whose change has not reached this one
yet (within a poll, SQLite; milliseconds, PostgreSQL NOTIFY). For that window it keeps a small
budget: digests it does not list are still looked up, at most ``unlisted_rate`` per second (a
token bucket, burst as large); only beyond that — in a flood — does its word become final.

**Memory.** A sorted ``array('Q')`` of 8-byte prefixes (8 bytes per key) with an index on the
top 16 bits (512 KiB), plus a ``set`` (about 100 bytes per key) of the keys learnt since the last
full read, merged into the array when it grows past an eighth of it. A million keys: about
8.5 MB, against about 70 MB for a ``set`` of them. A look-up is a bisection of the few entries
under one index slot (about 1–2 µs). Two digests share a prefix with probability 2⁻⁶⁴: a
listed prefix costs, at worst, the look-up it always cost.

Thread-safety: :meth:`DigestFilter.lists` takes no lock (it reads one tuple, replaced whole);
writers serialise on one lock, never held across I/O (the loader does the reading).

.. versionadded:: 0.5.0
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Final

from .stores.base import Change

__all__ = ["DigestFilter", "prefix_of"]

#: Entries of the index on the top 16 bits of a prefix.
_SLOTS: Final = 1 << 16
#: The index of an empty array (never written: indexes are built whole, then only read).
_EMPTY_INDEX: Final = array("Q", bytes(8 * (_SLOTS + 1)))
#: A full read: the sorted prefixes and their index.
Listing = tuple["array[int]", "array[int]"]
#: The longest wait between two full re-reads that keep failing.
MAX_RELOAD_INTERVAL: Final = 60.0


def prefix_of(stored: str) -> int | None:
    """The filter's prefix of a stored digest (``algo$hex``): its first 8 bytes as an integer,
    or ``None`` for a string no key can be looked up by (no ``$``, not hexadecimal)."""
    _, dollar, hexdigits = stored.partition("$")
    if not dollar:
        return None
    try:
        value = int(hexdigits[:16], 16)
    except ValueError:
        return None
    # Shorter than 16 hex digits: a digest no hasher makes; kept at its place all the same.
    return value << (4 * (16 - len(hexdigits))) if len(hexdigits) < 16 else value


class DigestFilter:
    """The authenticator's filter of stored digests (see the module's docstring).

    Args:
        unlisted_rate: look-ups per second still allowed for digests the filter does not list
            (keys another process created and this one has not heard of yet); ``0``: none.
        reload_interval: seconds between the starts of two full re-reads, at least.
        clock: epoch seconds (the authenticator's), for the re-read schedule.

    .. versionadded:: 0.5.0
    """

    def __init__(
        self, *, unlisted_rate: float, reload_interval: float, clock: Callable[[], float]
    ) -> None:
        if unlisted_rate < 0 or reload_interval < 0:
            raise ValueError("unlisted_rate and reload_interval must not be negative")
        self.unlisted_rate = unlisted_rate
        self.reload_interval = reload_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        #: (sorted prefixes, index of the top 16 bits, prefixes learnt since): replaced whole.
        self._snapshot: tuple[array[int], array[int], set[int]] = (array("Q"), _EMPTY_INDEX, set())
        #: Read lock-free on every miss: true only while the filter's word may be final.
        self.ready = False
        self._loaded = False
        self._stale = True  # a full read is needed
        self._pending = 0  # key digests being learnt
        self._reloading = False
        self._generation = 0  # bumped by every change the filter cannot follow
        self._next_reload = 0.0  # after a failed read
        self._quiet_until = 0.0  # a read starts only after reload_interval without surprises
        self._delay = reload_interval
        self._tokens = self._burst = max(unlisted_rate, 1.0) if unlisted_rate else 0.0
        self._stamp = 0.0

    def __len__(self) -> int:
        base, _, added = self._snapshot
        return len(base) + len(added)

    # -- the request's side (no lock) -------------------------------------------------------------

    def lists(self, digest: bytes, legacy: Iterable[str] = ()) -> bool:
        """Whether the store may hold a key with this raw digest, or with one of these legacy
        stored digests. Meaningful only while :attr:`ready`."""
        base, index, added = self._snapshot
        prefix = int.from_bytes(digest[:8], "big")
        if prefix in added or _in(base, index, prefix):
            return True
        for stored in legacy:
            other = prefix_of(stored)
            if other is None or other in added or _in(base, index, other):
                return True
        return False

    def spare(self, now: float) -> bool:
        """Take one look-up from the budget for unlisted digests: ``True`` when there is one."""
        rate = self.unlisted_rate
        if not rate:
            return False
        tokens = min(self._burst, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    # -- changes -------------------------------------------------------------------------------

    def changed(self, change: Change) -> str | None:
        """Follow a change: returns the key id whose digest must now be learnt (the caller asks
        the store, then calls :meth:`learned` or :meth:`forget_all`), or ``None``. Unsure from
        here until then."""
        if change.kind == "member":
            return None
        with self._lock:
            if change.kind == "key" and change.key_id is not None:
                self._pending += 1
                self.ready = False
                return change.key_id
            self._unsure()
            return None

    def learned(self, stored: str | None) -> None:
        """The digest asked for after :meth:`changed` (``None``: the key is not there)."""
        prefix = None if stored is None else prefix_of(stored)
        with self._lock:
            if prefix is not None:
                base, index, added = self._snapshot
                added.add(prefix)
                if len(added) > max(4096, len(base) // 8):
                    self._snapshot = (*_merged(base, added), set())
            self._pending -= 1
            self._settle()

    def forget_all(self, learning: bool = False) -> None:
        """Something was missed (a read failed, the authenticator was closed): unsure until a
        full re-read. ``learning``: this ends a :meth:`changed` whose digest could not be read."""
        with self._lock:
            if learning:
                self._pending -= 1
            self._unsure()

    def _unsure(self) -> None:
        # Under the lock.
        self._generation += 1
        self._stale = True
        self.ready = False
        self._quiet_until = self._clock() + self.reload_interval

    def _settle(self) -> None:
        # Under the lock.
        self.ready = self._loaded and not self._stale and self._pending == 0
        if self.ready:
            self._changed.notify_all()

    # -- full reads ----------------------------------------------------------------------------

    def wants_reload(self) -> bool:
        """Whether a full re-read should start now; if so, it counts as started (call
        :meth:`reloaded` or :meth:`reload_failed` with the generation :meth:`reloading` gives)."""
        with self._lock:
            now = self._clock()
            if (
                not self._stale
                or self._reloading
                or now < self._next_reload
                or now < self._quiet_until
            ):
                return False
            self._reloading = True
            return True

    def reloading(self) -> int:
        """The generation a full re-read starts at. The keys learnt until now are in what it
        reads; those learnt from now on are kept beside it."""
        with self._lock:
            base, index, _ = self._snapshot
            self._snapshot = (base, index, set())
            return self._generation

    @staticmethod
    def read(digests: Iterable[str]) -> Listing:
        """Turn a full read of the store's digests into what :meth:`reloaded` installs (in the
        reading thread, without the lock)."""
        # 8 bytes a digest while reading; the sort needs a list of ints for a moment.
        unsorted = array("Q", (p for p in map(prefix_of, digests) if p is not None))
        base = array("Q", sorted(unsorted))
        del unsorted
        return base, _index(base)

    def reloaded(self, listing: Listing, generation: int) -> None:
        """Install a full read. Sure afterwards unless something was missed since it started."""
        base, index = listing
        with self._lock:
            self._snapshot = (base, index, self._snapshot[2])
            self._reloading = False
            self._loaded = True
            if generation == self._generation:
                self._stale = False
            self._delay = self.reload_interval
            self._next_reload = 0.0
            self._settle()

    def reload_failed(self) -> None:
        with self._lock:
            self._reloading = False
            self._next_reload = self._clock() + self._delay
            self._delay = min(max(self._delay * 2, 1.0), MAX_RELOAD_INTERVAL)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the filter is sure (tests, benchmarks); ``False`` after ``timeout``."""
        with self._lock:
            return self._changed.wait_for(lambda: self.ready, timeout)

    def __repr__(self) -> str:
        return f"DigestFilter(listed={len(self)}, ready={self.ready})"


def _in(base: array[int], index: array[int], prefix: int) -> bool:
    top = prefix >> 48
    low, high = index[top], index[top + 1]
    if low == high:
        return False
    at = bisect_left(base, prefix, low, high)
    return at < high and base[at] == prefix


def _index(base: array[int]) -> array[int]:
    """Where each value of the top 16 bits starts in ``base`` (sorted), and its end."""
    index = array("Q", bytes(8 * (_SLOTS + 1)))
    at = 0
    size = len(base)
    for top in range(_SLOTS):
        # The first entry whose top 16 bits exceed ``top``: a bisection, once per slot.
        index[top] = at
        if at < size and base[at] >> 48 == top:
            at = bisect_left(base, (top + 1) << 48, at)
    index[_SLOTS] = size
    return index


def _merged(base: array[int], added: set[int]) -> tuple[array[int], array[int]]:
    merged = array("Q", sorted([*base, *added]))
    return merged, _index(merged)
