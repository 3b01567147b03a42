"""Django REST framework on the ORM key store: is the cached path what it is on the other
stores? Each WSGI app is called in process, variants interleaved in rounds (see bench_wsgi.py).

    .venv/bin/python benchmarks/bench_django_orm.py [--rounds 40] [--calls 400]

Variants, in one Django project (a SQLite file, so that the authenticator's worker threads see
the tables): ``AllowAny``; ``HasScopes`` with the ORM store (``SKAALA_AUTH = {}``, the default)
and a cached key; the same with ``ApiKeyAuthentication``; ``HasScopes`` on a memory store (the
figure docs/performance.md gives, same process) — through ``SKAALA_AUTH["AUTHENTICATOR"]``,
switched per variant; djangorestframework-api-key's ``HasAPIKey`` (one ORM query per request).
The ORM store is asked nothing on the cached path: the script counts its queries to prove it.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_wsgi import App, Environ, environ, interleave, timed

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore

OPEN = "drf AllowAny"
ORM = "drf HasScopes, ORM store, cached key"
ORM_USER = "drf ApiKeyAuthentication + HasScopes, ORM store, cached key"
MEMORY = "drf HasScopes, memory store, cached key"
THEIRS = "drf HasAPIKey (djangorestframework-api-key)"


class Switched:
    """A WSGI app that sets ``SKAALA_AUTH`` to its own authenticator before each call (the
    setting is read per request: ``get_authenticator`` caches by the dict it sees)."""

    def __init__(self, app: App, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    def __call__(self, environ: Environ, start_response: Any) -> Any:
        from skaala_auth.django import conf

        conf._built["authenticator"] = self.authenticator
        return self.app(environ, start_response)


def variants() -> dict[str, tuple[App, Environ]]:
    import django
    from django.conf import settings

    directory = tempfile.mkdtemp(prefix="bench-django-orm-")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",  # noqa: S106 - a benchmark, no secrets
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(Path(directory) / "db.sqlite3"),
            }
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "rest_framework_api_key",
            "skaala_auth.django",
        ],
        MIDDLEWARE=[],
        ROOT_URLCONF=__name__,
        REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": [], "UNAUTHENTICATED_USER": None},
        SKAALA_AUTH={},
    )
    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.urls import path
    from rest_framework.permissions import AllowAny
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView
    from rest_framework_api_key.models import APIKey
    from rest_framework_api_key.permissions import HasAPIKey

    from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes
    from skaala_auth.django.store import DjangoKeyStore

    call_command("migrate", verbosity=0, stdout=io.StringIO())
    _, their_key = APIKey.objects.create_key(name="bench")

    def made(store: Any) -> tuple[Authenticator, str]:
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        return Authenticator(store), key

    orm_auth, orm_key = made(DjangoKeyStore())
    memory_auth, memory_key = made(MemoryKeyStore())

    class Open(APIView):
        permission_classes = [AllowAny]

        def get(self, request: Request, team_id: str) -> Response:
            return Response({"team_id": team_id})

    class Ours(Open):
        permission_classes = [HasScopes("read:bookings")]

    class OursWithUser(Ours):
        authentication_classes = [ApiKeyAuthentication]

    class Theirs(Open):
        permission_classes = [HasAPIKey]

    globals()["urlpatterns"] = [
        path("open/<str:team_id>/bookings", Open.as_view()),
        path("ours/<str:team_id>/bookings", Ours.as_view()),
        path("user/<str:team_id>/bookings", OursWithUser.as_view()),
        path("theirs/<str:team_id>/bookings", Theirs.as_view()),
    ]
    app = get_wsgi_application()
    orm, memory = Switched(app, orm_auth), Switched(app, memory_auth)

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    return {
        OPEN: (orm, environ("/open/team_1/bookings", {})),
        ORM: (orm, environ("/ours/team_1/bookings", bearer(orm_key))),
        ORM_USER: (orm, environ("/user/team_1/bookings", bearer(orm_key))),
        MEMORY: (memory, environ("/ours/team_1/bookings", bearer(memory_key))),
        THEIRS: (
            orm,
            environ("/theirs/team_1/bookings", {"Authorization": f"Api-Key {their_key}"}),
        ),
    }


def queries_on_the_cached_path(app: App, base: Environ, calls: int) -> int:
    """Queries the ORM store makes in ``calls`` requests with a cached key (counted on its
    tables, in every thread: the authenticator's workers have their own connections)."""
    from django.db.backends.signals import connection_created  # noqa: F401
    from django.db.backends.utils import CursorWrapper

    counted = 0
    execute = CursorWrapper.execute

    def counting(self: Any, sql: str, params: Any = None) -> Any:
        nonlocal counted
        if "skaala_auth_" in sql:
            counted += 1
        return execute(self, sql, params)

    CursorWrapper.execute = counting  # type: ignore[method-assign]
    try:
        timed(app, base, calls)
    finally:
        CursorWrapper.execute = execute  # type: ignore[method-assign]
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    found_variants = variants()
    app, base = found_variants[ORM]
    timed(app, base, 1)  # the key's look-up: now cached
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls} calls\n")
    print(
        "ORM store queries in 1000 cached requests "
        f"(polls every 0.5 s included): {queries_on_the_cached_path(app, base, 1000)}\n"
    )
    found = interleave(found_variants, args.rounds, args.calls)
    print("| variant | µs/call (median) | ÷ AllowAny (median of rounds, quartiles) |")
    print("|---|---:|---:|")
    for name in found.values:
        ratio = found.ratio(name, OPEN)
        print(f"| {name} | {found.median(name) * 1e6:.1f} | {ratio.text(3)} ({ratio.spread(3)}) |")
    print(
        f"\nORM store ÷ memory store (time per call): {found.ratio(ORM, MEMORY).text(3)} "
        f"({found.ratio(ORM, MEMORY).spread(3)})"
    )
    print(
        f"HasScopes (ORM) throughput ÷ HasAPIKey throughput: {found.ratio(THEIRS, ORM).text()} "
        f"({found.ratio(THEIRS, ORM).spread()})"
    )


if __name__ == "__main__":
    main()
