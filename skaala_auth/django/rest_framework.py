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
from typing import Any

try:
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.exceptions import APIException
    from rest_framework.permissions import BasePermission
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


class HasScopes(BasePermission):  # type: ignore[misc]
    """Require a valid key with every one of the scopes (AND).

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
    """

    def __init__(self, *scopes: str) -> None:
        self.scopes = scopes

    def __call__(self) -> HasScopes:
        # DRF instantiates each entry of permission_classes; an instance stands for itself.
        return self

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
        return outcome is not None


#: What ApiKeyAuthentication checks: any valid key (the permission checks scopes and team).
_ANY_KEY = Endpoint((), None, required=False)


@functools.lru_cache(maxsize=256)
def _endpoint(scopes: tuple[str, ...], team_param: str | None) -> Endpoint:
    """One Endpoint per scope set and team parameter, built once (it keeps its bound
    requirements by team), not once per request."""
    return Endpoint(scopes, team_param, required=False)
