"""Per-endpoint checks: :func:`requires_scope` for function views, :class:`ScopeRequiredMixin`
for class-based views. Both work with and without the middleware, for sync and async views.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest

from ..errors import AuthError
from ..flow import Credentials, Endpoint
from .middleware import decide, decide_async, error_response, stated

__all__ = ["ScopeRequiredMixin", "requires_scope"]

F = TypeVar("F", bound=Callable[..., Any])


def requires_scope(
    *scopes: str,
    team_param: str | None = "team_id",
    credentials: Credentials = "any",
    roles: Collection[str] | None = None,
) -> Callable[[F], F]:
    """Require a valid key with every one of ``scopes`` (AND) for a function view.

    The team is the view's ``team_param`` URL keyword argument, when the route has one: it must
    be the key's team (``team_param=None``: no team check; a URL argument whose name contains
    ``team`` but is not ``team_param`` is refused and logged, never ignored). A CORS preflight
    is answered 204 with no body; the view never runs for it. On success ``request.principal``
    is the principal.

    Args:
        scopes: the scopes the view needs (AND).
        team_param: the view argument that carries the team id (``None``: no team check).
        credentials: ``"any"`` (an API key, or else a dashboard session when the
            authenticator verifies them), ``"api_key"`` or ``"session"`` (keys refused: 403).
        roles: the caller's role in the team must be one of these (``"owner"``, ``"admin"``,
            ``"member"``); ``None``: any role.

    .. versionadded:: 0.1.0
    """
    endpoint = Endpoint.declare(scopes, team_param, credentials=credentials, roles=roles)

    def decorate(view: F) -> F:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                outcome = await decide_async(request, endpoint, kwargs)
                if isinstance(outcome, AuthError):
                    return error_response(outcome)
                return stated(await view(request, *args, **kwargs), outcome)

            async_view.csrf_exempt = True  # type: ignore[attr-defined]
            async_view.skaala_scopes = endpoint.scopes  # type: ignore[attr-defined]
            return cast(F, async_view)

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            outcome = decide(request, endpoint, kwargs)
            if isinstance(outcome, AuthError):
                return error_response(outcome)
            return stated(view(request, *args, **kwargs), outcome)

        # Django's CSRF check (which runs before the view, so before this decorator) would
        # answer a key-authenticated POST with its HTML 403, and a key is no ambient
        # credential; a session cookie is, and the core checks its Origin itself (403 JSON).
        sync_view.csrf_exempt = True  # type: ignore[attr-defined]
        # What the system check (skaala_auth.E010) compares with the registered scopes.
        sync_view.skaala_scopes = endpoint.scopes  # type: ignore[attr-defined]
        return cast(F, sync_view)

    return decorate


class ScopeRequiredMixin:
    """For class-based views: require a valid key with every one of :attr:`required_scopes`.

    ::

        class BookingList(ScopeRequiredMixin, View):
            required_scopes = ["read:bookings"]

    Put it first among the bases, as Django's own access mixins.

    .. versionadded:: 0.1.0
    """

    #: The scopes every request to the view needs (AND).
    required_scopes: Sequence[str] = ()
    #: The URL keyword argument that carries the team id (``None``: no team check).
    team_param: str | None = "team_id"
    #: ``"any"``, ``"api_key"`` or ``"session"`` (see :func:`requires_scope`).
    credentials: Credentials = "any"
    #: The roles allowed (``None``: any).
    roles: Collection[str] | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        dispatch = super().dispatch  # type: ignore[misc]
        endpoint = Endpoint.declare(
            self.required_scopes, self.team_param, credentials=self.credentials, roles=self.roles
        )
        if getattr(self, "view_is_async", False):

            async def checked() -> Any:
                outcome = await decide_async(request, endpoint, kwargs)
                if isinstance(outcome, AuthError):
                    return error_response(outcome)
                return stated(await dispatch(request, *args, **kwargs), outcome)

            return checked()
        outcome = decide(request, endpoint, kwargs)
        if isinstance(outcome, AuthError):
            return error_response(outcome)
        return stated(dispatch(request, *args, **kwargs), outcome)

    # as_view() copies dispatch's attributes onto the view: exempt from Django's CSRF check, as
    # requires_scope is (only a valid key reaches the view).
    dispatch.csrf_exempt = True  # type: ignore[attr-defined]
