"""The bookings API in Django, sync views: the URLconf of the Django (WSGI) contract runs."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from skaala_auth.django import requires_scope

from .apps import CALLS, key_id


def health(request: HttpRequest) -> JsonResponse:
    CALLS.append("health")
    return JsonResponse({"principal": key_id(request.principal)})


def public(request: HttpRequest) -> JsonResponse:
    CALLS.append("public")
    return JsonResponse({"public": True})


@requires_scope("read:bookings")
def list_bookings(request: HttpRequest, team_id: str) -> JsonResponse:
    CALLS.append("list")
    return JsonResponse({"team_id": team_id, "key_id": key_id(request.principal)})


@requires_scope("write:bookings")
def create_booking(request: HttpRequest, team_id: str) -> JsonResponse:
    CALLS.append("create")
    return JsonResponse({"created": True}, status=201)


def bookings(request: HttpRequest, team_id: str) -> JsonResponse:
    view = create_booking if request.method == "POST" else list_bookings
    return view(request, team_id=team_id)


urlpatterns = [
    path("health", health),
    path("public/status", public),
    path("teams/<str:team_id>/bookings", bookings),
]
