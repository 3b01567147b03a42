"""The management API mounted by each adapter, behind one way of calling it.

Each app mounts the API under ``/api/v1`` beside the adapter's own key middleware (which must
not get in the way), and is called through its framework's own test client.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from skaala_auth import Authenticator, KeyManager

Headers = Sequence[tuple[str, str]]

# Imported now, so that the leak check wraps these clients from the first test on (it wraps the
# clients of modules imported when a test starts); a missing framework skips its tests later.
for _client in ("starlette.testclient", "werkzeug.test", "django.test"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_client)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


#: (method, path, headers, body) -> Reply
Call = Callable[[str, str, Headers, bytes], Reply]
#: (authenticator, manager, allowed origins) -> a context giving the call function
App = Callable[[Authenticator, KeyManager, Sequence[str]], Any]


def _merged(headers: Headers) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        merged[lower] = f"{merged[lower]},{value}" if lower in merged else value
    return merged


# -- Starlette and FastAPI ----------------------------------------------------------------------


def _asgi_call(app: Any) -> Call:
    from starlette.testclient import TestClient

    client = TestClient(app, base_url="https://api.example.com")

    def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
        raw = [(name, value.encode("latin-1")) for name, value in headers]
        response = client.request(method, path, headers=raw, content=body)
        return Reply(response.status_code, dict(response.headers), response.content)

    return call


@contextmanager
def starlette(auth: Authenticator, manager: KeyManager, origins: Sequence[str]) -> Iterator[Call]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    from skaala_auth.starlette import ApiKeyMiddleware, management_routes

    app = Starlette(
        routes=management_routes(authenticator=auth, manager=manager, allowed_origins=origins),
        middleware=[Middleware(ApiKeyMiddleware, authenticator=auth, close_on_shutdown=False)],
    )
    yield _asgi_call(app)


@contextmanager
def fastapi(auth: Authenticator, manager: KeyManager, origins: Sequence[str]) -> Iterator[Call]:
    from fastapi import FastAPI

    from skaala_auth.starlette import management_routes

    app = FastAPI()
    app.router.routes.extend(
        management_routes(authenticator=auth, manager=manager, allowed_origins=origins)
    )
    yield _asgi_call(app)


# -- Flask --------------------------------------------------------------------------------------


@contextmanager
def flask(auth: Authenticator, manager: KeyManager, origins: Sequence[str]) -> Iterator[Call]:
    from flask import Flask
    from werkzeug.exceptions import HTTPException

    from skaala_auth.flask import SkaalaAuth, management_blueprint

    app = Flask("management")
    SkaalaAuth(app, authenticator=auth)
    app.register_blueprint(
        management_blueprint(authenticator=auth, manager=manager, allowed_origins=origins)
    )

    # The app's own error handlers must not reshape the API's answers.
    @app.errorhandler(HTTPException)
    def html_errors(error: HTTPException) -> tuple[str, int]:
        return f"<h1>{error.code}</h1>", error.code or 500

    client = app.test_client(use_cookies=False)  # the Cookie header is sent as given

    def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
        response = client.open(
            path,
            method=method,
            headers=list(headers),
            data=body,
            base_url="https://api.example.com",
        )
        try:
            return Reply(
                response.status_code,
                {name.lower(): value for name, value in response.headers.items()},
                response.get_data(),
            )
        finally:
            response.close()

    yield call


# -- Django (WSGI and ASGI) ---------------------------------------------------------------------


def _django_reply(response: Any) -> Reply:
    return Reply(
        response.status_code,
        {name.lower(): value for name, value in response.headers.items()},
        response.content,
    )


def _django_headers(headers: Headers) -> tuple[dict[str, str], str | None]:
    merged = _merged(headers)
    return merged, merged.pop("content-type", None)


@contextmanager
def _django(auth: Authenticator, manager: KeyManager, origins: Sequence[str]) -> Iterator[None]:
    from django.test.utils import override_settings

    from tests.django_settings import configure

    configure()
    with override_settings(
        SKAALA_AUTH={"AUTHENTICATOR": auth, "MANAGER": manager, "ALLOWED_ORIGINS": list(origins)},
        ROOT_URLCONF="tests.management.django_urls",
        # Django's CSRF check runs too: the views are exempt (the core checks the Origin).
        MIDDLEWARE=[
            "django.middleware.csrf.CsrfViewMiddleware",
            "skaala_auth.django.ApiKeyMiddleware",
        ],
        ALLOWED_HOSTS=["api.example.com", "testserver"],
    ):
        yield


@contextmanager
def django(auth: Authenticator, manager: KeyManager, origins: Sequence[str]) -> Iterator[Call]:
    with _django(auth, manager, origins):
        from django.test import Client

        client = Client(enforce_csrf_checks=True, HTTP_HOST="api.example.com")

        def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
            fields, content_type = _django_headers(headers)
            response = client.generic(
                method,
                path,
                body,
                content_type=content_type or "application/octet-stream",
                headers=fields,
                secure=True,
            )
            return _django_reply(response)

        yield call


@contextmanager
def django_asgi(auth: Authenticator, manager: KeyManager, origins: Sequence[str]) -> Iterator[Call]:
    with _django(auth, manager, origins):
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient

        client = AsyncClient(enforce_csrf_checks=True, HTTP_HOST="api.example.com")

        async def request(method: str, path: str, headers: Headers, body: bytes) -> Any:
            fields, content_type = _django_headers(headers)
            return await client.generic(
                method,
                path,
                body,
                content_type=content_type or "application/octet-stream",
                headers=fields,
                secure=True,
            )

        def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
            return _django_reply(async_to_sync(request)(method, path, headers, body))

        yield call


ADAPTERS: dict[str, App] = {
    "starlette": starlette,
    "fastapi": fastapi,
    "flask": flask,
    "django": django,
    "django-asgi": django_asgi,
}
