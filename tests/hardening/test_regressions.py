"""One regression test (or one parametrized family) per numbered finding of issue 8, with the
requests shaped as uvicorn and gunicorn shape them (see :mod:`tests.hardening.world`).

Each test names the finding it pins: ``finding N`` in its docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from skaala_auth import Authenticator

from .targets import Served, serve
from .world import (
    RUNS,
    AsgiDriver,
    Credentials,
    Reply,
    Request,
    World,
    WsgiDriver,
    build_world,
)

BOOKINGS_1 = "/api/v1/teams/team_1/bookings"
PROTECTED = {"list", "create", "other", "staff"}


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


def send(
    served: Served | AsgiDriver | WsgiDriver,
    method: str,
    target: str,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    preflight: bool = False,
) -> tuple[Reply, set[str]]:
    """One request; the reply and the names of the handlers that ran."""
    extra = (
        (("Origin", "https://app.example"), ("Access-Control-Request-Method", "PUT"))
        if preflight
        else ()
    )
    request = Request(method, target, Credentials("-", tuple(headers), None), preflight, extra)
    RUNS.clear()
    driver = served.driver if isinstance(served, Served) else served
    reply = driver(request)
    ran = {run.handler for run in RUNS}
    RUNS.clear()
    return reply, ran


def key(world: World, label: str) -> list[tuple[str, str]]:
    return [("X-API-Key", world.keys[label].key)]


def bearer(world: World, label: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {world.keys[label].key}")]


RULES_TARGETS = [
    "starlette/rules",
    "fastapi/rules",
    "flask/rules",
    "wsgi/rules",
    "django/rules",
    "django-asgi/rules",
]


# -- finding 1: router normalisation --------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["//", "///"])
def test_if_flask_gets_doubled_leading_slashes_under_protect_then_the_handler_never_runs(
    world: World, prefix: str
) -> None:
    """finding 1: werkzeug's router strips the leading slashes; the rules matched the raw path
    (``//api/…`` is not under ``protect=["/api/"]``) and let the request in with no key."""
    with serve(world, "flask/rules") as served:
        reply, ran = send(served, "GET", prefix + BOOKINGS_1.lstrip("/"))
    assert not ran & PROTECTED
    assert reply.status != 200
    assert b"secret" not in reply.body


@pytest.mark.parametrize("target", RULES_TARGETS)
@pytest.mark.parametrize(
    "path",
    [
        "//api/v1/teams/team_1/bookings",
        "///api/v1/teams/team_1/bookings",
        "/api//v1/teams/team_1/bookings",
        "/api/v1/teams/team_1/bookings/",
        "/api/./v1/teams/team_1/bookings",
        "/api/x/../v1/teams/team_1/bookings",
        "/API/v1/teams/team_1/bookings",
        "/%61pi/v1/teams/team_1/bookings",
        "/api%2Fv1/teams/team_1/bookings",
    ],
)
def test_if_a_path_is_spelt_otherwise_then_no_key_never_reaches_the_handler(
    world: World, target: str, path: str
) -> None:
    """finding 1: whatever the router makes of the path, no key never reaches a protected
    handler (a 401, or the router's own 404/405/redirect)."""
    with serve(world, target) as served:
        reply, ran = send(served, "GET", path)
    assert not ran & PROTECTED, (reply.status, ran)
    assert reply.status in (301, 302, 307, 308, 400, 401, 403, 404, 405)


# -- finding 2: methods the rules do not list -----------------------------------------------------


@pytest.mark.parametrize("target", RULES_TARGETS)
@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH"])
def test_if_a_method_is_not_listed_then_a_staff_key_of_another_team_is_refused(
    world: World, target: str, method: str
) -> None:
    """finding 2: a team_2 key holding only ``read:staff`` got 200 from team_1's handler with the
    methods the table does not list (HEAD also leaked ``X-Total-Count``)."""
    with serve(world, target) as served:
        reply, ran = send(served, method, BOOKINGS_1, key(world, "t2_staff"))
    assert not ran & PROTECTED
    assert reply.status in (403, 405)
    assert reply.header("X-Total-Count") is None


@pytest.mark.parametrize("target", RULES_TARGETS)
def test_if_head_is_sent_then_it_needs_what_get_needs(world: World, target: str) -> None:
    """finding 2: HEAD is GET: a key without ``read:bookings`` is refused, one with it passes."""
    with serve(world, target) as served:
        refused, ran_refused = send(served, "HEAD", BOOKINGS_1, key(world, "t1_staff"))
        granted, ran_granted = send(served, "HEAD", BOOKINGS_1, key(world, "t1_read"))
    assert refused.status == 403 and not ran_refused
    assert refused.header("X-Total-Count") is None
    assert granted.status == 200 and ran_granted == {"list"}


@pytest.mark.parametrize("target", RULES_TARGETS)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_if_a_method_is_not_listed_then_it_needs_the_union_of_the_patterns_scopes(
    world: World, target: str, method: str
) -> None:
    """finding 2: an unlisted method gets the pattern's strictest requirement (or 405)."""
    with serve(world, target) as served:
        read_only, ran_read_only = send(served, method, BOOKINGS_1, key(world, "t1_read"))
        both, ran_both = send(served, method, BOOKINGS_1, key(world, "t1_all"))
    assert read_only.status in (403, 405) and not ran_read_only
    if both.status != 405:  # answering 405 to every unlisted method is allowed too
        assert both.status == 200 and ran_both == {"other"}


# -- finding 3: default deny ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["starlette/rules-deny", "flask/rules-deny", "wsgi/rules-deny", "django/rules-deny"]
)
def test_if_rules_default_to_deny_then_a_path_no_rule_covers_needs_a_key(
    world: World, target: str
) -> None:
    """finding 3: ``Rules(..., default="deny")``: a request matching no rule and no public
    pattern is refused without a valid key; public paths stay public."""
    with serve(world, target) as served:
        anonymous, ran_anonymous = send(served, "GET", "/internal/report")
        junk, ran_junk = send(served, "GET", "/internal/report", key(world, "junk_typo"))
        keyed, ran_keyed = send(served, "GET", "/internal/report", key(world, "t1_staff"))
        health, ran_health = send(served, "GET", "/health")
    assert anonymous.status == 401 and not ran_anonymous
    assert junk.status == 401 and not ran_junk
    assert keyed.status == 200 and ran_keyed == {"internal"}
    assert health.status == 200 and ran_health == {"health"}


# -- finding 4: preflights ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "django/decorator",
        "django-asgi/decorator",
        "flask/decorator",  # the route lists OPTIONS
        "starlette/rules",
        "wsgi/rules",
        "django/rules",
        "django-asgi/rules",
        "django/mixin",
        "starlette/decorator",
        "fastapi/depends",
    ],
)
@pytest.mark.parametrize("credentials", ["none", "good key"])
def test_if_a_preflight_reaches_a_protected_handler_then_204_without_running_it(
    world: World, target: str, credentials: str
) -> None:
    """finding 4: OPTIONS + ``Access-Control-Request-Method`` ran the protected view and answered
    200 with data. A preflight is answered 204 with no body; the handler never runs."""
    headers = [] if credentials == "none" else key(world, "t1_all")
    with serve(world, target) as served:
        reply, ran = send(served, "OPTIONS", BOOKINGS_1, headers, preflight=True)
    assert not ran & PROTECTED
    assert reply.status == 204
    assert reply.body == b""


@pytest.mark.parametrize(
    "target", ["django/decorator", "flask/decorator", "starlette/rules", "wsgi/rules"]
)
def test_if_options_is_not_a_preflight_then_it_needs_a_key(world: World, target: str) -> None:
    """finding 4: only a preflight is exempt; a plain OPTIONS to a protected handler is not."""
    with serve(world, target) as served:
        reply, ran = send(served, "OPTIONS", BOOKINGS_1, [("Origin", "https://app.example")])
    assert reply.status == 401
    assert not ran & PROTECTED


# -- finding 5: FastAPI Security scopes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "label", "status"),
    [
        # Security(RequireScopes(), scopes=["write:bookings"]) on POST
        ("fastapi/security", BOOKINGS_1, "t1_read", 403),
        ("fastapi/security", BOOKINGS_1, "t1_all", 201),
        # Security(RequireScopes("read:bookings"), scopes=["write:bookings"]) on GET: both
        ("fastapi/security-union", BOOKINGS_1, "t1_read", 403),
        ("fastapi/security-union", BOOKINGS_1, "t1_all", 200),
    ],
)
def test_if_fastapi_security_names_scopes_then_they_are_required(
    world: World, target: str, path: str, label: str, status: int
) -> None:
    """finding 5: ``Security(RequireScopes(), scopes=[...])`` ignored ``scopes=``: a read-only
    key got 200. The scopes of ``Security`` are required, in union with the dependency's."""
    method = "POST" if target == "fastapi/security" else "GET"
    with serve(world, target) as served:
        reply, ran = send(served, method, path, key(world, label))
    if status >= 400:
        assert reply.status == status and not ran
    else:
        assert reply.status in (200, 201) and ran


@pytest.mark.parametrize(
    ("target", "method", "advertised"),
    [
        ("fastapi/security", "post", {"write:bookings"}),
        ("fastapi/security-union", "get", {"read:bookings", "write:bookings"}),
    ],
)
def test_if_fastapi_security_names_scopes_then_openapi_still_advertises_them(
    world: World, target: str, method: str, advertised: set[str]
) -> None:
    """finding 5: ``/openapi.json`` keeps advertising the scopes the endpoint now requires."""
    import json

    with serve(world, target) as served:
        reply, _ = send(served, "GET", "/openapi.json")
    assert reply.status == 200
    operation = json.loads(reply.body)["paths"]["/api/v1/teams/{team_id}/bookings"][method]
    listed = {
        scope for need in operation["security"] for scopes in need.values() for scope in scopes
    }
    assert advertised <= listed


# -- finding 6: DRF composition -------------------------------------------------------------------


class _SessionUser:
    """Sets ``request.user`` as django.contrib.auth's middleware would, for the session cookie
    ``sessionid=alice`` (no database needed)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        from django.contrib.auth.models import AnonymousUser, User

        if request.COOKIES.get("sessionid") == "alice":
            request.user = User(username="alice", is_active=True)
        else:
            request.user = AnonymousUser()
        return self.get_response(request)


@contextmanager
def _drf_composed(world: World, order: str) -> Iterator[WsgiDriver]:
    import types

    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import path
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes

    from .targets import django_settings
    from .world import record

    has_scopes = HasScopes("read:bookings")
    composed = (
        has_scopes | IsAuthenticated if order == "scopes first" else IsAuthenticated | has_scopes
    )

    class Bookings(APIView):
        authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
        permission_classes = [composed]

        def get(self, request: Any, team_id: str) -> Response:
            record("list", request.method, team_id, request.auth)
            return Response({"user": str(request.user)})

    urls = types.ModuleType("tests.hardening.urls_drf_composed")
    urls.urlpatterns = [path("api/v1/teams/<str:team_id>/bookings", Bookings.as_view())]  # type: ignore[attr-defined]
    auth: Authenticator = world.authenticator()
    with django_settings(auth, "drf", urls, MIDDLEWARE=[f"{__name__}._SessionUser"]):
        yield WsgiDriver(WSGIHandler())
    auth.close()


@pytest.mark.parametrize("order", ["scopes first", "session first"])
def test_if_drf_composes_has_scopes_or_is_authenticated_then_a_session_user_without_a_key_passes(
    world: World, order: str
) -> None:
    """finding 6: ``HasScopes | IsAuthenticated`` refused a session user who sent no key (401),
    because ``has_permission`` raised; ``IsAuthenticated | HasScopes`` granted."""
    with _drf_composed(world, order) as driver:
        reply, ran = send(driver, "GET", BOOKINGS_1, [("Cookie", "sessionid=alice")])
    assert reply.status == 200, reply.body
    assert ran == {"list"}


@pytest.mark.parametrize("order", ["scopes first", "session first"])
@pytest.mark.parametrize("label", ["junk_typo", "revoked", "unknown"])
def test_if_drf_composes_and_a_bad_key_is_presented_then_401(
    world: World, order: str, label: str
) -> None:
    """finding 6: a presented bad key still answers 401, even beside a session."""
    with _drf_composed(world, order) as driver:
        reply, ran = send(
            driver, "GET", BOOKINGS_1, [("Cookie", "sessionid=alice"), *key(world, label)]
        )
    assert reply.status == 401
    assert not ran


@pytest.mark.parametrize("order", ["scopes first", "session first"])
def test_if_drf_composes_and_nothing_is_presented_then_401(world: World, order: str) -> None:
    """finding 6: no key and no session: ``HasScopes`` says no, ``IsAuthenticated`` says no."""
    with _drf_composed(world, order) as driver:
        reply, ran = send(driver, "GET", BOOKINGS_1)
    assert reply.status == 401
    assert not ran


# -- finding 7: header leniency -------------------------------------------------------------------

LENIENCY_TARGETS = [
    "starlette/decorator",
    "fastapi/depends",
    "flask/decorator",
    "wsgi/rules",
    "django/decorator",
    "django-asgi/decorator",
    "drf/has-scopes",
]


@pytest.mark.parametrize("target", LENIENCY_TARGETS)
def test_if_a_tab_follows_bearer_beside_an_x_api_key_then_400(world: World, target: str) -> None:
    """finding 7: ``Authorization: Bearer<TAB>keyA`` + ``X-API-Key: keyB`` answered 200 with B:
    two credentials."""
    headers = [
        ("Authorization", f"Bearer\t{world.keys['t1_read'].key}"),
        ("X-API-Key", world.keys["t1_all"].key),
    ]
    with serve(world, target) as served:
        reply, ran = send(served, "GET", BOOKINGS_1, headers)
    assert reply.status == 400
    assert not ran


@pytest.mark.parametrize("target", LENIENCY_TARGETS)
@pytest.mark.parametrize("space", ["\xa0", "\x85", "\x0b"], ids=["NBSP", "NEL", "VT"])
@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_if_a_non_http_space_surrounds_a_key_then_401(
    world: World, target: str, space: str, where: str, header: str
) -> None:
    """finding 7: only ASCII space and tab are whitespace in HTTP; NBSP/NEL/VT were stripped and
    the key accepted."""
    good = world.keys["t1_all"].key
    value = f"{space}{good}" if where == "before" else f"{good}{space}"
    headers = [(header, f"Bearer {value}" if header == "Authorization" else value)]
    with serve(world, target) as served:
        reply, ran = send(served, "GET", BOOKINGS_1, headers)
    assert reply.status == 401
    assert not ran


@pytest.mark.parametrize("target", LENIENCY_TARGETS)
def test_if_bearer_carries_an_extra_word_then_400(world: World, target: str) -> None:
    """finding 7: ``Bearer <key> extra`` answered 401; it is a malformed request: 400."""
    headers = [("Authorization", f"Bearer {world.keys['t1_all'].key} extra")]
    with serve(world, target) as served:
        reply, ran = send(served, "GET", BOOKINGS_1, headers)
    assert reply.status == 400
    assert not ran


@pytest.mark.parametrize("target", LENIENCY_TARGETS)
@pytest.mark.parametrize("spaces", [2, 3])
def test_if_several_spaces_follow_bearer_then_the_key_is_accepted(
    world: World, target: str, spaces: int
) -> None:
    """finding 7: several spaces after ``Bearer`` are accepted (and documented)."""
    headers = [("Authorization", "Bearer" + " " * spaces + world.keys["t1_all"].key)]
    with serve(world, target) as served:
        reply, ran = send(served, "GET", BOOKINGS_1, headers)
    assert reply.status == 200
    assert ran == {"list"}


@pytest.mark.parametrize("target", LENIENCY_TARGETS)
@pytest.mark.parametrize("query", ["a=1;api_key={key}", "a=1;{key}", "x;access_token={key}"])
def test_if_a_key_is_in_the_query_after_a_semicolon_then_400(
    world: World, target: str, query: str
) -> None:
    """finding 7: a query-string key after a ``;`` separator was not detected."""
    target_path = f"{BOOKINGS_1}?{query.format(key=world.keys['t1_all'].key)}"
    with serve(world, target) as served:
        reply, ran = send(served, "GET", target_path, key(world, "t1_all"))
    assert reply.status == 400
    assert not ran


# -- finding 8: team binding off by a name --------------------------------------------------------


def _team_named_team(auth: Authenticator, style: str) -> Any:
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import JSONResponse

    from .asgi_apps import _middleware
    from .world import record

    if style == "starlette":
        from starlette.applications import Starlette
        from starlette.routing import Route

        from skaala_auth.starlette import requires_scope

        @requires_scope("read:bookings")  # team_param defaults to "team_id": not in this route
        async def team_bookings(request: StarletteRequest) -> JSONResponse:
            team = request.path_params["team"]
            record("list", request.method, team, request.state.principal)
            return JSONResponse({"team": team, "data": ["secret"]})

        return Starlette(
            routes=[Route("/teams/{team}/x", team_bookings)], middleware=_middleware(auth, None)
        )
    from .fastapi_team import build

    return build(auth, _middleware(auth, None))


@pytest.mark.parametrize("style", ["starlette", "fastapi"])
def test_if_the_team_parameter_is_named_otherwise_then_another_teams_key_is_refused(
    world: World, style: str
) -> None:
    """finding 8: a route ``/teams/{team}/x`` with ``@requires_scope("read:bookings")`` (default
    ``team_param="team_id"``) got no team check, silently: a key of another team got 200. It is
    refused (403), or the app refuses to be built."""
    auth = world.authenticator()
    try:
        try:
            app = _team_named_team(auth, style)
        except (TypeError, ValueError, RuntimeError):
            return  # refused loudly at build time: acceptable
        driver = AsgiDriver(app)
        try:
            other, ran_other = send(driver, "GET", "/teams/team_1/x", key(world, "t2_all"))
            own, ran_own = send(driver, "GET", "/teams/team_1/x", key(world, "t1_all"))
        finally:
            driver.close()
    finally:
        auth.close()
    assert other.status == 403, other.body
    assert not ran_other
    assert own.status in (200, 403)  # a loud refusal of the misnamed route is acceptable too
    assert own.status != 500


# -- dashboard sessions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "method", "role", "scopes"),
    [
        ("user_1", "GET", "owner", {"read:bookings", "write:bookings"}),
        ("member_1", "GET", "member", {"read:bookings"}),
        ("user_1", "POST", "owner", {"read:bookings", "write:bookings"}),
    ],
)
def test_if_drf_grants_a_session_then_the_view_gets_the_principal_of_its_team(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    user: str,
    method: str,
    role: str,
    scopes: set[str],
) -> None:
    """sessions, finding 1: with a dashboard session (here in the ``x-stack-access-token``
    header: no CSRF check), ``HasScopes`` decides for the view's team, but ``request.auth`` is
    the principal ``ApiKeyAuthentication`` made before the team was known: team ``""``, no
    scopes, no role. docs/django.md's DRF example answers ``request.auth.team_id``."""
    from . import django_apps

    seen: list[Any] = []
    monkeypatch.setattr(django_apps, "record", lambda *args: seen.append(args[3]))
    headers = (("X-Stack-Access-Token", world.tokens[f"good:{user}"].token),)
    with serve(world, "drf/has-scopes") as served:
        reply = served.driver(Request(method, BOOKINGS_1, Credentials("-", headers, None), False))
    assert reply.status == 200, reply.body
    (principal,) = seen  # what the view got as request.auth
    assert (principal.user_id, principal.method) == (user, "session")
    assert principal.team_id == "team_1"
    assert principal.role == role
    assert scopes <= principal.scopes
