"""Django REST framework: ApiKeyAuthentication beside SessionAuthentication (the key wins when
present), HasScopes composed with ``|``, ``&`` and ``~``, and the drf-spectacular schema."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

from tests.django_settings import configure

configure()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.authentication import SessionAuthentication  # noqa: E402
from rest_framework.permissions import IsAdminUser  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from skaala_auth import Authenticator, KeyManager, Principal  # noqa: E402
from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes  # noqa: E402
from tests.django_settings import migrate  # noqa: E402


class Caller(APIView):
    def get(self, request: Request, team_id: str) -> Response:
        key = isinstance(request.auth, Principal)
        return Response({"user": str(request.user), "by": "key" if key else "session"})

    def post(self, request: Request, team_id: str) -> Response:
        return self.get(request, team_id)


class KeyOrStaff(Caller):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [HasScopes("read:bookings") | IsAdminUser]


class Both(Caller):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes("read:bookings") & HasScopes("read:calls")]


class Either(Caller):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes("read:bookings") | HasScopes("read:calls")]


class NotCalls(Caller):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes() & ~HasScopes("read:calls")]


class Nested(Caller):
    """Our operators all the way: either scope, or a staff session."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [(HasScopes("read:bookings") | HasScopes("read:calls")) | IsAdminUser]


class NotEither(Caller):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes() & ~(HasScopes("read:bookings") | HasScopes("read:calls"))]


class ObjectLevel(Caller):
    """``|`` on object permissions: checked by the view, as GenericAPIView.get_object does."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScopes("read:bookings") | HasScopes("read:calls")]

    def get(self, request: Request, team_id: str) -> Response:
        self.check_object_permissions(request, object())
        return super().get(request, team_id)


urls = types.ModuleType("drf_urls")
urls.urlpatterns = [  # type: ignore[attr-defined]
    path("teams/<str:team_id>/key-or-staff", KeyOrStaff.as_view()),
    path("teams/<str:team_id>/both", Both.as_view()),
    path("teams/<str:team_id>/either", Either.as_view()),
    path("teams/<str:team_id>/not-calls", NotCalls.as_view()),
    path("teams/<str:team_id>/nested", Nested.as_view()),
    path("teams/<str:team_id>/not-either", NotEither.as_view()),
    path("teams/<str:team_id>/object-level", ObjectLevel.as_view()),
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@pytest.fixture
def project(auth: Authenticator) -> Iterator[None]:
    migrate("default")
    with override_settings(
        ROOT_URLCONF=urls, MIDDLEWARE=MIDDLEWARE, SKAALA_AUTH={"AUTHENTICATOR": auth}
    ):
        yield
    User.objects.all().delete()


@pytest.fixture
def keys(manager: KeyManager) -> dict[str, str]:
    made = {}
    for scopes in (["read:bookings"], ["read:calls"], ["read:bookings", "read:calls"]):
        made["+".join(scopes)], _ = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=scopes
        )
    return made


def staff_client(is_staff: bool = True, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    user = User.objects.create_user(f"dashboard-{is_staff}", is_staff=is_staff)
    client.force_login(user)
    return client


@pytest.mark.usefixtures("project")
class TestWithSessionAuthentication:
    URL = "/teams/team_1/key-or-staff"

    def test_if_only_a_key_is_sent_then_the_key_authenticates(self, keys: dict[str, str]) -> None:
        reply = Client().get(self.URL, headers={"X-API-Key": keys["read:bookings"]})
        assert reply.json() == {"user": "user_1", "by": "key"}

    def test_if_only_a_session_is_sent_then_the_session_authenticates(self) -> None:
        assert staff_client().get(self.URL).json() == {"user": "dashboard-True", "by": "session"}

    def test_if_both_are_sent_then_the_key_wins(self, keys: dict[str, str]) -> None:
        client = staff_client()
        reply = client.get(self.URL, headers={"X-API-Key": keys["read:bookings"]})
        assert reply.json() == {"user": "user_1", "by": "key"}
        # A key without the scope is refused: the staff session does not widen it.
        refused = client.get(self.URL, headers={"X-API-Key": keys["read:calls"]})
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"

    def test_if_a_bad_key_comes_with_a_session_then_401_with_no_fallback(self) -> None:
        reply = staff_client().get(self.URL, headers={"X-API-Key": "sk_live_typo"})
        assert reply.status_code == 401
        assert reply.content == b'{"error":"unauthorized","message":"Invalid API key"}'

    def test_if_nothing_is_sent_then_401_with_the_bearer_challenge(self) -> None:
        reply = Client().get(self.URL)
        assert reply.status_code == 401
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="api"'

    def test_if_a_session_posts_then_csrf_applies_but_not_to_a_key(
        self, keys: dict[str, str]
    ) -> None:
        client = staff_client(enforce_csrf_checks=True)
        assert client.post(self.URL).status_code == 403  # SessionAuthentication's CSRF check
        reply = client.post(self.URL, headers={"X-API-Key": keys["read:bookings"]})
        assert reply.status_code == 200 and reply.json()["by"] == "key"

    def test_if_the_session_user_is_not_staff_then_403(self) -> None:
        assert staff_client(is_staff=False).get(self.URL).status_code == 403


@pytest.mark.usefixtures("project")
class TestComposition:
    @pytest.mark.parametrize(
        ("view", "granted"),
        [
            ("both", {"read:bookings+read:calls"}),
            ("either", {"read:bookings", "read:calls", "read:bookings+read:calls"}),
            ("not-calls", {"read:bookings"}),
            ("nested", {"read:bookings", "read:calls", "read:bookings+read:calls"}),
            ("not-either", set()),
            ("object-level", {"read:bookings", "read:calls", "read:bookings+read:calls"}),
        ],
    )
    def test_if_permissions_are_composed_then_drf_operators_decide(
        self, keys: dict[str, str], view: str, granted: set[str]
    ) -> None:
        for name, key in keys.items():
            reply = Client().get(f"/teams/team_1/{view}", headers={"X-API-Key": key})
            assert (reply.status_code == 200) == (name in granted), (name, reply.content)
            if name in granted:  # a refusal looked past leaves nothing on the answer
                assert "no-store" not in reply.headers.get("Cache-Control", "")
            else:  # the contract's 403, or DRF's where ~ refuses (no key was refused)
                assert reply.status_code == 403

    def test_if_a_nested_or_ends_in_a_staff_check_then_a_staff_session_gets_in(self) -> None:
        assert staff_client().get("/teams/team_1/nested").json()["by"] == "session"
        assert staff_client(is_staff=False).get("/teams/team_1/nested").status_code == 403

    def test_if_the_team_is_another_then_every_composition_refuses(
        self, keys: dict[str, str]
    ) -> None:
        key = keys["read:bookings+read:calls"]
        for view in ("both", "either"):
            assert (
                Client().get(f"/teams/team_2/{view}", headers={"X-API-Key": key}).status_code == 403
            )


class TestSchema:
    @pytest.fixture
    def schema(self, auth: Authenticator) -> Iterator[Any]:
        from drf_spectacular.generators import SchemaGenerator

        settings = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
        with override_settings(ROOT_URLCONF=urls, REST_FRAMEWORK=settings):

            def generate(**spectacular: Any) -> Any:
                with override_settings(SPECTACULAR_SETTINGS=spectacular):
                    return SchemaGenerator().get_schema(request=None, public=True)

            yield generate

    def test_if_the_schema_is_generated_then_both_schemes_are_listed_without_warnings(
        self, schema: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        document = schema()
        schemes = document["components"]["securitySchemes"]
        assert {name: schemes[name] for name in ("ApiKeyBearer", "ApiKeyHeader")} == {
            "ApiKeyBearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: `Authorization: Bearer sk_live_…`.",
            },
            "ApiKeyHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "An API key: `X-API-Key: sk_live_…` (or the Bearer scheme).",
            },
        }
        assert "could not resolve authenticator" not in capsys.readouterr().err

    def test_if_views_require_scopes_then_each_operation_names_them(self, schema: Any) -> None:
        paths = schema()["paths"]
        both = paths["/teams/{team_id}/both"]["get"]
        assert both["x-required-scopes"] == ["read:bookings", "read:calls"]
        assert both["security"] == [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]  # OpenAPI 3.0
        either = paths["/teams/{team_id}/either"]["get"]
        assert either["x-required-scopes"] == [["read:bookings"], ["read:calls"]]
        key_or_staff = paths["/teams/{team_id}/key-or-staff"]["get"]
        assert {"cookieAuth": []} in key_or_staff["security"]  # the session, beside our schemes

    def test_if_the_document_is_openapi_3_1_then_the_requirements_carry_the_scopes(
        self, schema: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from drf_spectacular.settings import spectacular_settings

        monkeypatch.setattr(spectacular_settings, "OAS_VERSION", "3.1.0")
        paths = schema()["paths"]
        assert paths["/teams/{team_id}/either"]["get"]["security"] == [
            {"ApiKeyBearer": ["read:bookings"]},
            {"ApiKeyHeader": ["read:bookings"]},
            {"ApiKeyBearer": ["read:calls"]},
            {"ApiKeyHeader": ["read:calls"]},
        ]

    def test_if_validated_then_the_document_is_valid_openapi(self, schema: Any) -> None:
        from drf_spectacular.validation import validate_schema

        validate_schema(schema())
