"""System checks (``manage.py check``, and before ``runserver`` and ``migrate``): a misspelt
``SKAALA_AUTH`` setting, a value of the wrong kind, a key store that cannot be opened, an
``AUTHENTICATOR`` that does not import, a middleware list in which the middleware cannot do its
work, and scopes no key can have.

Registered by the app (``"skaala_auth.django"`` in ``INSTALLED_APPS``).

=====================  ======================================================================
``skaala_auth.E001``   ``SKAALA_AUTH`` is not a dict
``skaala_auth.E002``   an unknown ``SKAALA_AUTH`` name (a misspelling is never ignored)
``skaala_auth.E003``   a value of the wrong kind (``ACCEPT_TEST_KEYS: "maybe"``)
``skaala_auth.E004``   more than one key store named (``DB``, ``DSN``, ``DATABASE``)
``skaala_auth.E005``   the ``DB`` file does not exist (and ``CREATE`` is not true), or is no
                       SQLite database
``skaala_auth.E006``   ``AUTHENTICATOR`` does not import, or is not an authenticator
``skaala_auth.E007``   ``RULES``/``PUBLIC``/``PROTECT`` set, but the middleware is not installed
``skaala_auth.E008``   ``DATABASE`` is no alias of ``DATABASES``
``skaala_auth.E009``   another framework's skaala_auth middleware in ``MIDDLEWARE``
``skaala_auth.E010``   a view requires a scope that is not registered (no key can have it)
``skaala_auth.W001``   the middleware comes after ``CsrfViewMiddleware`` while a rules table
                       protects paths (the CSRF check answers key-authenticated ``POST`` 403)
``skaala_auth.W002``   the ORM store's tables are missing (``manage.py migrate``); a database
                       check: ``check --database default``, and ``migrate`` itself
``skaala_auth.W003``   the middleware is listed more than once
``skaala_auth.W004``   a DRF view lists ``SessionAuthentication`` before
                       ``ApiKeyAuthentication`` (the session would win over a key)
=====================  ======================================================================

Middleware order: :class:`~skaala_auth.django.ApiKeyMiddleware` needs nothing from Django's
session or authentication middleware (it reads headers, and Stack Auth session tokens, not
Django sessions), so its place relative to them does not matter. Where a rules table protects
paths it must come **before** ``CsrfViewMiddleware``: a request authenticated by an API key
carries no ambient credential and is exempt from CSRF, and that is decided before CSRF's
``process_view`` runs. Views protected by the decorators, the mixin or the DRF classes are
exempt from CSRF themselves. The decorators work without the middleware; a rules table does not.

.. versionadded:: 0.1.0
.. versionchanged:: 0.4.0
   The ORM store (``E004`` now means two stores named; ``E008``, ``W002``), the middleware of
   another framework (``E009``), unknown scopes in views (``E010``), ``W001`` only where a rules
   table makes the order matter, ``W003`` and ``W004``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from ..authenticator import Authenticator
from ..config import (
    AUTHENTICATOR_SETTINGS,
    RULE_SETTINGS,
    SESSION_AUTH_SETTINGS,
    SESSION_SETTINGS,
    STORE_SETTINGS,
    ConfigurationError,
    parse_setting,
)
from ..scopes import default_registry
from .conf import DJANGO_SETTINGS

__all__ = [
    "check_database",
    "check_middleware",
    "check_settings",
    "check_view_scopes",
    "register_checks",
]

MIDDLEWARE_PATHS: Final = frozenset(
    {"skaala_auth.django.ApiKeyMiddleware", "skaala_auth.django.middleware.ApiKeyMiddleware"}
)
#: The other frameworks' middleware: under Django they would never see a Django request.
FOREIGN_MIDDLEWARE: Final = frozenset(
    {
        "skaala_auth.starlette.ApiKeyMiddleware",
        "skaala_auth.wsgi.ApiKeyMiddleware",
        "skaala_auth.flask.SkaalaAuth",
    }
)
CSRF_MIDDLEWARE: Final = "django.middleware.csrf.CsrfViewMiddleware"
_SESSION: Final = frozenset({*SESSION_SETTINGS, *SESSION_AUTH_SETTINGS})
_KNOWN: Final = frozenset(
    {*AUTHENTICATOR_SETTINGS, *STORE_SETTINGS, *RULE_SETTINGS, *_SESSION, *DJANGO_SETTINGS}
)
_AUTHENTICATOR: Final = "AUTHENTICATOR"
_SQLITE_HEADER: Final = b"SQLite format 3\x00"


def _options() -> Any:
    return getattr(settings, "SKAALA_AUTH", {})


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The ``SKAALA_AUTH`` setting: names, values, the store, ``AUTHENTICATOR``.

    .. versionadded:: 0.1.0
    """
    options = _options()
    if not isinstance(options, Mapping):
        return [
            Error(
                f"SKAALA_AUTH must be a dict, not {type(options).__name__}.",
                hint="SKAALA_AUTH = {} (keys in the project's database), or name a store.",
                id="skaala_auth.E001",
            )
        ]
    messages: list[CheckMessage] = []
    unknown = sorted(set(options) - _KNOWN - {_AUTHENTICATOR})
    for name in unknown:
        messages.append(
            Error(
                f"SKAALA_AUTH[{name!r}] is not a skaala_auth setting.",
                hint="Known: " + ", ".join(sorted([*_KNOWN, _AUTHENTICATOR])) + ".",
                id="skaala_auth.E002",
            )
        )
    values: dict[str, Any] = {}
    for name in sorted(set(options) & (set(AUTHENTICATOR_SETTINGS) | STORE_SETTINGS | _SESSION)):
        try:
            values[name] = parse_setting(name, options[name])
        except ConfigurationError as error:
            messages.append(Error(f"SKAALA_AUTH: {error}.", id="skaala_auth.E003"))
    if _AUTHENTICATOR in options:
        messages.extend(_check_authenticator(options[_AUTHENTICATOR]))
        return messages
    named = sorted({"DB", "DSN", "DATABASE"} & set(options))
    if len(named) > 1:
        messages.append(
            Error(
                f"SKAALA_AUTH names more than one key store: {', '.join(named)}.",
                hint=(
                    'Keep one: "DATABASE" (an alias of DATABASES, for the ORM store), "DB" (a '
                    'SQLite file) or "DSN" (PostgreSQL); none is the ORM store on "default".'
                ),
                id="skaala_auth.E004",
            )
        )
    elif "DB" in values:
        messages.extend(_check_db(values["DB"], values.get("CREATE", False)))
    elif "DSN" not in options:
        messages.extend(_check_alias(options.get("DATABASE")))
    return messages


def _check_db(value: Any, create: bool) -> list[CheckMessage]:
    path = os.fspath(value)
    if path == ":memory:":
        return []
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        if create:
            return []
        return [
            Error(
                f"SKAALA_AUTH['DB']: no key database at {path}.",
                hint=(
                    "Keys can live in the project's database instead: remove 'DB' and run "
                    f"'manage.py migrate'. Or create the file with 'skaala-auth --db {path} "
                    "init' (or 'manage.py skaala_auth init'), or set \"CREATE\": True; check "
                    "the path for a typo."
                ),
                id="skaala_auth.E005",
            )
        ]
    except OSError as error:
        return [Error(f"SKAALA_AUTH['DB']: cannot open {path}: {error}.", id="skaala_auth.E005")]
    if header and header != _SQLITE_HEADER:
        return [
            Error(
                f"SKAALA_AUTH['DB']: {path} is not a SQLite database.",
                hint="Check that the path names the key database, or restore it from a backup.",
                id="skaala_auth.E005",
            )
        ]
    return []


def _check_alias(alias: object) -> list[CheckMessage]:
    """The ORM store's database: ``DATABASE``, or the routers' choice."""
    if alias is None:
        return []
    databases = getattr(settings, "DATABASES", {}) or {}
    if isinstance(alias, str) and alias in databases:
        return []
    return [
        Error(
            f"SKAALA_AUTH['DATABASE'] is {alias!r}, which is no alias of DATABASES.",
            hint="Known: " + ", ".join(sorted(map(str, databases))) + ".",
            id="skaala_auth.E008",
        )
    ]


def _check_authenticator(value: object) -> list[CheckMessage]:
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as error:
            return [
                Error(
                    f"SKAALA_AUTH['AUTHENTICATOR'] does not import: {error}.",
                    hint="A dotted path to an Authenticator, or to a callable returning one.",
                    id="skaala_auth.E006",
                )
            ]
    if not isinstance(value, Authenticator) and not callable(value):
        return [
            Error(
                "SKAALA_AUTH['AUTHENTICATOR'] is neither an Authenticator nor a callable "
                f"returning one, but {type(value).__name__}.",
                id="skaala_auth.E006",
            )
        ]
    return []


def check_database(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The ORM store's tables exist (a database check: ``check --database``, and ``migrate``,
    which creates them next, so a warning that never stops it).

    .. versionadded:: 0.4.0
    """
    options = _options()
    if not isinstance(options, Mapping) or {"DB", "DSN", _AUTHENTICATOR} & set(options):
        return []
    from django.db import DatabaseError, connections, router

    from .models import ApiKeyModel

    alias = options.get("DATABASE") or router.db_for_write(ApiKeyModel)
    if not isinstance(alias, str) or alias not in connections or alias not in (databases or ()):
        return []
    try:
        with connections[alias].cursor() as cursor:
            tables = set(connections[alias].introspection.table_names(cursor))
    except DatabaseError as error:
        return [
            Warning(
                f"skaala_auth: cannot reach the database {alias!r} of the key store: {error}.",
                id="skaala_auth.W002",
            )
        ]
    if ApiKeyModel._meta.db_table in tables or "django_migrations" not in tables:
        return []  # migrated, or a database nothing was migrated into yet (its first migrate)
    return [
        Warning(
            f"The key store's tables are missing from the database {alias!r}: every key is "
            "refused (503) until they exist.",
            hint=f"Run 'manage.py migrate skaala_auth --database {alias}'.",
            id="skaala_auth.W002",
        )
    ]


def _middleware_installed() -> bool:
    return any(_is_ours(entry) for entry in getattr(settings, "MIDDLEWARE", None) or ())


def _is_ours(entry: object) -> bool:
    if entry in MIDDLEWARE_PATHS:
        return True
    if not isinstance(entry, str) or "ApiKeyMiddleware" not in entry:
        return False
    from .middleware import ApiKeyMiddleware

    try:  # a project's subclass is ours too
        found = import_string(entry)
    except ImportError:
        return False  # Django itself reports a middleware that does not import
    return isinstance(found, type) and issubclass(found, ApiKeyMiddleware)


def _rules_protect(options: object) -> bool:
    """Whether a rules table requires keys on some paths (what the middleware enforces)."""
    if not isinstance(options, Mapping):
        return False
    return bool(
        options.get("RULES") or options.get("PROTECT") or options.get("RULES_DEFAULT") == "deny"
    )


def check_middleware(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``MIDDLEWARE``: installed when a rules table needs it, once, before CSRF where that
    matters, and no other framework's middleware.

    .. versionadded:: 0.1.0
    """
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    options = _options()
    messages: list[CheckMessage] = [
        Error(
            f"MIDDLEWARE lists {entry!r}, which is not Django middleware: it never sees a "
            "Django request.",
            hint="Use 'skaala_auth.django.ApiKeyMiddleware'.",
            id="skaala_auth.E009",
        )
        for entry in middleware
        if entry in FOREIGN_MIDDLEWARE
    ]
    ours = [index for index, entry in enumerate(middleware) if _is_ours(entry)]
    if not ours:
        rules = sorted(set(options) & set(RULE_SETTINGS)) if isinstance(options, Mapping) else []
        if rules:
            messages.append(
                Error(
                    f"SKAALA_AUTH sets {', '.join(rules)}, but ApiKeyMiddleware is not in "
                    "MIDDLEWARE: no path is protected by them.",
                    hint="Add 'skaala_auth.django.ApiKeyMiddleware' to MIDDLEWARE.",
                    id="skaala_auth.E007",
                )
            )
        return messages
    if len(ours) > 1:
        messages.append(
            Warning(
                "ApiKeyMiddleware is listed more than once in MIDDLEWARE.",
                hint="Keep one entry: every request would be authenticated twice.",
                id="skaala_auth.W003",
            )
        )
    if (
        _rules_protect(options)
        and CSRF_MIDDLEWARE in middleware
        and middleware.index(CSRF_MIDDLEWARE) < ours[0]
    ):
        messages.append(
            Warning(
                "ApiKeyMiddleware comes after CsrfViewMiddleware, and SKAALA_AUTH's rules "
                "protect paths: a POST authenticated by an API key to a view they protect is "
                "refused by the CSRF check (403).",
                hint=(
                    "Put 'skaala_auth.django.ApiKeyMiddleware' before "
                    "'django.middleware.csrf.CsrfViewMiddleware': requests authenticated by an "
                    "API key carry no ambient credential and are exempt from CSRF, which must "
                    "be known before CSRF checks them."
                ),
                id="skaala_auth.W001",
            )
        )
    return messages


def declared_scopes(view: Any) -> set[str]:
    """The scopes a view callback declares: ``@requires_scope``, ``required_scopes`` (the mixin,
    DRF views), and :class:`~skaala_auth.django.rest_framework.HasScopes` among a DRF view's
    ``permission_classes`` (composed with ``|``, ``&`` and ``~`` too).

    .. versionadded:: 0.4.0
    """
    found: set[str] = set(getattr(view, "skaala_scopes", ()))
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if cls is not None:
        found.update(getattr(cls, "required_scopes", ()) or ())
        for permission in getattr(cls, "permission_classes", ()) or ():
            found.update(_permission_scopes(permission))
    return found


def _permission_scopes(permission: Any) -> Iterator[str]:
    yield from getattr(permission, "scopes", ()) if not isinstance(permission, type) else ()
    for name in ("op1_class", "op2_class", "op1", "op2"):
        operand = getattr(permission, name, None)
        if operand is not None:
            yield from _permission_scopes(operand)


def _views(patterns: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            yield from _views(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.callback


def check_view_scopes(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every scope a view of the URLconf requires is registered: a scope no key can have (a
    typo: ``read:booking``) would refuse every caller.

    .. versionadded:: 0.4.0
    """
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    from django.urls import get_resolver

    try:
        patterns = get_resolver().url_patterns
    except Exception:
        return []
    messages: list[CheckMessage] = []
    for route, view in _views(patterns):
        messages.extend(_check_authentication_order(route, view))
        unknown = sorted(declared_scopes(view) - set(default_registry))
        if unknown:
            owner = getattr(view, "view_class", None) or view
            name = getattr(owner, "__qualname__", None) or repr(view)
            messages.append(
                Error(
                    f"The view {name} (route {route!r}) requires {', '.join(unknown)} "
                    "(not a registered scope): no key can have it.",
                    hint=(
                        "Fix the name, or register the scope (skaala_auth.scopes."
                        "default_registry.register) before the URLconf is loaded."
                    ),
                    id="skaala_auth.E010",
                )
            )
    return messages


def _check_authentication_order(route: str, view: Any) -> list[CheckMessage]:
    """A DRF view that tries ``SessionAuthentication`` before ``ApiKeyAuthentication``: DRF
    takes the first class that authenticates, so a browser's session would win over a key sent
    with it, and a request with neither gets 403 (the first class's challenge, none) instead of
    401."""
    cls: Any = getattr(view, "cls", None)
    classes = list(getattr(cls, "authentication_classes", None) or ())
    if not classes:
        return []
    try:
        from rest_framework.authentication import SessionAuthentication

        from .rest_framework import ApiKeyAuthentication
    except ImportError:  # pragma: no cover - depends on the installed extras
        return []

    def first(kind: type) -> int | None:
        found = [i for i, c in enumerate(classes) if isinstance(c, type) and issubclass(c, kind)]
        return found[0] if found else None

    session, key = first(SessionAuthentication), first(ApiKeyAuthentication)
    if session is None or key is None or key < session:
        return []
    return [
        Warning(
            f"The view {cls.__qualname__} (route {route!r}) lists SessionAuthentication before "
            "ApiKeyAuthentication: a session would win over a key sent with it, and a request "
            "with neither gets 403 instead of 401.",
            hint="List ApiKeyAuthentication first in authentication_classes.",
            id="skaala_auth.W004",
        )
    ]


def register_checks() -> None:
    """Register the checks with Django (the app does, in ``ready()``).

    .. versionadded:: 0.1.0
    """
    register(check_settings)
    register(check_middleware)
    register(check_view_scopes, Tags.urls)
    register(check_database, Tags.database)
