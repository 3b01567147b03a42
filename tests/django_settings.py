"""The Django settings of the test suite, configured once per process by :func:`configure`.

Django settings can be configured only once in a process; every test module that needs Django
calls :func:`configure` (idempotent), and the docs' Django sample only configures Django when
nothing has (``if not settings.configured``), then overrides what it needs.
"""

from __future__ import annotations

from typing import Any

SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "tests-only",
    "ALLOWED_HOSTS": ["testserver"],
    "USE_TZ": True,
    "DATABASES": {},
    "INSTALLED_APPS": [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
        "skaala_auth.django",
    ],
    "MIDDLEWARE": ["skaala_auth.django.ApiKeyMiddleware"],
    "ROOT_URLCONF": "tests.contract.django_app",
    "REST_FRAMEWORK": {
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
    },
    # Each test overrides this with its own authenticator (see tests/contract/apps.py).
    "SKAALA_AUTH": {},
}


def configure() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()
