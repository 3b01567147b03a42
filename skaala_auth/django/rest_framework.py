"""Django REST framework: :class:`ApiKeyAuthentication` and the :class:`HasScopes` permission.

::

    from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

    class BookingList(APIView):
        authentication_classes = [ApiKeyAuthentication]
        permission_classes = [HasScopes("read:bookings")]   # or [HasScopes] + required_scopes

Refusals keep the contract: status, ``WWW-Authenticate``, ``Retry-After`` and
``Cache-Control: no-store`` are set, and the body is the contract's JSON object (byte-identical
with DRF's ``JSONRenderer``; another renderer renders the same object its own way).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

try:
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.exceptions import APIException
    from rest_framework.permissions import (
        AND,
        NOT,
        OR,
        BasePermission,
        OperandHolder,
        OperationHolderMixin,
        SingleOperandHolder,
    )
    from rest_framework.request import Request
    from rest_framework.views import APIView
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "skaala_auth.django.rest_framework needs Django REST framework: "
        "pip install 'skaala-auth[drf]'"
    ) from error

from ..errors import AuthError
from ..flow import Endpoint, PreflightAnswer
from ..models import Principal
from .middleware import decide

__all__ = ["ApiKeyAuthentication", "ApiKeyRefused", "ApiKeyUser", "HasScopes"]

_RENDERED_BY_DRF = frozenset({"content-type", "www-authenticate", "retry-after"})


class ApiKeyUser:
    """``request.user`` for a request authenticated by a key: authenticated, not a Django user.

    Attributes:
        principal: the :class:`~skaala_auth.Principal` (also ``request.auth``).

    .. versionadded:: 0.1.0
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.pk = self.id = self.username = principal.user_id

    def __str__(self) -> str:
        return self.principal.user_id

    def __repr__(self) -> str:
        return f"ApiKeyUser({self.principal.user_id!r}, key_id={self.principal.key_id!r})"


class ApiKeyRefused(APIException):  # type: ignore[misc]
    """A refusal, carried through DRF's exception handling with the contract's rendering.

    .. versionadded:: 0.1.0
    """

    def __init__(self, error: AuthError, view: Any = None) -> None:
        super().__init__(detail=error.body)
        self.status_code = error.status_code
        headers = dict(error.headers())
        self.auth_header = headers.get("www-authenticate")
        self.wait = int(headers["retry-after"]) if "retry-after" in headers else None
        # DRF's default handler renders only the two headers above; the view adds its
        # ``headers`` to every response it finalises, so the rest goes there.
        if view is not None and isinstance(getattr(view, "headers", None), dict):
            view.headers.update(
                (name, value) for name, value in headers.items() if name not in _RENDERED_BY_DRF
            )


class ApiKeyAuthentication(BaseAuthentication):  # type: ignore[misc]
    """Authenticate a DRF request by its API key: ``request.user`` is an :class:`ApiKeyUser`,
    ``request.auth`` the :class:`~skaala_auth.Principal`. No credentials: not authenticated
    (``None``), so other authentication classes get their turn; a bad key: 401.

    Uses ``request.principal`` when :class:`~skaala_auth.django.ApiKeyMiddleware` has run.

    .. versionadded:: 0.1.0
    """

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, Principal] | None:
        django_request = request._request
        principal = getattr(django_request, "principal", None)
        if principal is None:
            outcome = decide(django_request, _ANY_KEY)
            if isinstance(outcome, PreflightAnswer):  # a preflight authenticates nobody
                return None
            if isinstance(outcome, AuthError):
                raise ApiKeyRefused(outcome, request.parser_context.get("view"))
            principal = outcome
        if principal is None:
            return None
        if principal.rate_limit_state is not None:
            # The view adds its ``headers`` to every response it finalises (the middleware
            # adds them itself when it runs, unless the view set them).
            view = request.parser_context.get("view")
            if view is not None and isinstance(getattr(view, "headers", None), dict):
                view.headers.update(principal.rate_limit_state.headers())
        return ApiKeyUser(principal), principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasScopes(OperationHolderMixin, BasePermission):  # type: ignore[misc]
    """Require a valid key with every one of the scopes (AND).

    Composes with DRF's operators, instances and classes alike:
    ``HasScopes("read:calls") | HasScopes("read:bookings")`` (either),
    ``HasScopes("read:calls") & IsAuthenticated``, ``~HasScopes("webhooks:manage")``.
    In an expression that starts with a ``HasScopes``, a key refused for its scopes or team
    (403) by one side of ``|`` lets the other side grant, and ``~`` grants it; only when
    nothing grants is the refusal answered (put ``HasScopes`` first: DRF's own ``|``, after
    another permission class, does not look past a refusal).

    Give the scopes to the permission (``permission_classes = [HasScopes("read:bookings")]``),
    or list the class and set ``required_scopes`` on the view. The team is the view's
    ``team_param`` URL keyword argument (default ``team_id``) when the route has one.

    With no key presented the permission is simply not granted (``False``), so that DRF's
    composition works: ``HasScopes(...) | IsAuthenticated`` lets a session-authenticated user
    in, and when nothing grants, DRF answers as it does for any permission (401 with
    ``WWW-Authenticate`` when the view has authentication classes). A key that is presented
    and refused is answered with the contract's 401/403 at once, whatever else could grant.
    A CORS preflight is left to DRF's own ``OPTIONS`` answer (or a CORS middleware); a view
    that defines its own ``options`` handler is not granted one.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       Instances compose with ``|``, ``&`` and ``~``.
    """

    def __init__(self, *scopes: str) -> None:
        self.scopes = scopes

    def __call__(self) -> HasScopes:
        # DRF instantiates each entry of permission_classes; an instance stands for itself.
        return self

    # Our operators, not DRF's (see _KeyOr): the expression stays ours as it grows.
    def __or__(self, other: Any) -> _Holder:
        return _Holder(_KeyOr, self, other)

    def __ror__(self, other: Any) -> _Holder:
        return _Holder(_KeyOr, other, self)

    def __and__(self, other: Any) -> _Holder:
        return _Holder(AND, self, other)

    def __rand__(self, other: Any) -> _Holder:
        return _Holder(AND, other, self)

    def __invert__(self) -> SingleOperandHolder:
        return SingleOperandHolder(_KeyNot, self)

    def has_permission(self, request: Request, view: Any) -> bool:
        django_request = request._request
        scopes = self.scopes or tuple(getattr(view, "required_scopes", ()))
        endpoint = _endpoint(tuple(scopes), getattr(view, "team_param", "team_id"))
        if getattr(django_request, "principal", None) is None and isinstance(
            request.auth, Principal
        ):
            django_request.principal = request.auth  # found by ApiKeyAuthentication
        outcome = decide(django_request, endpoint, view.kwargs)
        if isinstance(outcome, PreflightAnswer):
            # Not the user's handler: DRF's metadata answer (or a CORS middleware) answers.
            return type(view).options is APIView.options
        if isinstance(outcome, AuthError):
            raise ApiKeyRefused(outcome, view) from None
        if isinstance(outcome, Principal) and outcome is not request.auth:
            # A dashboard session is authenticated for no team (ApiKeyAuthentication runs
            # before the view's team is known); the view gets the principal granted for its
            # team, with that team's role and scopes.
            request.user, request.auth = ApiKeyUser(outcome), outcome
        return outcome is not None


class _Holder(OperandHolder):  # type: ignore[misc]
    """DRF's operand holder, whose own ``|`` and ``~`` are ours too."""

    def __or__(self, other: Any) -> _Holder:
        return _Holder(_KeyOr, self, other)

    def __ror__(self, other: Any) -> _Holder:
        return _Holder(_KeyOr, other, self)

    def __and__(self, other: Any) -> _Holder:
        return _Holder(AND, self, other)

    def __rand__(self, other: Any) -> _Holder:
        return _Holder(AND, other, self)

    def __invert__(self) -> SingleOperandHolder:
        return SingleOperandHolder(_KeyNot, self)


def _refused_for_scope(error: ApiKeyRefused) -> bool:
    """A valid key without the scopes or team asked for: another permission may still grant.
    (An invalid key, an outage, a rate limit: never.)"""
    return error.status_code == 403


class _KeyOr(OR):  # type: ignore[misc]
    """DRF's ``|``, looking past a key's 403 on one side to the other side."""

    def _either(self, view: Any, check: Callable[[Any], bool]) -> bool:
        saved = _headers(view)
        refusal: ApiKeyRefused | None = None
        for operand in (self.op1, self.op2):
            try:
                if check(operand):
                    if refusal is not None:
                        _restore(view, saved)  # the refusal's headers go out with no grant
                    return True
            except ApiKeyRefused as error:
                if not _refused_for_scope(error):
                    raise
                refusal = refusal or error
        if refusal is not None:
            raise refusal
        return False

    def has_permission(self, request: Request, view: Any) -> bool:
        return self._either(view, lambda operand: bool(operand.has_permission(request, view)))

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return self._either(
            view,
            lambda operand: bool(
                operand.has_permission(request, view)
                and operand.has_object_permission(request, view, obj)
            ),
        )


def _headers(view: Any) -> dict[str, str] | None:
    headers = getattr(view, "headers", None)
    return dict(headers) if isinstance(headers, dict) else None


def _restore(view: Any, saved: dict[str, str] | None) -> None:
    """Take back the headers a caught refusal added to the view's response."""
    if saved is not None:
        view.headers.clear()
        view.headers.update(saved)


class _KeyNot(NOT):  # type: ignore[misc]
    """DRF's ``~``: a key refused for its scopes or team is "not granted", so ``~`` grants."""

    def has_permission(self, request: Request, view: Any) -> bool:
        saved = _headers(view)
        try:
            return not self.op1.has_permission(request, view)
        except ApiKeyRefused as error:
            if not _refused_for_scope(error):
                raise
            _restore(view, saved)
            return True


#: What ApiKeyAuthentication checks: any valid key (the permission checks scopes and team).
_ANY_KEY = Endpoint((), None, required=False)


@functools.lru_cache(maxsize=256)
def _endpoint(scopes: tuple[str, ...], team_param: str | None) -> Endpoint:
    """One Endpoint per scope set and team parameter, built once (it keeps its bound
    requirements by team), not once per request."""
    return Endpoint(scopes, team_param, required=False)


try:  # drf-spectacular: our schemes in the OpenAPI document (registered by importing them)
    import drf_spectacular  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installed extras
    pass
else:
    from . import schema  # noqa: F401
