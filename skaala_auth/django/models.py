"""The key store's tables in the project's own database: ``"skaala_auth.django"`` in
``INSTALLED_APPS`` and ``manage.py migrate`` create them (app label ``skaala_auth``).

- :class:`ApiKeyModel` — one row per key: its digest (never the key), team, user, scopes
  (space-separated), display prefix and times.
- :class:`MemberModel` — one row per team membership, with its role.
- :class:`ChangeModel` and :class:`ChangeLogState` — the change log that carries revocations and
  membership changes to the other processes on the database (see
  :class:`~skaala_auth.django.store.DjangoKeyStore`).

Saving or deleting a key or a member through the ORM — the admin, a shell, a data migration —
writes its change row (``post_save`` and ``post_delete`` signals, in the same transaction), so
that every process refuses a revoked key within a second. ``QuerySet.update()``,
``bulk_create()``, ``bulk_update()`` and raw SQL send no signals: revoke with
``ApiKeyModel.objects.filter(...).revoke()`` (which logs), or call :func:`announce` after them.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from ..models import ApiKey, Member, Role

__all__ = ["ApiKeyModel", "ApiKeyQuerySet", "ChangeLogState", "ChangeModel", "MemberModel"]

ROLE_CHOICES = [(role.value, role.value) for role in Role]


class ApiKeyQuerySet(models.QuerySet):  # type: ignore[misc]
    """``ApiKeyModel.objects``: the queryset, plus :meth:`revoke`.

    .. versionadded:: 0.4.0
    """

    def revoke(self, at: datetime | None = None) -> int:
        """Revoke every key of the queryset that is not revoked yet (an earlier revocation
        stays), and announce it to every process; returns how many rows were changed.

        Unlike ``update(revoked_at=…)``, which no signal follows, this writes the change log.
        """
        from .store import announce_keys

        moment = timezone.now() if at is None else at
        alias = self.db
        with transaction.atomic(using=alias):
            ids = list(
                self.filter(models.Q(revoked_at__isnull=True) | models.Q(revoked_at__gt=moment))
                .select_for_update()
                .values_list("id", flat=True)
            )
            if not ids:
                return 0
            changed: int = (
                type(self)(self.model, using=alias).filter(id__in=ids).update(revoked_at=moment)
            )
            announce_keys(alias, ids)
        return changed


class ApiKeyModel(models.Model):  # type: ignore[misc]
    """An API key's row. The key itself is never stored: ``digest`` is its SHA-256 (or keyed
    digest, with a pepper), and the admin never shows it.

    .. versionadded:: 0.4.0
    """

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    digest = models.CharField(max_length=255, unique=True, editable=False)
    team_id = models.CharField("team", max_length=255, db_index=True)
    user_id = models.CharField("user", max_length=255)
    name = models.CharField(max_length=255, blank=True, default="")
    scopes = models.TextField(help_text="Space-separated scope names.")
    prefix = models.CharField("display prefix", max_length=64, editable=False)
    created_at = models.DateTimeField("created", default=timezone.now, editable=False)
    expires_at = models.DateTimeField("expires")
    revoked_at = models.DateTimeField("revoked", null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField("last used", null=True, blank=True, editable=False)
    rotated_from = models.CharField(max_length=64, null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        app_label = "skaala_auth"
        db_table = "skaala_auth_apikey"
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team_id", "created_at"], name="skaala_auth_key_team")]

    def __str__(self) -> str:  # never the digest
        return f"{self.name or self.id} ({self.prefix})"

    def __repr__(self) -> str:
        return f"<ApiKeyModel {self.id} {self.prefix}>"

    def to_record(self) -> ApiKey:
        """The row as the library's :class:`~skaala_auth.ApiKey`."""
        from .store import aware

        return ApiKey(
            id=self.id,
            team_id=self.team_id,
            user_id=self.user_id,
            name=self.name,
            scopes=frozenset(self.scopes.split()),
            prefix=self.prefix,
            created_at=aware(self.created_at),
            expires_at=aware(self.expires_at),
            revoked_at=None if self.revoked_at is None else aware(self.revoked_at),
            last_used_at=None if self.last_used_at is None else aware(self.last_used_at),
            rotated_from=self.rotated_from,
        )


class MemberModel(models.Model):  # type: ignore[misc]
    """A user's membership in a team, and the role it gives them there.

    .. versionadded:: 0.4.0
    """

    team_id = models.CharField("team", max_length=255)
    user_id = models.CharField("user", max_length=255)
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=Role.MEMBER.value)
    added_at = models.DateTimeField("added", default=timezone.now, editable=False)

    class Meta:
        app_label = "skaala_auth"
        db_table = "skaala_auth_member"
        verbose_name = "team member"
        verbose_name_plural = "team members"
        ordering = ["team_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["team_id", "user_id"], name="skaala_auth_member_once")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.team_id} ({self.role})"

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> MemberModel:
        member: MemberModel = super().from_db(db, field_names, values)
        # What the row was: a save that moves the membership announces the old pair too.
        member._loaded_pair = (member.__dict__.get("team_id"), member.__dict__.get("user_id"))
        return member

    def to_record(self) -> Member:
        from .store import aware

        return Member(self.team_id, self.user_id, Role(self.role), aware(self.added_at))


class ChangeModel(models.Model):  # type: ignore[misc]
    """One entry of the change log: a key or a membership changed. Other processes read the
    entries past the last one they saw at each poll; entries older than an hour are pruned.

    .. versionadded:: 0.4.0
    """

    seq = models.BigIntegerField(primary_key=True)
    kind = models.CharField(max_length=8)
    key_id = models.CharField(max_length=64, null=True)
    team_id = models.CharField(max_length=255, null=True)
    user_id = models.CharField(max_length=255, null=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "skaala_auth"
        db_table = "skaala_auth_change"
        ordering = ["seq"]


class ChangeLogState(models.Model):  # type: ignore[misc]
    """The change log's one-row head: the last sequence number handed out, and the last one
    pruned. Every writer updates it first, in its transaction: that row lock orders the writers,
    so entries become visible in sequence order on every database (a sequence alone would let a
    later number commit before an earlier one, and a poll skip the earlier one for good).

    .. versionadded:: 0.4.0
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    pruned_through = models.BigIntegerField(default=0)

    class Meta:
        app_label = "skaala_auth"
        db_table = "skaala_auth_changelog"
