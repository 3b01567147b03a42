"""The ``SKAALA_AUTH`` setting: the authenticator and the rules table it describes.

::

    SKAALA_AUTH = {
        # The store. Nothing: the ORM store (skaala_auth.django.models) on the database the
        # routers pick ("default"); "DATABASE": "keys" for another alias of DATABASES.
        # Or "DB": BASE_DIR / "keys.db" (a SQLite file; "CREATE": True makes it),
        # "DSN": "postgresql://…", or "AUTHENTICATOR": "myproject.auth.authenticator".
        "CACHE_TTL": 30,                 # also CACHE_SIZE, PEPPER, ACCEPT_TEST_KEYS
        "RULES": [("/api/teams/{team_id}/bookings", ["read:bookings"])],
        "PUBLIC": ["/health"],
        "PROTECT": ["/api/"],
    }

Both are built once per process, on first use (not at import, so a forking server opens the
store in each worker), and rebuilt when a test overrides the setting.

.. versionadded:: 0.1.0
.. versionchanged:: 0.4.0
   Without ``DB``, ``DSN`` or ``AUTHENTICATOR``, the ORM store (``DATABASE``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..authenticator import Authenticator
from ..config import (
    RULE_SETTINGS,
    ConfigurationError,
    authenticator_from_settings,
    rules_from_settings,
    store_from_settings,
)
from ..manager import KeyManager
from ..rules import Rules
from ..stores import KeyStore

__all__ = ["DJANGO_SETTINGS", "get_authenticator", "get_manager", "get_rules", "get_store"]

_lock = threading.Lock()
#: The settings only the Django adapter reads: ``DATABASE`` (the ORM store's alias),
#: ``MANAGER`` (the key manager of the admin, ``manage.py`` and
#: skaala_auth.django.management_urls).
DJANGO_SETTINGS = frozenset({"DATABASE", "MANAGER"})
_ADAPTER_SETTINGS = frozenset({"AUTHENTICATOR", *RULE_SETTINGS, *DJANGO_SETTINGS})
_built: dict[str, Any] = {}


def _options() -> Mapping[str, Any]:
    options = getattr(settings, "SKAALA_AUTH", {})
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured("SKAALA_AUTH must be a dict")
    return options


def uses_orm_store(options: Mapping[str, Any]) -> bool:
    """Whether the setting leaves the store to the ORM: no ``DB``, ``DSN`` or
    ``AUTHENTICATOR``.

    .. versionadded:: 0.4.0
    """
    return not {"DB", "DSN", "AUTHENTICATOR"} & set(options)


def orm_store(options: Mapping[str, Any]) -> KeyStore:
    """The ORM store on ``options["DATABASE"]`` (or the routers' choice).

    Raises:
        ImproperlyConfigured: the app is not installed, or ``DATABASE`` names no database.

    .. versionadded:: 0.4.0
    """
    from django.apps import apps

    if not apps.is_installed("skaala_auth.django"):
        raise ImproperlyConfigured(
            "SKAALA_AUTH names no store (DB, DSN or AUTHENTICATOR), so keys live in the "
            "project's database: add 'skaala_auth.django' to INSTALLED_APPS and run "
            "'manage.py migrate'"
        )
    if "DB" in options or "DSN" in options:
        raise ImproperlyConfigured("SKAALA_AUTH: DATABASE is the ORM store's; DB or DSN another's")
    from .store import DjangoKeyStore

    alias = options.get("DATABASE")
    if alias is not None and not isinstance(alias, str):
        raise ImproperlyConfigured("SKAALA_AUTH['DATABASE'] must be an alias of DATABASES")
    try:
        return DjangoKeyStore(alias)
    except ValueError as error:
        raise ImproperlyConfigured(f"SKAALA_AUTH['DATABASE']: {error}") from error


def get_store() -> KeyStore:
    """The store that ``SKAALA_AUTH`` names: the ORM store (the default, on ``"DATABASE"``),
    ``"DB"`` (an existing SQLite file, or a new one with ``"CREATE": True``) or ``"DSN"``
    (PostgreSQL); with ``"AUTHENTICATOR"``, that authenticator's store.

    Raises:
        ImproperlyConfigured: a missing file, a value of the wrong kind, no store.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       The ORM store by default.
    """
    options = _options()
    if "AUTHENTICATOR" in options:
        return get_authenticator().store
    if uses_orm_store(options) or "DATABASE" in options:
        return orm_store(options)
    try:
        return store_from_settings(options)
    except ConfigurationError as error:
        raise ImproperlyConfigured(f"SKAALA_AUTH: {error}") from error


def get_manager() -> KeyManager:
    """The :class:`~skaala_auth.KeyManager` of ``SKAALA_AUTH``: ``"MANAGER"`` (a manager, a
    dotted path to one, or a callable returning one), else a manager on the authenticator's
    store with its pepper and digest algorithm (keys made without them would never
    authenticate). What the admin uses.

    .. versionadded:: 0.4.0
    """
    custom = _options().get("MANAGER")
    if custom is None:
        authenticator = get_authenticator()
        manager = KeyManager(authenticator.store)
        manager.hasher = authenticator.hasher
        return manager
    if isinstance(custom, str):
        custom = import_string(custom)
    if not isinstance(custom, KeyManager) and callable(custom):
        custom = custom()
    if not isinstance(custom, KeyManager):
        raise ImproperlyConfigured(
            "SKAALA_AUTH['MANAGER'] must name a KeyManager or a callable returning one"
        )
    return custom


def get_authenticator() -> Authenticator:
    """The process's :class:`~skaala_auth.Authenticator`, as ``SKAALA_AUTH`` describes it.

    .. versionadded:: 0.1.0
    """
    try:
        return _built["authenticator"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    with _lock:
        if "authenticator" not in _built:
            _built["authenticator"], _built["owned"] = _authenticator(_options())
        return _built["authenticator"]  # type: ignore[no-any-return]


def _authenticator(options: Mapping[str, Any]) -> tuple[Authenticator, bool]:
    """The authenticator, and whether we built it (and so close it when the setting changes)."""
    custom = options.get("AUTHENTICATOR")
    if custom is None:
        store = orm_store(options) if uses_orm_store(options) or "DATABASE" in options else None
        try:
            authenticator = authenticator_from_settings(
                options, ignore=_ADAPTER_SETTINGS, store=store
            )
        except ConfigurationError as error:
            raise ImproperlyConfigured(f"SKAALA_AUTH: {error}") from error
        return authenticator, True
    if isinstance(custom, str):
        custom = import_string(custom)
    if not isinstance(custom, Authenticator) and callable(custom):
        custom = custom()
    if not isinstance(custom, Authenticator):
        raise ImproperlyConfigured(
            "SKAALA_AUTH['AUTHENTICATOR'] must name an Authenticator or a callable returning one"
        )
    return custom, False


def get_rules() -> Rules:
    """The rules table of ``SKAALA_AUTH`` (``"RULES"``, ``"PUBLIC"``, ``"PROTECT"``,
    ``"TEAM_PARAM"``); without any, no path needs a key but a key that is sent is checked.

    .. versionadded:: 0.1.0
    """
    try:
        return _built["rules"]  # type: ignore[no-any-return]
    except KeyError:
        rules = _built["rules"] = rules_from_settings(_options())
        return rules


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "SKAALA_AUTH":
        with _lock:
            if _built.pop("owned", False):
                _built["authenticator"].close()
            _built.clear()


setting_changed.connect(_reset)
