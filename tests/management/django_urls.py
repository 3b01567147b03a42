"""The URLconf of the Django management tests: the API included under ``/api/v1/``."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("api/v1/", include("skaala_auth.django.management_urls"))]
