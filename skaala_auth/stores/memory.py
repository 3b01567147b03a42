"""An in-process key store, for tests and single-process tools.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ..models import ApiKey, Member
from .base import POLICY_FIELDS, Change, ChangeFeed, KeyRecord, Subscriber

__all__ = ["MemoryKeyStore"]


class MemoryKeyStore:
    """A :class:`~skaala_auth.stores.base.KeyStore` in a few dicts. Thread-safe; forgets
    everything when the process ends; changes reach only the authenticators in this process
    (which is all there can be).

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._keys: dict[str, ApiKey] = {}
        self._digests: dict[str, str] = {}  # digest -> key id
        self._members: dict[tuple[str, str], Member] = {}
        self._feed = ChangeFeed()

    def find_key(self, digest: str) -> KeyRecord | None:
        with self._lock:
            key_id = self._digests.get(digest)
            if key_id is None:
                return None
            key = self._keys[key_id]
            member = self._members.get((key.team_id, key.user_id))
            return KeyRecord(key, digest, member.role if member else None)

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            return self._keys.get(key_id)

    def digests(self) -> Iterator[str]:
        """Every stored digest (see :class:`~skaala_auth.stores.base.DigestSource`).

        .. versionadded:: 0.5.0
        """
        with self._lock:
            digests = list(self._digests)
        return iter(digests)

    def key_digest(self, key_id: str) -> str | None:
        """The digest stored for ``key_id`` (a scan: key changes are rare).

        .. versionadded:: 0.5.0
        """
        with self._lock:
            return next((d for d, found in self._digests.items() if found == key_id), None)

    def list_keys(self, team_id: str) -> list[ApiKey]:
        with self._lock:
            keys = [k for k in self._keys.values() if k.team_id == team_id]
        return sorted(keys, key=lambda k: (k.created_at, k.id), reverse=True)

    def insert_key(self, key: ApiKey, digest: str) -> None:
        with self._lock:
            if key.id in self._keys or digest in self._digests:
                raise ValueError("duplicate key id or digest")
            self._keys[key.id] = key
            self._digests[digest] = key.id
        self._feed.publish(Change("key", key_id=key.id))

    def insert_keys(self, keys: Iterable[tuple[ApiKey, str]]) -> None:
        batch = list(keys)
        if not batch:
            return
        ids = {key.id for key, _ in batch}
        digests = {digest: key.id for key, digest in batch}
        with self._lock:
            if (
                len(ids) != len(batch)
                or len(digests) != len(batch)
                or not ids.isdisjoint(self._keys)
                or not self._digests.keys().isdisjoint(digests)
            ):
                raise ValueError("duplicate key id or digest")
            self._keys.update((key.id, key) for key, _ in batch)
            self._digests.update(digests)
        self._feed.publish(Change("key"))

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                return None
            if key.revoked_at is None or key.revoked_at > at:
                key = self._keys[key_id] = dataclasses.replace(key, revoked_at=at)
        self._feed.publish(Change("key", key_id=key_id))
        return key

    def set_policy(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        unknown = set(changes) - set(POLICY_FIELDS)
        if unknown:
            raise ValueError(f"not policy fields: {', '.join(sorted(unknown))}")
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                return None
            key = self._keys[key_id] = dataclasses.replace(key, **changes)
        self._feed.publish(Change("key", key_id=key_id))
        return key

    def use_key(self, key_id: str) -> bool:
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                return False
            if key.remaining is None:
                return True
            if key.remaining <= 0:
                return False
            self._keys[key_id] = dataclasses.replace(key, remaining=key.remaining - 1)
            return True

    def rotate_key(
        self, old_id: str, old_expires_at: datetime, new_key: ApiKey, new_digest: str
    ) -> None:
        with self._lock:
            old = self._keys[old_id]
            if new_key.id in self._keys or new_digest in self._digests:
                raise ValueError("duplicate key id or digest")
            self._keys[old_id] = dataclasses.replace(old, expires_at=old_expires_at)
            self._keys[new_key.id] = new_key
            self._digests[new_digest] = new_key.id
        self._feed.publish(Change("key", key_id=old_id))
        self._feed.publish(Change("key", key_id=new_key.id))

    def update_digest(self, key_id: str, old_digest: str, new_digest: str) -> None:
        with self._lock:
            if self._digests.get(old_digest) != key_id:
                return
            del self._digests[old_digest]
            self._digests[new_digest] = key_id
        self._feed.publish(Change("key", key_id=key_id))

    def record_last_used(self, used: Mapping[str, datetime]) -> None:
        with self._lock:
            for key_id, when in used.items():
                key = self._keys.get(key_id)
                if key is not None and (key.last_used_at is None or key.last_used_at < when):
                    self._keys[key_id] = dataclasses.replace(key, last_used_at=when)

    def add_member(self, member: Member) -> None:
        with self._lock:
            self._members[(member.team_id, member.user_id)] = member
        self._feed.publish(Change("member", team_id=member.team_id, user_id=member.user_id))

    def get_member(self, team_id: str, user_id: str) -> Member | None:
        with self._lock:
            return self._members.get((team_id, user_id))

    def list_members(self, team_id: str) -> list[Member]:
        with self._lock:
            members = [m for (team, _), m in self._members.items() if team == team_id]
        return sorted(members, key=lambda m: m.user_id)

    def remove_member(self, team_id: str, user_id: str) -> bool:
        with self._lock:
            removed = self._members.pop((team_id, user_id), None) is not None
        if removed:
            self._feed.publish(Change("member", team_id=team_id, user_id=user_id))
        return removed

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self._feed.subscribe(callback)

    def poll_changes(self) -> None:
        """Nothing to do: every change happens in this process and is published at once."""

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryKeyStore(keys={len(self._keys)}, members={len(self._members)})"
