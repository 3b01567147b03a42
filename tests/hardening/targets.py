"""Every adapter × protection style, served as a real server would call it: a driver (ASGI scope
or WSGI environ, built by hand) and what each handler requires in that style."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from skaala_auth import Authenticator
from skaala_auth.rules import Rule, Rules

from .world import (
    PROTECT,
    PUBLIC,
    TABLE,
    AsgiDriver,
    Reply,
    Request,
    Requirements,
    World,
    WsgiDriver,
    decorator_requirements,
    rules_requirements,
)

Driver = Callable[[Request], Reply]


@dataclass
class Served:
    driver: Driver
    need: Requirements
    authenticator: Authenticator


def rules(*, deny: bool = False) -> Rules:
    """The table of docs/wsgi.md and docs/starlette.md for these routes, with ``protect=["/api/"]``;
    ``deny``: ``Rules(..., default="deny")`` (issue 8, finding 3)."""
    rows = [Rule(pattern, scopes=list(s), methods=list(m)) for pattern, s, m in TABLE]
    options: dict[str, Any] = {"public": list(PUBLIC), "protect": list(PROTECT)}
    if deny:
        options["default"] = "deny"
    return Rules(rows, **options)


def _need(style: str) -> Requirements:
    from .asgi_apps import DECLARED, UNION_DECLARED
    from .django_apps import MIXIN_DECLARED

    if style == "rules":
        return rules_requirements(deny=False)
    if style == "rules-deny":
        return rules_requirements(deny=True)
    if style == "security-union":
        return decorator_requirements(UNION_DECLARED)
    if style == "mixin":
        return decorator_requirements(MIXIN_DECLARED)
    return decorator_requirements(DECLARED)


def _table(style: str) -> Rules | None:
    if style == "rules":
        return rules()
    if style == "rules-deny":
        return rules(deny=True)
    return None


@contextmanager
def _asgi(app: Any) -> Iterator[Driver]:
    driver = AsgiDriver(app)
    try:
        yield driver
    finally:
        driver.close()


@contextmanager
def serve_starlette(world: World, style: str) -> Iterator[Served]:
    from .asgi_apps import starlette_app

    auth = world.authenticator()
    with _asgi(starlette_app(auth, rules=_table(style))) as driver:
        yield Served(driver, _need(style), auth)
    auth.close()


@contextmanager
def serve_fastapi(world: World, style: str) -> Iterator[Served]:
    from .asgi_apps import fastapi_app

    auth = world.authenticator()
    table = _table(style)
    app = fastapi_app(auth, style="rules" if table is not None else style, rules=table)
    with _asgi(app) as driver:
        yield Served(driver, _need(style), auth)
    auth.close()


@contextmanager
def serve_flask(world: World, style: str) -> Iterator[Served]:
    from .wsgi_apps import flask_app

    auth = world.authenticator()
    yield Served(WsgiDriver(flask_app(auth, rules=_table(style))), _need(style), auth)
    auth.close()


@contextmanager
def serve_wsgi(world: World, style: str) -> Iterator[Served]:
    from .wsgi_apps import plain_wsgi_app

    auth = world.authenticator()
    table = _table(style)
    assert table is not None
    yield Served(WsgiDriver(plain_wsgi_app(auth, rules=table)), _need(style), auth)
    auth.close()


@contextmanager
def django_settings(auth: Authenticator, style: str, urlconf: Any, **extra: Any) -> Iterator[None]:
    from django.test.utils import override_settings

    options: dict[str, Any] = {"AUTHENTICATOR": auth}
    if style in ("rules", "rules-deny"):
        if style == "rules":  # the rows as settings, as a Django project writes them
            options["RULES"] = [(pattern, list(s), list(m)) for pattern, s, m in TABLE]
            options["PUBLIC"] = list(PUBLIC)
            options["PROTECT"] = list(PROTECT)
        else:
            options["RULES"] = rules(deny=True)
    middleware = [] if style == "drf" else ["skaala_auth.django.ApiKeyMiddleware"]
    settings: dict[str, Any] = {
        "ROOT_URLCONF": urlconf,
        "MIDDLEWARE": middleware,
        "SKAALA_AUTH": options,
        "ALLOWED_HOSTS": ["*"],
        **extra,
    }
    with override_settings(**settings):
        yield


def _django_urlconf(style: str, *, is_async: bool) -> Any:
    from . import django_apps

    if style == "decorator":
        return django_apps.function_views(decorate=True, is_async=is_async)
    if style in ("rules", "rules-deny"):
        return django_apps.function_views(decorate=False, is_async=is_async)
    if style == "mixin":
        return django_apps.mixin_views()
    if style == "drf":
        return django_apps.drf_views()
    raise ValueError(style)


@contextmanager
def serve_django(world: World, style: str) -> Iterator[Served]:
    from django.core.handlers.wsgi import WSGIHandler

    auth = world.authenticator()
    with django_settings(auth, style, _django_urlconf(style, is_async=False)):
        yield Served(WsgiDriver(WSGIHandler()), _need(style), auth)
    auth.close()


@contextmanager
def serve_django_asgi(world: World, style: str) -> Iterator[Served]:
    from django.core.handlers.asgi import ASGIHandler

    auth = world.authenticator()
    with django_settings(auth, style, _django_urlconf(style, is_async=True)):
        with _asgi(ASGIHandler()) as driver:
            yield Served(driver, _need(style), auth)
    auth.close()


@contextmanager
def serve_drf(world: World, style: str) -> Iterator[Served]:
    from django.core.handlers.wsgi import WSGIHandler

    auth = world.authenticator()
    with django_settings(auth, "drf", _django_urlconf("drf", is_async=False)):
        yield Served(WsgiDriver(WSGIHandler()), _need(style), auth)
    auth.close()


_SERVERS = {
    "starlette": serve_starlette,
    "fastapi": serve_fastapi,
    "flask": serve_flask,
    "wsgi": serve_wsgi,
    "django": serve_django,
    "django-asgi": serve_django_asgi,
    "drf": serve_drf,
}

#: adapter/style, every one the suite drives.
TARGETS = [
    "starlette/decorator",
    "starlette/rules",
    "starlette/rules-deny",
    "fastapi/depends",
    "fastapi/security",
    "fastapi/security-union",
    "fastapi/rules",
    "flask/decorator",
    "flask/rules",
    "flask/rules-deny",
    "wsgi/rules",
    "wsgi/rules-deny",
    "django/decorator",
    "django/mixin",
    "django/rules",
    "django/rules-deny",
    "django-asgi/decorator",
    "django-asgi/rules",
    "django-asgi/rules-deny",
    "drf/has-scopes",
]


@contextmanager
def serve(world: World, target: str) -> Iterator[Served]:
    adapter, _, style = target.partition("/")
    with _SERVERS[adapter](world, style) as served:
        yield served
