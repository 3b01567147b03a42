"""WSGI figures: Flask and Django REST framework, each WSGI app called in-process.

Variants are interleaved in rounds (every variant runs once per round, in a shuffled order) and
the result is the median of the per-round ratios to the round's baseline, so drift in machine
speed cancels out.

    .venv/bin/python benchmarks/bench_wsgi.py [--rounds 40] [--calls 400]

Flask: a bare view; the same view with ``@requires_scope`` and a cached key; a malformed key; an
unknown (negatively cached) key. DRF: ``AllowAny``; the ``HasScopes`` permission alone (as
``HasAPIKey`` is used), and with ``ApiKeyAuthentication`` (``request.user``), with a cached key;
djangorestframework-api-key's ``HasAPIKey`` (one ORM query per request).
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Rounds

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, generate_key
from skaala_auth.credentials import environ_headers

FLASK_BARE = "flask bare view"
FLASK_CORE = "flask reference: the core alone (authenticate before the bare app)"
FLASK_OURS = "flask @requires_scope, cached key"
FLASK_MALFORMED = "flask malformed key (401)"
FLASK_UNKNOWN = "flask unknown key (401, negative cache)"
DRF_OPEN = "drf AllowAny"
DRF_CORE = "drf reference: the core alone (authenticate in a permission)"
DRF_OURS = "drf HasScopes (skaala_auth), cached key"
DRF_OURS_USER = "drf ApiKeyAuthentication + HasScopes, cached key"
DRF_THEIRS = "drf HasAPIKey (djangorestframework-api-key)"

Environ = dict[str, Any]
App = Callable[[Environ, Any], Iterable[bytes]]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    pass


def environ(path: str, headers: dict[str, str]) -> Environ:
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(path=path, headers=headers).get_environ()


def timed(app: App, base: Environ, calls: int) -> float:
    """Seconds per call of ``app`` on copies of ``base`` (a server hands each request a fresh
    environ)."""
    start = time.perf_counter()
    for _ in range(calls):
        body = app(base.copy(), _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - start) / calls


def interleave(variants: dict[str, tuple[App, Environ]], rounds: int, calls: int) -> Rounds:
    """Seconds per call of every variant, interleaved in rounds, after one warm-up pass."""
    check_statuses(variants)
    for app, base in variants.values():  # warm-up: caches filled, code paths hot
        timed(app, base, calls)
    measure = {
        name: functools.partial(timed, app, base, calls) for name, (app, base) in variants.items()
    }
    return Rounds().run(measure, rounds)


def check_statuses(variants: dict[str, tuple[App, Environ]]) -> None:
    """Each variant answers as intended (200, or 401 for the refusal rows)."""
    for name, (app, base) in variants.items():
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            statuses.append(status)  # noqa: B023 - called before the loop moves on

        list(app(base.copy(), start_response))
        expected = "401" if "(401" in name else "200"
        assert statuses[0].startswith(expected), (name, statuses)


def _keys() -> tuple[MemoryKeyStore, str]:
    store = MemoryKeyStore()
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return store, key


def flask_variants() -> dict[str, tuple[App, Environ]]:
    from flask import Flask

    from skaala_auth.flask import SkaalaAuth, requires_scope

    store, key = _keys()
    auth = Authenticator(store)

    bare = Flask("bare")
    protected = Flask("protected")
    SkaalaAuth(protected, authenticator=auth)

    @bare.get("/teams/<team_id>/bookings")
    def bare_view(team_id: str) -> dict[str, str]:
        return {"team_id": team_id}

    @protected.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def protected_view(team_id: str) -> dict[str, str]:
        return {"team_id": team_id}

    def core_only(environ: Environ, start_response: Any) -> Iterable[bytes]:
        """Reference: the core alone in front of the bare app (a key checked for the view's
        scope and team, nothing set, no decorator)."""
        auth.authenticate(
            environ_headers(environ), required_scopes=("read:bookings",), team_id="team_1"
        )
        return bare(environ, start_response)

    path = "/teams/team_1/bookings"
    return {
        FLASK_BARE: (bare, environ(path, {})),
        FLASK_CORE: (
            core_only,
            environ(path, {"Authorization": f"Bearer {key}"}),
        ),
        FLASK_OURS: (
            protected,
            environ(path, {"Authorization": f"Bearer {key}"}),
        ),
        FLASK_MALFORMED: (
            protected,
            environ(path, {"Authorization": "Bearer sk_live_nope"}),
        ),
        FLASK_UNKNOWN: (
            protected,
            environ(path, {"Authorization": f"Bearer {generate_key()}"}),
        ),
    }


def drf_variants() -> dict[str, tuple[App, Environ]]:
    import django
    from django.conf import settings

    store, key = _keys()
    auth = Authenticator(store)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",  # noqa: S106 - a benchmark, no secrets
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "rest_framework_api_key",
        ],
        MIDDLEWARE=[],
        ROOT_URLCONF=__name__,
        REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": [], "UNAUTHENTICATED_USER": None},
        SKAALA_AUTH={"AUTHENTICATOR": auth},
    )
    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.urls import path
    from rest_framework.permissions import AllowAny, BasePermission
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView
    from rest_framework_api_key.models import APIKey
    from rest_framework_api_key.permissions import HasAPIKey

    from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

    call_command("migrate", verbosity=0, stdout=io.StringIO())
    _, their_key = APIKey.objects.create_key(name="bench")

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

    class CoreOnly(BasePermission):  # type: ignore[misc]
        """Reference: the core alone (the call the adapter makes, nothing set)."""

        def has_permission(self, request: Request, view: Any) -> bool:
            auth.authenticate(
                environ_headers(request._request.META),
                required_scopes=("read:bookings",),
                team_id=view.kwargs.get("team_id"),
            )
            return True

    class Core(Open):
        permission_classes = [CoreOnly]

    globals()["urlpatterns"] = [
        path("open/<str:team_id>/bookings", Open.as_view()),
        path("ours/<str:team_id>/bookings", Ours.as_view()),
        path("theirs/<str:team_id>/bookings", Theirs.as_view()),
        path("user/<str:team_id>/bookings", OursWithUser.as_view()),
        path("core/<str:team_id>/bookings", Core.as_view()),
    ]
    app = get_wsgi_application()
    return {
        DRF_OPEN: (app, environ("/open/team_1/bookings", {})),
        DRF_CORE: (
            app,
            environ("/core/team_1/bookings", {"Authorization": f"Bearer {key}"}),
        ),
        DRF_OURS: (
            app,
            environ("/ours/team_1/bookings", {"Authorization": f"Bearer {key}"}),
        ),
        DRF_OURS_USER: (
            app,
            environ("/user/team_1/bookings", {"Authorization": f"Bearer {key}"}),
        ),
        DRF_THEIRS: (
            app,
            environ("/theirs/team_1/bookings", {"Authorization": f"Api-Key {their_key}"}),
        ),
    }


def measure_flask(rounds: int = 40, calls: int = 400) -> Rounds:
    return interleave(flask_variants(), rounds, calls)


def measure_drf(rounds: int = 40, calls: int = 400) -> Rounds:
    """DRF and djangorestframework-api-key (configures Django: once per process)."""
    return interleave(drf_variants(), rounds, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls} calls\n")
    print("| variant | µs/call (median) | ratio to baseline (median of rounds) | baseline |")
    print("|---|---:|---:|---|")
    for found, baseline in (
        (measure_flask(args.rounds, args.calls), FLASK_BARE),
        (measure_drf(args.rounds, args.calls), DRF_OPEN),
    ):
        for name in found.values:
            ratio = found.ratio(name, baseline).text(3)
            print(f"| {name} | {found.median(name) * 1e6:.1f} | {ratio} | {baseline} |")
    theirs = found.ratio(DRF_THEIRS, DRF_OURS).text()
    print(f"\nDRF: HasScopes throughput ÷ HasAPIKey throughput: {theirs}")


if __name__ == "__main__":
    main()
