"""``"skaala_auth.django.ApiKeyMiddleware"``: authenticate every request, under WSGI and ASGI.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from ..credentials import environ_headers
from ..errors import AuthError
from ..flow import Endpoint, RequestFacts
from ..models import Principal
from .conf import get_authenticator, get_rules
from .reporting import protect_report

__all__ = [
    "ApiKeyMiddleware",
    "decide",
    "decide_async",
    "error_response",
    "facts_of",
    "stated",
]


def error_response(error: AuthError) -> HttpResponse:
    """The contract's answer to a refusal (or a preflight: 204, no body), as a Django response.

    .. versionadded:: 0.1.0
    """
    return HttpResponse(error.body_bytes(), status=error.status_code, headers=dict(error.headers()))


def facts_of(request: HttpRequest, path_params: Mapping[str, object] | None = None) -> RequestFacts:
    """What the core needs of a Django request: method, ``path_info`` (what the URL resolver
    matches), the credential headers, the query string and the URL's keyword arguments.

    From here on the key is in flight: the request's error reports (the DEBUG page, the
    ``ADMINS`` e-mails) cleanse it wherever it shows (see :mod:`skaala_auth.django.reporting`).

    .. versionadded:: 0.1.0
    """
    protect_report(request)
    meta = request.META
    query = meta.get("QUERY_STRING")
    # path_info, not PATH_INFO: Django decoded it already, and strips SCRIPT_NAME under ASGI.
    client = meta.get("REMOTE_ADDR")
    return RequestFacts(
        request.method or "GET",
        request.path_info,
        environ_headers(meta),
        query if isinstance(query, str) else None,
        {} if path_params is None else path_params,
        client=client if isinstance(client, str) and client else None,
    )


class ApiKeyMiddleware:
    """Authenticate every request: ``request.principal`` is the
    :class:`~skaala_auth.Principal`, or ``None`` for an anonymous request.

    A request without credentials is anonymous unless the ``SKAALA_AUTH`` rules require a key
    for its path (401); a bad key is refused wherever it goes (401); public paths are never
    challenged; a CORS preflight to a path the rules protect is answered 204 with no body (put
    ``django-cors-headers`` above this middleware to answer it with CORS headers). Both sync-
    and async-capable: under ASGI a cache miss waits for the store in a worker thread, never
    on the event loop.

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
        outcome = get_authenticator().decide(facts_of(request), get_rules())
        if isinstance(outcome, AuthError):
            return error_response(outcome)
        _set_principal(request, outcome)
        return stated(self.get_response(request), outcome)

    async def __acall__(self, request: HttpRequest) -> Any:
        outcome = await get_authenticator().decide_async(facts_of(request), get_rules())
        if isinstance(outcome, AuthError):
            return error_response(outcome)
        _set_principal(request, outcome)
        response: Awaitable[Any] = self.get_response(request)
        return stated(await response, outcome)


def stated(response: Any, principal: Principal | AuthError | None) -> Any:
    """``response`` with the rate limit headers of the request (unless the view set its
    own): what every view the middleware or a check let through answers with.

    .. versionadded:: 0.4.0
    """
    if isinstance(principal, Principal) and principal.rate_limit_state is not None:
        for name, value in principal.rate_limit_state.headers():
            if not response.has_header(name):
                response[name] = value
    return response


def _set_principal(request: HttpRequest, principal: Principal | None) -> None:
    request.principal = principal
    if principal is not None and principal.method == "api_key":
        # A request authenticated by an API key carries no ambient credential a browser could
        # be tricked into sending: CsrfViewMiddleware has nothing to protect (DRF reasons the
        # same way for its non-session authentication).
        request._dont_enforce_csrf_checks = True


def decide(
    request: HttpRequest, endpoint: Endpoint, path_params: Mapping[str, object] | None = None
) -> Principal | AuthError | None:
    """The endpoint check behind ``@requires_scope``, the mixin and the DRF classes: the core
    decides on the middleware's principal, or on the request's credentials when there is none
    (anonymous, or no middleware). On a grant, ``request.principal`` is set.

    Returns:
        The principal, ``None`` (no credentials where ``endpoint.required`` is false), or the
        :class:`~skaala_auth.AuthError` to render.

    .. versionadded:: 0.1.0
    """
    found: Principal | None = getattr(request, "principal", None)
    outcome = get_authenticator().decide(facts_of(request, path_params), endpoint, found=found)
    if isinstance(outcome, Principal):
        _set_principal(request, outcome)
    return outcome


async def decide_async(
    request: HttpRequest, endpoint: Endpoint, path_params: Mapping[str, object] | None = None
) -> Principal | AuthError | None:
    """:func:`decide` for async views: a cache miss waits for the store in a worker thread.

    .. versionadded:: 0.1.0
    """
    found: Principal | None = getattr(request, "principal", None)
    facts = facts_of(request, path_params)
    outcome = await get_authenticator().decide_async(facts, endpoint, found=found)
    if isinstance(outcome, Principal):
        _set_principal(request, outcome)
    return outcome
