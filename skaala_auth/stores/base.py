"""What a key store is: the :class:`KeyStore` protocol, the records it returns, and the change
feed that carries invalidations to every authenticator on the store.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

from ..models import ApiKey, KeyRecord, Member

__all__ = [
    "POLICY_FIELDS",
    "Change",
    "ChangeFeed",
    "DigestSource",
    "InvalidationBus",
    "KeyRecord",
    "KeyStore",
    "PolicyStore",
]

#: The :class:`~skaala_auth.ApiKey` fields :meth:`PolicyStore.set_policy` writes.
POLICY_FIELDS: Final = ("disabled_at", "rate_limit", "remaining", "allowed_ips", "metadata")

log = logging.getLogger("skaala_auth.store")


@dataclass(frozen=True, slots=True)
class Change:
    """A change that cached authentication results must not outlive.

    ``kind`` is ``"key"`` (a key was created, revoked, rotated or re-hashed: ``key_id`` is set),
    ``"member"`` (a membership was removed or its role changed: ``team_id`` and ``user_id`` are
    set) or ``"all"`` (the store cannot tell what changed: drop everything).

    ``"key"`` without a ``key_id`` announces keys created in bulk
    (:meth:`KeyStore.insert_keys`): no cached grant is wrong, but a digest remembered as unknown
    may now be one of the new keys, so unknown digests must be forgotten (as for every change).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
       ``"key"`` without a ``key_id``: keys created in bulk.
    """

    kind: Literal["key", "member", "all"]
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None


Subscriber = Callable[[Change], None]


class ChangeFeed:
    """Delivers :class:`Change` events to subscribers.

    A bound method (an authenticator's) is held weakly, so that an authenticator dropped without
    ``close()`` does not live on through its store; any other callable is held strongly.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], Subscriber | None]] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        ref: Callable[[], Subscriber | None]
        try:
            ref = weakref.WeakMethod(callback)
        except TypeError:  # not a bound method of a weak-referenceable object
            ref = _Strong(callback)
        with self._lock:
            self._subscribers.append(ref)

        def unsubscribe() -> None:
            with self._lock:
                if ref in self._subscribers:
                    self._subscribers.remove(ref)

        return unsubscribe

    def publish(self, change: Change) -> None:
        with self._lock:
            callbacks = [ref() for ref in self._subscribers]
            self._subscribers = [r for r, c in zip(self._subscribers, callbacks, strict=True) if c]
        for callback in callbacks:
            if callback is not None:
                callback(change)


class _Strong:
    __slots__ = ("callback",)

    def __init__(self, callback: Subscriber) -> None:
        self.callback = callback

    def __call__(self) -> Subscriber:
        return self.callback


@runtime_checkable
class KeyStore(Protocol):
    """**Protocol:** where keys and team memberships live.

    Implementations: :class:`~skaala_auth.MemoryKeyStore`, :class:`~skaala_auth.SQLiteKeyStore`,
    :class:`~skaala_auth.stores.postgres.PostgresKeyStore`.
    Methods are synchronous and thread-safe; async callers run them in a worker thread (a store
    may offer native ``find_key_async`` later). Any exception a store raises is treated by the
    authenticator as "store unavailable" (503), so a store need not wrap its driver's errors.

    Every method that changes a key's validity or a membership must :meth:`publish` a
    :class:`Change` to its subscribers before returning, and make it visible to other processes
    through :meth:`poll_changes`.

    .. versionadded:: 0.1.0
    """

    def find_key(self, digest: str) -> KeyRecord | None:
        """The key whose stored digest is ``digest``, with its user's current role."""

    def get_key(self, key_id: str) -> ApiKey | None: ...

    def list_keys(self, team_id: str) -> list[ApiKey]:
        """The team's keys, newest first."""

    def insert_key(self, key: ApiKey, digest: str) -> None: ...

    def insert_keys(self, keys: Iterable[tuple[ApiKey, str]]) -> None:
        """Insert many ``(key, digest)`` pairs at once: all of them or, if any cannot be
        inserted (a duplicate id or digest, a store error), none. Announces one
        ``Change("key")`` without a ``key_id`` (none at all for an empty batch), not one per key.

        .. versionadded:: 0.1.0
        """

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        """Set ``revoked_at`` (unless already revoked earlier); ``None`` for an unknown id."""

    def rotate_key(
        self, old_id: str, old_expires_at: datetime, new_key: ApiKey, new_digest: str
    ) -> None:
        """In one transaction: shorten the old key's expiry and insert its successor."""

    def update_digest(self, key_id: str, old_digest: str, new_digest: str) -> None:
        """Replace a legacy digest (re-hash on use)."""

    def record_last_used(self, used: Mapping[str, datetime]) -> None:
        """Move ``last_used_at`` forward (never back) for each key id."""

    def add_member(self, member: Member) -> None:
        """Add or update a membership."""

    def get_member(self, team_id: str, user_id: str) -> Member | None: ...

    def list_members(self, team_id: str) -> list[Member]: ...

    def remove_member(self, team_id: str, user_id: str) -> bool:
        """Remove a membership; ``False`` when there was none."""

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every :class:`Change`; returns the unsubscribe function."""

    def poll_changes(self) -> None:
        """Deliver the changes other processes made since the last poll. Cheap when there are
        none: the authenticator calls it a few times a second."""

    def close(self) -> None: ...


@runtime_checkable
class DigestSource(Protocol):
    """**Protocol:** the optional half of a :class:`KeyStore` that lists its digests, so that an
    authenticator can keep a filter of every stored digest and refuse a well-formed unknown key
    without a look-up (see :class:`~skaala_auth.digestfilter.DigestFilter`).

    A store without these methods works as before: its authenticators look every unknown
    digest up. Implemented by :class:`~skaala_auth.MemoryKeyStore`,
    :class:`~skaala_auth.SQLiteKeyStore` and
    :class:`~skaala_auth.stores.postgres.PostgresKeyStore`.

    Both methods are only ever called from an authenticator's worker threads, never on a
    request's path, and any exception they raise only switches the filter off until the next
    successful read.

    .. versionadded:: 0.5.0
    """

    def digests(self) -> Iterator[str]:
        """Every stored digest (the self-describing form :meth:`KeyStore.find_key` takes), of
        every key, revoked and expired ones included, in any order.

        It need not be one snapshot: a key inserted or re-hashed while the iteration runs may
        be missed, since its :class:`Change` reaches the filter, which then asks
        :meth:`key_digest`. A store should read in chunks rather than hold a lock or a
        connection for the whole iteration (a million digests take a second or two).
        """

    def key_digest(self, key_id: str) -> str | None:
        """The digest stored for the key ``key_id`` now, or ``None`` for an unknown id."""


class InvalidationBus(Protocol):
    """**Protocol:** carries :class:`Change` events between processes whose store cannot (see
    :class:`~skaala_auth.bus.RedisInvalidationBus`).

    .. versionadded:: 0.5.0
    """

    def attach(self, store: KeyStore) -> None:
        """Publish the changes ``store`` announces in this process to the other processes."""

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with the other processes' changes (and ``Change("all")`` when
        some may have been missed); returns the unsubscribe function."""

    def healthy(self) -> bool:
        """False while changes may be going unheard (its subscription is down)."""


@runtime_checkable
class PolicyStore(Protocol):
    """**Protocol:** what a :class:`KeyStore` adds to keep keys' policies — disabling, a rate
    limit of their own, a usage limit, an IP allow-list, metadata
    (:data:`POLICY_FIELDS`). The memory, SQLite and PostgreSQL stores implement it. A store
    without it keeps working for keys without policies; :class:`~skaala_auth.KeyManager`
    refuses to set one on it, and a key with a usage limit it cannot count is refused (503).

    Its records (:class:`~skaala_auth.ApiKey`) carry the policy fields; a store that does not
    know them returns records with their defaults (no policy).

    .. versionadded:: 0.4.0
    """

    def set_policy(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Write the given policy fields of a key (others unchanged) and publish
        ``Change("key", key_id)`` (and make it visible to other processes, as a revocation
        is): every authenticator reloads the key. ``None`` for an unknown id.

        Raises:
            ValueError: a field that is not in :data:`POLICY_FIELDS`.
        """

    def use_key(self, key_id: str) -> bool:
        """Take one use of a key, atomically across threads and processes: ``True`` when one
        was left (or the key has no usage limit), ``False`` when none was (or no such key).
        Announces nothing: a use changes no cached grant."""
