"""The URLconf of the Django dashboard tests: the page under ``/dashboard/``, and the same page
with options under ``/custom/``."""

from __future__ import annotations

from django.urls import include, path

from skaala_auth.django.dashboard_urls import dashboard_urls

urlpatterns = [
    path("dashboard/", include("skaala_auth.django.dashboard_urls")),
    path("custom/", include(dashboard_urls(api_prefix="/manage", notice="Staging"))),
]
