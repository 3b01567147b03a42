"""The ORM key store in a Django project: the default store, writes through the ORM (signals),
revocation across processes, worker-thread connections, async views."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.django_settings import configure

configure()

from asgiref.sync import async_to_sync  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db import connections  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402

from skaala_auth import (  # noqa: E402
    Authenticator,
    AuthError,
    InvalidKeyError,
    KeyManager,
    SQLiteKeyStore,
)
from skaala_auth.django import (  # noqa: E402
    get_authenticator,
    get_manager,
    get_store,
    requires_scope,
)
from skaala_auth.django.models import ApiKeyModel, ChangeModel, MemberModel  # noqa: E402
from skaala_auth.django.store import DjangoKeyStore, announce_keys  # noqa: E402
from skaala_auth.keys import generate_key  # noqa: E402
from skaala_auth.stores.base import Change  # noqa: E402
from tests.django_orm import clear  # noqa: E402
from tests.django_settings import migrate  # noqa: E402


@requires_scope("read:bookings")
def bookings(request: HttpRequest, team_id: str) -> JsonResponse:
    return JsonResponse({"user": request.principal.user_id})


@requires_scope("read:bookings")
async def async_bookings(request: HttpRequest, team_id: str) -> JsonResponse:
    return JsonResponse({"user": request.principal.user_id})


urls = types.ModuleType("orm_urls")
urls.urlpatterns = [  # type: ignore[attr-defined]
    path("teams/<str:team_id>/bookings", bookings),
    path("teams/<str:team_id>/async-bookings", async_bookings),
]


@pytest.fixture
def orm_store(database: str) -> Iterator[DjangoKeyStore]:
    store = DjangoKeyStore(database)
    yield store
    store.close()


@pytest.fixture
def orm_manager(orm_store: DjangoKeyStore) -> KeyManager:
    manager = KeyManager(orm_store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    return manager


@pytest.fixture
def orm_key(orm_manager: KeyManager) -> tuple[str, str]:
    """A key of user_1 in team_1, and its id."""
    key, record = orm_manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"]
    )
    return key, record.id


@pytest.fixture
def orm_auth(orm_store: DjangoKeyStore) -> Iterator[Authenticator]:
    with Authenticator(orm_store) as authenticator:
        yield authenticator


class TestTheDefaultStore:
    @pytest.fixture(autouse=True)
    def _tables(self) -> Iterator[None]:
        migrate("default")
        clear("default")
        yield
        clear("default")

    def test_if_skaala_auth_names_no_store_then_keys_live_in_the_default_database(self) -> None:
        with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH={}):
            store = get_store()
            assert isinstance(store, DjangoKeyStore) and store.alias == "default"
            manager = KeyManager(store)
            manager.add_member(team_id="team_1", user_id="u1", role="owner")
            key, record = manager.create_key(
                team_id="team_1", user_id="u1", scopes=["read:bookings"]
            )
            assert ApiKeyModel.objects.get(id=record.id).prefix == record.prefix
            assert isinstance(get_authenticator().store, DjangoKeyStore)
            client = Client()
            assert client.get("/teams/team_1/bookings", headers={"X-API-Key": key}).json() == {
                "user": "u1"
            }
            assert (
                client.get("/teams/team_2/bookings", headers={"X-API-Key": key}).status_code == 403
            )

    def test_if_an_async_view_is_served_then_the_orm_is_read_off_the_event_loop(self) -> None:
        with override_settings(ROOT_URLCONF=urls, SKAALA_AUTH={}):
            manager = KeyManager(get_store())
            manager.add_member(team_id="team_1", user_id="u1", role="owner")
            key, _ = manager.create_key(team_id="team_1", user_id="u1", scopes=["read:bookings"])
            client = AsyncClient()

            async def get(path: str, **headers: str) -> Any:
                return await client.get(path, headers=headers)

            ok = async_to_sync(get)("/teams/team_1/async-bookings", **{"X-API-Key": key})
            assert ok.status_code == 200 and ok.json() == {"user": "u1"}
            assert async_to_sync(get)("/teams/team_1/async-bookings").status_code == 401

    def test_if_the_sqlite_file_is_named_then_it_is_still_the_store(self, tmp_path: Path) -> None:
        with override_settings(SKAALA_AUTH={"DB": tmp_path / "keys.db", "CREATE": True}):
            assert isinstance(get_authenticator().store, SQLiteKeyStore)

    @pytest.mark.parametrize(
        ("setting", "message"),
        [
            ({"DATABASE": "nowhere"}, "no database 'nowhere'"),
            ({"DATABASE": 3}, "alias"),
            ({"DATABASE": "default", "DB": "keys.db"}, "DATABASE is the ORM store's"),
        ],
        ids=["unknown-alias", "not-a-string", "two-stores"],
    )
    def test_if_the_database_setting_is_wrong_then_improperly_configured(
        self, setting: dict[str, Any], message: str
    ) -> None:
        with override_settings(SKAALA_AUTH=setting), pytest.raises(ImproperlyConfigured) as raised:
            get_authenticator()
        assert message in str(raised.value)


class KeysElsewhere:
    """A project's router: the key store's tables live in the "postgres" database."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "postgres" if model._meta.app_label == "skaala_auth" else None

    db_for_write = db_for_read


def test_if_a_router_places_the_app_then_the_store_and_the_admin_follow(
    postgres_alias: str,
) -> None:
    clear(postgres_alias)
    with override_settings(DATABASE_ROUTERS=[KeysElsewhere()], SKAALA_AUTH={}):
        store = get_store()
        assert isinstance(store, DjangoKeyStore) and store.alias == postgres_alias
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        authenticator = get_authenticator()
        assert authenticator.verify(key).key_id == record.id
        row = ApiKeyModel.objects.get(id=record.id)  # the router's database, for the ORM too
        row.revoked_at = timezone.now()
        row.save()
        with pytest.raises(InvalidKeyError):
            authenticator.verify(key)
    clear(postgres_alias)


class TestRecords:
    def test_if_rows_are_read_as_records_then_they_equal_the_stores_records(
        self, orm_store: DjangoKeyStore, orm_key: tuple[str, str], database: str
    ) -> None:
        row = ApiKeyModel.objects.using(database).get(id=orm_key[1])
        assert row.to_record() == orm_store.get_key(orm_key[1])
        assert row.digest not in repr(row) + str(row)
        member = MemberModel.objects.using(database).get(team_id="team_1", user_id="user_1")
        assert member.to_record() == orm_store.get_member("team_1", "user_1")

    def test_if_use_tz_is_off_then_times_still_round_trip_exactly(
        self, orm_store: DjangoKeyStore
    ) -> None:
        from tests.stores.test_store_contract import key as contract_key

        with override_settings(USE_TZ=False):
            orm_store.insert_key(contract_key(7), "d7")
            stored = orm_store.get_key("key_7")
            revoked = orm_store.revoke_key("key_7", contract_key(7).expires_at)
        assert stored == contract_key(7)
        assert revoked is not None and revoked.revoked_at == contract_key(7).expires_at

    def test_if_a_time_is_naive_then_the_store_refuses_it(self, orm_store: DjangoKeyStore) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            orm_store.revoke_key("key_1", datetime(2027, 1, 1))


class TestTheManager:
    def test_if_the_service_has_a_pepper_then_the_admins_keys_are_made_with_it(self) -> None:
        migrate("default")
        clear("default")
        with override_settings(SKAALA_AUTH={"PEPPER": "s3cret-pepper-for-tests"}):
            manager = get_manager()
            manager.add_member(team_id="team_1", user_id="u1", role="owner")
            key, record = manager.create_key(team_id="team_1", user_id="u1", scopes=["read:calls"])
            assert get_authenticator().verify(key).key_id == record.id
            with Authenticator(DjangoKeyStore("default")) as unpeppered:
                with pytest.raises(InvalidKeyError):
                    unpeppered.verify(key)
        clear("default")

    def test_if_manager_names_a_factory_then_it_is_the_manager(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        custom = KeyManager(DjangoKeyStore("default"))
        module = types.ModuleType("skaala_test_managers")
        module.build = lambda: custom  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "skaala_test_managers", module)
        with override_settings(SKAALA_AUTH={"MANAGER": "skaala_test_managers.build"}):
            assert get_manager() is custom
        with (
            override_settings(SKAALA_AUTH={"MANAGER": 42}),
            pytest.raises(ImproperlyConfigured, match="MANAGER"),
        ):
            get_manager()


class TestWritesThroughTheOrm:
    """What the admin and a shell do: save and delete model instances."""

    def test_if_a_key_is_revoked_by_saving_its_model_then_it_is_refused_at_once(
        self,
        orm_auth: Authenticator,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        key, key_id = orm_key
        assert orm_auth.verify(key).key_id == key_id  # now cached
        row = ApiKeyModel.objects.using(database).get(id=key_id)
        row.revoked_at = timezone.now()
        row.save()
        with pytest.raises(InvalidKeyError):
            orm_auth.verify(key)
        logged = ChangeModel.objects.using(database).filter(kind="key", key_id=key_id)
        assert logged.count() == 2  # created, then revoked

    def test_if_a_key_row_is_deleted_then_it_is_refused_at_once(
        self,
        orm_auth: Authenticator,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        key, key_id = orm_key
        orm_auth.verify(key)
        ApiKeyModel.objects.using(database).filter(id=key_id).delete()
        with pytest.raises(InvalidKeyError):
            orm_auth.verify(key)

    def test_if_the_queryset_revokes_then_every_key_is_refused_and_announced(
        self,
        orm_auth: Authenticator,
        orm_manager: KeyManager,
        database: str,
    ) -> None:
        keys = [
            orm_manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
            for _ in range(3)
        ]
        for key, _ in keys:
            orm_auth.verify(key)
        assert ApiKeyModel.objects.using(database).filter(team_id="team_1").revoke() == 3
        assert ApiKeyModel.objects.using(database).filter(team_id="team_1").revoke() == 0
        for key, _ in keys:
            with pytest.raises(InvalidKeyError):
                orm_auth.verify(key)

    def test_if_a_plain_update_bypasses_the_signals_then_announce_completes_it(
        self,
        orm_auth: Authenticator,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        """The documented gap: ``QuerySet.update()`` sends no signal, so the change reaches
        no cache until it is announced (or the cache entry expires)."""
        key, key_id = orm_key
        orm_auth.verify(key)
        ApiKeyModel.objects.using(database).filter(id=key_id).update(revoked_at=timezone.now())
        assert orm_auth.verify(key).key_id == key_id  # still cached: nothing said it changed
        announce_keys(database, [key_id])
        with pytest.raises(InvalidKeyError):
            orm_auth.verify(key)

    def test_if_a_membership_is_deleted_through_the_orm_then_the_key_is_refused(
        self,
        orm_auth: Authenticator,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        key, _ = orm_key
        orm_auth.verify(key)
        MemberModel.objects.using(database).get(team_id="team_1", user_id="user_1").delete()
        with pytest.raises(AuthError) as refused:
            orm_auth.verify(key)
        assert refused.value.status_code == 403

    def test_if_a_membership_moves_to_another_user_then_the_old_users_keys_are_refused(
        self,
        orm_auth: Authenticator,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        key, _ = orm_key
        orm_auth.verify(key)
        member = MemberModel.objects.using(database).get(team_id="team_1", user_id="user_1")
        member.user_id = "user_2"
        member.save()
        with pytest.raises(AuthError) as refused:
            orm_auth.verify(key)
        assert refused.value.status_code == 403

    def test_if_a_write_rolls_back_then_nothing_is_announced(
        self,
        orm_store: DjangoKeyStore,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        from django.db import transaction

        seen: list[Change] = []
        orm_store.subscribe(seen.append)
        with pytest.raises(RuntimeError), transaction.atomic(using=database):
            row = ApiKeyModel.objects.using(database).get(id=orm_key[1])
            row.revoked_at = timezone.now()
            row.save()
            raise RuntimeError("rolled back")
        assert seen == []
        orm_store.poll_changes()
        assert seen == []


class TestTheChangeLog:
    def test_if_another_store_writes_then_a_poll_hears_it_once(
        self,
        orm_store: DjangoKeyStore,
        database: str,
    ) -> None:
        seen: list[Change] = []
        orm_store.subscribe(seen.append)
        orm_store.poll_changes()
        # Another process's commit, as it looks from here: entries this process did not write.
        from skaala_auth.django.store import _append

        written = [Change("key", key_id="key_x"), Change("member", team_id="t", user_id="u")]
        _append(database, written)
        orm_store.poll_changes()
        orm_store.poll_changes()
        assert seen == written

    def test_if_the_log_goes_back_then_everything_is_dropped(
        self,
        orm_store: DjangoKeyStore,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        seen: list[Change] = []
        orm_store.subscribe(seen.append)
        clear(database)  # a restore from an older backup, a flush
        orm_store.poll_changes()
        assert seen == [Change("all")]

    def test_if_entries_were_pruned_past_the_cursor_then_everything_is_dropped(
        self,
        orm_key: tuple[str, str],
        database: str,
    ) -> None:
        behind = DjangoKeyStore(database)
        behind.poll_changes()
        seen: list[Change] = []
        behind.subscribe(seen.append)
        behind.close()  # no longer published to in-process: it hears only its polls
        from skaala_auth.django.store import CHANGE_RETENTION, _append

        ChangeModel.objects.using(database).update(at=timezone.now() - 2 * CHANGE_RETENTION)
        _append(database, [Change("key", key_id="a")])  # prunes the old entries
        _append(database, [Change("key", key_id="b")])
        assert ChangeModel.objects.using(database).count() == 2
        behind._cursor = 0  # a process that last polled before the pruned entries
        behind.poll_changes()
        assert seen == [Change("all")]


def _backends(alias: str, settle_to: int | None = None) -> int:
    """Connections to the PostgreSQL database of ``alias`` other than this thread's.

    A server process lingers in ``pg_stat_activity`` for a moment after its client closed the
    connection: with ``settle_to``, wait (up to 5 s) for the count to come down to it first.
    """
    deadline = time.monotonic() + 5
    while True:
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            count: int = cursor.fetchone()[0]
        if settle_to is None or count <= settle_to or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


class TestWorkerThreadConnections:
    """The authenticator's worker threads serve no request: nothing else would close their
    connections."""

    @staticmethod
    def misses(auth: Authenticator, count: int) -> None:
        for _ in range(count):  # unknown, well-formed keys: each one a look-up and a poll
            with pytest.raises(InvalidKeyError):
                auth.verify(generate_key())

    def test_if_conn_max_age_is_0_then_no_worker_keeps_a_connection(
        self,
        postgres_alias: str,
    ) -> None:
        clear(postgres_alias)
        before = _backends(postgres_alias, settle_to=0)
        store = DjangoKeyStore(postgres_alias)
        with Authenticator(store, poll_interval=0) as auth:
            self.misses(auth, 40)
            assert _backends(postgres_alias, settle_to=before) == before
        store.close()

    @pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
    def test_if_conn_max_age_is_0_then_no_worker_keeps_the_sqlite_file_open(self) -> None:
        migrate("default")
        clear("default")
        name = str(connections["default"].settings_dict["NAME"])

        def opened() -> int:
            found = 0
            for fd in Path("/proc/self/fd").iterdir():
                try:
                    found += os.readlink(fd) == name
                except OSError:  # closed while we looked
                    pass
            return found

        connections["default"].close()
        before = opened()
        store = DjangoKeyStore("default")
        with Authenticator(store, poll_interval=0) as auth:
            self.misses(auth, 40)
            assert opened() == before
        store.close()

    def test_if_connections_persist_then_their_number_does_not_grow(
        self,
        postgres_alias: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        clear(postgres_alias)
        monkeypatch.setitem(connections[postgres_alias].settings_dict, "CONN_MAX_AGE", None)
        before = _backends(postgres_alias, settle_to=0)
        store = DjangoKeyStore(postgres_alias)
        with Authenticator(store, poll_interval=0) as auth:
            self.misses(auth, 40)
            first = _backends(postgres_alias)
            self.misses(auth, 40)
            assert first == _backends(postgres_alias)
            assert 0 < first - before <= 8  # at most one per worker thread
        store.close()
        # Closed, the authenticator's threads end, and their connections with them.
        for thread in threading.enumerate():
            if thread.name.startswith("skaala-auth-store"):
                thread.join(timeout=10)
        assert _backends(postgres_alias, settle_to=before) == before

    def test_if_a_request_thread_holds_the_connection_then_it_is_left_open(
        self,
        orm_store: DjangoKeyStore,
        database: str,
    ) -> None:
        connection = connections[database]
        connection.ensure_connection()  # a request's connection, opened before the store call
        orm_store.list_keys("team_1")
        assert connection.connection is not None


class TestRevocationAcrossProcesses:
    """Two processes on one database: a revoke in one is refused by the other within 1 s."""

    @pytest.mark.parametrize("how", ["manager", "model-save"])
    def test_if_revoked_in_one_process_then_the_other_refuses_within_a_second(
        self,
        orm_manager: KeyManager,
        orm_key: tuple[str, str],
        database: str,
        how: str,
    ) -> None:
        key, key_id = orm_key
        settings = connections[database].settings_dict
        target = {
            name: settings[name] for name in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.adapters.orm_revocation_child", json.dumps(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(key + "\n")
            child.stdin.close()
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.3)  # let the other process settle into serving from its cache
            started = time.time()
            if how == "manager":
                orm_manager.revoke_key(key_id)
            else:
                row = ApiKeyModel.objects.using(database).get(id=key_id)
                row.revoked_at = timezone.now()
                row.save()
            revoked = time.time()
            outcome = child.stdout.readline().split()
            assert outcome[0] == "refused", outcome
            refused = float(outcome[1])
            assert started <= refused
            assert refused - revoked < 1.0
        finally:
            child.kill() if child.poll() is None else None
            child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()
