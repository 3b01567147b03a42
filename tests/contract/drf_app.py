"""The bookings API in Django REST framework, without the skaala_auth middleware."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

from .apps import CALLS, key_id


class Health(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        CALLS.append("health")
        return Response({"principal": key_id(request.auth)})


class Public(APIView):
    authentication_classes: list[type] = []  # DRF's "public": no authentication at all
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        CALLS.append("public")
        return Response({"public": True})


class Bookings(APIView):
    authentication_classes = [ApiKeyAuthentication]

    def get_permissions(self) -> list[BasePermission]:
        scope = "write:bookings" if self.request.method == "POST" else "read:bookings"
        return [HasScopes(scope)]

    def get(self, request: Request, team_id: str) -> Response:
        CALLS.append("list")
        return Response({"team_id": team_id, "key_id": key_id(request.auth)})

    def post(self, request: Request, team_id: str) -> Response:
        CALLS.append("create")
        return Response({"created": True}, status=201)


urlpatterns: list[Any] = [
    path("health", Health.as_view()),
    path("public/status", Public.as_view()),
    path("teams/<str:team_id>/bookings", Bookings.as_view()),
]
