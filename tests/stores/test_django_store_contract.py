"""The store contract (``test_store_contract.py``) for the ORM store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.django_settings import configure

configure()

from skaala_auth.django.store import DjangoKeyStore  # noqa: E402
from tests.stores.test_store_contract import (  # noqa: E402, F401 - collected with this store
    TestBulk,
    TestChanges,
    TestKeys,
    TestMembers,
    TestThreads,
    changes,
    store,
)


@pytest.fixture
def any_store(database: str) -> Iterator[DjangoKeyStore]:
    orm_store = DjangoKeyStore(database)
    yield orm_store
    orm_store.close()
