"""The Django adapter beyond the contract suite: settings, the mixin, the command, DRF."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.django_settings import configure

configure()

from asgiref.sync import async_to_sync  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.views import View  # noqa: E402
from rest_framework.permissions import IsAuthenticated  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

import skaala_auth  # noqa: E402
from skaala_auth import Authenticator, InvalidKeyError, KeyManager, SQLiteKeyStore  # noqa: E402
from skaala_auth.django import (  # noqa: E402
    ScopeRequiredMixin,
    get_authenticator,
    get_store,
    requires_scope,
)
from skaala_auth.django.rest_framework import ApiKeyAuthentication, HasScopes  # noqa: E402


class Bookings(ScopeRequiredMixin, View):
    required_scopes = ["read:bookings"]

    def get(self, request: HttpRequest, team_id: str) -> JsonResponse:
        return JsonResponse({"user": request.principal.user_id})


class AsyncBookings(ScopeRequiredMixin, View):
    required_scopes = ["read:bookings"]

    async def get(self, request: HttpRequest, team_id: str) -> JsonResponse:
        return JsonResponse({"user": request.principal.user_id})


@requires_scope("read:bookings")
def decorated(request: HttpRequest, team_id: str) -> JsonResponse:
    return JsonResponse({"user": request.principal.user_id})


class DrfBookings(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated, HasScopes]
    required_scopes = ["read:bookings"]

    def get(self, request: Request, team_id: str) -> Response:
        return Response({"user": str(request.user), "key": request.auth.key_id})


class CreateBooking(ScopeRequiredMixin, View):
    required_scopes = ["read:bookings"]

    def post(self, request: HttpRequest, team_id: str) -> JsonResponse:
        return JsonResponse({"created": True}, status=201)


@requires_scope("read:bookings")
def create_booking(request: HttpRequest, team_id: str) -> JsonResponse:
    return JsonResponse({"created": True}, status=201)


def open_form(request: HttpRequest) -> JsonResponse:
    """Not protected by us: a session form, under Django's CSRF check as usual."""
    return JsonResponse({"principal": request.principal and request.principal.key_id})


urls = types.ModuleType("urls")
urls.urlpatterns = [  # type: ignore[attr-defined]
    path("teams/<str:team_id>/create-cbv", CreateBooking.as_view()),
    path("teams/<str:team_id>/create", create_booking),
    path("form", open_form),
    path("teams/<str:team_id>/cbv", Bookings.as_view()),
    path("teams/<str:team_id>/async-cbv", AsyncBookings.as_view()),
    path("teams/<str:team_id>/decorated", decorated),
    path("teams/<str:team_id>/drf", DrfBookings.as_view()),
]


@pytest.fixture
def key(manager: KeyManager) -> str:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return key


@pytest.fixture
def project(auth: Authenticator) -> Iterator[None]:
    with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH={"AUTHENTICATOR": auth}):
        yield


@pytest.mark.usefixtures("project")
class TestViews:
    @pytest.mark.parametrize("view", ["cbv", "decorated", "drf"])
    def test_if_a_class_based_view_uses_the_mixin_then_it_needs_the_scope(
        self, key: str, view: str
    ) -> None:
        client = Client()
        ok = client.get(f"/teams/team_1/{view}", headers={"X-API-Key": key})
        assert ok.status_code == 200 and ok.json()["user"] == "user_1"
        assert client.get(f"/teams/team_2/{view}", headers={"X-API-Key": key}).status_code == 403
        assert client.get(f"/teams/team_1/{view}").status_code == 401

    def test_if_a_class_based_view_is_async_then_the_mixin_checks_it_under_asgi(
        self, key: str
    ) -> None:
        client = AsyncClient()

        async def get(path: str, **headers: str) -> Any:
            return await client.get(path, headers=headers)

        ok = async_to_sync(get)("/teams/team_1/async-cbv", **{"X-API-Key": key})
        assert ok.status_code == 200 and ok.json() == {"user": "user_1"}
        assert async_to_sync(get)("/teams/team_1/async-cbv").status_code == 401

    @pytest.mark.parametrize("view", ["cbv", "decorated", "drf"])
    def test_if_there_is_no_middleware_then_the_view_checks_still_hold(
        self, key: str, view: str
    ) -> None:
        with override_settings(MIDDLEWARE=[]):
            client = Client()
            ok = client.get(f"/teams/team_1/{view}", headers={"X-API-Key": key})
            assert ok.status_code == 200
            assert client.get(f"/teams/team_1/{view}").status_code == 401
            bad = client.get(f"/teams/team_1/{view}", headers={"X-API-Key": "sk_live_x"})
            assert bad.status_code == 401

    def test_if_an_async_view_runs_without_the_middleware_then_the_mixin_authenticates(
        self, key: str, manager: KeyManager
    ) -> None:
        writer, _ = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["write:bookings"]
        )
        client = AsyncClient()

        async def get(path: str, **headers: str) -> Any:
            return await client.get(path, headers=headers)

        with override_settings(MIDDLEWARE=[]):
            ok = async_to_sync(get)("/teams/team_1/async-cbv", **{"X-API-Key": key})
            assert ok.status_code == 200 and ok.json() == {"user": "user_1"}
            assert async_to_sync(get)("/teams/team_1/async-cbv").status_code == 401
        # With the middleware: its principal lacks the scope, and the mixin says 403.
        refused = async_to_sync(get)("/teams/team_1/async-cbv", **{"X-API-Key": writer})
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"

    def test_if_drf_authenticates_a_key_then_the_user_is_the_keys_user(self, key: str) -> None:
        reply = Client().get("/teams/team_1/drf", headers={"Authorization": f"Bearer {key}"})
        assert reply.json()["user"] == "user_1"
        assert reply.json()["key"].startswith("key_")


class TestSettings:
    def test_if_db_is_set_then_a_sqlite_store_on_that_file_is_used(self, tmp_path: Path) -> None:
        SQLiteKeyStore(tmp_path / "keys.db").close()
        with override_settings(SKAALA_AUTH={"DB": tmp_path / "keys.db", "CACHE_TTL": 5}):
            authenticator = get_authenticator()
            assert isinstance(authenticator.store, SQLiteKeyStore)
            assert authenticator is get_authenticator()  # built once
            store = get_store()
            assert isinstance(store, SQLiteKeyStore)
            store.close()

    def test_if_authenticator_is_a_dotted_path_to_a_callable_then_it_is_called(
        self, auth: Authenticator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        module = types.ModuleType("skaala_test_factory")
        module.build = lambda: auth  # type: ignore[attr-defined]
        monkeypatch.setitem(__import__("sys").modules, "skaala_test_factory", module)
        with override_settings(SKAALA_AUTH={"AUTHENTICATOR": "skaala_test_factory.build"}):
            assert get_authenticator() is auth

    @pytest.mark.parametrize(
        ("setting", "message"),
        [
            ({"AUTHENTICATOR": "skaala_auth.__version__"}, "AUTHENTICATOR"),
            ({"AUTHENTICATOR": 42}, "AUTHENTICATOR"),
        ],
        ids=["not-an-authenticator", "not-callable"],
    )
    def test_if_the_setting_is_wrong_then_improperly_configured(
        self, setting: dict[str, Any], message: str
    ) -> None:
        with (
            override_settings(SKAALA_AUTH=setting),
            pytest.raises(ImproperlyConfigured, match=message),
        ):
            get_authenticator()


class TestCommand:
    def test_if_a_key_is_created_with_manage_py_then_the_service_accepts_it(
        self, tmp_path: Path
    ) -> None:
        database = tmp_path / "keys.db"
        with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH={"DB": database}):
            call_command("skaala_auth", "init", stdout=io.StringIO())
            call_command(
                "skaala_auth",
                "members",
                "add",
                "--team",
                "team_1",
                "--user",
                "u1",
                "--role",
                "owner",
                stdout=io.StringIO(),
            )
            out = io.StringIO()
            call_command(
                "skaala_auth",
                "keys",
                "create",
                "--team",
                "team_1",
                "--user",
                "u1",
                "--scope",
                "read:bookings",
                "--json",
                stdout=out,
            )
            import json

            key = json.loads(out.getvalue())["key"]
            reply = Client().get("/teams/team_1/cbv", headers={"X-API-Key": key})
            assert reply.json() == {"user": "u1"}

    def test_if_the_cli_fails_then_the_command_fails_with_its_status(self, tmp_path: Path) -> None:
        with override_settings(SKAALA_AUTH={"DB": tmp_path / "keys.db"}):
            with pytest.raises(CommandError) as raised:
                call_command(
                    "skaala_auth",
                    "keys",
                    "create",
                    "--team",
                    "t",
                    "--user",
                    "nobody",
                    "--scope",
                    "read:bookings",
                    stdout=io.StringIO(),
                    stderr=io.StringIO(),
                )
            assert raised.value.returncode == 1

    def test_if_cli_options_come_before_the_command_then_they_reach_the_cli(
        self, tmp_path: Path
    ) -> None:
        with override_settings(SKAALA_AUTH={"DB": tmp_path / "keys.db", "CREATE": True}):
            call_command("skaala_auth", "init", stdout=io.StringIO())
            call_command(
                "skaala_auth", "members", "add", "--team", "t", "--user", "u",
                stdout=io.StringIO(),
            )  # fmt: skip
            out = io.StringIO()
            call_command(
                "skaala_auth", "--json", "keys", "create", "--team", "t", "--user", "u",
                "--scope", "read:calls", stdout=out,
            )  # fmt: skip
            created = json.loads(out.getvalue())
            out = io.StringIO()
            call_command("skaala_auth", "--json", "keys", "list", "--team", "t", stdout=out)
            assert [key["id"] for key in json.loads(out.getvalue())] == [created["id"]]

    def test_if_manage_py_is_run_then_json_and_version_are_skaala_auths(
        self, tmp_path: Path
    ) -> None:
        """As a user runs it: ``manage.py skaala_auth --json keys list`` and ``--version``."""
        (tmp_path / "tiny_settings.py").write_text(
            "SECRET_KEY = 'x'\nUSE_TZ = True\nDATABASES = {}\n"
            "INSTALLED_APPS = ['skaala_auth.django']\n"
            f"SKAALA_AUTH = {{'DB': {str(tmp_path / 'keys.db')!r}, 'CREATE': True}}\n"
        )
        root = Path(__file__).resolve().parents[2]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tiny_settings",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
        }

        def manage(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "django", "skaala_auth", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )

        version = manage("--version")
        assert version.returncode == 0, version.stderr
        assert version.stdout.strip() == f"skaala-auth {skaala_auth.__version__}"
        assert manage("init").returncode == 0
        listed = manage("--json", "keys", "list", "--team", "t")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []

    def test_if_no_store_is_named_then_the_command_manages_the_orm_store(self) -> None:
        from tests.django_orm import clear
        from tests.django_settings import migrate

        migrate("default")
        clear("default")
        try:
            with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH={}):
                out = io.StringIO()
                call_command("skaala_auth", "init", stdout=out)
                assert "'default'" in out.getvalue() and "migrate" in out.getvalue()
                call_command(
                    "skaala_auth", "members", "add", "--team", "team_1", "--user", "u1",
                    stdout=io.StringIO(),
                )  # fmt: skip
                out = io.StringIO()
                call_command(
                    "skaala_auth", "--json", "keys", "create", "--team", "team_1", "--user",
                    "u1", "--scope", "read:bookings", stdout=out,
                )  # fmt: skip
                key = json.loads(out.getvalue())["key"]
                assert Client().get("/teams/team_1/cbv", headers={"X-API-Key": key}).json() == {
                    "user": "u1"
                }
                with pytest.raises(CommandError):
                    call_command("skaala_auth", "demo", stderr=io.StringIO())
        finally:
            clear("default")


class TestMoreSettings:
    def test_if_rules_are_set_then_the_middleware_applies_them(
        self, auth: Authenticator, key: str
    ) -> None:
        setting = {"AUTHENTICATOR": auth, "RULES": [("/teams/{team_id}/open", ["write:calls"])]}
        with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH=setting):
            client = Client()
            assert client.get("/teams/team_1/open").status_code == 401
            assert client.get("/teams/team_1/open", headers={"X-API-Key": key}).status_code == 403

    def test_if_db_is_missing_then_improperly_configured_naming_the_path_and_the_fix(
        self, tmp_path: Path
    ) -> None:
        missing = tmp_path / "kyes.db"
        with override_settings(SKAALA_AUTH={"DB": missing}):
            with pytest.raises(ImproperlyConfigured, match=f"skaala-auth --db {missing} init"):
                get_authenticator()
            with pytest.raises(ImproperlyConfigured, match="CREATE"):
                get_store()
        assert not missing.exists()
        with override_settings(SKAALA_AUTH={"DB": missing, "CREATE": True}):
            assert isinstance(get_authenticator().store, SQLiteKeyStore)
        assert missing.exists()

    @pytest.mark.parametrize("text", ["false", "0", "no"])
    def test_if_accept_test_keys_is_a_false_string_then_test_keys_stay_off(
        self, tmp_path: Path, text: str
    ) -> None:
        setting = {"DB": tmp_path / "k.db", "CREATE": True, "ACCEPT_TEST_KEYS": text}
        with override_settings(SKAALA_AUTH=setting):
            assert get_authenticator().accept_test_keys is False

    def test_if_a_dsn_is_set_without_postgres_support_then_improperly_configured(self) -> None:
        try:
            import skaala_auth.stores.postgres  # noqa: F401
        except ImportError:
            pass
        else:  # pragma: no cover - depends on the installed extras
            pytest.skip("PostgreSQL support is installed")
        with override_settings(SKAALA_AUTH={"DSN": "postgresql://localhost/x"}):
            with pytest.raises(ImproperlyConfigured, match="needs psycopg"):
                get_authenticator()

    def test_if_the_setting_is_not_a_dict_then_improperly_configured(self) -> None:
        with override_settings(SKAALA_AUTH=["DB"]), pytest.raises(ImproperlyConfigured):
            get_authenticator()

    def test_if_the_service_has_a_pepper_then_manage_py_makes_keys_with_it(
        self, tmp_path: Path
    ) -> None:
        setting = {"DB": tmp_path / "keys.db", "PEPPER": "s3cret-pepper-for-tests"}
        with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH=setting):
            out = io.StringIO()
            call_command("skaala_auth", "init", stdout=out)
            call_command(
                "skaala_auth",
                *("members", "add", "--team", "team_1", "--user", "u1"),
                stdout=out,
            )
            out = io.StringIO()
            call_command(
                "skaala_auth",
                *("keys", "create", "--team", "team_1", "--user", "u1"),
                *("--scope", "read:bookings", "--json"),
                stdout=out,
            )
            key = json.loads(out.getvalue())["key"]
            assert Client().get("/teams/team_1/cbv", headers={"X-API-Key": key}).status_code == 200
        store = SQLiteKeyStore(tmp_path / "keys.db")
        with Authenticator(store) as unpeppered:  # the digest is keyed: no pepper, no match
            with pytest.raises(InvalidKeyError):
                unpeppered.verify(key)
        store.close()

    def test_if_the_authenticator_is_custom_then_the_command_uses_its_sqlite_file(
        self, tmp_path: Path
    ) -> None:
        store = SQLiteKeyStore(tmp_path / "custom.db")
        with (
            Authenticator(store) as custom,
            override_settings(SKAALA_AUTH={"AUTHENTICATOR": custom}),
        ):
            out = io.StringIO()
            call_command("skaala_auth", "members", "add", "--team", "t", "--user", "u", stdout=out)
        assert store.get_member("t", "u") is not None
        store.close()


CSRF_MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "skaala_auth.django.ApiKeyMiddleware",
]


@pytest.mark.usefixtures("project")
class TestCsrf:
    """A request authenticated by an API key is not subject to CSRF (no ambient credential);
    Django's test Client skips CSRF by default, which hid this: enforce it here."""

    @pytest.mark.parametrize("view", ["create", "create-cbv"])
    @pytest.mark.parametrize("middleware", [CSRF_MIDDLEWARE, CSRF_MIDDLEWARE[:2]])
    def test_if_a_key_authenticated_post_then_no_csrf_403(
        self, key: str, view: str, middleware: list[str]
    ) -> None:
        with override_settings(MIDDLEWARE=middleware):
            client = Client(enforce_csrf_checks=True)
            created = client.post(f"/teams/team_1/{view}", headers={"X-API-Key": key})
            assert created.status_code == 201
            refused = client.post(f"/teams/team_1/{view}")  # our 401, not Django's CSRF page
            assert refused.status_code == 401
            assert refused.json() == {"error": "unauthorized", "message": "Missing API key"}

    def test_if_no_key_then_django_csrf_still_protects_other_views(self, key: str) -> None:
        with override_settings(MIDDLEWARE=CSRF_MIDDLEWARE):
            client = Client(enforce_csrf_checks=True)
            assert client.post("/form").status_code == 403  # Django's CSRF failure
            assert client.post("/form", headers={"X-API-Key": key}).status_code == 200


class TestSystemChecks:
    """``manage.py check`` reports each misconfiguration instead of "no issues"."""

    @staticmethod
    def ids(**overrides: Any) -> list[str]:
        from django.core.checks import run_checks

        with override_settings(**overrides):
            return sorted(
                message.id for message in run_checks() if message.id.startswith("skaala_auth.")
            )

    def test_if_the_setting_is_right_then_no_issues(self, tmp_path: Path) -> None:
        SQLiteKeyStore(tmp_path / "keys.db").close()
        setting = {"DB": tmp_path / "keys.db", "CACHE_TTL": "10s", "PUBLIC": ["/health"]}
        middleware = [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "skaala_auth.django.ApiKeyMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ]
        assert self.ids(SKAALA_AUTH=setting, MIDDLEWARE=middleware) == []

    def test_if_a_setting_is_misspelt_then_e002_naming_it(self, tmp_path: Path) -> None:
        setting = {"DB": tmp_path / "k.db", "CREATE": True, "CACH_TTL": 5}
        assert self.ids(SKAALA_AUTH=setting) == ["skaala_auth.E002"]
        with override_settings(SKAALA_AUTH=setting):
            from django.core.checks import run_checks

            assert any("CACH_TTL" in message.msg for message in run_checks())

    def test_if_a_value_is_of_the_wrong_kind_then_e003(self, tmp_path: Path) -> None:
        setting = {"DB": tmp_path / "k.db", "CREATE": True, "ACCEPT_TEST_KEYS": "maybe"}
        assert self.ids(SKAALA_AUTH=setting) == ["skaala_auth.E003"]

    def test_if_the_store_file_is_missing_then_e005_with_the_fix(self, tmp_path: Path) -> None:
        assert self.ids(SKAALA_AUTH={"DB": tmp_path / "kyes.db"}) == ["skaala_auth.E005"]
        assert self.ids(SKAALA_AUTH={"DB": tmp_path / "kyes.db", "CREATE": "true"}) == []

    def test_if_no_store_is_named_then_the_orm_store_needs_nothing_more(self) -> None:
        assert self.ids(SKAALA_AUTH={"CACHE_TTL": 5}) == []
        assert self.ids(SKAALA_AUTH={"DATABASE": "postgres"}) == []

    @pytest.mark.parametrize(
        "setting",
        [{"DB": "k.db", "DSN": "postgresql://x/y"}, {"DATABASE": "default", "DB": "k.db"}],
        ids=["db-and-dsn", "database-and-db"],
    )
    def test_if_two_stores_are_named_then_e004(self, setting: dict[str, Any]) -> None:
        assert self.ids(SKAALA_AUTH=setting) == ["skaala_auth.E004"]

    def test_if_the_database_is_no_alias_then_e008(self) -> None:
        assert self.ids(SKAALA_AUTH={"DATABASE": "keys"}) == ["skaala_auth.E008"]

    def test_if_the_db_file_is_not_sqlite_then_e005(self, tmp_path: Path) -> None:
        (tmp_path / "keys.db").write_text("not a database, a note\n")
        assert self.ids(SKAALA_AUTH={"DB": tmp_path / "keys.db"}) == ["skaala_auth.E005"]

    def test_if_the_authenticator_path_does_not_import_then_e006(self) -> None:
        setting = {"AUTHENTICATOR": "myproject.auth.no_such_authenticator"}
        assert self.ids(SKAALA_AUTH=setting) == ["skaala_auth.E006"]
        assert self.ids(SKAALA_AUTH={"AUTHENTICATOR": 42}) == ["skaala_auth.E006"]

    def test_if_the_authenticator_path_imports_then_no_issue(self, auth: Authenticator) -> None:
        module = types.ModuleType("skaala_check_auth")
        module.authenticator = auth  # type: ignore[attr-defined]
        sys.modules["skaala_check_auth"] = module
        try:
            setting = {"AUTHENTICATOR": "skaala_check_auth.authenticator"}
            assert self.ids(SKAALA_AUTH=setting) == []
        finally:
            del sys.modules["skaala_check_auth"]

    def test_if_the_setting_is_not_a_dict_then_e001(self) -> None:
        assert self.ids(SKAALA_AUTH=["DB"]) == ["skaala_auth.E001"]

    def test_if_rules_are_set_without_the_middleware_then_e007(self, auth: Authenticator) -> None:
        setting = {"AUTHENTICATOR": auth, "PROTECT": ["/api/"]}
        assert self.ids(SKAALA_AUTH=setting, MIDDLEWARE=[]) == ["skaala_auth.E007"]

    def test_if_the_middleware_comes_after_csrf_where_rules_protect_then_w001(
        self, auth: Authenticator
    ) -> None:
        middleware = [
            "django.middleware.csrf.CsrfViewMiddleware",
            "skaala_auth.django.ApiKeyMiddleware",
        ]
        for rules in ({"PROTECT": ["/api/"]}, {"RULES_DEFAULT": "deny"}):
            setting = {"AUTHENTICATOR": auth, **rules}
            assert self.ids(SKAALA_AUTH=setting, MIDDLEWARE=middleware) == ["skaala_auth.W001"]
        # Without rules only the decorators protect, and their views are exempt from CSRF.
        assert self.ids(SKAALA_AUTH={"AUTHENTICATOR": auth}, MIDDLEWARE=middleware) == []

    def test_if_the_middleware_is_listed_twice_then_w003(self, auth: Authenticator) -> None:
        middleware = [
            "skaala_auth.django.ApiKeyMiddleware",
            "skaala_auth.django.middleware.ApiKeyMiddleware",
        ]
        assert self.ids(SKAALA_AUTH={"AUTHENTICATOR": auth}, MIDDLEWARE=middleware) == [
            "skaala_auth.W003"
        ]

    def test_if_another_frameworks_middleware_is_listed_then_e009(
        self, auth: Authenticator
    ) -> None:
        middleware = ["skaala_auth.starlette.ApiKeyMiddleware"]
        assert self.ids(SKAALA_AUTH={"AUTHENTICATOR": auth}, MIDDLEWARE=middleware) == [
            "skaala_auth.E009"
        ]

    def test_if_a_view_requires_an_unknown_scope_then_e010_naming_it(
        self, auth: Authenticator
    ) -> None:
        from django.core.checks import run_checks

        @requires_scope("read:booking")
        def typo(request: HttpRequest) -> JsonResponse:
            raise AssertionError("never called")

        class TypoView(ScopeRequiredMixin, View):
            required_scopes = ["write:booking"]

        class TypoApi(APIView):
            permission_classes = [HasScopes("read:calls") | HasScopes("read:cals")]

        module = types.ModuleType("typo_urls")
        module.urlpatterns = [  # type: ignore[attr-defined]
            path("typo", typo),
            path("typo-view", TypoView.as_view()),
            path("typo-api", TypoApi.as_view()),
            *urls.urlpatterns,  # type: ignore[attr-defined]
        ]
        setting = {"AUTHENTICATOR": auth}
        assert self.ids(SKAALA_AUTH=setting, ROOT_URLCONF=urls) == []
        assert self.ids(SKAALA_AUTH=setting, ROOT_URLCONF=module) == ["skaala_auth.E010"] * 3
        with override_settings(SKAALA_AUTH=setting, ROOT_URLCONF=module):
            found = " ".join(m.msg for m in run_checks() if m.id == "skaala_auth.E010")
        for scope in ("read:booking ", "write:booking ", "read:cals ", "TypoView", "TypoApi"):
            assert scope in found
        assert "read:calls" not in found

    def test_if_a_drf_view_tries_the_session_first_then_w004(self, auth: Authenticator) -> None:
        from rest_framework.authentication import SessionAuthentication

        class SessionFirst(APIView):
            authentication_classes = [SessionAuthentication, ApiKeyAuthentication]

        class KeyFirst(APIView):
            authentication_classes = [ApiKeyAuthentication, SessionAuthentication]

        module = types.ModuleType("order_urls")
        module.urlpatterns = [  # type: ignore[attr-defined]
            path("session-first", SessionFirst.as_view()),
            path("key-first", KeyFirst.as_view()),
        ]
        setting = {"AUTHENTICATOR": auth}
        assert self.ids(SKAALA_AUTH=setting, ROOT_URLCONF=module) == ["skaala_auth.W004"]

    def test_if_the_orm_stores_tables_are_missing_then_w002_on_a_database_check(
        self, tmp_path: Path
    ) -> None:
        from django.core.checks import run_checks

        def database_ids(**overrides: Any) -> list[str]:
            with override_settings(**overrides):
                return sorted(
                    m.id for m in run_checks(databases=["default"]) if m.id.startswith("skaala")
                )

        from tests.django_settings import migrate

        migrate("default")
        assert database_ids(SKAALA_AUTH={}) == []
        from django.db import connections

        with connections["default"].cursor() as cursor:
            cursor.execute("ALTER TABLE skaala_auth_apikey RENAME TO skaala_auth_apikey_away")
        try:
            assert database_ids(SKAALA_AUTH={}) == ["skaala_auth.W002"]
            assert self.ids(SKAALA_AUTH={}) == []  # not without --database: no I/O by default
        finally:
            with connections["default"].cursor() as cursor:
                cursor.execute("ALTER TABLE skaala_auth_apikey_away RENAME TO skaala_auth_apikey")

    def test_if_manage_py_check_runs_then_it_reports_the_missing_store(
        self, tmp_path: Path
    ) -> None:
        from django.core.management.base import SystemCheckError

        with (
            override_settings(SKAALA_AUTH={"DB": tmp_path / "kyes.db"}),
            pytest.raises(SystemCheckError, match=r"skaala_auth\.E005.*kyes\.db"),
        ):
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
