"""Per-endpoint checks: :func:`requires_scope` for function views, :class:`ScopeRequiredMixin`
for class-based views. Both work with and without the middleware, for sync and async views.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest

from ..errors import AuthError
from .middleware import check, check_async, error_response, is_preflight

__all__ = ["ScopeRequiredMixin", "requires_scope"]

F = TypeVar("F", bound=Callable[..., Any])


def requires_scope(*scopes: str, team_param: str = "team_id") -> Callable[[F], F]:
    """Require a valid key with every one of ``scopes`` (AND) for a function view.

    The team is the view's ``team_param`` URL keyword argument, when the route has one: it must
    be the key's team. A CORS preflight is let through. On success ``request.principal`` is the
    principal.

    .. versionadded:: 0.1.0
    """

    def decorate(view: F) -> F:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if not is_preflight(request):
                    try:
                        await check_async(request, scopes, kwargs.get(team_param))
                    except AuthError as error:
                        return error_response(error)
                return await view(request, *args, **kwargs)

            return cast(F, async_view)

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not is_preflight(request):
                try:
                    check(request, scopes, kwargs.get(team_param))
                except AuthError as error:
                    return error_response(error)
            return view(request, *args, **kwargs)

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
    #: The URL keyword argument that carries the team id.
    team_param: str = "team_id"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        dispatch = super().dispatch  # type: ignore[misc]
        team_id = kwargs.get(self.team_param)
        if getattr(self, "view_is_async", False):

            async def checked() -> Any:
                if not is_preflight(request):
                    try:
                        await check_async(request, self.required_scopes, team_id)
                    except AuthError as error:
                        return error_response(error)
                return await dispatch(request, *args, **kwargs)

            return checked()
        if not is_preflight(request):
            try:
                check(request, self.required_scopes, team_id)
            except AuthError as error:
                return error_response(error)
        return dispatch(request, *args, **kwargs)
