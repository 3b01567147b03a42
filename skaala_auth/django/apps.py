"""The Django app: ``"skaala_auth.django"`` in ``INSTALLED_APPS`` (label ``skaala_auth``) adds the
``manage.py skaala_auth`` command. The middleware and decorators work without it.

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
