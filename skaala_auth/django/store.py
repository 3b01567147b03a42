"""The key store on Django's ORM: keys and members in the project's own database, under
``migrate``, backups, the admin and every machine that shares the database.

::

    INSTALLED_APPS = [..., "skaala_auth.django"]
    SKAALA_AUTH = {}                      # the ORM store, on the "default" database
    SKAALA_AUTH = {"DATABASE": "keys"}    # or on another alias of DATABASES

- **Only on a cache miss.** The authenticator asks the store on a miss (and polls it for
  changes); a cached key never touches the ORM.
- **One database.** Reads and writes go to one alias — ``DATABASE``, else the one the
  project's routers pick for writing :class:`~skaala_auth.django.models.ApiKeyModel` — never to
  a replica, where a revocation could arrive late.
- **Revocation across processes.** Every change that affects whether a key works is appended
  to the change log (:class:`~skaala_auth.django.models.ChangeModel`) in the transaction that
  makes it, by the store's own writes and by ``post_save``/``post_delete`` of the models (the
  admin, a shell). :meth:`DjangoKeyStore.poll_changes` reads the log's one-row head, and only
  when it moved the entries past the last one seen: one primary-key read per poll when nothing
  changed. Changes made in this process reach its authenticators at once, after the commit.
- **Worker threads.** The authenticator calls the store from its own threads, where Django
  opens a connection per thread and no request ever ends to close it. In a thread whose
  connection the store opened, each call is treated as Django treats a request: the
  connection is closed after it when ``CONN_MAX_AGE`` says so (``0``, the default: after every
  call; set it to keep a connection per worker thread between polls, as for persistent
  request connections) or when it broke. A connection the caller already had (a request's, a
  transaction's) is left alone.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import F, Max, OuterRef, Q, Subquery
from django.utils import timezone

from ..models import ApiKey, KeyRecord, Member, Role
from ..stores.base import Change, ChangeFeed, Subscriber
from .models import ApiKeyModel, ChangeLogState, ChangeModel, MemberModel

__all__ = ["CHANGE_RETENTION", "DjangoKeyStore", "announce", "announce_keys", "aware"]

#: Change entries older than this are pruned; a process whose cursor falls behind the pruned
#: ones drops its whole cache instead of replaying them.
CHANGE_RETENTION: Final = timedelta(hours=1)
#: Rows a bulk insert writes per statement.
BULK_BATCH: Final = 1000

_KEY_FIELDS: Final = (
    "id",
    "team_id",
    "user_id",
    "name",
    "scopes",
    "prefix",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "rotated_from",
)
_ROLES: Final[dict[object, Role]] = {role.value: role for role in Role}
_quiet = threading.local()  # set while a store writes: its own change rows, not the signals'
#: Per thread: the aliases whose connection a store call opened there (see _connection).
_owned = threading.local()


def aware(moment: datetime) -> datetime:
    """A time read from the database as an aware UTC datetime (naive under ``USE_TZ = False``).

    .. versionadded:: 0.4.0
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _db_time(moment: datetime) -> datetime:
    """An aware time as the database takes it: naive UTC under ``USE_TZ = False``."""
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    if settings.USE_TZ:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _key(row: Sequence[Any]) -> ApiKey:
    key_id, team, user, name, scopes, prefix, created, expires, revoked, used, rotated = row[:11]
    return ApiKey(
        key_id,
        team,
        user,
        name,
        frozenset(scopes.split()),
        prefix,
        aware(created),
        aware(expires),
        None if revoked is None else aware(revoked),
        None if used is None else aware(used),
        rotated,
    )


def _row(key: ApiKey, digest: str) -> ApiKeyModel:
    return ApiKeyModel(
        id=key.id,
        digest=digest,
        team_id=key.team_id,
        user_id=key.user_id,
        name=key.name,
        scopes=" ".join(sorted(key.scopes)),
        prefix=key.prefix,
        created_at=_db_time(key.created_at),
        expires_at=_db_time(key.expires_at),
        revoked_at=None if key.revoked_at is None else _db_time(key.revoked_at),
        last_used_at=None if key.last_used_at is None else _db_time(key.last_used_at),
        rotated_from=key.rotated_from,
    )


# -- the change log ----------------------------------------------------------------------------

#: Every open store, by alias: a change committed in this process is published to all of them
#: (the admin's store and the authenticator's may be different objects on one database).
_stores: Final[weakref.WeakSet[DjangoKeyStore]] = weakref.WeakSet()
_stores_lock = threading.Lock()


def _append(alias: str, changes: Sequence[Change]) -> list[int]:
    """Append ``changes`` to the log, in the caller's transaction; their sequence numbers.

    The head row is updated first: its row lock, held to the commit, orders the writers, so
    numbers become visible in order (see :class:`ChangeLogState`). Old entries are pruned here
    too, through the index on their time.
    """
    count = len(changes)
    state = ChangeLogState.objects.using(alias)
    if not state.filter(pk=1).update(seq=F("seq") + count):
        state.get_or_create(pk=1, defaults={"seq": 0, "pruned_through": 0})
        state.filter(pk=1).update(seq=F("seq") + count)
    last: int = state.values_list("seq", flat=True).get(pk=1)
    now = timezone.now()
    first = last - count + 1
    ChangeModel.objects.using(alias).bulk_create(
        ChangeModel(
            seq=seq,
            kind=change.kind,
            key_id=change.key_id,
            team_id=change.team_id,
            user_id=change.user_id,
            at=now,
        )
        for seq, change in zip(itertools.count(first), changes, strict=False)
    )
    log = ChangeModel.objects.using(alias)
    old = log.filter(at__lt=now - CHANGE_RETENTION).aggregate(old=Max("seq"))["old"]
    if old is not None:
        log.filter(seq__lte=old).delete()
        state.filter(pk=1).update(pruned_through=old)
    return list(range(first, last + 1))


def announce(alias: str, changes: Sequence[Change]) -> None:
    """Log ``changes`` (in the current transaction, if any) and, once it commits, publish them
    to this process's stores on ``alias``.

    For writes the signals do not see: after ``QuerySet.update()``, ``bulk_create()``,
    ``bulk_update()`` or raw SQL on the key or member tables, announce what changed::

        ApiKeyModel.objects.filter(team_id="team_1").update(expires_at=soon)
        announce("default", [Change("key", key_id=i) for i in ids])

    .. versionadded:: 0.4.0
    """
    if not changes:
        return
    with transaction.atomic(using=alias):
        seqs = _append(alias, changes)
        transaction.on_commit(lambda: _publish(alias, seqs, changes), using=alias)


def announce_keys(alias: str, key_ids: Iterable[str]) -> None:
    """:func:`announce` a change of each of these keys.

    .. versionadded:: 0.4.0
    """
    announce(alias, [Change("key", key_id=key_id) for key_id in key_ids])


def _publish(alias: str, seqs: Iterable[int], changes: Iterable[Change]) -> None:
    """After the commit: this process's stores on ``alias`` hear the changes now, and skip them
    when their poll reads them back."""
    with _stores_lock:
        stores = [store for store in _stores if store.alias == alias]
    seqs = list(seqs)
    changes = list(changes)
    for store in stores:
        with store._own_lock:
            store._own.update(seqs)
        for change in changes:
            store._feed.publish(change)


class _Closer:
    """Closes a connection when the thread that opened it ends (it lives in that thread's
    ``threading.local``, which dies with the thread): a worker thread of a closed authenticator
    keeps no persistent connection (``CONN_MAX_AGE`` > 0) open after it, nor leaves it to the
    garbage collector, which closes it with a ``ResourceWarning``."""

    __slots__ = ("wrapper",)

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper

    def __del__(self) -> None:
        raw, self.wrapper.connection = self.wrapper.connection, None
        if raw is not None:
            try:
                raw.close()  # the driver's own close: the thread that owned it has ended
            except Exception:  # noqa: S110 - nothing to do about a connection that broke
                pass


# -- the store --------------------------------------------------------------------------------


class DjangoKeyStore:
    """A :class:`~skaala_auth.stores.base.KeyStore` on Django's ORM
    (:mod:`skaala_auth.django.models`).

    Args:
        using: the ``DATABASES`` alias; ``None`` for the one the project's routers pick for
            writing :class:`~skaala_auth.django.models.ApiKeyModel` (``"default"`` without
            routers).

    Thread-safe (each thread has its own Django connection). Call it from sync code: in an
    ``async def`` view, through ``sync_to_async`` (the authenticator does so itself).

    .. versionadded:: 0.4.0
    """

    def __init__(self, using: str | None = None) -> None:
        alias = using if using is not None else router.db_for_write(ApiKeyModel)
        if alias not in connections:
            raise ValueError(f"no database {alias!r} in DATABASES")
        self.alias: str = alias
        self._feed = ChangeFeed()
        self._own_lock = threading.Lock()
        self._own: set[int] = set()  # sequence numbers written (and published) by this process
        self._cursor: int | None = None  # the last entry seen; None: not polled yet
        self._poll_lock = threading.Lock()
        with _stores_lock:
            _stores.add(self)

    def __repr__(self) -> str:
        return f"DjangoKeyStore(using={self.alias!r})"

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[None]:
        """Run a call on this thread's connection, treating the call as Django treats a
        request: in a thread whose connection the store opened (the authenticator's worker
        threads, which serve no request), the connection is closed afterwards when
        ``CONN_MAX_AGE`` says so (``0``, the default: after every call) or when it broke, as
        Django does at the end of a request. Without that, each worker thread would hold a
        connection for as long as it lives, and a broken one for good. A connection that
        something else opened — a request's, or one inside a transaction — is its owner's."""
        connection = connections[self.alias]
        managed = False
        if not connection.in_atomic_block:
            owned: set[str] = _owned.__dict__.setdefault("aliases", set())
            if self.alias in owned:
                managed = True
                connection.close_if_unusable_or_obsolete()  # as at Django's request_started
            elif connection.connection is None:
                managed = True
                owned.add(self.alias)
                _owned.__dict__.setdefault("closers", []).append(_Closer(connection))
        try:
            if self._cursor is None:
                self._start()
            yield
        finally:
            if managed and not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()  # as at Django's request_finished

    def _start(self) -> None:
        """Start reading the change log at its head: what this store does from now on, and
        what others do, is what its subscribers must hear about."""
        with self._poll_lock:
            if self._cursor is None:
                self._cursor = self._head()[0]

    def _head(self) -> tuple[int, int]:
        """The log's last sequence number and the last one pruned (``(0, 0)``: no head row)."""
        head = list(
            ChangeLogState.objects.using(self.alias)
            .filter(pk=1)
            .values_list("seq", "pruned_through")[:1]
        )
        return (head[0][0], head[0][1]) if head else (0, 0)

    @contextmanager
    def _writing(self, changes: Sequence[Change]) -> Iterator[list[Change]]:
        """One transaction that writes rows and logs ``changes`` (the body may add more to the
        list it gets); published to this process's stores after the commit."""
        logged = list(changes)
        with self._connection(), transaction.atomic(using=self.alias):
            _quiet.active = True
            try:
                yield logged
            finally:
                _quiet.active = False
            if logged:
                seqs = _append(self.alias, logged)
                transaction.on_commit(lambda: _publish(self.alias, seqs, logged), using=self.alias)

    def _keys(self) -> Any:
        return ApiKeyModel.objects.using(self.alias)

    def _members(self) -> Any:
        return MemberModel.objects.using(self.alias)

    # -- keys ----------------------------------------------------------------------------------

    def find_key(self, digest: str) -> KeyRecord | None:
        role = MemberModel.objects.using(self.alias).filter(
            team_id=OuterRef("team_id"), user_id=OuterRef("user_id")
        )
        with self._connection():
            rows = list(
                self._keys()
                .filter(digest=digest)
                .order_by()
                .annotate(member_role=Subquery(role.values("role")[:1]))
                .values_list(*_KEY_FIELDS, "digest", "member_role")[:1]
            )
        if not rows:
            return None
        row = rows[0]
        found = row[12]
        return KeyRecord(_key(row), row[11], None if found is None else _ROLES[found])

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._connection():
            rows = list(self._keys().filter(id=key_id).order_by().values_list(*_KEY_FIELDS)[:1])
        return _key(rows[0]) if rows else None

    def list_keys(self, team_id: str) -> list[ApiKey]:
        with self._connection():
            rows = list(
                self._keys()
                .filter(team_id=team_id)
                .order_by("-created_at", "-id")
                .values_list(*_KEY_FIELDS)
            )
        return [_key(row) for row in rows]

    def insert_key(self, key: ApiKey, digest: str) -> None:
        with self._writing([Change("key", key_id=key.id)]):
            self._keys().bulk_create([_row(key, digest)])

    def insert_keys(self, keys: Iterable[tuple[ApiKey, str]]) -> None:
        """Insert many keys in one transaction, :data:`BULK_BATCH` rows per statement; all or
        none, and one ``Change("key")`` (see the protocol)."""
        pairs = iter(keys)
        batch = [_row(key, digest) for key, digest in itertools.islice(pairs, BULK_BATCH)]
        if not batch:
            return
        with self._writing([Change("key")]):
            while batch:
                self._keys().bulk_create(batch)
                batch = [_row(key, digest) for key, digest in itertools.islice(pairs, BULK_BATCH)]

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey | None:
        moment = _db_time(at)
        with self._writing([Change("key", key_id=key_id)]):
            self._keys().filter(
                Q(revoked_at__isnull=True) | Q(revoked_at__gt=moment), id=key_id
            ).update(revoked_at=moment)
        return self.get_key(key_id)

    def rotate_key(
        self, old_id: str, old_expires_at: datetime, new_key: ApiKey, new_digest: str
    ) -> None:
        changes = [Change("key", key_id=old_id), Change("key", key_id=new_key.id)]
        with self._writing(changes):
            if self._keys().filter(id=old_id).update(expires_at=_db_time(old_expires_at)) != 1:
                raise LookupError(old_id)
            self._keys().bulk_create([_row(new_key, new_digest)])

    def update_digest(self, key_id: str, old_digest: str, new_digest: str) -> None:
        with self._writing([Change("key", key_id=key_id)]):
            self._keys().filter(id=key_id, digest=old_digest).update(digest=new_digest)

    def record_last_used(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        with self._connection(), transaction.atomic(using=self.alias):
            for key_id, when in used.items():
                moment = _db_time(when)
                self._keys().filter(
                    Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment), id=key_id
                ).update(last_used_at=moment)

    # -- members -------------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        change = Change("member", team_id=member.team_id, user_id=member.user_id)
        with self._writing([change]):
            mine = self._members().filter(team_id=member.team_id, user_id=member.user_id)
            if not mine.update(role=member.role.value):
                self._members().create(
                    team_id=member.team_id,
                    user_id=member.user_id,
                    role=member.role.value,
                    added_at=_db_time(member.added_at),
                )

    def get_member(self, team_id: str, user_id: str) -> Member | None:
        with self._connection():
            rows = list(
                self._members()
                .filter(team_id=team_id, user_id=user_id)
                .values_list("team_id", "user_id", "role", "added_at")[:1]
            )
        return _member(rows[0]) if rows else None

    def list_members(self, team_id: str) -> list[Member]:
        with self._connection():
            rows = list(
                self._members()
                .filter(team_id=team_id)
                .order_by("user_id")
                .values_list("team_id", "user_id", "role", "added_at")
            )
        return [_member(row) for row in rows]

    def remove_member(self, team_id: str, user_id: str) -> bool:
        with self._writing([]) as logged:
            removed, _ = self._members().filter(team_id=team_id, user_id=user_id).delete()
            if removed:
                logged.append(Change("member", team_id=team_id, user_id=user_id))
        return bool(removed)

    # -- changes -------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self._feed.subscribe(callback)

    def poll_changes(self) -> None:
        """Deliver the changes other processes committed since the last poll.

        One primary-key read of the log's head when nothing changed. A log that went backwards
        (the database restored from a backup, the tables flushed) or was pruned past this
        store's cursor publishes ``Change("all")``.
        """
        with self._connection(), self._poll_lock:
            newest, pruned = self._head()
            cursor = self._cursor or 0
            with self._own_lock:
                known = max(cursor, max(self._own, default=0))
            if newest < known or pruned > cursor:
                self._cursor = newest
                self._forget_own(newest)
                self._feed.publish(Change("all"))
                return
            if newest == cursor:
                return
            rows = list(
                ChangeModel.objects.using(self.alias)
                .filter(seq__gt=cursor)
                .order_by("seq")
                .values_list("seq", "kind", "key_id", "team_id", "user_id")
            )
            if rows:
                self._cursor = rows[-1][0]
        own = self._forget_own(self._cursor or 0)
        for seq, kind, key_id, team_id, user_id in rows:
            if seq not in own:
                self._feed.publish(Change(kind, key_id=key_id, team_id=team_id, user_id=user_id))

    def _forget_own(self, through: int) -> set[int]:
        """The sequence numbers this process wrote, forgetting those the cursor has passed."""
        with self._own_lock:
            own = self._own
            self._own = {seq for seq in own if seq > through}
        return own

    def migrate(self) -> None:
        """Create or upgrade the store's tables on its database (what ``manage.py migrate
        skaala_auth`` does; ``manage.py skaala_auth init`` calls it)."""
        from django.core.management import call_command

        call_command("migrate", "skaala_auth", database=self.alias, verbosity=0)

    def close(self) -> None:
        with _stores_lock:
            _stores.discard(self)


def _member(row: Sequence[Any]) -> Member:
    team_id, user_id, role, added_at = row
    return Member(team_id, user_id, Role(role), aware(added_at))


# -- signals: writes through the ORM (the admin, a shell) ---------------------------------------


def _key_changed(sender: Any, instance: ApiKeyModel, using: str, **kwargs: Any) -> None:
    if not getattr(_quiet, "active", False):
        announce(using, [Change("key", key_id=instance.pk)])


def _member_changed(sender: Any, instance: MemberModel, using: str, **kwargs: Any) -> None:
    if getattr(_quiet, "active", False):
        return
    pairs = {(instance.team_id, instance.user_id)}
    loaded = getattr(instance, "_loaded_pair", None)
    if loaded is not None:  # a membership moved to another team or user: the old one is gone
        pairs.add(loaded)
    announce(using, [Change("member", team_id=team, user_id=user) for team, user in sorted(pairs)])


def connect_signals() -> None:
    """Log every save and delete of a key or a member made through the ORM (the app does, in
    ``ready()``).

    .. versionadded:: 0.4.0
    """
    from django.db.models.signals import post_delete, post_save

    for name, signal in (("save", post_save), ("delete", post_delete)):
        signal.connect(_key_changed, sender=ApiKeyModel, dispatch_uid=f"skaala_auth_key_{name}")
        signal.connect(
            _member_changed, sender=MemberModel, dispatch_uid=f"skaala_auth_member_{name}"
        )
