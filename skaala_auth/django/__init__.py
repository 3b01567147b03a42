"""Django: the middleware, the per-endpoint checks, and (in ``skaala_auth.django.rest_framework``)
the Django REST framework classes.

::

    INSTALLED_APPS = [..., "skaala_auth.django"]          # the key store's models: migrate
    MIDDLEWARE = [..., "skaala_auth.django.ApiKeyMiddleware"]
    SKAALA_AUTH = {}                                      # keys in the project's database

    from skaala_auth.django import requires_scope

    @requires_scope("read:bookings")
    def bookings(request, team_id):
        return JsonResponse({"team": request.principal.team_id})

.. versionadded:: 0.1.0
.. versionchanged:: 0.4.0
   Keys in the project's database (the ORM store, the default), their admin; ``get_manager``.
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "skaala_auth.django needs Django: pip install 'skaala-auth[django]'"
    ) from error

from .conf import get_authenticator, get_manager, get_rules, get_store
from .decorators import ScopeRequiredMixin, requires_scope
from .middleware import ApiKeyMiddleware, error_response

__all__ = [
    "ApiKeyMiddleware",
    "ScopeRequiredMixin",
    "error_response",
    "get_authenticator",
    "get_manager",
    "get_rules",
    "get_store",
    "requires_scope",
]
