"""drf-spectacular: :class:`~skaala_auth.django.rest_framework.ApiKeyAuthentication` in the
OpenAPI document, as two security schemes (``Authorization: Bearer`` and the ``X-API-Key``
header, either one), with each operation's scopes.

Registered when :mod:`skaala_auth.django.rest_framework` is imported with drf-spectacular
installed (drf-spectacular finds extensions by their import). Without it drf-spectacular warns
"could not resolve authenticator" and leaves the schemes out.

Each operation's scopes come from its view's permissions — every
:class:`~skaala_auth.django.rest_framework.HasScopes` in ``permission_classes``, composed with
``&``, ``|`` and ``~`` as DRF composes them (or the view's ``required_scopes``) — and go:

- to ``x-required-scopes``, always: a list of scopes, or a list of such lists when the
  permissions grant on either of several scope sets (``|``);
- to the operation's security requirements too under OpenAPI 3.1 (``SPECTACULAR_SETTINGS
  ["OAS_VERSION"] = "3.1.0"``), which allows role names there; OpenAPI 3.0 allows scopes there
  for OAuth2 only, so the requirements' lists stay empty.

.. versionadded:: 0.4.0
"""

from __future__ import annotations

from typing import Any, Final

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.settings import spectacular_settings
from rest_framework.permissions import AND, NOT, OR

__all__ = ["ApiKeyScheme", "BEARER_SCHEME", "HEADER_SCHEME", "view_scopes"]

#: The schemes' names in ``components.securitySchemes`` (as in the FastAPI adapter).
BEARER_SCHEME: Final = "ApiKeyBearer"
HEADER_SCHEME: Final = "ApiKeyHeader"

Alternatives = list[frozenset[str]]


def view_scopes(view: Any) -> list[list[str]]:
    """The scope sets that let a request into ``view`` (any one of them): one list for the
    usual ``HasScopes("a", "b")``, several for ``HasScopes("a") | HasScopes("b")``, ``[[]]``
    when its permissions name no scope.

    .. versionadded:: 0.4.0
    """
    from .rest_framework import HasScopes

    default = tuple(getattr(view, "required_scopes", ()) or ())

    def walk(permission: Any) -> Alternatives:
        if isinstance(permission, HasScopes):
            return [frozenset(permission.scopes or default)]
        if isinstance(permission, AND):
            return [a | b for a in walk(permission.op1) for b in walk(permission.op2)]
        if isinstance(permission, OR):
            return walk(permission.op1) + walk(permission.op2)
        if isinstance(permission, NOT):
            return [frozenset()]  # "not granted by a key" names no scope a key needs
        return [frozenset()]

    alternatives: Alternatives = [frozenset()]
    for permission in view.get_permissions():
        alternatives = [a | b for a in alternatives for b in walk(permission)]
    unique = sorted({tuple(sorted(a)) for a in alternatives})
    return [list(scopes) for scopes in unique]


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The extension for :class:`~skaala_auth.django.rest_framework.ApiKeyAuthentication`
    (and its subclasses).

    .. versionadded:: 0.4.0
    """

    target_class = "skaala_auth.django.rest_framework.ApiKeyAuthentication"
    match_subclasses = True
    name = [BEARER_SCHEME, HEADER_SCHEME]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: `Authorization: Bearer sk_live_…`.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "An API key: `X-API-Key: sk_live_…` (or the Bearer scheme).",
            },
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[str]]]:
        alternatives = view_scopes(auto_schema.view)
        _add_extension(auto_schema, alternatives)
        in_requirement = str(spectacular_settings.OAS_VERSION).startswith("3.1")
        return [
            {scheme: scopes if in_requirement else []}
            for scopes in alternatives
            for scheme in (BEARER_SCHEME, HEADER_SCHEME)
        ]


def _add_extension(auto_schema: Any, alternatives: list[list[str]]) -> None:
    """``x-required-scopes`` on the operation: the schema object is this operation's own (one
    per view and method), and asks for its extensions after its security requirements."""
    if not any(alternatives):
        return
    value: list[Any] = alternatives[0] if len(alternatives) == 1 else alternatives
    built = auto_schema.get_extensions

    def get_extensions() -> dict[str, Any]:
        return {**built(), "x-required-scopes": value}

    auto_schema.get_extensions = get_extensions
