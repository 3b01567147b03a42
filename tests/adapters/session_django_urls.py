"""The Django routes of tests/adapters/test_session_endpoints.py."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views import View

from skaala_auth.django import ScopeRequiredMixin, requires_scope


class Settings(ScopeRequiredMixin, View):
    credentials = "session"
    roles = ["owner", "admin"]

    def get(self, request: HttpRequest, team_id: str) -> JsonResponse:
        return JsonResponse({"user": request.principal.user_id})  # type: ignore[attr-defined]

    def post(self, request: HttpRequest, team_id: str) -> JsonResponse:
        return self.get(request, team_id)


@requires_scope("read:bookings", roles=["owner"])
def bookings(request: HttpRequest, team_id: str) -> JsonResponse:
    return JsonResponse({"user": request.principal.user_id})  # type: ignore[attr-defined]


urlpatterns: list[Any] = [
    path("teams/<str:team_id>/settings", Settings.as_view()),
    path("teams/<str:team_id>/bookings", bookings),
]
