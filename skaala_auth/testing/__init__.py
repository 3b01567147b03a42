"""Test helpers for services that use skaala_auth — for any test runner.

pytest users get the same as fixtures (``skaala_clock``, ``skaala_store``,
``skaala_authenticator``, ``api_key_factory``, ``auth_headers``, ``skaala_auth_override``) from
the plugin that installing the package registers. Everyone else uses :class:`AuthTestKit`::

    with AuthTestKit() as kit, kit.override():      # every Authenticator now uses the kit's
        response = client.get("/api/v1/bookings", headers=kit.headers(["read:bookings"]))
        key, record = kit.create_key(scopes=["read:bookings"], expired=True)
        kit.clock.advance(timedelta(days=1))

Dashboard sessions (Stack Auth) have :class:`SessionKit` (a signing key, its JWKS, tokens minted
to order), :func:`mint_session` and :func:`session_jwks`; they need ``cryptography`` (the
``session`` extra) when used, not when imported.

Imports no web framework.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ..authenticator import Authenticator, override
from ..keys import ALPHABET, Environment, display_prefix, generate_key
from ..manager import KeyManager, _policy
from ..models import ApiKey, RateLimit, Role, from_epoch
from ..scopes import ScopeRegistry
from ..stores.memory import MemoryKeyStore
from .sessions import SessionKit, mint_session, session_jwks

__all__ = [
    "AuthTestKit",
    "SessionKit",
    "TestClock",
    "mint_session",
    "override_authenticator",
    "session_jwks",
]

#: Where every :class:`TestClock` starts unless told otherwise: 2030-01-01T00:00:00Z.
DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class TestClock:
    """A clock a test moves by hand, in the form every skaala_auth ``clock=`` takes (a
    zero-argument callable returning epoch seconds).

    Example::

        clock = TestClock()
        clock.advance(timedelta(days=366))   # every key made with the default expiry is expired

    .. versionadded:: 0.1.0
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, start: datetime | float = DEFAULT_START) -> None:
        self.now = start.timestamp() if isinstance(start, datetime) else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, by: float | timedelta) -> float:
        """Move forward by seconds or a timedelta; returns the new time."""
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        if seconds < 0:
            raise ValueError("a test clock only moves forward; use set() to go back")
        self.now += seconds
        return self.now

    def set(self, moment: datetime | float) -> None:
        """Jump to an instant."""
        self.now = moment.timestamp() if isinstance(moment, datetime) else float(moment)

    @property
    def datetime(self) -> datetime:
        return from_epoch(self.now)

    def __repr__(self) -> str:
        return f"TestClock({self.datetime.isoformat()})"


class AuthTestKit:
    """A fresh in-memory store, a :class:`TestClock`, a :class:`~skaala_auth.KeyManager` and an
    :class:`~skaala_auth.Authenticator`, wired together, with helpers to make keys.

    Args:
        team_id: the default team of the keys it makes.
        user_id: the default user of the keys it makes (added to the team as an owner).
        scopes: a registry, if the service registers its own scopes.
        accept_test_keys: let the authenticator accept ``sk_test_`` keys too.
        authenticator_options: more keyword options for the :class:`Authenticator`.

    .. versionadded:: 0.1.0
    """

    __test__ = False

    def __init__(
        self,
        *,
        team_id: str = "team_1",
        user_id: str = "user_1",
        scopes: ScopeRegistry | None = None,
        accept_test_keys: bool = False,
        **authenticator_options: Any,
    ) -> None:
        self.team_id = team_id
        self.user_id = user_id
        self.clock = TestClock()
        self.store = MemoryKeyStore()
        self.manager = KeyManager(self.store, scopes=scopes, clock=self.clock)
        authenticator_options.setdefault("clock", self.clock)
        self.authenticator = Authenticator(
            self.store, accept_test_keys=accept_test_keys, **authenticator_options
        )

    def create_key(
        self,
        scopes: Iterable[str] | None = None,
        *,
        team_id: str | None = None,
        user_id: str | None = None,
        name: str = "test key",
        expired: bool = False,
        revoked: bool = False,
        expires_in: timedelta | None = None,
        role: Role | str = Role.OWNER,
        environment: Environment = "live",
        disabled: bool = False,
        rate_limit: RateLimit | str | None = None,
        remaining: int | None = None,
        allowed_ips: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[str, ApiKey]:
        """Make a key, adding its user to its team first if needed.

        Args:
            scopes: what it may do (default: every registered scope).
            team_id: its team (default: the kit's).
            user_id: its user (default: the kit's).
            name: its label.
            expired: make it already expired (one second ago).
            revoked: make it revoked.
            expires_in: its lifetime (default 365 days).
            role: the role the user gets if not yet a member.
            environment: ``"live"`` or ``"test"``.
            disabled: make it disabled (:meth:`KeyManager.disable_key`).
            rate_limit: its own rate limit (``"10/minute"``).
            remaining: a usage limit.
            allowed_ips: the networks it may be used from (the test clients send from
                ``127.0.0.1``, Starlette's from ``"testclient"``, which no network holds).
            metadata: its metadata.

        Returns:
            ``(plaintext, record)``.

        .. versionchanged:: 0.4.0
           ``disabled``, ``rate_limit``, ``remaining``, ``allowed_ips``, ``metadata``.
        """
        policy: dict[str, Any] = {
            "rate_limit": rate_limit,
            "remaining": remaining,
            "allowed_ips": allowed_ips,
            "metadata": metadata,
        }
        team_id = team_id or self.team_id
        user_id = user_id or self.user_id
        granted = list(self.manager.scopes) if scopes is None else list(scopes)
        if self.manager.get_member(team_id=team_id, user_id=user_id) is None:
            self.manager.add_member(team_id=team_id, user_id=user_id, role=role)
        if expired:
            key, record = self._insert_expired(team_id, user_id, granted, name, environment)
            if any(policy.values()) or remaining is not None:
                self.store.set_policy(record.id, _policy(**policy))
                record = self.manager.get_key(record.id)
        else:
            key, record = self.manager.create_key(
                team_id=team_id,
                user_id=user_id,
                scopes=granted,
                name=name,
                expires_in=expires_in,
                environment=environment,
                **policy,
            )
        if disabled:
            record = self.manager.disable_key(record.id)
        if revoked:
            record = self.manager.revoke_key(record.id)
        return key, record

    def _insert_expired(
        self, team_id: str, user_id: str, scopes: list[str], name: str, environment: Environment
    ) -> tuple[str, ApiKey]:
        # The manager refuses a past expiry (rightly); a test needs one, so go to the store.
        key = generate_key(environment)
        now = self.clock.datetime
        record = ApiKey(
            id="key_" + "".join(secrets.choice(ALPHABET) for _ in range(20)),
            team_id=team_id,
            user_id=user_id,
            name=name,
            scopes=self.manager.scopes.validate(scopes),
            prefix=display_prefix(key),
            created_at=now - timedelta(days=365),
            expires_at=now - timedelta(seconds=1),
        )
        self.store.insert_key(record, self.manager.hasher.stored_digest(key))
        return key, record

    def headers(
        self, scopes: Iterable[str] | None = None, *, team_id: str | None = None, **options: Any
    ) -> dict[str, str]:
        """``{"Authorization": "Bearer <key>"}`` for a fresh key (see :meth:`create_key`)."""
        key, _ = self.create_key(scopes, team_id=team_id, **options)
        return {"Authorization": f"Bearer {key}"}

    @contextmanager
    def override(self) -> Iterator[Authenticator]:
        """Make every :class:`~skaala_auth.Authenticator` in the process use this kit's while
        the block runs (see :func:`override_authenticator`)."""
        with override_authenticator(self.authenticator) as authenticator:
            yield authenticator

    def close(self) -> None:
        self.authenticator.close()

    def __enter__(self) -> AuthTestKit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextmanager
def override_authenticator(authenticator: Authenticator) -> Iterator[Authenticator]:
    """While the block runs, every :class:`~skaala_auth.Authenticator` in the process — the one
    your Starlette/FastAPI middleware, Flask extension or Django middleware was configured
    with — defers to ``authenticator``. Nothing in the app under test changes.

    Overrides nest; the previous one comes back when the block ends.

    .. versionadded:: 0.1.0
    """
    previous = override(authenticator)
    try:
        yield authenticator
    finally:
        override(previous)
