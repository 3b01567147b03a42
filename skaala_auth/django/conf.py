"""The ``SKAALA_AUTH`` setting: the authenticator and the rules table it describes.

::

    SKAALA_AUTH = {
        "DB": BASE_DIR / "keys.db",      # a SQLite file that exists (`skaala-auth --db … init`,
                                         # or "CREATE": True); or "DSN": "postgresql://…";
                                         # or "AUTHENTICATOR": "myproject.auth.authenticator"
        "CACHE_TTL": 30,                 # also CACHE_SIZE, PEPPER, ACCEPT_TEST_KEYS
        "RULES": [("/api/teams/{team_id}/bookings", ["read:bookings"])],
        "PUBLIC": ["/health"],
        "PROTECT": ["/api/"],
    }

Both are built once per process, on first use (not at import, so a forking server opens the
store in each worker), and rebuilt when a test overrides the setting.

.. versionadded:: 0.1.0
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
from ..rules import Rules
from ..stores import KeyStore

__all__ = ["get_authenticator", "get_rules", "get_store"]

_lock = threading.Lock()
#: Read by the adapter itself, not by the authenticator (``MANAGER``:
#: skaala_auth.django.management_urls).
_ADAPTER_SETTINGS = frozenset({"AUTHENTICATOR", "MANAGER", *RULE_SETTINGS})
_built: dict[str, Any] = {}


def _options() -> Mapping[str, Any]:
    options = getattr(settings, "SKAALA_AUTH", {})
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured("SKAALA_AUTH must be a dict")
    return options


def get_store() -> KeyStore:
    """The store that ``SKAALA_AUTH`` names: ``"DB"`` (an existing SQLite file, or a new one
    with ``"CREATE": True``) or ``"DSN"`` (PostgreSQL); with ``"AUTHENTICATOR"``, that
    authenticator's store.

    Raises:
        ImproperlyConfigured: a missing file, a value of the wrong kind, no store.

    .. versionadded:: 0.1.0
    """
    options = _options()
    if "AUTHENTICATOR" in options:
        return get_authenticator().store
    try:
        return store_from_settings(options)
    except ConfigurationError as error:
        raise ImproperlyConfigured(f"SKAALA_AUTH: {error}") from error


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
        try:
            authenticator = authenticator_from_settings(options, ignore=_ADAPTER_SETTINGS)
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
