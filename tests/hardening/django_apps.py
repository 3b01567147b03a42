"""The hardening apps in Django (function views with ``@requires_scope``, ``ScopeRequiredMixin``
class-based views, undecorated views behind the ``SKAALA_AUTH`` rules) and in Django REST
framework. Each URLconf is a module object built here, for ``ROOT_URLCONF``.

Django must be configured (``tests.django_settings.configure``) before this module is imported:
the hardening ``conftest.py`` does it.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.views import View
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response
from rest_framework.views import APIView

from skaala_auth.django import ScopeRequiredMixin, requires_scope
from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

from .asgi_apps import DECLARED, OTHER_METHODS
from .world import record

BOOKINGS_ROUTE = "api/v1/teams/<str:team_id>/bookings"
STAFF_ROUTE = "api/v1/teams/<str:team_id>/staff"

#: The mixin has one ``required_scopes`` per view: the bookings view needs both scopes.
MIXIN_DECLARED: dict[str, tuple[str, ...] | None] = {
    "list": ("read:bookings", "write:bookings"),
    "create": ("read:bookings", "write:bookings"),
    "other": ("read:bookings", "write:bookings"),
    "staff": ("read:staff",),
    "health": None,
    "internal": None,
}


def _response(name: str, team: object) -> JsonResponse:
    response = JsonResponse({"handler": name, "team": team, "data": ["secret"]})
    response["X-Total-Count"] = "1"
    return response


_BOOKINGS_METHODS = {"GET": "list", "HEAD": "list", "POST": "create"} | {
    method: "other" for method in OTHER_METHODS
}
_STAFF_METHODS = {"GET": "staff", "HEAD": "staff"}


def _module(name: str, urlpatterns: list[Any]) -> types.ModuleType:
    module = types.ModuleType(f"tests.hardening.urls_{name}")
    module.urlpatterns = urlpatterns  # type: ignore[attr-defined]
    return module


def function_views(*, decorate: bool, is_async: bool) -> types.ModuleType:
    """Function views; with ``decorate``, each protected one wears ``@requires_scope``. One
    undecorated dispatcher per URL picks the view by method, as the contract's Django app."""

    def make(name: str) -> Callable[..., Any]:
        if is_async:

            async def async_view(request: HttpRequest, team_id: str | None = None) -> Any:
                record(name, request.method or "", team_id, getattr(request, "principal", None))
                return _response(name, team_id)

            view: Callable[..., Any] = async_view
        else:

            def sync_view(request: HttpRequest, team_id: str | None = None) -> Any:
                record(name, request.method or "", team_id, getattr(request, "principal", None))
                return _response(name, team_id)

            view = sync_view
        scopes = DECLARED[name]
        if decorate and scopes is not None:
            view = requires_scope(*scopes)(view)
        return view

    views = {name: make(name) for name in DECLARED}

    def dispatcher(methods: dict[str, str]) -> Callable[..., Any]:
        if is_async:

            async def async_dispatch(request: HttpRequest, **kwargs: Any) -> Any:
                name = methods.get(request.method or "")
                if name is None:
                    return HttpResponseNotAllowed(sorted(methods))
                return await views[name](request, **kwargs)

            return async_dispatch

        def dispatch(request: HttpRequest, **kwargs: Any) -> Any:
            name = methods.get(request.method or "")
            if name is None:
                return HttpResponseNotAllowed(sorted(methods))
            return views[name](request, **kwargs)

        return dispatch

    flavour = f"{'decorated' if decorate else 'plain'}_{'async' if is_async else 'sync'}"
    return _module(
        flavour,
        [
            path(BOOKINGS_ROUTE, dispatcher(_BOOKINGS_METHODS)),
            path(STAFF_ROUTE, dispatcher(_STAFF_METHODS)),
            path("health", dispatcher({"GET": "health", "HEAD": "health"})),
            path("internal/report", dispatcher({"GET": "internal", "POST": "internal"})),
        ],
    )


def _recording(name: str) -> Callable[..., HttpResponse]:
    def method(self: View, request: HttpRequest, team_id: str | None = None) -> HttpResponse:
        record(name, request.method or "", team_id, getattr(request, "principal", None))
        return _response(name, team_id)

    return method


class MixinBookings(ScopeRequiredMixin, View):
    required_scopes = ("read:bookings", "write:bookings")
    get = _recording("list")
    post = _recording("create")
    put = delete = patch = options = _recording("other")


class MixinStaff(ScopeRequiredMixin, View):
    required_scopes = ("read:staff",)
    get = _recording("staff")


class PlainHealth(View):
    get = _recording("health")


class PlainInternal(View):
    get = post = _recording("internal")


def mixin_views() -> types.ModuleType:
    return _module(
        "mixin",
        [
            path(BOOKINGS_ROUTE, MixinBookings.as_view()),
            path(STAFF_ROUTE, MixinStaff.as_view()),
            path("health", PlainHealth.as_view()),
            path("internal/report", PlainInternal.as_view()),
        ],
    )


# -- Django REST framework ------------------------------------------------------------------------


def _drf_recording(name: str) -> Callable[..., Response]:
    def method(self: APIView, request: DrfRequest, team_id: str | None = None) -> Response:
        record(name, request.method or "", team_id, request.auth)
        return Response(
            {"handler": name, "team": team_id, "data": ["secret"]},
            headers={"X-Total-Count": "1"},
        )

    return method


class DrfBookings(APIView):
    authentication_classes = [ApiKeyAuthentication]

    def get_permissions(self) -> list[BasePermission]:
        method = self.request.method
        if method in ("GET", "HEAD"):
            return [HasScopes("read:bookings")]
        if method == "POST":
            return [HasScopes("write:bookings")]
        return [HasScopes("read:bookings", "write:bookings")]

    get = _drf_recording("list")
    post = _drf_recording("create")
    put = delete = patch = options = _drf_recording("other")


class DrfStaff(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes("read:staff")]
    get = _drf_recording("staff")


class DrfHealth(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]
    get = _drf_recording("health")


class DrfInternal(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]
    get = post = _drf_recording("internal")


def drf_views() -> types.ModuleType:
    return _module(
        "drf",
        [
            path(BOOKINGS_ROUTE, DrfBookings.as_view()),
            path(STAFF_ROUTE, DrfStaff.as_view()),
            path("health", DrfHealth.as_view()),
            path("internal/report", DrfInternal.as_view()),
        ],
    )
