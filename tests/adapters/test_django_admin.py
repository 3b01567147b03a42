"""The admin of the ORM store, driven by Django's test client as a staff user."""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.django_settings import configure

configure()

from django.contrib import admin  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402

from skaala_auth import AuthError, InvalidKeyError, KeyManager  # noqa: E402
from skaala_auth.django import get_authenticator, get_store  # noqa: E402
from skaala_auth.django.models import ApiKeyModel, MemberModel  # noqa: E402
from skaala_auth.keys import KEY_PATTERN, generate_key  # noqa: E402
from tests.django_orm import clear  # noqa: E402
from tests.django_settings import migrate  # noqa: E402

urls = types.ModuleType("admin_urls")
urls.urlpatterns = [path("admin/", admin.site.urls)]  # type: ignore[attr-defined]
KEYS = "/admin/skaala_auth/apikeymodel/"
MEMBERS = "/admin/skaala_auth/membermodel/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "skaala_auth.django.ApiKeyMiddleware",
]


@pytest.fixture
def site() -> Iterator[None]:
    migrate("default")
    clear("default")
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=MIDDLEWARE, SKAALA_AUTH={}):
        yield
    clear("default")
    User.objects.all().delete()


@pytest.fixture
def staff(site: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "-"))
    return client


@pytest.fixture
def manager(site: None) -> KeyManager:
    manager = KeyManager(get_store())
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    return manager


def digests() -> list[str]:
    return list(ApiKeyModel.objects.values_list("digest", flat=True))


def assert_secret_free(html: str) -> None:
    """No digest, and nothing shaped like a key (a display prefix is not: it has an ellipsis)."""
    for digest in digests():
        assert digest.split("$")[-1] not in html
    assert not KEY_PATTERN.search(html)


class TestList:
    def test_if_keys_are_listed_then_every_column_shows_and_no_secret(
        self, staff: Client, manager: KeyManager
    ) -> None:
        _, record = manager.create_key(
            team_id="team_1", user_id="user_1", name="CI", scopes=["read:bookings", "read:calls"]
        )
        page = staff.get(KEYS).content.decode()
        for text in ("CI", record.prefix, "team_1", "user_1", "read:bookings, read:calls"):
            assert text in page
        assert ">active<" in page
        for column in ("created", "expires", "last used", "status"):
            assert column in page.lower()
        assert_secret_free(page)

    def test_if_filtered_by_status_or_searched_then_only_those_keys(
        self, staff: Client, manager: KeyManager
    ) -> None:
        _, kept = manager.create_key(
            team_id="team_1", user_id="user_1", name="kept", scopes=["read:calls"]
        )
        _, gone = manager.create_key(
            team_id="team_1", user_id="user_1", name="gone", scopes=["read:calls"]
        )
        manager.revoke_key(gone.id)
        revoked = staff.get(KEYS, {"status": "revoked"}).content.decode()
        assert gone.prefix in revoked and kept.prefix not in revoked
        active = staff.get(KEYS, {"status": "active"}).content.decode()
        assert kept.prefix in active and gone.prefix not in active
        found = staff.get(KEYS, {"q": "kept"}).content.decode()
        assert kept.prefix in found and gone.prefix not in found

    def test_if_the_user_is_not_staff_then_the_admin_is_closed(self, site: None) -> None:
        assert Client().get(KEYS).status_code == 302


class TestAdd:
    @pytest.mark.shows_key("response")
    def test_if_a_key_is_added_then_its_plaintext_is_shown_once_and_it_works(
        self, staff: Client, manager: KeyManager
    ) -> None:
        form = {"team_id": "team_1", "user_id": "user_1", "name": "deploy",
                "scopes": ["read:bookings"], "expires_at_0": "", "expires_at_1": ""}  # fmt: skip
        answer = staff.post(KEYS + "add/", form)
        assert answer.status_code == 200
        assert "no-store" in answer["Cache-Control"]
        shown = KEY_PATTERN.findall(answer.content.decode())
        assert len(shown) == 1
        key = shown[0]
        principal = get_authenticator().verify(key, required_scopes=["read:bookings"])
        row = ApiKeyModel.objects.get(name="deploy")
        assert principal.key_id == row.id and row.expires_at > timezone.now() + timedelta(days=364)
        # Never again: the change page, the list and the history show no key and no digest.
        for url in (f"{KEYS}{row.id}/change/", KEYS, f"{KEYS}{row.id}/history/"):
            page = staff.get(url)
            assert page.status_code == 200
            assert_secret_free(page.content.decode())

    def test_if_the_user_is_not_a_member_then_the_form_says_so(
        self, staff: Client, manager: KeyManager
    ) -> None:
        form = {"team_id": "team_1", "user_id": "stranger", "scopes": ["read:calls"]}
        answer = staff.post(KEYS + "add/", form)
        assert answer.status_code == 200 and b"Not a member of this team" in answer.content
        assert not ApiKeyModel.objects.exists()

    def test_if_a_key_is_pasted_as_the_name_then_refused_and_not_echoed(
        self, staff: Client, manager: KeyManager
    ) -> None:
        pasted = generate_key()  # the leak check fails the test if any response shows it
        form = {"team_id": "team_1", "user_id": "user_1", "name": pasted, "scopes": ["read:calls"]}
        answer = staff.post(KEYS + "add/", form)
        assert b"never paste a key here" in answer.content
        assert not ApiKeyModel.objects.exists()

    def test_if_no_scope_is_chosen_then_the_form_says_so(
        self, staff: Client, manager: KeyManager
    ) -> None:
        answer = staff.post(KEYS + "add/", {"team_id": "team_1", "user_id": "user_1"})
        assert answer.status_code == 200 and not ApiKeyModel.objects.exists()


class TestActions:
    def test_if_keys_are_revoked_by_the_action_then_refused_at_once_and_read_only(
        self, staff: Client, manager: KeyManager
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        authenticator = get_authenticator()
        authenticator.verify(key)  # cached
        answer = staff.post(
            KEYS, {"action": "revoke_keys", "_selected_action": [record.id]}, follow=True
        )
        assert b"Revoked 1 key" in answer.content
        with pytest.raises(InvalidKeyError):
            authenticator.verify(key)
        change = staff.get(f"{KEYS}{record.id}/change/").content.decode()
        assert 'name="_save"' not in change and "revoked" in change
        edit = staff.post(
            f"{KEYS}{record.id}/change/", {"name": "renamed", "scopes": ["read:calls"]}
        )
        assert edit.status_code == 403
        assert ApiKeyModel.objects.get(id=record.id).name == ""

    @pytest.mark.shows_key("response")
    def test_if_keys_are_rotated_by_the_action_then_the_new_ones_are_shown_once(
        self, staff: Client, manager: KeyManager
    ) -> None:
        old, record = manager.create_key(
            team_id="team_1", user_id="user_1", name="ci", scopes=["read:calls"]
        )
        answer = staff.post(KEYS, {"action": "rotate_keys", "_selected_action": [record.id]})
        assert "no-store" in answer["Cache-Control"]
        shown = KEY_PATTERN.findall(answer.content.decode())
        assert len(shown) == 1 and shown[0] != old
        authenticator = get_authenticator()
        new = authenticator.verify(shown[0])
        assert ApiKeyModel.objects.get(id=new.key_id).rotated_from == record.id
        assert authenticator.verify(old).key_id == record.id  # the grace period
        assert ApiKeyModel.objects.get(id=record.id).expires_at < timezone.now() + timedelta(
            hours=25
        )

    def test_if_a_revoked_key_is_rotated_then_refused_with_a_message(
        self, staff: Client, manager: KeyManager
    ) -> None:
        _, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        manager.revoke_key(record.id)
        answer = staff.post(
            KEYS, {"action": "rotate_keys", "_selected_action": [record.id]}, follow=True
        )
        assert b"cannot be rotated" in answer.content
        assert ApiKeyModel.objects.count() == 1
        assert_secret_free(answer.content.decode())

    def test_if_a_key_is_pasted_as_a_new_name_then_refused_and_not_echoed(
        self, staff: Client, manager: KeyManager
    ) -> None:
        _, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        pasted = generate_key()
        answer = staff.post(
            f"{KEYS}{record.id}/change/", {"name": pasted, "scopes": ["read:calls"]}
        )
        assert answer.status_code == 200 and b"never paste a key here" in answer.content
        assert ApiKeyModel.objects.get(id=record.id).name == ""

    def test_if_a_key_is_edited_then_the_change_reaches_the_authenticator(
        self, staff: Client, manager: KeyManager
    ) -> None:
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        authenticator = get_authenticator()
        authenticator.verify(key, required_scopes=["read:calls"])
        expires = ApiKeyModel.objects.get(id=record.id).expires_at
        form = {"name": "narrowed", "scopes": ["read:bookings"],
                "expires_at_0": expires.strftime("%Y-%m-%d"),
                "expires_at_1": expires.strftime("%H:%M:%S")}  # fmt: skip
        answer = staff.post(f"{KEYS}{record.id}/change/", form)
        assert answer.status_code == 302, answer.content.decode()[:2000]
        with pytest.raises(AuthError) as refused:
            authenticator.verify(key, required_scopes=["read:calls"])
        assert refused.value.status_code == 403
        assert authenticator.verify(key, required_scopes=["read:bookings"]).key_id == record.id


class TestMembers:
    def test_if_a_member_is_added_and_removed_in_the_admin_then_their_keys_follow(
        self, staff: Client, site: None
    ) -> None:
        answer = staff.post(
            MEMBERS + "add/", {"team_id": "team_9", "user_id": "u9", "role": "admin"}
        )
        assert answer.status_code == 302
        key, _ = KeyManager(get_store()).create_key(
            team_id="team_9", user_id="u9", scopes=["read:calls"]
        )
        authenticator = get_authenticator()
        assert authenticator.verify(key).user_id == "u9"
        member = MemberModel.objects.get(team_id="team_9", user_id="u9")
        listed = staff.get(MEMBERS).content.decode()
        assert "team_9" in listed and "admin" in listed
        answer = staff.post(f"{MEMBERS}{member.pk}/delete/", {"post": "yes"})
        assert answer.status_code == 302
        with pytest.raises(AuthError) as refused:
            authenticator.verify(key)
        assert refused.value.status_code == 403

    def test_if_a_role_is_changed_then_only_the_role_is_editable(
        self, staff: Client, manager: KeyManager
    ) -> None:
        member = MemberModel.objects.get(team_id="team_1", user_id="user_1")
        page = staff.get(f"{MEMBERS}{member.pk}/change/").content.decode()
        assert 'name="role"' in page and 'name="team_id"' not in page
        answer = staff.post(f"{MEMBERS}{member.pk}/change/", {"role": "member"})
        assert answer.status_code == 302
        assert MemberModel.objects.get(pk=member.pk).role == "member"


def test_if_the_page_shows_a_display_prefix_then_it_is_no_key() -> None:
    """The secret-free check above must not mistake a display prefix for a key."""
    assert not KEY_PATTERN.search("<td>sk_live_AbCd…wxyz</td>")
