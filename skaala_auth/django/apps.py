"""The Django app: ``"skaala_auth.django"`` in ``INSTALLED_APPS`` (label ``skaala_auth``) adds the
``manage.py skaala_auth`` command and the system checks of :mod:`skaala_auth.django.checks`. The
middleware and decorators work without it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from django.apps import AppConfig


class SkaalaAuthConfig(AppConfig):  # type: ignore[misc]
    """The app config.

    .. versionadded:: 0.1.0
    """

    name = "skaala_auth.django"
    label = "skaala_auth"
    verbose_name = "skaala_auth"

    def ready(self) -> None:
        """Register the system checks."""
        from .checks import register_checks

        register_checks()
