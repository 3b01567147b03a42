"""The pytest plugin: fixtures for testing services that use skaala_auth.

Registered through the ``pytest11`` entry point, so installing skaala-auth is enough. Fixtures
are prefixed, never autouse, and each can be overridden by a fixture of the same name in your
``conftest.py``.

=======================  ====================================================================
fixture                  what you get
=======================  ====================================================================
``skaala_clock``         a :class:`~skaala_auth.testing.TestClock` (``.advance(seconds)``)
``skaala_kit``           the :class:`~skaala_auth.testing.AuthTestKit` behind the others
``skaala_store``         a fresh in-memory store
``skaala_authenticator`` an :class:`~skaala_auth.Authenticator` on it, using the clock
``api_key_factory``      ``api_key_factory(scopes=..., team_id=..., expired=...)`` →
                         ``(key, record)``
``auth_headers``         ``auth_headers(scopes=[...], team_id=...)`` →
                         ``{"Authorization": "Bearer …"}``
``skaala_auth_override`` the authenticator, with every other one in the process deferring to
                         it for the test (for apps built at import time)
``skaala_session_kit``   a :class:`~skaala_auth.testing.SessionKit` on ``skaala_clock``: a
                         Stack Auth signing key, its ``.jwks``, ``.mint(user_id)``,
                         ``.headers(user_id)``, ``.verifier()`` (needs the ``session`` extra)
=======================  ====================================================================

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..authenticator import Authenticator
from ..models import ApiKey
from ..stores.memory import MemoryKeyStore
from . import AuthTestKit, SessionKit, TestClock, override_authenticator


@pytest.fixture
def skaala_kit() -> Iterator[AuthTestKit]:
    """Store, clock, manager and authenticator for one test."""
    with AuthTestKit() as kit:
        yield kit


@pytest.fixture
def skaala_clock(skaala_kit: AuthTestKit) -> TestClock:
    """The clock of the test's authenticator: ``skaala_clock.advance(seconds or timedelta)``."""
    return skaala_kit.clock


@pytest.fixture
def skaala_store(skaala_kit: AuthTestKit) -> MemoryKeyStore:
    """A fresh in-memory key store."""
    return skaala_kit.store


@pytest.fixture
def skaala_authenticator(skaala_kit: AuthTestKit) -> Authenticator:
    """An authenticator on ``skaala_store`` with ``skaala_clock``. Pass it to your app factory,
    or use ``skaala_auth_override`` for an app that is already built."""
    return skaala_kit.authenticator


@pytest.fixture
def api_key_factory(skaala_kit: AuthTestKit) -> Callable[..., tuple[str, ApiKey]]:
    """``api_key_factory(scopes=None, *, team_id, user_id, name, expired, revoked, expires_in)``
    → ``(plaintext, record)``; ``scopes=None`` grants every registered scope."""
    return skaala_kit.create_key


@pytest.fixture
def auth_headers(skaala_kit: AuthTestKit) -> Callable[..., dict[str, str]]:
    """``auth_headers(scopes=None, *, team_id=None, **options)`` → a ready
    ``{"Authorization": "Bearer …"}`` for a fresh key."""
    return skaala_kit.headers


@pytest.fixture
def skaala_auth_override(skaala_authenticator: Authenticator) -> Iterator[Authenticator]:
    """For the duration of the test, every Authenticator in the process (your app's) defers to
    ``skaala_authenticator``, so keys from ``api_key_factory`` / ``auth_headers`` work against
    your real app object."""
    with override_authenticator(skaala_authenticator) as authenticator:
        yield authenticator


@pytest.fixture
def skaala_session_kit(skaala_kit: AuthTestKit) -> SessionKit:
    """A Stack Auth project for one test, on ``skaala_clock``: a fresh signing key, its
    ``.jwks``, ``.mint(user_id, expires_in=..., **claims)`` → a token,
    ``.headers(user_id, carrier="cookie" | "sdk" | "header")``, ``.verifier(**options)``."""
    return SessionKit(clock=skaala_kit.clock)


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "skaala_auth: tests that use the skaala_auth fixtures (informational)"
    )
