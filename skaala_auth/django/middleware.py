"""``"skaala_auth.django.ApiKeyMiddleware"``: authenticate every request, under WSGI and ASGI.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from ..credentials import environ_headers
from ..errors import AuthError
from ..models import Principal
from ..rules import Requirement, is_cors_preflight
from ..verify import refusal
from .conf import get_authenticator, get_rules

__all__ = ["ApiKeyMiddleware", "check", "check_async", "error_response", "is_preflight"]


def error_response(error: AuthError) -> HttpResponse:
    """The contract's answer to a refusal, as a Django response.

    .. versionadded:: 0.1.0
    """
    return HttpResponse(error.body_bytes(), status=error.status_code, headers=dict(error.headers()))


class ApiKeyMiddleware:
    """Authenticate every request: ``request.principal`` is the
    :class:`~skaala_auth.Principal`, or ``None`` for an anonymous request.

    A request without credentials is anonymous unless the ``SKAALA_AUTH`` rules require a key
    for its path (401); a bad key is refused wherever it goes (401); public paths and CORS
    preflights are never challenged. Both sync- and async-capable: under ASGI a cache miss waits
    for the store in a worker thread, never on the event loop.

    .. versionadded:: 0.1.0
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        requirement = _requirement(request)
        outcome = None
        if not requirement.public:
            outcome = get_authenticator().check_request(
                environ_headers(request.META),
                required_scopes=requirement.scopes,
                team_id=requirement.team_id,
                query_string=request.META.get("QUERY_STRING"),
                required=requirement.required,
            )
            if isinstance(outcome, AuthError):
                return error_response(outcome)
        request.principal = outcome
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        requirement = _requirement(request)
        outcome = None
        if not requirement.public:
            outcome = await get_authenticator().check_request_async(
                environ_headers(request.META),
                required_scopes=requirement.scopes,
                team_id=requirement.team_id,
                query_string=request.META.get("QUERY_STRING"),
                required=requirement.required,
            )
            if isinstance(outcome, AuthError):
                return error_response(outcome)
        request.principal = outcome
        response: Awaitable[Any] = self.get_response(request)
        return await response


def _requirement(request: HttpRequest) -> Requirement:
    # Headers are only consulted for OPTIONS (CORS preflight); building them costs.
    headers = request.headers if request.method == "OPTIONS" else None
    return get_rules().match(request.method, request.path_info, headers)


def is_preflight(request: HttpRequest) -> bool:
    """True for a CORS preflight, which endpoint checks never challenge."""
    return request.method == "OPTIONS" and is_cors_preflight("OPTIONS", request.headers)


def check(
    request: HttpRequest,
    scopes: Collection[str] = (),
    team_id: object = None,
    *,
    required: bool = True,
) -> Principal | None:
    """The endpoint check behind ``@requires_scope``, the mixin and the DRF classes: authorize
    the middleware's principal, or authenticate the request when there is none (anonymous, or
    no middleware). Sets and returns ``request.principal``.

    Args:
        required: when ``False``, a request without credentials is anonymous (``None``).

    Raises:
        AuthError: the refusal to render.
    """
    principal: Principal | None = getattr(request, "principal", None)
    team = None if team_id is None else str(team_id)
    if principal is not None and refusal(principal, scopes, team) is None:
        return principal  # the middleware's principal may (the core's pure decision)
    authenticator = get_authenticator()
    if principal is None:
        principal = authenticator.authenticate(
            environ_headers(request.META),
            required_scopes=scopes,
            team_id=team,
            query_string=request.META.get("QUERY_STRING"),
            required=required,
        )
        request.principal = principal
    else:  # raises the refusal, audited
        authenticator.authorize(principal, required_scopes=scopes, team_id=team)
    return principal


async def check_async(
    request: HttpRequest,
    scopes: Collection[str] = (),
    team_id: object = None,
    *,
    required: bool = True,
) -> Principal | None:
    """:func:`check` for async views: a cache miss waits for the store in a worker thread."""
    principal: Principal | None = getattr(request, "principal", None)
    team = None if team_id is None else str(team_id)
    if principal is not None and refusal(principal, scopes, team) is None:
        return principal  # the middleware's principal may (the core's pure decision)
    authenticator = get_authenticator()
    if principal is None:
        principal = await authenticator.authenticate_async(
            environ_headers(request.META),
            required_scopes=scopes,
            team_id=team,
            query_string=request.META.get("QUERY_STRING"),
            required=required,
        )
        request.principal = principal
    else:  # raises the refusal, audited
        authenticator.authorize(principal, required_scopes=scopes, team_id=team)
    return principal
