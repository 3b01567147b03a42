"""The admin of the ORM store: API keys and team members.

- **Keys**: listed with name, display prefix, team, user, scopes, created, expires, last used
  and status, with filters and search. *Add* makes a key and shows its plaintext once, on the
  page that answers the form (``Cache-Control: no-store``); it is stored nowhere, and no page
  shows it again. *Revoke* and *Rotate* are actions on the selected keys (a rotation shows the
  new keys once, the same way). A revoked key is read-only. The digest is never shown.
- **Team members**: team, user and role; whose keys work follows at once.

Every change goes through the store or the models' signals, so every process refuses a revoked
key within a second.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from ..errors import KeyManagementError
from ..keys import looks_like_key
from ..scopes import default_registry
from .conf import get_manager, get_store
from .models import ApiKeyModel, MemberModel

__all__ = ["ApiKeyAdmin", "MemberAdmin"]

#: What the add page shows instead of a field that holds a key (never echoed back).
_PASTED_KEY = "This is an API key, not an id or a name: never paste a key here."


def _alias() -> str:
    """The database of the store the service authenticates against."""
    return getattr(get_store(), "alias", None) or "default"


def _scope_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} — {text}" if text else name) for name, text in
            default_registry.describe().items()]  # fmt: skip


class _ScopesField(forms.MultipleChoiceField):  # type: ignore[misc]
    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=_scope_choices, **kwargs)


class ApiKeyAddForm(forms.ModelForm):  # type: ignore[misc]
    """What a new key needs. Saved by the store (:meth:`ApiKeyAdmin.save_model`), never by
    ``form.save()``: the key is made there, and only its digest reaches the table."""

    scopes = _ScopesField(help_text="What the key may do.")
    data: Any

    class Meta:
        model = ApiKeyModel
        fields = ["team_id", "user_id", "name", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_at"].required = False
        self.fields["expires_at"].help_text = "Empty: a year from now."

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        for name in ("team_id", "user_id", "name"):
            value = cleaned.get(name)
            if isinstance(value, str) and looks_like_key(value):
                cleaned.pop(name)
                self.data = self.data.copy()
                self.data[name] = ""  # the re-rendered form must not echo the key back
                self.add_error(name, _PASTED_KEY)
        team, user = cleaned.get("team_id"), cleaned.get("user_id")
        if team and user and get_manager().get_member(team_id=team, user_id=user) is None:
            self.add_error(
                "user_id", "Not a member of this team: add the membership under Team members."
            )
        expires = cleaned.get("expires_at")
        if isinstance(expires, datetime) and expires <= timezone.now():
            self.add_error("expires_at", "This time has passed.")
        return cleaned


class ApiKeyChangeForm(forms.ModelForm):  # type: ignore[misc]
    """What can change on a key that works: its name, scopes and expiry."""

    scopes = _ScopesField()
    data: Any

    class Meta:
        model = ApiKeyModel
        fields = ["name", "scopes", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["scopes"] = self.instance.scopes.split()

    def clean_scopes(self) -> str:
        return " ".join(sorted(self.cleaned_data["scopes"]))

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if looks_like_key(name):
            self.data = self.data.copy()
            self.data["name"] = ""
            raise forms.ValidationError(_PASTED_KEY)
        return name


class StatusFilter(admin.SimpleListFilter):  # type: ignore[misc]
    """Active, expired or revoked, now."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        revoked = Q(revoked_at__isnull=False, revoked_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked)
        if self.value() == "expired":
            return queryset.exclude(revoked).filter(expires_at__lte=now)
        if self.value() == "active":
            return queryset.exclude(revoked).filter(expires_at__gt=now)
        return queryset


def _status(key: ApiKeyModel) -> str:
    now = timezone.now()
    if key.revoked_at is not None and key.revoked_at <= now:
        return "revoked"
    return "active" if key.expires_at > now else "expired"


_KEY_FIELDS = (
    "id",
    "name",
    "prefix",
    "team_id",
    "user_id",
    "scopes",
    "status",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "rotated_from",
)


@admin.register(ApiKeyModel)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[misc]
    """API keys: list, add (the plaintext once), revoke and rotate; revoked keys read-only.

    .. versionadded:: 0.4.0
    """

    list_display = (
        "name",
        "prefix",
        "team_id",
        "user_id",
        "scope_list",
        "created_at",
        "expires_at",
        "last_used_at",
        "status",
    )
    list_filter = (StatusFilter, "team_id", "created_at", "expires_at", "last_used_at")
    search_fields = ("name", "prefix", "team_id", "user_id", "=id")
    date_hierarchy = "created_at"
    actions = ["revoke_keys", "rotate_keys"]
    key_created_template = "admin/skaala_auth/apikeymodel/key_created.html"

    @admin.display(description="scopes")  # type: ignore[untyped-decorator]
    def scope_list(self, key: ApiKeyModel) -> str:
        return ", ".join(key.scopes.split())

    @admin.display(description="status")  # type: ignore[untyped-decorator]
    def status(self, key: ApiKeyModel) -> str:
        return _status(key)

    # -- one database: the store's ----------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).using(_alias())

    # -- forms -------------------------------------------------------------------------------

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = ApiKeyAddForm if obj is None else ApiKeyChangeForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("team_id", "user_id", "name", "scopes", "expires_at")
        return _KEY_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        if _status(obj) == "revoked":
            return _KEY_FIELDS
        return tuple(name for name in _KEY_FIELDS if name not in ("name", "scopes", "expires_at"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.revoked_at is not None:
            return False  # revoked keys are read-only (the view permission still shows them)
        return bool(super().has_change_permission(request, obj))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(
            super().has_view_permission(request, obj)
            or super().has_change_permission(request, None)
        )

    # -- saving ------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save(using=_alias())  # the signal logs the change
            return
        data = form.cleaned_data
        plaintext, record = get_manager().create_key(
            team_id=data["team_id"],
            user_id=data["user_id"],
            name=data.get("name") or "",
            scopes=data["scopes"],
            expires_at=data.get("expires_at"),
        )
        # Shown once, by response_add, on the page that answers this request; kept nowhere else.
        request._skaala_created = plaintext
        saved = ApiKeyModel.objects.using(_alias()).get(pk=record.id)
        obj.__dict__.update(
            {name: value for name, value in saved.__dict__.items() if name != "_state"}
        )
        obj._state.adding, obj._state.db = False, saved._state.db

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj.delete(using=_alias())

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        plaintext = request.__dict__.pop("_skaala_created", None)
        if plaintext is None:  # pragma: no cover - every add goes through save_model
            return super().response_add(request, obj, post_url_continue)
        return self._show_once(request, [(obj, plaintext)], "The API key was created.")

    def _show_once(
        self, request: HttpRequest, created: list[tuple[Any, str]], title: str
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "created": [
                {
                    "key": key,
                    "plaintext": plaintext,
                    "url": reverse(
                        f"{self.admin_site.name}:skaala_auth_apikeymodel_change", args=[key.pk]
                    ),
                }
                for key, plaintext in created
            ],
            "changelist_url": reverse(f"{self.admin_site.name}:skaala_auth_apikeymodel_changelist"),
        }
        response = TemplateResponse(request, self.key_created_template, context)
        response["Cache-Control"] = "no-store"
        return response

    # -- actions -----------------------------------------------------------------------------

    @admin.action(description="Revoke the selected keys", permissions=["change"])  # type: ignore[untyped-decorator]
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        manager = get_manager()
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            manager.revoke_key(key.pk)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)

    @admin.action(  # type: ignore[untyped-decorator]
        description="Rotate the selected keys (new keys shown once)", permissions=["change"]
    )
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        manager = get_manager()
        created: list[tuple[Any, str]] = []
        refused: list[str] = []
        for key in queryset:
            try:
                plaintext, record = manager.rotate_key(key.pk)
            except KeyManagementError as error:
                refused.append(f"{key.name or key.pk}: {error}")
                continue
            created.append((ApiKeyModel.objects.using(_alias()).get(pk=record.id), plaintext))
        for message in refused:
            self.message_user(request, message, messages.ERROR)
        if not created:
            return None
        return self._show_once(
            request,
            created,
            "The keys were rotated: the old ones keep working for 24 hours.",
        )


@admin.register(MemberModel)
class MemberAdmin(admin.ModelAdmin):  # type: ignore[misc]
    """Team members and their roles.

    .. versionadded:: 0.4.0
    """

    list_display = ("team_id", "user_id", "role", "added_at")
    list_filter = ("role", "team_id")
    search_fields = ("team_id", "user_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).using(_alias())

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("team_id", "user_id", "added_at") if obj is not None else ("added_at",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.save(using=_alias())  # the signal logs the change

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj.delete(using=_alias())
