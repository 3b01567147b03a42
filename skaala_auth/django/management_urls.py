"""The key-management API (:mod:`skaala_auth.management`) for Django: a URLconf to include.

::

    # urls.py
    urlpatterns = [
        path("api/v1/", include("skaala_auth.django.management_urls")),
        ...
    ]

    # settings.py
    SKAALA_AUTH = {
        "DB": BASE_DIR / "keys.db",
        "ALLOWED_ORIGINS": ["https://dashboard.example.com"],   # CSRF: see below
        # "MANAGER": "myproject.auth.manager",  # a KeyManager (or a callable returning one);
        #                                       # default: one on the authenticator's store
    }

Every request is decided by the core first, with the authenticator of ``SKAALA_AUTH``: a
dashboard session of an owner or admin of the team in the path (an API key gets 403 whatever
its scopes); a cookie-carried ``POST``, ``PATCH`` or ``DELETE`` needs an ``Origin`` (or
``Referer``) in ``ALLOWED_ORIGINS``. That check is the CSRF protection of these views, which
are therefore exempt from Django's ``CsrfViewMiddleware`` (whose token the dashboard does not
send). They work with and without ``skaala_auth.django.ApiKeyMiddleware``, under WSGI and ASGI
(sync views: Django runs them in a worker thread under ASGI).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.module_loading import import_string

from ..config import ConfigurationError, parse_setting
from ..errors import AuthError, MissingKeyError
from ..flow import Endpoint
from ..management import MAX_BODY, RESOURCES, ManagementApi, Resource, management_endpoint
from ..manager import KeyManager
from ..models import Principal
from .conf import _options, get_authenticator
from .middleware import error_response, facts_of

__all__ = ["get_manager", "urlpatterns"]

app_name = "skaala_auth_management"

_lock = threading.Lock()
_built: dict[str, Any] = {}


def get_manager() -> KeyManager:
    """The :class:`~skaala_auth.KeyManager` the management API uses: ``SKAALA_AUTH["MANAGER"]``
    (a manager, a dotted path to one, or a callable returning one), else a manager on the
    authenticator's store with the ``PEPPER`` and ``HASH_ALGORITHM`` of the setting.

    .. versionadded:: 0.1.0
    """
    with _lock:
        manager = _built.get("manager")
        if manager is None:
            manager = _built["manager"] = _manager(_options())
        return manager


def _manager(options: Mapping[str, Any]) -> KeyManager:
    custom = options.get("MANAGER")
    if custom is None:
        try:
            keywords = {
                keyword: parse_setting(name, options[name])
                for name, keyword in (("PEPPER", "pepper"), ("HASH_ALGORITHM", "hash_algorithm"))
                if name in options
            }
        except ConfigurationError as error:
            raise ImproperlyConfigured(f"SKAALA_AUTH: {error}") from error
        return KeyManager(get_authenticator().store, **keywords)
    if isinstance(custom, str):
        custom = import_string(custom)
    if not isinstance(custom, KeyManager) and callable(custom):
        custom = custom()
    if not isinstance(custom, KeyManager):
        raise ImproperlyConfigured(
            "SKAALA_AUTH['MANAGER'] must name a KeyManager or a callable returning one"
        )
    return custom


def _api() -> tuple[ManagementApi, Endpoint]:
    with _lock:
        built = _built.get("api")
    if built is None:
        manager = get_manager()
        # The authenticator built from the setting has these origins already; one named by
        # AUTHENTICATOR does not: the endpoint adds them either way.
        try:
            origins = parse_setting("ALLOWED_ORIGINS", _options().get("ALLOWED_ORIGINS", ()))
            built = (ManagementApi(manager), management_endpoint(origins))
        except ConfigurationError as error:
            raise ImproperlyConfigured(f"SKAALA_AUTH: {error}") from error
        with _lock:
            _built["api"] = built
    return built


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "SKAALA_AUTH":
        with _lock:
            _built.clear()


setting_changed.connect(_reset)


def _view(resource: Resource) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, **params: str) -> HttpResponse:
        api, endpoint = _api()
        outcome = get_authenticator().decide(facts_of(request, params), endpoint)
        if not isinstance(outcome, Principal):
            return error_response(outcome if isinstance(outcome, AuthError) else MissingKeyError())
        body = b""
        while len(body) <= MAX_BODY:  # at most one byte past the limit is read
            chunk = request.read(MAX_BODY + 1 - len(body))
            if not chunk:
                break
            body += chunk
        response = api.handle(
            resource,
            method=request.method or "GET",
            principal=outcome,
            path_params=params,
            body=body,
            content_type=request.META.get("CONTENT_TYPE"),
        )
        answer = HttpResponse(response.body, status=response.status, headers=dict(response.headers))
        if response.status == 204:
            del answer["Content-Type"]  # Django's default, for a response with no body
        return answer

    view.__name__ = f"skaala_auth_{resource.name}"
    # The core checks the Origin of every cookie-carried change (see the module docstring):
    # Django's CSRF check would answer the dashboard's requests with its HTML 403.
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


urlpatterns: list[URLPattern] = [
    path(resource.path_as("django").lstrip("/"), _view(resource), name=resource.name)
    for resource in RESOURCES
]
