"""The Flask extension beyond the contract suite: set-up, config, blueprints, async views."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Blueprint, Flask, g

from skaala_auth import (
    Authenticator,
    ConfigurationError,
    KeyManager,
    MemoryKeyStore,
    SQLiteKeyStore,
)
from skaala_auth.flask import SkaalaAuth, requires_scope
from skaala_auth.rules import Rules

from ..conftest import Clock


@pytest.fixture
def key(manager: KeyManager) -> str:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return key


def test_if_built_from_config_then_keys_of_that_database_work(tmp_path: Path) -> None:
    database = tmp_path / "keys.db"
    store = SQLiteKeyStore(database)
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    extension = SkaalaAuth()
    app = Flask(__name__)
    app.config["SKAALA_AUTH_DB"] = str(database)
    app.config["SKAALA_AUTH_PUBLIC"] = ["/open"]
    extension.init_app(app)

    @app.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def bookings(team_id: str) -> dict[str, str]:
        return {"user": g.principal.user_id}

    @app.get("/open")
    def open_() -> str:
        return "open"

    client = app.test_client()
    reply = client.get("/teams/team_1/bookings", headers={"X-API-Key": key})
    assert reply.json == {"user": "user_1"}
    assert client.get("/open", headers={"X-API-Key": "sk_live_bad"}).data == b"open"
    authenticator = app.extensions["skaala_auth"]
    assert isinstance(authenticator, Authenticator)
    authenticator.close()
    store.close()


def test_if_the_database_in_config_is_missing_then_init_app_names_it_and_the_fix(
    tmp_path: Path,
) -> None:
    app = Flask(__name__)
    app.config["SKAALA_AUTH_DB"] = str(tmp_path / "kyes.db")  # a typo: no empty store appears
    with pytest.raises(ConfigurationError, match="skaala-auth --db .*kyes.db init") as caught:
        SkaalaAuth(app)
    assert "CREATE" in str(caught.value) and not (tmp_path / "kyes.db").exists()
    app.config["SKAALA_AUTH_CREATE"] = True
    SkaalaAuth(app)
    assert (tmp_path / "kyes.db").exists()
    app.extensions["skaala_auth"].close()


@pytest.mark.parametrize("text", ["false", "0", "no", "off", "False"])
def test_if_accept_test_keys_comes_from_the_environment_as_false_then_test_keys_stay_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    store = SQLiteKeyStore(tmp_path / "keys.db")
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1")
    test_key, _ = manager.create_key(
        team_id="team_1", user_id="user_1", scopes=["read:bookings"], environment="test"
    )
    monkeypatch.setenv("SKAALA_AUTH_ACCEPT_TEST_KEYS", text)
    app = Flask(__name__)
    app.config["SKAALA_AUTH_DB"] = str(tmp_path / "keys.db")
    app.config["SKAALA_AUTH_ACCEPT_TEST_KEYS"] = os.environ["SKAALA_AUTH_ACCEPT_TEST_KEYS"]
    SkaalaAuth(app)

    @app.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def bookings(team_id: str) -> str:
        return "ok"

    reply = app.test_client().get("/teams/team_1/bookings", headers={"X-API-Key": test_key})
    assert reply.status_code == 401
    app.extensions["skaala_auth"].close()
    store.close()


def test_if_a_flag_in_config_is_not_a_boolean_then_error_naming_it(tmp_path: Path) -> None:
    SQLiteKeyStore(tmp_path / "keys.db").close()
    app = Flask(__name__)
    app.config.update(SKAALA_AUTH_DB=str(tmp_path / "keys.db"), SKAALA_AUTH_ACCEPT_TEST_KEYS="y")
    with pytest.raises(ConfigurationError, match="ACCEPT_TEST_KEYS"):
        SkaalaAuth(app)


def test_if_there_is_neither_authenticator_nor_database_then_init_app_says_so() -> None:
    with pytest.raises(RuntimeError, match="SKAALA_AUTH_DB"):
        SkaalaAuth(Flask(__name__))


def test_if_the_extension_is_missing_then_the_decorator_says_so() -> None:
    app = Flask(__name__)

    @app.get("/")
    @requires_scope("read:bookings")
    def index() -> str:
        return "never"

    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="SkaalaAuth"):
        app.test_client().get("/")


def test_if_a_blueprint_is_decorated_then_each_of_its_views_needs_the_scope(
    auth: Authenticator, key: str
) -> None:
    app = Flask(__name__)
    SkaalaAuth(app, authenticator=auth)
    admin = Blueprint("admin", __name__, url_prefix="/teams/<team_id>/admin")
    requires_scope("write:bookings")(admin)
    reports = Blueprint("reports", __name__, url_prefix="/teams/<team_id>/reports")
    requires_scope("read:bookings")(reports)
    admin.get("/")(lambda team_id: "admin")
    reports.get("/")(lambda team_id: {"user": g.principal.user_id})
    app.register_blueprint(admin)
    app.register_blueprint(reports)
    client = app.test_client()

    assert client.get("/teams/team_1/reports/", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/teams/team_2/reports/", headers={"X-API-Key": key}).status_code == 403
    assert client.get("/teams/team_1/admin/", headers={"X-API-Key": key}).status_code == 403
    assert client.get("/teams/team_1/reports/").status_code == 401


def test_if_a_view_is_async_then_it_is_protected_too(auth: Authenticator, key: str) -> None:
    app = Flask(__name__)
    SkaalaAuth(app, authenticator=auth)

    @app.get("/teams/<int:team_number>/bookings")
    @requires_scope("read:bookings", team_param="team_number")
    async def bookings(team_number: int) -> dict[str, int]:
        return {"team": team_number}

    client = app.test_client()
    # The team id is compared as text: an int converter's 1 is not "team_1".
    assert client.get("/teams/1/bookings", headers={"X-API-Key": key}).status_code == 403
    assert client.get("/teams/1/bookings").status_code == 401


def test_if_a_request_is_anonymous_then_g_principal_is_none(auth: Authenticator) -> None:
    app = Flask(__name__)
    SkaalaAuth(app, authenticator=auth)
    app.get("/")(lambda: {"principal": g.principal})
    assert app.test_client().get("/").json == {"principal": None}


def test_if_rules_are_given_then_undecorated_views_are_protected_by_them(
    auth: Authenticator, key: str
) -> None:
    app = Flask(__name__)
    rules = Rules([("/teams/{team_id}/calls", ["read:calls"])])
    SkaalaAuth(app, authenticator=auth, rules=rules)
    app.get("/teams/<team_id>/calls")(lambda team_id: "calls")
    client = app.test_client()
    assert client.get("/teams/team_1/calls").status_code == 401
    assert client.get("/teams/team_1/calls", headers={"X-API-Key": key}).status_code == 403


def test_if_one_extension_serves_two_apps_then_each_is_protected(
    store: MemoryKeyStore, clock: Clock, key: str
) -> None:
    extension = SkaalaAuth(authenticator=Authenticator(store, clock=clock))
    apps = [Flask("one"), Flask("two")]
    for app in apps:
        extension.init_app(app)
        app.get("/")(requires_scope("read:bookings")(lambda: "ok"))
    for app in apps:
        assert app.test_client().get("/", headers={"X-API-Key": key}).data == b"ok"
        assert app.test_client().get("/").status_code == 401


def test_if_g_is_used_for_other_things_then_it_behaves_as_before(auth: Authenticator) -> None:
    app = Flask(__name__)
    SkaalaAuth(app, authenticator=auth)
    with app.app_context():
        assert g.principal is None  # outside a request
        g.other = 1
        assert g.other == 1
        with pytest.raises(AttributeError):
            _ = g.missing


def test_if_a_public_path_has_a_decorated_view_then_it_authenticates_there(
    auth: Authenticator, key: str
) -> None:
    """The middleware does not read credentials on a public path; the decorator does."""
    app = Flask(__name__)
    SkaalaAuth(app, authenticator=auth, rules=Rules(public=["/public/*"]))

    @app.get("/public/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def bookings(team_id: str) -> dict[str, str]:
        return {"user": g.principal.user_id}

    client = app.test_client()
    path = "/public/teams/team_1/bookings"
    assert client.get(path, headers={"X-API-Key": key}).json == {"user": "user_1"}
    assert client.get(path).status_code == 401
    assert (
        client.get("/public/teams/team_2/bookings", headers={"X-API-Key": key}).status_code == 403
    )
