"""System checks (``manage.py check``, and before ``runserver`` and ``migrate``): a misspelt
``SKAALA_AUTH`` setting, a value of the wrong kind, a missing key store, an ``AUTHENTICATOR``
that does not import, and a middleware list in which the rules or CSRF would not work.

Registered by the app (``"skaala_auth.django"`` in ``INSTALLED_APPS``).

=====================  ======================================================================
``skaala_auth.E001``   ``SKAALA_AUTH`` is not a dict
``skaala_auth.E002``   an unknown ``SKAALA_AUTH`` name (a misspelling is never ignored)
``skaala_auth.E003``   a value of the wrong kind (``ACCEPT_TEST_KEYS: "maybe"``)
``skaala_auth.E004``   no key store: none of ``DB``, ``DSN``, ``AUTHENTICATOR``
``skaala_auth.E005``   the ``DB`` file does not exist (and ``CREATE`` is not true)
``skaala_auth.E006``   ``AUTHENTICATOR`` does not import, or is not an authenticator
``skaala_auth.E007``   ``RULES``/``PUBLIC``/``PROTECT`` set, but the middleware is not installed
``skaala_auth.W001``   the middleware comes after ``CsrfViewMiddleware``
=====================  ======================================================================

Middleware order: :class:`~skaala_auth.django.ApiKeyMiddleware` needs nothing from Django's
session or authentication middleware (it reads headers, and Stack Auth session tokens, not
Django sessions), so its place relative to them does not matter. It must come **before**
``CsrfViewMiddleware``: a request authenticated by an API key carries no ambient credential and
is exempt from CSRF, and that is decided before CSRF's ``process_view`` runs. The decorators
work without the middleware; a rules table does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
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

__all__ = ["check_middleware", "check_settings", "register_checks"]

MIDDLEWARE_PATHS: Final = frozenset(
    {"skaala_auth.django.ApiKeyMiddleware", "skaala_auth.django.middleware.ApiKeyMiddleware"}
)
CSRF_MIDDLEWARE: Final = "django.middleware.csrf.CsrfViewMiddleware"
_SESSION: Final = frozenset({*SESSION_SETTINGS, *SESSION_AUTH_SETTINGS})
_KNOWN: Final = frozenset(
    # MANAGER: the management API's manager (skaala_auth.django.management_urls).
    {*AUTHENTICATOR_SETTINGS, *STORE_SETTINGS, *RULE_SETTINGS, *_SESSION, "MANAGER"}
)
_AUTHENTICATOR: Final = "AUTHENTICATOR"


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The ``SKAALA_AUTH`` setting: names, values, the store, ``AUTHENTICATOR``.

    .. versionadded:: 0.1.0
    """
    options = getattr(settings, "SKAALA_AUTH", {})
    if not isinstance(options, Mapping):
        return [
            Error(
                f"SKAALA_AUTH must be a dict, not {type(options).__name__}.",
                hint='SKAALA_AUTH = {"DB": BASE_DIR / "keys.db"}',
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
    elif "DB" not in options and "DSN" not in options:
        if options or _middleware_installed():
            messages.append(
                Error(
                    "SKAALA_AUTH names no key store.",
                    hint='Set "DB" (a SQLite file), "DSN" (PostgreSQL) or "AUTHENTICATOR".',
                    id="skaala_auth.E004",
                )
            )
    elif "DB" in values and not values.get("CREATE", False):
        path = os.fspath(values["DB"])
        if path != ":memory:" and not os.path.exists(path):
            messages.append(
                Error(
                    f"SKAALA_AUTH['DB']: no key database at {path}.",
                    hint=(
                        f"Create it with 'skaala-auth --db {path} init' (or 'manage.py "
                        'skaala_auth init\'), or set "CREATE": True; check the path for a typo.'
                    ),
                    id="skaala_auth.E005",
                )
            )
    return messages


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


def _middleware_installed() -> bool:
    return any(entry in MIDDLEWARE_PATHS for entry in getattr(settings, "MIDDLEWARE", None) or ())


def check_middleware(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``MIDDLEWARE``: installed when a rules table needs it, and before CSRF.

    .. versionadded:: 0.1.0
    """
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    options = getattr(settings, "SKAALA_AUTH", {})
    ours = [index for index, entry in enumerate(middleware) if entry in MIDDLEWARE_PATHS]
    messages: list[CheckMessage] = []
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
    if CSRF_MIDDLEWARE in middleware and middleware.index(CSRF_MIDDLEWARE) < ours[0]:
        messages.append(
            Warning(
                "ApiKeyMiddleware comes after CsrfViewMiddleware.",
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


def register_checks() -> None:
    """Register both checks with Django (the app does, in ``ready()``).

    .. versionadded:: 0.1.0
    """
    register(check_settings)
    register(check_middleware)
