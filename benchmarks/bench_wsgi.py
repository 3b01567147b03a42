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
import io
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, generate_key
from skaala_auth.credentials import environ_headers

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


def interleave(
    variants: dict[str, tuple[App, Environ]], baseline: str, rounds: int, calls: int
) -> dict[str, tuple[float, float]]:
    """``{name: (median per-round ratio to baseline, median µs per call)}``."""
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    micros: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:  # warm-up: caches filled, code paths hot
        timed(*variants[name], calls)
    for _ in range(rounds):
        random.shuffle(names)
        seconds = {name: timed(*variants[name], calls) for name in names}
        for name in names:
            ratios[name].append(seconds[name] / seconds[baseline])
            micros[name].append(seconds[name] * 1e6)
    return {
        name: (statistics.median(ratios[name]), statistics.median(micros[name]))
        for name in variants
    }


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
        """Reference: the core alone in front of the bare app (the call the adapter makes,
        nothing set, no decorator)."""
        auth.check_request(
            environ_headers(environ),
            required_scopes=("read:bookings",),
            team_id="team_1",
            query_string=environ.get("QUERY_STRING"),
        )
        return bare(environ, start_response)

    path = "/teams/team_1/bookings"
    return {
        "flask bare view": (bare, environ(path, {})),
        "flask reference: the core alone (check_request before the bare app)": (
            core_only,
            environ(path, {"Authorization": f"Bearer {key}"}),
        ),
        "flask @requires_scope, cached key": (
            protected,
            environ(path, {"Authorization": f"Bearer {key}"}),
        ),
        "flask malformed key (401)": (
            protected,
            environ(path, {"Authorization": "Bearer sk_live_nope"}),
        ),
        "flask unknown key (401, negative cache)": (
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
            meta = request._request.META
            auth.check_request(
                environ_headers(meta),
                required_scopes=("read:bookings",),
                team_id=view.kwargs.get("team_id"),
                query_string=meta.get("QUERY_STRING"),
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
        "drf AllowAny": (app, environ("/open/team_1/bookings", {})),
        "drf reference: the core alone (check_request in a permission)": (
            app,
            environ("/core/team_1/bookings", {"Authorization": f"Bearer {key}"}),
        ),
        "drf HasScopes (skaala_auth), cached key": (
            app,
            environ("/ours/team_1/bookings", {"Authorization": f"Bearer {key}"}),
        ),
        "drf ApiKeyAuthentication + HasScopes, cached key": (
            app,
            environ("/user/team_1/bookings", {"Authorization": f"Bearer {key}"}),
        ),
        "drf HasAPIKey (djangorestframework-api-key)": (
            app,
            environ("/theirs/team_1/bookings", {"Authorization": f"Api-Key {their_key}"}),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    rows = []
    for variants, baseline in (
        (flask_variants(), "flask bare view"),
        (drf_variants(), "drf AllowAny"),
    ):
        for name, (app, base) in variants.items():  # each variant answers as intended
            statuses: list[str] = []

            def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
                statuses.append(status)  # noqa: B023 - called before the loop moves on

            list(app(base.copy(), start_response))
            expected = "401" if "key (401" in name else "200"
            assert statuses[0].startswith(expected), (name, statuses)
        results = interleave(variants, baseline, args.rounds, args.calls)
        rows += [(name, *results[name], baseline) for name in variants]
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls} calls\n")
    print("| variant | µs/call (median) | ratio to baseline (median of rounds) | baseline |")
    print("|---|---:|---:|---|")
    for name, ratio, micros, baseline in rows:
        print(f"| {name} | {micros:.1f} | {ratio:.3f}× | {baseline} |")


if __name__ == "__main__":
    main()
