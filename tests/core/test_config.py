from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from skaala_auth import KeyManager, SQLiteKeyStore
from skaala_auth.config import (
    ConfigurationError,
    authenticator_from_settings,
    open_store,
    parse_setting,
    rules_from_settings,
    store_from_settings,
)
from skaala_auth.rules import Requirement, Rules


class TestStores:
    def test_if_db_then_sqlite_store_on_that_file(self, tmp_path: Path) -> None:
        SQLiteKeyStore(tmp_path / "k.db").close()
        store = open_store(db=tmp_path / "k.db")
        assert isinstance(store, SQLiteKeyStore) and store.path == str(tmp_path / "k.db")
        store.close()

    def test_if_db_is_missing_then_error_naming_the_path_and_the_fix(self, tmp_path: Path) -> None:
        missing = tmp_path / "typo.db"
        with pytest.raises(ConfigurationError) as caught:
            open_store(db=missing)
        message = str(caught.value)
        assert str(missing) in message and f"skaala-auth --db {missing} init" in message
        assert "CREATE" in message and caught.value.setting == "DB"
        assert not missing.exists()

    @pytest.mark.parametrize("create", [True, "true", "1", "yes", "ON"])
    def test_if_create_is_true_then_the_file_is_created(
        self, tmp_path: Path, create: object
    ) -> None:
        store = store_from_settings({"DB": tmp_path / "new.db", "CREATE": create})
        assert (tmp_path / "new.db").exists()
        store.close()

    def test_if_sqlite_store_is_made_in_code_then_it_still_creates_the_file(
        self, tmp_path: Path
    ) -> None:
        SQLiteKeyStore(tmp_path / "code.db").close()
        assert (tmp_path / "code.db").exists()

    @pytest.mark.parametrize("kwargs", [{}, {"db": "a.db", "dsn": "postgresql://x"}])
    def test_if_not_exactly_one_store_then_error(self, kwargs: dict[str, str]) -> None:
        with pytest.raises(ConfigurationError, match="one key store"):
            open_store(**kwargs)

    def test_if_dsn_without_psycopg_then_it_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delitem(sys.modules, "skaala_auth.stores.postgres", raising=False)
        monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import fails
        with pytest.raises(ConfigurationError) as caught:
            open_store(dsn="postgresql://127.0.0.1/test")
        assert "pip install 'skaala-auth[postgres]'" in str(caught.value)
        assert caught.value.setting == "DSN"

    def test_if_dsn_then_a_postgres_store_in_the_schema_named(self) -> None:
        pytest.importorskip("psycopg_pool")  # the postgres extra (its module raises ImportError)
        from skaala_auth.stores import postgres

        # The store does not wait for the server: no server is needed to build one.
        store = open_store(dsn="postgresql://127.0.0.1:1/test", schema="keys")
        try:
            assert isinstance(store, postgres.PostgresKeyStore) and store.schema == "keys"
        finally:
            store.close()

    def test_if_dsn_malformed_then_error_without_the_string(self) -> None:
        pytest.importorskip("psycopg_pool")
        with pytest.raises(ConfigurationError) as caught:
            open_store(dsn="host=x password=hunter2 port")
        assert "hunter2" not in str(caught.value) and caught.value.setting == "DSN"

    def test_if_schema_without_dsn_then_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError) as caught:
            open_store(db=tmp_path / "k.db", create=True, schema="keys")
        assert caught.value.setting == "SCHEMA"


class TestAuthenticator:
    def test_if_settings_then_options_applied_and_keys_work(self, tmp_path: Path) -> None:
        db = tmp_path / "k.db"
        auth = authenticator_from_settings(
            {"DB": db, "CREATE": True, "CACHE_TTL": 7, "ACCEPT_TEST_KEYS": True, "PEPPER": "p" * 16}
        )
        assert auth.cache.ttl == 7 and auth.accept_test_keys
        assert auth.hasher.algorithm == "blake2b-keyed"
        manager = KeyManager(auth.store, pepper="p" * 16)
        manager.add_member(team_id="t", user_id="u")
        key, _ = manager.create_key(
            team_id="t", user_id="u", scopes=["read:calls"], environment="test"
        )
        assert auth.verify(key).team_id == "t"
        auth.close()

    def test_if_misspelt_setting_then_error_naming_it(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="CACH_TTL"):
            authenticator_from_settings({"DB": tmp_path / "k.db", "CACH_TTL": 7})

    def test_if_adapter_settings_ignored_then_accepted(self, tmp_path: Path) -> None:
        auth = authenticator_from_settings(
            {"DB": tmp_path / "k.db", "CREATE": True, "PUBLIC": ["/health"]}, ignore={"PUBLIC"}
        )
        auth.close()

    def test_if_bad_value_then_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="pepper"):
            authenticator_from_settings({"DB": tmp_path / "k.db", "CREATE": 1, "PEPPER": "short"})


class TestStrictValues:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("false", False), ("0", False), ("no", False), ("OFF", False), (" False ", False),
         ("true", True), ("1", True), ("Yes", True), ("on", True), (True, True), (False, False)],
    )  # fmt: skip
    def test_if_accept_test_keys_is_spelt_as_in_the_environment_then_read_as_meant(
        self, tmp_path: Path, text: object, expected: bool
    ) -> None:
        auth = authenticator_from_settings(
            {"DB": tmp_path / "k.db", "CREATE": True, "ACCEPT_TEST_KEYS": text}
        )
        assert auth.accept_test_keys is expected
        auth.close()

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            pytest.param("ACCEPT_TEST_KEYS", "maybe", id="bool-word"),
            pytest.param("ACCEPT_TEST_KEYS", 2, id="bool-int"),
            pytest.param("ACCEPT_TEST_KEYS", "", id="bool-empty"),
            pytest.param("CREATE", "nope", id="create"),
            pytest.param("CACHE_SIZE", "10k", id="count-unit"),
            pytest.param("CACHE_SIZE", -1, id="count-negative"),
            pytest.param("CACHE_SIZE", 1.5, id="count-float"),
            pytest.param("CACHE_SIZE", True, id="count-bool"),
            pytest.param("CACHE_TTL", "soon", id="seconds-word"),
            pytest.param("CACHE_TTL", "-5", id="seconds-negative"),
            pytest.param("CACHE_TTL", "30x", id="seconds-unit"),
            pytest.param("CACHE_TTL", float("nan"), id="seconds-nan"),
            pytest.param("STORE_TIMEOUT", False, id="seconds-bool"),
            pytest.param("HASH_ALGORITHM", 5, id="text"),
            pytest.param("PEPPER", 12345678901234567, id="pepper"),
            pytest.param("DB", 5, id="db"),
        ],
    )
    def test_if_a_value_is_not_of_its_kind_then_error_naming_the_setting(
        self, tmp_path: Path, name: str, value: object
    ) -> None:
        settings = {"DB": tmp_path / "k.db", "CREATE": True, name: value}
        with pytest.raises(ConfigurationError, match=f"^{name} must be") as caught:
            authenticator_from_settings(settings)
        assert caught.value.setting == name and isinstance(caught.value, ValueError)
        assert not (tmp_path / "k.db").exists() or name in {"DB", "CREATE"}

    def test_if_the_pepper_is_of_the_wrong_kind_then_its_value_is_not_in_the_message(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            parse_setting("PEPPER", 12345678901234567)
        assert "12345678901234567" not in str(caught.value)

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [(30, 30.0), (0.5, 0.5), ("30", 30.0), ("0.5", 0.5), ("30s", 30.0), ("500ms", 0.5),
         ("1m", 60.0), ("1h30m", 5400.0), (timedelta(seconds=7), 7.0), ("0", 0.0)],
    )  # fmt: skip
    def test_if_seconds_are_written_any_usual_way_then_read(
        self, value: object, seconds: float
    ) -> None:
        assert parse_setting("CACHE_TTL", value) == seconds

    @pytest.mark.parametrize(("value", "count"), [(100, 100), ("100", 100), (" 0 ", 0)])
    def test_if_counts_are_numbers_or_digits_then_read(self, value: object, count: int) -> None:
        assert parse_setting("CACHE_SIZE", value) == count

    def test_if_settings_are_strings_then_the_authenticator_gets_numbers(
        self, tmp_path: Path
    ) -> None:
        auth = authenticator_from_settings(
            {"DB": tmp_path / "k.db", "CREATE": "yes", "CACHE_TTL": "7", "CACHE_SIZE": "50"}
        )
        assert auth.cache.ttl == 7
        auth.close()


class TestRules:
    def test_if_rows_then_table(self) -> None:
        rules = rules_from_settings(
            {
                "RULES": [("/orgs/{org}/x", ["read:calls"])],
                "PUBLIC": ["/health"],
                "TEAM_PARAM": "org",
            }
        )
        assert rules.match("GET", "/orgs/o1/x") == Requirement(
            required=True, scopes=("read:calls",), team_id="o1"
        )
        assert rules.match("GET", "/health").public

    def test_if_a_rules_object_then_as_it_is(self) -> None:
        table = Rules(protect=["/api/"])
        assert rules_from_settings({"RULES": table}) is table


def test_if_rules_default_is_set_then_the_table_denies_unmatched_requests() -> None:
    from skaala_auth.config import rules_from_settings
    from skaala_auth.errors import ConfigurationError

    denying = rules_from_settings({"PUBLIC": ["/health"], "RULES_DEFAULT": "deny"})
    assert denying.match("GET", "/anything").required
    assert denying.match("GET", "/health").public
    assert not rules_from_settings({}).match("GET", "/anything").required
    with pytest.raises(ConfigurationError, match="RULES_DEFAULT"):
        rules_from_settings({"RULES_DEFAULT": "closed"})
