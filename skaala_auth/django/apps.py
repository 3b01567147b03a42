"""The Django app: ``"skaala_auth.django"`` in ``INSTALLED_APPS`` (label ``skaala_auth``) adds
the key store's models (``manage.py migrate`` creates their tables), their admin, the
``manage.py skaala_auth`` command and the system checks of :mod:`skaala_auth.django.checks`.
The middleware and decorators work without it, on a store named by ``SKAALA_AUTH``.

.. versionadded:: 0.1.0
.. versionchanged:: 0.4.0
   The models, their admin and the ORM store.
"""

from __future__ import annotations

from django.apps import AppConfig


class SkaalaAuthConfig(AppConfig):  # type: ignore[misc]
    """The app config.

    .. versionadded:: 0.1.0
    """

    name = "skaala_auth.django"
    label = "skaala_auth"
    verbose_name = "API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; log the admin's and the ORM's writes to the change log."""
        from .checks import register_checks
        from .store import connect_signals

        register_checks()
        connect_signals()
