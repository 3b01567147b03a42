from __future__ import annotations

from pathlib import Path

import pytest

from skaala_auth import KeyManager, SQLiteKeyStore
from skaala_auth.config import (
    ConfigurationError,
    authenticator_from_settings,
    open_store,
    rules_from_settings,
)
from skaala_auth.rules import Requirement, Rules


class TestStores:
    def test_if_db_then_sqlite_store_on_that_file(self, tmp_path: Path) -> None:
        store = open_store(db=tmp_path / "k.db")
        assert isinstance(store, SQLiteKeyStore) and (tmp_path / "k.db").exists()
        store.close()

    @pytest.mark.parametrize("kwargs", [{}, {"db": "a.db", "dsn": "postgresql://x"}])
    def test_if_not_exactly_one_store_then_error(self, kwargs: dict[str, str]) -> None:
        with pytest.raises(ConfigurationError, match="one key store"):
            open_store(**kwargs)

    def test_if_dsn_without_postgres_support_then_clear_error(self) -> None:
        with pytest.raises(ConfigurationError, match=r"skaala-auth\[postgres\]"):
            open_store(dsn="postgresql://127.0.0.1/test")


class TestAuthenticator:
    def test_if_settings_then_options_applied_and_keys_work(self, tmp_path: Path) -> None:
        db = tmp_path / "k.db"
        auth = authenticator_from_settings(
            {"DB": db, "CACHE_TTL": 7, "ACCEPT_TEST_KEYS": True, "PEPPER": "p" * 16}
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
            {"DB": tmp_path / "k.db", "PUBLIC": ["/health"]}, ignore={"PUBLIC"}
        )
        auth.close()

    def test_if_bad_value_then_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="pepper"):
            authenticator_from_settings({"DB": tmp_path / "k.db", "PEPPER": "short"})


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
