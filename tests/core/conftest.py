"""The core's tests run under both drivers: every test that takes the ``auth`` fixture runs
once with the sync faces and once with each face routed through its async twin (a fresh event
loop per call), so the two drivers cannot drift apart."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from typing import Any

import pytest

from skaala_auth import Authenticator, MemoryKeyStore, Principal
from skaala_auth.credentials import HeadersLike
from skaala_auth.errors import AuthError
from skaala_auth.flow import Endpoint, RequestFacts
from skaala_auth.rules import Rules

from ..conftest import Clock


class AsyncDriven(Authenticator):
    """An authenticator whose sync faces run the async driver."""

    def authenticate(  # type: ignore[override]
        self,
        headers: HeadersLike,
        *,
        required_scopes: Collection[str] = (),
        team_id: str | None = None,
        query_string: str | bytes | None = None,
        required: bool = True,
        method: str | None = None,
    ) -> Principal | None:
        return asyncio.run(
            self.authenticate_async(
                headers,
                required_scopes=required_scopes,
                team_id=team_id,
                query_string=query_string,
                required=required,
                method=method,
            )
        )

    def decide(
        self,
        facts: RequestFacts,
        need: Endpoint | Rules | None = None,
        *,
        found: Principal | None = None,
    ) -> Principal | AuthError | None:
        return asyncio.run(self.decide_async(facts, need, found=found))


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> str:
    """Which driver the ``auth`` fixture's faces run."""
    return str(request.param)


@pytest.fixture
def auth(store: MemoryKeyStore, clock: Clock, driver: str) -> Iterator[Authenticator]:
    kind: Any = AsyncDriven if driver == "async" else Authenticator
    with kind(store, clock=clock) as authenticator:
        yield authenticator


@pytest.fixture
def make_auth(driver: str) -> Iterator[Any]:
    """``make_auth(store, **options)``: an authenticator driven as the ``driver`` fixture says,
    closed at the end of the test."""
    made: list[Authenticator] = []

    def make(store: Any, **options: Any) -> Authenticator:
        kind: Any = AsyncDriven if driver == "async" else Authenticator
        authenticator: Authenticator = kind(store, **options)
        made.append(authenticator)
        return authenticator

    yield make
    for authenticator in made:
        authenticator.close()
