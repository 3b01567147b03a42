"""Key management: create, list, revoke, rotate keys; add, remove and change team members.

Everything that changes whether a key works goes through the store, which announces it to every
authenticator on that store at once (and to other processes within a poll interval).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from .errors import (
    InvalidBatchError,
    InvalidExpiryError,
    KeyManagementError,
    KeyNotFoundError,
    NotAMemberError,
)
from .hashing import Algorithm, Hasher
from .keys import (
    Environment,
    display_prefix,
    generate_key,
    is_well_formed,
    looks_like_key,
    random_base62,
)
from .models import ApiKey, Member, RateLimit, Role, freeze_metadata, from_epoch, to_epoch
from .policy import parse_networks
from .scopes import ScopeRegistry, default_registry
from .stores.base import KeyStore, PolicyStore

__all__ = ["DEFAULT_EXPIRY", "DEFAULT_GRACE", "UNCHANGED", "KeyManager"]

#: How long a key lives when no expiry is given.
DEFAULT_EXPIRY = timedelta(days=365)
#: How long a rotated key keeps working by default.
DEFAULT_GRACE = timedelta(hours=24)


class _Unchanged:
    """The type of :data:`UNCHANGED`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


#: What :meth:`KeyManager.update_key` leaves as it is.
UNCHANGED: Final = _Unchanged()


def _new_id() -> str:
    return "key_" + random_base62(20)


class KeyManager:
    """Creates and manages keys and team memberships on a store.

    Args:
        store: the :class:`~skaala_auth.stores.base.KeyStore`.
        scopes: the registry that validates scopes (default: the documented set).
        pepper: server-side secret for keyed digests; must match the authenticator's.
        hash_algorithm: the keyed algorithm, with a pepper.
        clock: epoch seconds, injectable for tests.

    Example::

        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        key, record = manager.create_key(
            team_id="team_1", user_id="user_1", name="CI", scopes=["read:bookings"]
        )
        print(key)  # shown once: only its digest is stored

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        scopes: ScopeRegistry | None = None,
        pepper: bytes | str | None = None,
        hash_algorithm: Algorithm | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.scopes = scopes if scopes is not None else default_registry
        self.hasher = Hasher(pepper, hash_algorithm)
        self.clock = clock

    def _now(self) -> datetime:
        return from_epoch(self.clock())

    # -- keys ----------------------------------------------------------------------------------

    def create_key(
        self,
        *,
        team_id: str,
        user_id: str,
        scopes: Iterable[str],
        name: str = "",
        expires_in: timedelta | None = None,
        expires_at: datetime | None = None,
        environment: Environment = "live",
        rate_limit: RateLimit | str | None = None,
        remaining: int | None = None,
        allowed_ips: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key for a member of a team.

        Args:
            team_id: the team the key acts for.
            user_id: the member who owns it.
            scopes: at least one registered scope.
            name: a label for dashboards.
            expires_in: lifetime from now (default 365 days).
            expires_at: an absolute, timezone-aware expiry instead.
            environment: ``"live"`` (``sk_live_``) or ``"test"`` (``sk_test_``).
            rate_limit: the key's own rate limit (``"100/minute"`` or a
                :class:`~skaala_auth.RateLimit`), over the rate limiter's default.
            remaining: a usage limit: the key works this many times, then answers 429 until
                refilled (:meth:`refill_key`). ``None``: no limit.
            allowed_ips: networks (``"203.0.113.0/24"``) the key may be used from; from any
                other client address it is refused (403). Empty: anywhere.
            metadata: a small JSON object kept with the key and handed back on the record and
                the principal (at most :data:`~skaala_auth.models.METADATA_MAX_BYTES`); never
                logged.

        Returns:
            ``(plaintext, record)``. The plaintext is not stored anywhere: show it once.

        Raises:
            NotAMemberError: the user is not a member of the team.
            UnknownScopeError: a scope is not registered.
            InvalidExpiryError: both expiries given, a naive datetime, or a past expiry.
            ValueError: ``team_id``, ``user_id`` or ``name`` holds an API key (pasted where an
                id belongs); the message does not repeat it. Or a restriction that cannot be
                used: a malformed rate limit or network, a negative ``remaining``, metadata
                too large.

        .. versionadded:: 0.1.0
        .. versionchanged:: 0.4.0
           ``rate_limit``, ``remaining``, ``allowed_ips``, ``metadata``.
        """
        _refuse_keys(team_id=team_id, user_id=user_id, name=name)
        granted = self._validate_scopes(scopes)
        policy = _policy(rate_limit, remaining, allowed_ips, metadata)
        now = self._now()
        expiry = self._expiry(now, expires_in, expires_at)
        self._require_member(team_id, user_id)
        plaintext = generate_key(environment)
        record = ApiKey(
            id=_new_id(),
            team_id=team_id,
            user_id=user_id,
            name=name,
            scopes=granted,
            prefix=display_prefix(plaintext),
            created_at=now,
            expires_at=expiry,
            **policy,
        )
        if record.restricted or record.rate_limit is not None or record.metadata:
            self._require_policies()
        self.store.insert_key(record, self.hasher.stored_digest(plaintext))
        return plaintext, record

    def _require_policies(self) -> None:
        """A store that does not keep policies would drop them silently: refuse instead."""
        if not isinstance(self.store, PolicyStore):
            raise KeyManagementError(
                f"{type(self.store).__name__} cannot keep key policies (rate limit, usage "
                "limit, IP allow-list, metadata)"
            )

    def create_keys(self, specs: Iterable[Mapping[str, Any]]) -> list[tuple[str, ApiKey]]:
        """Create many keys at once, all or none: a bulk import.

        Every item is checked as :meth:`create_key` would check it before any key is made; the
        store then writes them all in one transaction (SQLite: one change-log entry, and one
        change announced to authenticators, not one per key). A hundred thousand keys take a
        few seconds.

        Args:
            specs: one mapping per key, holding :meth:`create_key`'s keyword arguments:
                ``team_id``, ``user_id`` and ``scopes``, and optionally ``name``,
                ``expires_in`` (a :class:`~datetime.timedelta`), ``expires_at`` (an aware
                :class:`~datetime.datetime`) and ``environment`` (``"live"`` or ``"test"``).
                Any other field is refused (a misspelt option must not be ignored).

        Returns:
            ``(plaintext, record)`` for each item, in the order given. The plaintexts are not
            stored anywhere: hand each one out once. Every key of the batch has the same
            ``created_at``.

        Raises:
            InvalidBatchError: items that cannot be created, each with the error
                :meth:`create_key` would raise for it (or a :class:`TypeError` for a missing
                field, an unknown one, or a value of the wrong type). Nothing was created.

        Example::

            created = manager.create_keys(
                {"team_id": "team_1", "user_id": "user_1", "scopes": ["read:bookings"],
                 "name": f"device {number}"}
                for number in range(100_000)
            )
            for plaintext, record in created:
                deliver(record.name, plaintext)

        .. versionadded:: 0.1.0
        """
        items = list(specs)
        now = self._now()
        check = _BatchCheck(self, now)
        checked: list[tuple[str, str, str, frozenset[str], datetime, Environment]] = []
        errors: list[tuple[int, Exception]] = []
        refused = 0
        for index, spec in enumerate(items):
            try:
                checked.append(check(spec))
            except (KeyManagementError, ValueError, TypeError) as error:
                refused += 1
                if len(errors) < InvalidBatchError.LIMIT:
                    errors.append((index, error))
        if refused:
            raise InvalidBatchError(errors, refused, len(items))
        if not checked:
            return []
        created: list[tuple[str, ApiKey]] = []
        digest = self.hasher.stored_digest

        def pairs() -> Iterator[tuple[ApiKey, str]]:
            # Generated as the store inserts them: the digests are never all held at once.
            for team_id, user_id, name, scopes, expiry, environment in checked:
                plaintext = generate_key(environment)
                record = ApiKey(
                    _new_id(),
                    team_id,
                    user_id,
                    name,
                    scopes,
                    display_prefix(plaintext),
                    now,
                    expiry,
                )
                created.append((plaintext, record))
                yield record, digest(plaintext)

        self.store.insert_keys(pairs())
        return created

    def get_key(self, key_id: str) -> ApiKey:
        """The record of a key.

        Raises:
            KeyNotFoundError: no key has that id (or ``key_id`` is a key, not an id: the
                message then does not repeat it).
        """
        key = None if looks_like_key(key_id) else self.store.get_key(key_id)
        if key is None:
            raise KeyNotFoundError(_no_key(key_id))
        return key

    def find_key(self, key: str) -> ApiKey:
        """The record of a key, from the key itself: found by digest, as the authenticator finds
        it (with this manager's pepper, and under a legacy digest too). Revoked and expired keys
        are found as well: this is for "revoke the key I just found in a log".

        Args:
            key: the plaintext key. It is hashed, never stored, logged or put in a message.

        Raises:
            KeyNotFoundError: ``key`` is not a well-formed key, or no stored key has its digest
                (another store, or another pepper).

        .. versionadded:: 0.1.0
        """
        if not is_well_formed(key):
            raise KeyNotFoundError(
                "that is not a skaala_auth key (wrong prefix, length or checksum)"
            )
        for digest in [self.hasher.stored_digest(key), *self.hasher.legacy_digests(key.encode())]:
            record = self.store.find_key(digest)
            if record is not None:
                return record.key
        raise KeyNotFoundError(
            "no key in this store matches the key given (another store, or another pepper?)"
        )

    def list_keys(self, *, team_id: str, include_inactive: bool = True) -> list[ApiKey]:
        """The team's keys, newest first (never their plaintext or digest).

        Args:
            include_inactive: also list revoked and expired keys (default).
        """
        keys = self.store.list_keys(team_id)
        if include_inactive:
            return keys
        now = self._now()
        return [key for key in keys if key.is_active(now)]

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key now. Every authenticator on this store refuses it from the next request;
        other processes within their poll interval. Revoking twice keeps the first time.

        Raises:
            KeyNotFoundError: no key has that id; nothing is written.
        """
        # Looked up first: a store may record a change for any id it is asked to revoke, and a
        # revocation of nothing must leave no trace (the id might be a pasted secret).
        self.get_key(key_id)
        key = self.store.revoke_key(key_id, self._now())
        if key is None:
            raise KeyNotFoundError(_no_key(key_id))
        return key

    def disable_key(self, key_id: str) -> ApiKey:
        """Turn a key off, reversibly (:meth:`enable_key`): it is refused as an invalid key
        (401) by every authenticator on this store from the next request, and by other
        processes within their poll interval — as a revocation is. Disabling twice keeps the
        first time.

        Raises:
            KeyNotFoundError: no key has that id.

        .. versionadded:: 0.4.0
        """
        key = self.get_key(key_id)
        if key.disabled_at is not None:
            return key
        return self._set_policy(key_id, disabled_at=self._now())

    def enable_key(self, key_id: str) -> ApiKey:
        """Turn a disabled key back on (a revoked or expired key stays refused).

        Raises:
            KeyNotFoundError: no key has that id.

        .. versionadded:: 0.4.0
        """
        key = self.get_key(key_id)
        if key.disabled_at is None:
            return key
        return self._set_policy(key_id, disabled_at=None)

    def refill_key(self, key_id: str, remaining: int | None) -> ApiKey:
        """Set how many uses a key has left (its usage limit): it works again if it had used
        them up. ``None`` removes the limit.

        Raises:
            KeyNotFoundError: no key has that id.
            ValueError: a negative count.

        .. versionadded:: 0.4.0
        """
        self.get_key(key_id)
        return self._set_policy(key_id, remaining=_remaining(remaining))

    def update_key(
        self,
        key_id: str,
        *,
        rate_limit: RateLimit | str | None | _Unchanged = UNCHANGED,
        allowed_ips: Iterable[str] | _Unchanged = UNCHANGED,
        metadata: Mapping[str, Any] | None | _Unchanged = UNCHANGED,
    ) -> ApiKey:
        """Change a key's rate limit, IP allow-list or metadata (what is not given stays).
        Every authenticator on the store reloads the key.

        Args:
            rate_limit: the key's own limit, or ``None`` for the limiter's default.
            allowed_ips: the networks it may be used from (empty: anywhere).
            metadata: its metadata (``None`` or ``{}``: none).

        Raises:
            KeyNotFoundError: no key has that id.
            ValueError: a malformed limit or network, metadata too large.

        .. versionadded:: 0.4.0
        """
        changes: dict[str, Any] = {}
        if not isinstance(rate_limit, _Unchanged):
            changes["rate_limit"] = None if rate_limit is None else RateLimit.parse(rate_limit)
        if not isinstance(allowed_ips, _Unchanged):
            changes["allowed_ips"] = tuple(str(n) for n in parse_networks(allowed_ips))
        if not isinstance(metadata, _Unchanged):
            changes["metadata"] = freeze_metadata(metadata)
        self.get_key(key_id)
        return self._set_policy(key_id, **changes)

    def _set_policy(self, key_id: str, **changes: Any) -> ApiKey:
        store = self.store
        if not isinstance(store, PolicyStore):
            raise KeyManagementError(
                f"{type(store).__name__} cannot keep key policies (it has no set_policy)"
            )
        key = store.set_policy(key_id, changes)
        if key is None:
            raise KeyNotFoundError(_no_key(key_id))
        return key

    def rotate_key(self, key_id: str, *, grace: timedelta = DEFAULT_GRACE) -> tuple[str, ApiKey]:
        """Replace a key with a new one of the same team, user, name and scopes.

        The old key keeps working until ``grace`` has passed (or its own expiry, if sooner);
        ``grace=timedelta(0)`` ends it at once. The new key carries the old one's policies over:
        its rate limit, IP allow-list, metadata, disabled state and the uses it has left (a
        usage limit: while the grace runs, the old key still draws on its own count — rotate
        with ``grace=timedelta(0)`` where uses must be counted exactly across a rotation).
        The new key lives as long as the old one was
        meant to (its created-to-expiry span) — also when the old key is rotated again while
        an earlier rotation's grace runs: the span is then the one its first replacement got,
        not what is left of the grace.

        Returns:
            ``(plaintext, record)`` of the new key.

        Raises:
            KeyNotFoundError: no key has that id.
            InvalidExpiryError: the key is already revoked or expired, or ``grace`` is negative.
        """
        if grace < timedelta(0):
            raise InvalidExpiryError("grace must not be negative")
        old = self.get_key(key_id)
        now = self._now()
        if not old.is_active(now):
            raise InvalidExpiryError(f"key {key_id} is {old.status(now)} and cannot be rotated")
        self._require_member(old.team_id, old.user_id)
        plaintext = generate_key(old.environment)
        new = dataclasses.replace(
            old,
            id=_new_id(),
            prefix=display_prefix(plaintext),
            created_at=now,
            expires_at=now + self._lifetime(old),
            revoked_at=None,
            last_used_at=None,
            rotated_from=old.id,
        )
        self.store.rotate_key(
            old.id, min(old.expires_at, now + grace), new, self.hasher.stored_digest(plaintext)
        )
        return plaintext, new

    def _lifetime(self, old: ApiKey) -> timedelta:
        """The span a replacement of ``old`` gets. A rotation cuts the old key's expiry to the
        end of its grace, so a key rotated before no longer knows its own span: its earlier
        replacements (``rotated_from`` = its id) still do."""
        span = old.expires_at - old.created_at
        for key in self.store.list_keys(old.team_id):
            if key.rotated_from == old.id:
                span = max(span, key.expires_at - key.created_at)
        return span

    # -- members -------------------------------------------------------------------------------

    def add_member(self, *, team_id: str, user_id: str, role: Role | str = Role.MEMBER) -> Member:
        """Add a user to a team, or change the role of one already in it.

        Raises:
            ValueError: an empty id, or an id that holds an API key (the message does not
                repeat it).
        """
        if not team_id or not user_id:
            raise ValueError("team_id and user_id must not be empty")
        _refuse_keys(team_id=team_id, user_id=user_id)
        existing = self.store.get_member(team_id, user_id)
        member = Member(
            team_id=team_id,
            user_id=user_id,
            role=_role(role),
            added_at=existing.added_at if existing else self._now(),
        )
        self.store.add_member(member)
        return member

    def set_role(self, *, team_id: str, user_id: str, role: Role | str) -> Member:
        """Change a member's role.

        Raises:
            NotAMemberError: the user is not in the team.
        """
        self._require_member(team_id, user_id)
        return self.add_member(team_id=team_id, user_id=user_id, role=role)

    def remove_member(self, *, team_id: str, user_id: str) -> None:
        """Remove a user from a team. Their keys for that team stop working at once (403), and
        work again if they are added back before the keys expire.

        Raises:
            NotAMemberError: the user is not in the team.
        """
        if not self.store.remove_member(team_id, user_id):
            raise NotAMemberError(f"{user_id!r} is not a member of {team_id!r}")

    def get_member(self, *, team_id: str, user_id: str) -> Member | None:
        return self.store.get_member(team_id, user_id)

    def list_members(self, *, team_id: str) -> list[Member]:
        return self.store.list_members(team_id)

    # -- checks --------------------------------------------------------------------------------

    def _validate_scopes(self, scopes: Iterable[str]) -> frozenset[str]:
        granted = self.scopes.validate(scopes)
        if not granted:
            raise ValueError("a key needs at least one scope")
        return granted

    def _require_member(self, team_id: str, user_id: str) -> Member:
        member = self.store.get_member(team_id, user_id)
        if member is None:
            raise NotAMemberError(f"{user_id!r} is not a member of {team_id!r}")
        return member

    @staticmethod
    def _expiry(
        now: datetime, expires_in: timedelta | None, expires_at: datetime | None
    ) -> datetime:
        if expires_in is not None and expires_at is not None:
            raise InvalidExpiryError("give expires_in or expires_at, not both")
        if expires_at is not None:
            try:
                to_epoch(expires_at)
            except ValueError as error:
                raise InvalidExpiryError(str(error)) from None
            expiry = expires_at
        else:
            expiry = now + (DEFAULT_EXPIRY if expires_in is None else expires_in)
        if expiry <= now:
            raise InvalidExpiryError("the expiry must be in the future")
        return expiry


_SPEC_FIELDS: Final = frozenset(
    {"team_id", "user_id", "scopes", "name", "expires_in", "expires_at", "environment"}
)
_REQUIRED_FIELDS: Final = ("team_id", "user_id", "scopes")


class _BatchCheck:
    """The checks of :meth:`KeyManager.create_key`, for each item of a batch.

    What many items share is worked out once: the membership of each (team, user) pair (one
    store look-up each, not one per item), each list of scopes (one set per distinct list,
    shared by the records), each lifetime.
    """

    def __init__(self, manager: KeyManager, now: datetime) -> None:
        self.manager = manager
        self.now = now
        self.members: dict[tuple[str, str], bool] = {}
        self.scope_sets: dict[tuple[str, ...], frozenset[str]] = {}
        self.expiries: dict[timedelta | None, datetime] = {}

    def __call__(
        self, spec: Mapping[str, Any]
    ) -> tuple[str, str, str, frozenset[str], datetime, Environment]:
        if not isinstance(spec, Mapping):
            raise TypeError(f"an item must be a mapping of fields, not {type(spec).__name__}")
        unknown = spec.keys() - _SPEC_FIELDS
        if unknown:
            names = ", ".join(
                "(a key, not shown)" if looks_like_key(str(name)) else repr(name)
                for name in sorted(unknown, key=str)
            )
            raise TypeError(f"unknown field(s) {names}: expected {', '.join(sorted(_SPEC_FIELDS))}")
        missing = [field for field in _REQUIRED_FIELDS if field not in spec]
        if missing:
            raise TypeError(f"missing field(s): {', '.join(missing)}")
        team_id, user_id, name = spec["team_id"], spec["user_id"], spec.get("name", "")
        for field, value in (("team_id", team_id), ("user_id", user_id), ("name", name)):
            if not isinstance(value, str):
                raise TypeError(f"{field} must be text, not {type(value).__name__}")
        _refuse_keys(team_id=team_id, user_id=user_id, name=name)
        granted = self._scopes(spec["scopes"])
        expiry = self._expiry(spec.get("expires_in"), spec.get("expires_at"))
        environment = spec.get("environment", "live")
        if environment not in ("live", "test"):
            raise ValueError("environment must be 'live' or 'test'")
        member = self.members.get((team_id, user_id))
        if member is None:
            found = self.manager.get_member(team_id=team_id, user_id=user_id)
            member = self.members[team_id, user_id] = found is not None
        if not member:
            raise NotAMemberError(f"{user_id!r} is not a member of {team_id!r}")
        return team_id, user_id, name, granted, expiry, environment

    def _scopes(self, scopes: object) -> frozenset[str]:
        if isinstance(scopes, str) or not isinstance(scopes, Iterable):
            raise TypeError("scopes must be a list of scope names")
        names = tuple(scopes)
        if not all(isinstance(scope, str) for scope in names):
            raise TypeError("scopes must be a list of scope names")
        granted = self.scope_sets.get(names)
        if granted is None:
            granted = self.scope_sets[names] = self.manager._validate_scopes(names)
        return granted

    def _expiry(self, expires_in: object, expires_at: object) -> datetime:
        if expires_in is not None and not isinstance(expires_in, timedelta):
            raise TypeError(f"expires_in must be a timedelta, not {type(expires_in).__name__}")
        if expires_at is not None and not isinstance(expires_at, datetime):
            raise TypeError(f"expires_at must be a datetime, not {type(expires_at).__name__}")
        if expires_at is not None:
            return self.manager._expiry(self.now, expires_in, expires_at)
        expiry = self.expiries.get(expires_in)
        if expiry is None:
            expiry = self.expiries[expires_in] = self.manager._expiry(self.now, expires_in, None)
        return expiry


def _policy(
    rate_limit: RateLimit | str | None,
    remaining: int | None,
    allowed_ips: Iterable[str],
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A key's restrictions, checked, as :class:`ApiKey` fields."""
    return {
        "rate_limit": None if rate_limit is None else RateLimit.parse(rate_limit),
        "remaining": _remaining(remaining),
        "allowed_ips": tuple(str(network) for network in parse_networks(allowed_ips)),
        "metadata": freeze_metadata(metadata),
    }


def _remaining(remaining: object) -> int | None:
    if remaining is None:
        return None
    if type(remaining) is not int:
        raise TypeError("remaining is a number of uses")
    if remaining < 0:
        raise ValueError("remaining must not be negative")
    return remaining


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ValueError(f"role must be one of owner, admin, member, not {role!r}") from None


def _refuse_keys(**fields: str) -> None:
    """Refuse an API key given where an id or a name belongs: it would be stored in plaintext."""
    for field, value in fields.items():
        if looks_like_key(value):
            raise ValueError(
                f"{field} holds an API key, not an id or a name: refused (it is not stored, "
                "and not repeated here)"
            )


def _no_key(key_id: str) -> str:
    if looks_like_key(key_id):
        return "no key with that id: it is an API key, not a key id (key_…)"
    return f"no key with id {key_id!r}"
