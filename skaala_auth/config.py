"""Settings to objects: one reading of ``DB`` / ``DSN`` / ``PEPPER`` / ``CACHE_TTL`` … for every
face that is configured by name — Flask's ``SKAALA_AUTH_*`` config, Django's ``SKAALA_AUTH``
setting, the CLI's ``--db`` / ``--dsn``.

::

    auth = authenticator_from_settings({"DB": "keys.db", "CACHE_TTL": 10})
    rules = rules_from_settings({"PUBLIC": ["/health"], "PROTECT": ["/api/"]})

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .authenticator import Authenticator
from .rules import Rules
from .stores.base import KeyStore
from .stores.sqlite import SQLiteKeyStore

__all__ = [
    "AUTHENTICATOR_SETTINGS",
    "RULE_SETTINGS",
    "ConfigurationError",
    "authenticator_from_settings",
    "open_store",
    "rules_from_settings",
]

#: Setting name → ``Authenticator`` keyword.
AUTHENTICATOR_SETTINGS: Final = {
    "PEPPER": "pepper",
    "HASH_ALGORITHM": "hash_algorithm",
    "CACHE_SIZE": "cache_size",
    "CACHE_TTL": "cache_ttl",
    "NEGATIVE_CACHE_SIZE": "negative_cache_size",
    "NEGATIVE_CACHE_TTL": "negative_cache_ttl",
    "ACCEPT_TEST_KEYS": "accept_test_keys",
    "LAST_USED_INTERVAL": "last_used_interval",
    "POLL_INTERVAL": "poll_interval",
    "STORE_TIMEOUT": "store_timeout",
}
STORE_SETTINGS: Final = frozenset({"DB", "DSN"})
#: Setting name → ``Rules`` argument.
RULE_SETTINGS: Final = {
    "RULES": "rules",
    "PUBLIC": "public",
    "PROTECT": "protect",
    "TEAM_PARAM": "team_param",
}


class ConfigurationError(ValueError):
    """Settings that cannot describe a store, an authenticator or a rules table.

    .. versionadded:: 0.1.0
    """


def open_store(*, db: str | os.PathLike[str] | None = None, dsn: str | None = None) -> KeyStore:
    """The store a setting names: a SQLite file (``db``) or a PostgreSQL DSN (``dsn``).

    Raises:
        ConfigurationError: neither or both given, or ``dsn`` without PostgreSQL support.

    .. versionadded:: 0.1.0
    """
    if (db is None) == (dsn is None):
        raise ConfigurationError("name one key store: DB (a SQLite file) or DSN (PostgreSQL)")
    if dsn is not None:
        try:
            from .stores.postgres import PostgresKeyStore  # type: ignore[import-not-found]
        except ImportError as error:
            raise ConfigurationError(
                "a PostgreSQL DSN needs the PostgreSQL store: pip install 'skaala-auth[postgres]'"
            ) from error
        return PostgresKeyStore(dsn)  # type: ignore[no-any-return]
    return SQLiteKeyStore(db)  # type: ignore[arg-type]


def authenticator_from_settings(
    settings: Mapping[str, Any], *, ignore: Iterable[str] = ()
) -> Authenticator:
    """An :class:`~skaala_auth.Authenticator` on the store ``DB`` or ``DSN`` names, with the
    options of :data:`AUTHENTICATOR_SETTINGS` (``PEPPER``, ``CACHE_TTL``, …).

    Args:
        settings: upper-case names, as in Django's ``SKAALA_AUTH`` dict.
        ignore: names the caller handles itself (a rules table, say); any other unknown name
            is an error, so a misspelt setting is not silently dropped.

    Raises:
        ConfigurationError: an unknown setting, or no store.

    .. versionadded:: 0.1.0
    """
    unknown = set(settings) - set(AUTHENTICATOR_SETTINGS) - STORE_SETTINGS - set(ignore)
    if unknown:
        known = ", ".join(sorted([*AUTHENTICATOR_SETTINGS, *STORE_SETTINGS]))
        raise ConfigurationError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {known}")
    options = {
        keyword: settings[name]
        for name, keyword in AUTHENTICATOR_SETTINGS.items()
        if name in settings
    }
    store = open_store(db=settings.get("DB"), dsn=settings.get("DSN"))
    try:
        return Authenticator(store, **options)
    except (TypeError, ValueError) as error:
        store.close()
        raise ConfigurationError(str(error)) from error


def rules_from_settings(settings: Mapping[str, Any]) -> Rules:
    """The rules table of ``RULES`` (a :class:`~skaala_auth.rules.Rules`, or its rows),
    ``PUBLIC``, ``PROTECT`` and ``TEAM_PARAM``; other names are not looked at.

    .. versionadded:: 0.1.0
    """
    rules = settings.get("RULES")
    if isinstance(rules, Rules):
        return rules
    return Rules(
        rules or (),
        public=settings.get("PUBLIC", ()),
        protect=settings.get("PROTECT", ()),
        team_param=settings.get("TEAM_PARAM", "team_id"),
    )
