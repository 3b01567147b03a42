"""The key-management page (:mod:`skaala_auth.dashboard`) for Django: a URLconf to include
beside ``skaala_auth.django.management_urls``.

::

    # urls.py
    from skaala_auth.django.dashboard_urls import dashboard_urls

    urlpatterns = [
        path("api/v1/", include("skaala_auth.django.management_urls")),
        path("dashboard/", include("skaala_auth.django.dashboard_urls")),  # API at /api/v1
        # or, with options:
        # path("dashboard/", include(dashboard_urls(api_prefix="/api/v1", sign_in_url="/login/"))),
    ]

The page is ``GET dashboard/`` (Django's ``APPEND_SLASH`` sends ``/dashboard`` there), for
``?team=<team id>``; its files are under ``dashboard/static/``. It holds no data: the management
API decides every call the page makes. The scopes offered for a new key are those of the
management API's :class:`~skaala_auth.KeyManager` unless ``scopes`` is given.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from ..dashboard import Dashboard, DashboardResponse
from ..scopes import ScopeRegistry

__all__ = ["dashboard_urls", "urlpatterns"]

app_name = "skaala_auth_dashboard"


def dashboard_urls(
    *,
    api_prefix: str = "/api/v1",
    scopes: ScopeRegistry | Mapping[str, str] | None = None,
    sign_in_url: str | None = None,
    notice: str | None = None,
) -> list[URLPattern]:
    """The page's URL patterns, for ``include()``.

    Args:
        api_prefix: where ``skaala_auth.django.management_urls`` is included, as a path.
        scopes: the scopes offered for a new key (default: the management API's manager's).
        sign_in_url: where the page sends a visitor who is not signed in.
        notice: a line shown in a banner at the top of the page.

    .. versionadded:: 0.1.0
    """
    lock = threading.Lock()
    built: list[Dashboard] = []

    def dashboard() -> Dashboard:
        # Built on first use: the manager (and its scopes) comes from the settings.
        with lock:
            if not built:
                offered = scopes
                if offered is None:
                    from .management_urls import get_manager

                    offered = get_manager().scopes
                built.append(
                    Dashboard(
                        api_prefix=api_prefix,
                        scopes=offered,
                        sign_in_url=sign_in_url,
                        notice=notice,
                    )
                )
            return built[0]

    def page(request: HttpRequest) -> HttpResponse:
        return _response(dashboard().page(request.method or "GET", request.path))

    def asset(request: HttpRequest, name: str) -> HttpResponse:
        return _response(dashboard().asset(request.method or "GET", name))

    return [
        path("", _named(page, "skaala_auth_dashboard"), name="page"),
        path("static/<str:name>", _named(asset, "skaala_auth_dashboard_file"), name="file"),
    ]


def _named(view: Callable[..., HttpResponse], name: str) -> Callable[..., HttpResponse]:
    view.__name__ = name
    return view


def _response(answer: DashboardResponse) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, headers=dict(answer.headers))


urlpatterns: list[URLPattern] = dashboard_urls()
