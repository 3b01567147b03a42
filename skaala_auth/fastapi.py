"""FastAPI: the :class:`RequireScopes` dependency, documented in OpenAPI.

::

    app = FastAPI(middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)])

    @app.get("/teams/{team_id}/bookings")
    async def bookings(principal: Principal = Depends(RequireScopes("read:bookings"))):
        ...

The middleware (the same one Starlette uses, re-exported here) authenticates and renders every
refusal; the dependency checks the endpoint's scopes and team and returns the
:class:`~skaala_auth.Principal`. In the OpenAPI document the API key appears as two security
schemes (``Authorization: Bearer`` and the ``X-API-Key`` header, either one), and every
operation that uses :class:`RequireScopes` names its scopes in its security requirements (as
OpenAPI 3.1 allows); after :func:`document_scopes` they are in ``x-required-scopes`` and the
operation's description instead, which OpenAPI 3.0 tools accept too.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from typing import Annotated, Any, Final

try:
    from fastapi import FastAPI, Security
    from fastapi.security import (
        APIKeyHeader,
        HTTPAuthorizationCredentials,
        HTTPBearer,
        SecurityScopes,
    )
    from starlette.requests import HTTPConnection
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "skaala_auth.fastapi needs FastAPI: pip install 'skaala-auth[fastapi]'"
    ) from error

from .flow import Credentials, Endpoint
from .models import Principal
from .starlette import ApiKeyMiddleware, _guard, requires_scope

__all__ = [
    "ApiKeyMiddleware",
    "RequireScopes",
    "api_key_header",
    "bearer",
    "document_scopes",
    "requires_scope",
]

#: The security schemes the dependency declares (documentation only: the middleware reads the
#: headers itself, so a repeated or doubled credential is refused as the contract says).
bearer: Final = HTTPBearer(
    scheme_name="ApiKeyBearer",
    bearerFormat="sk_live_…",
    description="An API key as a bearer token: `Authorization: Bearer sk_live_…`",
    auto_error=False,
)
api_key_header: Final = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKeyHeader",
    description="An API key in the `X-API-Key` header (send it in one header only)",
    auto_error=False,
)
EXTENSION: Final = "x-required-scopes"


class RequireScopes:
    """A dependency that requires an API key with every one of ``scopes`` (AND) and, when the
    route has a ``team_param`` path parameter, a key of that team. Returns the
    :class:`~skaala_auth.Principal`.

    Use it as ``Depends(RequireScopes(...))``, ``Security(RequireScopes(...))``, in a route's or
    router's ``dependencies=[...]``, on HTTP and WebSocket routes. The scopes FastAPI's
    ``Security(..., scopes=[...])`` declares (its ``SecurityScopes``, which gathers them from
    every enclosing ``Security``) are required too, on top of ``scopes``: the scopes the
    OpenAPI document advertises are the scopes enforced. Needs
    :class:`ApiKeyMiddleware` on the app: it renders the refusals (401, 403, …) exactly as every
    other adapter does.

    In the OpenAPI document the operation's security requirements name both schemes with these
    scopes (OpenAPI 3.1, which FastAPI emits, allows role names there);
    :func:`document_scopes` moves them to ``x-required-scopes`` and the description instead.

    Args:
        scopes: the scopes the endpoint needs.
        team_param: the path parameter that carries the team id (``None``: no team check).
        credentials: ``"any"`` (an API key, or else a dashboard session when the
            authenticator verifies them), ``"api_key"`` or ``"session"`` (keys refused: 403).
        roles: the caller's role in the team must be one of these (``"owner"``, ``"admin"``,
            ``"member"``); ``None``: any role.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *scopes: str,
        team_param: str | None = "team_id",
        credentials: Credentials = "any",
        roles: Collection[str] | None = None,
    ) -> None:
        for scope in scopes:
            if not isinstance(scope, str):
                raise TypeError("RequireScopes takes scope names: RequireScopes('read:x', ...)")
        self.scopes = tuple(scopes)
        self.team_param = team_param
        self.credentials: Credentials = credentials
        self.roles = roles
        self._endpoint = self._make(self.scopes)
        self._endpoints: dict[tuple[str, ...], Endpoint] = {}
        # FastAPI reads a dependency's parameters from its signature: this one declares the two
        # security schemes (documentation only) with this instance's scopes.
        listed = list(self.scopes)
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter("connection", _POSITIONAL, annotation=HTTPConnection),
                inspect.Parameter("security_scopes", _POSITIONAL, annotation=SecurityScopes),
                inspect.Parameter(
                    "_bearer",
                    _POSITIONAL,
                    annotation=Annotated[
                        HTTPAuthorizationCredentials | None, Security(bearer, scopes=listed)
                    ],
                ),
                inspect.Parameter(
                    "_api_key",
                    _POSITIONAL,
                    annotation=Annotated[str | None, Security(api_key_header, scopes=listed)],
                ),
            ],
            return_annotation=Principal,
        )

    async def __call__(
        self,
        connection: HTTPConnection,
        security_scopes: SecurityScopes | None = None,
        _bearer: object = None,
        _api_key: object = None,
    ) -> Principal:
        return await _guard(connection.scope, self._endpoint_for(security_scopes))

    def _endpoint_for(self, security_scopes: SecurityScopes | None) -> Endpoint:
        declared = () if security_scopes is None else tuple(security_scopes.scopes)
        if not declared:
            return self._endpoint
        endpoint = self._endpoints.get(declared)
        if endpoint is None:
            scopes = tuple(dict.fromkeys((*self.scopes, *declared)))
            if len(self._endpoints) < 256:  # a route declares a handful of scope sets
                endpoint = self._endpoints[declared] = self._make(scopes)
            else:
                endpoint = self._make(scopes)
        return endpoint

    def _make(self, scopes: tuple[str, ...]) -> Endpoint:
        return Endpoint.declare(
            scopes, self.team_param, credentials=self.credentials, roles=self.roles
        )

    def __repr__(self) -> str:
        return f"RequireScopes({', '.join(map(repr, self.scopes))})"


_POSITIONAL: Final = inspect.Parameter.POSITIONAL_OR_KEYWORD
_SCHEMES: Final = frozenset({"ApiKeyBearer", "ApiKeyHeader"})


def document_scopes(app: FastAPI) -> FastAPI:
    """Rewrite ``app.openapi()`` for OpenAPI 3.0 tools: each operation's required scopes move
    from its security requirements (where 3.0 allows scopes only for OAuth2) to an
    ``x-required-scopes`` list and a line of its description.

    Call it once, after creating the app; routes added later are covered too (the document is
    built when first asked for). Returns ``app``.

    .. versionadded:: 0.1.0
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if isinstance(operation, dict):
                    _move_scopes(operation)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _move_scopes(operation: dict[str, Any]) -> None:
    scopes: set[str] = set()
    for requirement in operation.get("security", ()):
        for name in _SCHEMES.intersection(requirement):
            scopes.update(requirement[name])
            requirement[name] = []
    if not scopes:
        return
    operation[EXTENSION] = sorted(scopes)
    note = "**Required scopes:** " + ", ".join(f"`{scope}`" for scope in sorted(scopes))
    described = operation.get("description")
    operation["description"] = f"{described}\n\n{note}" if described else note
