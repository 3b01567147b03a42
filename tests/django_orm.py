"""Databases for the tests of the ORM key store: the SQLite file of ``default`` and, when the
server answers, this process's own PostgreSQL test database (``test_skaala_django_<pid>``,
created on first use and dropped at the end of the session).

Without PostgreSQL the tests that need it skip, saying why; under ``CI=true`` they fail.
A plugin of the whole suite (``tests/conftest.py``), so that the session's PostgreSQL database is
made once: Django is imported only when a fixture is used (``tests/core`` runs without it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.django_settings import POSTGRES_DSN, configure, migrate

TABLES = ("skaala_auth_apikey", "skaala_auth_member", "skaala_auth_change", "skaala_auth_changelog")


def clear(alias: str) -> None:
    """Empty the store's tables (raw SQL: no signal, no change entry)."""
    configure()
    from django.db import connections

    with connections[alias].cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - our own table names


def _postgres_unreachable() -> str | None:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the installed extras
        return "psycopg is not installed"
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except psycopg.Error as error:
        return f"PostgreSQL at {POSTGRES_DSN} does not answer ({error.__class__.__name__})"
    return None


@pytest.fixture(scope="session")
def postgres_alias() -> Iterator[str]:
    """The ``postgres`` alias, on a test database of this process's own (created, migrated,
    and dropped at the end)."""
    reason = _postgres_unreachable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason} (set SKAALA_TEST_POSTGRES_DSN)")
        pytest.skip(reason)
    configure()
    from django.db import connections

    connection = connections["postgres"]
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    yield "postgres"
    connections.close_all()
    connection.creation.destroy_test_db(old_name, verbosity=0)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database alias with empty key tables, emptied again afterwards."""
    if request.param == "postgres":
        alias = request.getfixturevalue("postgres_alias")
    else:
        alias = "default"
        migrate(alias)
    clear(alias)
    yield alias
    clear(alias)
    from django.db import connections

    connections[alias].close()
