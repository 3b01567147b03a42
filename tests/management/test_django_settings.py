"""The Django management URLs configured by ``SKAALA_AUTH`` alone: the authenticator, the
manager (same store and pepper) and the allowed origins built from the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("jwt")

from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.test.utils import override_settings

from skaala_auth import KeyManager, SQLiteKeyStore
from skaala_auth.testing import SessionKit
from tests.django_settings import configure

ORIGIN = "https://dashboard.example.com"
PEPPER = "a-pepper-for-tests-only-0123456789"


@pytest.fixture
def kit() -> SessionKit:
    return SessionKit(project_id="test-project")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "keys.db"
    store = SQLiteKeyStore(path)
    KeyManager(store, pepper=PEPPER).add_member(team_id="team_1", user_id="user_1", role="owner")
    store.close()
    return path


def _settings(database: Path, kit: SessionKit, **more: Any) -> dict[str, Any]:
    return {
        "DB": str(database),
        "PEPPER": PEPPER,
        "SESSION_PROJECT_ID": "test-project",
        "SESSION_JWKS": kit.jwks,
        "ALLOWED_ORIGINS": ORIGIN,  # one string, as from an environment variable
        **more,
    }


@pytest.fixture
def client(database: Path, kit: SessionKit) -> Iterator[Client]:
    configure()
    with override_settings(
        SKAALA_AUTH=_settings(database, kit),
        ROOT_URLCONF="tests.management.django_urls",
        MIDDLEWARE=[
            "django.middleware.csrf.CsrfViewMiddleware",
            "skaala_auth.django.ApiKeyMiddleware",
        ],
    ):
        yield Client(enforce_csrf_checks=True)


@pytest.mark.shows_key("response")
def test_if_only_the_setting_configures_it_then_a_created_key_authenticates(
    client: Client, kit: SessionKit
) -> None:
    from skaala_auth.django import get_authenticator

    created = client.post(
        "/api/v1/teams/team_1/api-keys",
        {"name": "CI", "scopes": ["read:bookings"]},
        content_type="application/json",
        headers={**kit.headers("user_1"), "Origin": ORIGIN},
    )
    assert created.status_code == 201, created.content
    # The manager shares the authenticator's store and pepper: the key it made authenticates.
    principal = get_authenticator().authenticate({"X-API-Key": created.json()["key"]})
    assert principal.key_id == created.json()["api_key"]["id"]


def test_if_the_origin_is_not_the_settings_then_403(client: Client, kit: SessionKit) -> None:
    refused = client.post(
        "/api/v1/teams/team_1/api-keys",
        {"name": "CI", "scopes": ["read:bookings"]},
        content_type="application/json",
        headers={**kit.headers("user_1"), "Origin": "https://evil.example.com"},
    )
    assert refused.status_code == 403


def test_if_the_settings_are_checked_then_manager_is_a_known_name(
    database: Path, kit: SessionKit
) -> None:
    from skaala_auth.django.checks import check_settings

    configure()
    with override_settings(
        SKAALA_AUTH=_settings(database, kit, MANAGER="tests.management.test_django_settings.x")
    ):
        assert [m.id for m in check_settings() if m.id == "skaala_auth.E002"] == []
    with override_settings(SKAALA_AUTH=_settings(database, kit, MANAGR="x")):
        assert [m.id for m in check_settings() if m.id == "skaala_auth.E002"] == [
            "skaala_auth.E002"
        ]


@pytest.mark.parametrize(
    ("more", "message"),
    [
        pytest.param({"MANAGER": 5}, "MANAGER", id="manager-not-a-manager"),
        pytest.param({"MANAGER": "tests.management.test_django_settings.PEPPER"}, "MANAGER"),
        pytest.param({"ALLOWED_ORIGINS": ["dashboard.example.com"]}, "not an origin", id="origin"),
    ],
)
def test_if_the_setting_is_wrong_then_improperly_configured(
    database: Path, kit: SessionKit, more: dict[str, Any], message: str
) -> None:
    from skaala_auth.django import management_urls

    configure()
    with (
        override_settings(SKAALA_AUTH=_settings(database, kit, **more)),
        pytest.raises(ImproperlyConfigured, match=message),
    ):
        management_urls._api()


def test_if_manager_names_a_callable_then_its_manager_is_used(
    database: Path, kit: SessionKit
) -> None:
    from skaala_auth.django import management_urls

    made = KeyManager(SQLiteKeyStore(database), pepper=PEPPER)
    configure()
    with override_settings(SKAALA_AUTH=_settings(database, kit, MANAGER=lambda: made)):
        assert management_urls.get_manager() is made
    made.store.close()
