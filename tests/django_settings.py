"""The Django settings of the test suite, configured once per process by :func:`configure`.

Django settings can be configured only once in a process; every test module that needs Django
calls :func:`configure` (idempotent), and the docs' Django sample only configures Django when
nothing has (``if not settings.configured``), then overrides what it needs.

Databases: ``default`` is a SQLite file in a temporary directory of this process (the ORM key
store's tests migrate it with :func:`migrate`; the other Django tests never touch it).
``postgres`` is the PostgreSQL server of ``SKAALA_TEST_POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``); its tests run in a database of their own,
``test_skaala_django_<pid>``, that Django's test-database machinery creates and drops (see
``tests/adapters/test_django_orm.py``), so that they never meet another suite's tables.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import urllib.parse
from typing import Any

_DIRECTORY = tempfile.mkdtemp(prefix="skaala-django-")
atexit.register(shutil.rmtree, _DIRECTORY, ignore_errors=True)

POSTGRES_DSN = os.environ.get(
    "SKAALA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_database(dsn: str = POSTGRES_DSN) -> dict[str, Any]:
    """A ``DATABASES`` entry for a PostgreSQL DSN; its test database is this process's own."""
    parts = urllib.parse.urlsplit(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "postgres",
        "USER": urllib.parse.unquote(parts.username or "postgres"),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        "TEST": {"NAME": f"test_skaala_django_{os.getpid()}"},
    }


SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "tests-only",
    "ALLOWED_HOSTS": ["testserver"],
    "USE_TZ": True,
    "DATABASES": {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(_DIRECTORY, "default.sqlite3"),
        },
        "postgres": postgres_database(),
    },
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "django.contrib.messages",
        "rest_framework",
        "skaala_auth.django",
    ],
    "MIDDLEWARE": ["skaala_auth.django.ApiKeyMiddleware"],
    "ROOT_URLCONF": "tests.contract.django_app",
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    "REST_FRAMEWORK": {
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
    },
    # Each test overrides this with its own authenticator (see tests/contract/apps.py); left
    # as it is, it means the ORM store on "default".
    "SKAALA_AUTH": {},
}

_migrated: set[str] = set()


def configure() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()


def migrate(alias: str = "default") -> None:
    """Create the tables of every app on ``alias`` (once per process)."""
    if alias in _migrated:
        return
    from django.core.management import call_command

    configure()
    call_command("migrate", database=alias, verbosity=0, interactive=False)
    _migrated.add(alias)
