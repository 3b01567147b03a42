"""Settings to objects: one reading of ``DB`` / ``DSN`` / ``PEPPER`` / ``CACHE_TTL`` … for every
face that is configured by name — Flask's ``SKAALA_AUTH_*`` config, Django's ``SKAALA_AUTH``
setting, the CLI's ``--db`` / ``--dsn``.

::

    auth = authenticator_from_settings({"DB": "keys.db", "CACHE_TTL": 10})
    rules = rules_from_settings({"PUBLIC": ["/health"], "PROTECT": ["/api/"]})

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Final

from .authenticator import Authenticator
from .errors import ConfigurationError
from .rules import Rules
from .stores.base import KeyStore
from .stores.sqlite import SQLiteKeyStore

__all__ = [
    "AUTHENTICATOR_SETTINGS",
    "RULE_SETTINGS",
    "SESSION_AUTH_SETTINGS",
    "SESSION_SETTINGS",
    "STORE_SETTINGS",
    "ConfigurationError",
    "authenticator_from_settings",
    "check_names",
    "open_store",
    "parse_duration",
    "parse_setting",
    "rules_from_settings",
    "session_verifier_from_settings",
    "store_from_settings",
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
#: Setting name → :class:`~skaala_auth.session.StackAuthVerifier` keyword: dashboard sessions
#: are verified when ``SESSION_PROJECT_ID`` is set.
SESSION_SETTINGS: Final = {
    "SESSION_PROJECT_ID": "project_id",
    "SESSION_JWKS_URL": "jwks_url",
    "SESSION_JWKS_FILE": "jwks_file",
    "SESSION_JWKS": "jwks",
    "SESSION_API_URL": "api_url",
    "SESSION_ISSUERS": "issuers",
    "SESSION_LEEWAY": "leeway",
    "SESSION_ALLOW_ANONYMOUS": "allow_anonymous",
    "SESSION_ALLOW_RESTRICTED": "allow_restricted",
}
#: The session settings the ``Authenticator`` takes itself.
SESSION_AUTH_SETTINGS: Final = {
    "ALLOWED_ORIGINS": "allowed_origins",
    "SESSION_SCOPES": "session_scopes",
}
#: The settings that name the store: ``DB`` (a SQLite file that must exist, unless ``CREATE``
#: is true) or ``DSN`` (PostgreSQL, with its tables in ``SCHEMA``, default ``skaala_auth``).
STORE_SETTINGS: Final = frozenset({"DB", "DSN", "CREATE", "SCHEMA"})
#: Setting name → ``Rules`` argument.
RULE_SETTINGS: Final = {
    "RULES": "rules",
    "PUBLIC": "public",
    "PROTECT": "protect",
    "TEAM_PARAM": "team_param",
    "RULES_DEFAULT": "default",
}

_BOOLEAN_SETTINGS: Final = frozenset(
    {"ACCEPT_TEST_KEYS", "CREATE", "SESSION_ALLOW_ANONYMOUS", "SESSION_ALLOW_RESTRICTED"}
)
#: Lists, also given as one string of items separated by commas or spaces (an environment
#: variable).
_LIST_SETTINGS: Final = frozenset({"ALLOWED_ORIGINS", "SESSION_ISSUERS"})
_COUNT_SETTINGS: Final = frozenset({"CACHE_SIZE", "NEGATIVE_CACHE_SIZE"})
_SECONDS_SETTINGS: Final = frozenset(
    {
        "CACHE_TTL",
        "NEGATIVE_CACHE_TTL",
        "LAST_USED_INTERVAL",
        "POLL_INTERVAL",
        "STORE_TIMEOUT",
        "SESSION_LEEWAY",
    }
)
_TEXT_SETTINGS: Final = frozenset(
    {
        "PEPPER",
        "HASH_ALGORITHM",
        "DSN",
        "SCHEMA",
        "SESSION_PROJECT_ID",
        "SESSION_JWKS_URL",
        "SESSION_JWKS_FILE",
        "SESSION_API_URL",
    }
)
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")
_DURATION: Final = re.compile(r"(?:\d+(?:ms|[smhdw]))+")
_DURATION_PART: Final = re.compile(r"(\d+)(ms|[smhdw])")


def parse_duration(text: str) -> timedelta:
    """A duration written as a number and a unit: ``90d``, ``24h``, ``1h30m``, ``2w``, ``45s``,
    ``500ms`` (or ``0``). Units: ``ms s m h d w``.

    Raises:
        ValueError: anything else (no unit, a negative number, junk).

    .. versionadded:: 0.1.0
    """
    text = text.strip().lower()
    if text == "0":
        return timedelta(0)
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 90d, 24h, 30m, 1h30m"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def parse_setting(name: str, value: object) -> Any:
    """One setting's value, as the object it describes, read strictly: settings often come from
    environment variables, where everything is a string and ``"false"`` is not false.

    - ``ACCEPT_TEST_KEYS``, ``CREATE``: a bool (or the int 1 or 0), or ``true/false``,
      ``1/0``, ``yes/no``, ``on/off`` in any case.
    - ``CACHE_SIZE``, ``NEGATIVE_CACHE_SIZE``: a whole number ≥ 0 (an int or digits).
    - ``CACHE_TTL``, ``NEGATIVE_CACHE_TTL``, ``LAST_USED_INTERVAL``, ``POLL_INTERVAL``,
      ``STORE_TIMEOUT``: seconds ≥ 0 as a number, digits (``"30"``, ``"0.5"``), a duration
      (``"30s"``, ``"500ms"``, ``"1m"``) or a :class:`~datetime.timedelta`.
    - ``PEPPER``: a str or bytes; ``HASH_ALGORITHM``, ``DSN``, ``SCHEMA``: a str; ``DB``: a path.

    Other names are returned as they are.

    Raises:
        ConfigurationError: the value is not of its setting's kind; the message names the
            setting (never its value, for ``PEPPER``).

    .. versionadded:: 0.1.0
    """
    if name in _BOOLEAN_SETTINGS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _invalid(name, value, "true or false (also 1/0, yes/no, on/off)")
    if name in _COUNT_SETTINGS:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
            return int(value.strip())
        raise _invalid(name, value, "a whole number, 0 or more")
    if name in _SECONDS_SETTINGS:
        return _seconds(name, value)
    if name in _LIST_SETTINGS:
        if isinstance(value, str):
            return [item for item in re.split(r"[,\s]+", value) if item]
        if isinstance(value, list | tuple | set | frozenset) and all(
            isinstance(item, str) for item in value
        ):
            return list(value)
        raise _invalid(name, value, "a list of strings (or one string, comma-separated)")
    if name == "PEPPER":
        if isinstance(value, str | bytes):
            return value
        raise ConfigurationError(
            f"PEPPER must be a str or bytes, not {type(value).__name__}", setting=name
        )
    if name in _TEXT_SETTINGS:
        if isinstance(value, str) and value:
            return value
        raise _invalid(name, value, "a non-empty string")
    if name == "DB":
        if isinstance(value, str | os.PathLike) and os.fspath(value):
            return value
        raise _invalid(name, value, "a file path")
    return value


def _seconds(name: str, value: object) -> float:
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip().lower()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            try:
                seconds = parse_duration(text).total_seconds()
            except ValueError:
                seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise _invalid(name, value, "seconds, 0 or more: 30, 0.5, '30s', '500ms' or '1m'")
    return seconds


def _invalid(name: str, value: object, expected: str) -> ConfigurationError:
    return ConfigurationError(f"{name} must be {expected}, not {value!r}", setting=name)


def open_store(
    *,
    db: str | os.PathLike[str] | None = None,
    dsn: str | None = None,
    create: bool = False,
    schema: str | None = None,
) -> KeyStore:
    """The store a setting names: a SQLite file (``db``) or a PostgreSQL DSN (``dsn``).

    Args:
        db: the SQLite file. It must exist: a mistyped path would otherwise give an empty store
            that refuses every key.
        dsn: a PostgreSQL connection string.
        create: create the SQLite file when it does not exist (the ``CREATE`` setting).
        schema: the PostgreSQL schema of the store's tables (the ``SCHEMA`` setting; default
            ``skaala_auth``); only with ``dsn``.

    Raises:
        ConfigurationError: neither or both given, a missing SQLite file without ``create``,
            ``schema`` without ``dsn``, or ``dsn`` malformed or without psycopg installed (the
            ``postgres`` extra).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``dsn`` opens a :class:`~skaala_auth.stores.postgres.PostgresKeyStore`; ``schema``.
    """
    if (db is None) == (dsn is None):
        raise ConfigurationError("name one key store: DB (a SQLite file) or DSN (PostgreSQL)")
    if schema is not None and dsn is None:
        raise ConfigurationError("SCHEMA: only a PostgreSQL store (DSN) has one", setting="SCHEMA")
    if dsn is not None:
        try:
            from .stores.postgres import PostgresKeyStore
        except ImportError as error:
            raise ConfigurationError(
                "DSN: the PostgreSQL store needs psycopg and psycopg_pool: "
                "pip install 'skaala-auth[postgres]'",
                setting="DSN",
            ) from error
        try:
            if schema is None:
                return PostgresKeyStore(dsn)
            return PostgresKeyStore(dsn, schema=schema)
        except ValueError as error:
            raise ConfigurationError(f"DSN: {error}", setting="DSN") from None
    path = os.fspath(db)  # type: ignore[arg-type]
    if not create and path != ":memory:" and not os.path.exists(path):
        raise ConfigurationError(
            f"DB: no key database at {path}: create it with 'skaala-auth --db {path} init', "
            "or set CREATE to True to create it on first use (check the path for a typo first)",
            setting="DB",
        )
    return SQLiteKeyStore(path)


def authenticator_from_settings(
    settings: Mapping[str, Any], *, ignore: Iterable[str] = (), store: KeyStore | None = None
) -> Authenticator:
    """An :class:`~skaala_auth.Authenticator` on the store ``DB`` or ``DSN`` names, with the
    options of :data:`AUTHENTICATOR_SETTINGS` (``PEPPER``, ``CACHE_TTL``, …), each read by
    :func:`parse_setting`.

    Args:
        settings: upper-case names, as in Django's ``SKAALA_AUTH`` dict.
        ignore: names the caller handles itself (a rules table, say); any other unknown name
            is an error, so a misspelt setting is not silently dropped.
        store: the store to use instead of the one ``DB`` or ``DSN`` names (Django's ORM
            store).

    Raises:
        ConfigurationError: an unknown setting, a value of the wrong kind, no store, or a
            ``DB`` file that does not exist (without ``CREATE``).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``store``.
    """
    check_names(settings, ignore=ignore)
    options = {
        keyword: parse_setting(name, settings[name])
        for name, keyword in AUTHENTICATOR_SETTINGS.items()
        if name in settings
    }
    options.update(
        (keyword, parse_setting(name, settings[name]))
        for name, keyword in SESSION_AUTH_SETTINGS.items()
        if name in settings
    )
    verifier = session_verifier_from_settings(settings)
    if verifier is not None:
        options["session_verifier"] = verifier
    if store is None:
        store = store_from_settings(settings)
    try:
        return Authenticator(store, **options)
    except (TypeError, ValueError) as error:
        store.close()
        if isinstance(error, ConfigurationError):
            raise
        raise ConfigurationError(str(error)) from error


def session_verifier_from_settings(settings: Mapping[str, Any]) -> Any:
    """The :class:`~skaala_auth.session.StackAuthVerifier` of the ``SESSION_*`` settings, or
    ``None`` when ``SESSION_PROJECT_ID`` is not set (dashboard sessions are then not read).

    Raises:
        ConfigurationError: another ``SESSION_*`` setting without ``SESSION_PROJECT_ID``, a
            value of the wrong kind, or the ``session`` extra (PyJWT) not installed.

    .. versionadded:: 0.1.0
    """
    given = {name: settings[name] for name in SESSION_SETTINGS if name in settings}
    if not given:
        return None
    if "SESSION_PROJECT_ID" not in given:
        raise ConfigurationError(
            f"{min(given)} needs SESSION_PROJECT_ID (the Stack Auth project)",
            setting="SESSION_PROJECT_ID",
        )
    try:
        from .session import StackAuthVerifier
    except ImportError as error:
        raise ConfigurationError(
            "SESSION_PROJECT_ID: dashboard sessions need PyJWT: pip install 'skaala-auth[session]'",
            setting="SESSION_PROJECT_ID",
        ) from error
    options = {SESSION_SETTINGS[name]: parse_setting(name, value) for name, value in given.items()}
    return StackAuthVerifier(**options)


def check_names(settings: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> None:
    """Refuse a setting name that nothing reads (a misspelling, most likely).

    Raises:
        ConfigurationError: naming the unknown setting(s) and the known ones.

    .. versionadded:: 0.1.0
    """
    known_names = {*AUTHENTICATOR_SETTINGS, *STORE_SETTINGS, *SESSION_SETTINGS}
    known_names |= set(SESSION_AUTH_SETTINGS)
    unknown = set(settings) - known_names - set(ignore)
    if unknown:
        known = ", ".join(sorted(known_names))
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(sorted(unknown))}; known: {known}",
            setting=min(unknown),
        )


def store_from_settings(settings: Mapping[str, Any]) -> KeyStore:
    """The store of ``DB`` (with ``CREATE``) or ``DSN``, each value read by
    :func:`parse_setting`.

    Raises:
        ConfigurationError: as :func:`open_store`, or a value of the wrong kind.

    .. versionadded:: 0.1.0
    """
    values = {name: parse_setting(name, settings[name]) for name in STORE_SETTINGS & set(settings)}
    return open_store(
        db=values.get("DB"),
        dsn=values.get("DSN"),
        create=values.get("CREATE", False),
        schema=values.get("SCHEMA"),
    )


def rules_from_settings(settings: Mapping[str, Any]) -> Rules:
    """The rules table of ``RULES`` (a :class:`~skaala_auth.rules.Rules`, or its rows),
    ``PUBLIC``, ``PROTECT``, ``TEAM_PARAM`` and ``RULES_DEFAULT`` (``"allow"`` or ``"deny"``:
    what a request no rule matches needs); other names are not looked at.

    Raises:
        ConfigurationError: ``RULES_DEFAULT`` is neither ``"allow"`` nor ``"deny"``.

    .. versionadded:: 0.1.0
    """
    rules = settings.get("RULES")
    if isinstance(rules, Rules):
        return rules
    default = settings.get("RULES_DEFAULT", "allow")
    if default not in ("allow", "deny"):
        raise _invalid("RULES_DEFAULT", default, "'allow' or 'deny'")
    return Rules(
        rules or (),
        public=settings.get("PUBLIC", ()),
        protect=settings.get("PROTECT", ()),
        team_param=settings.get("TEAM_PARAM", "team_id"),
        default=default,
    )
