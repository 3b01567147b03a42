"""skaala_auth.testing outside pytest's fixtures: the kit, the clock, the override."""

from __future__ import annotations

import unittest
from datetime import timedelta

import pytest

from skaala_auth import (
    Authenticator,
    InsufficientScopeError,
    InvalidKeyError,
    MemoryKeyStore,
    Reason,
    UsageLimitExceededError,
    generate_key,
)
from skaala_auth.testing import AuthTestKit, TestClock, override_authenticator


class TestClockBehaviour:
    def test_if_advanced_then_moves_forward_only(self) -> None:
        clock = TestClock(1000.0)
        assert clock() == 1000.0
        assert clock.advance(timedelta(minutes=1)) == 1060.0
        with pytest.raises(ValueError, match="forward"):
            clock.advance(-1)
        clock.set(5.0)
        assert clock() == 5.0 and "1970" in repr(clock)


class TestKit:
    def test_if_key_made_then_it_authenticates_with_its_scopes(self) -> None:
        with AuthTestKit() as kit:
            key, record = kit.create_key(["read:bookings"])
            principal = kit.authenticator.verify(key, required_scopes=["read:bookings"])
            assert (principal.key_id, principal.team_id) == (record.id, "team_1")
            with pytest.raises(InsufficientScopeError):
                kit.authenticator.verify(key, required_scopes=["write:bookings"])

    def test_if_no_scopes_given_then_every_registered_scope(self) -> None:
        with AuthTestKit() as kit:
            _, record = kit.create_key()
            assert "webhooks:manage" in record.scopes and len(record.scopes) == 9

    @pytest.mark.parametrize(
        ("options", "reason"),
        [({"expired": True}, Reason.EXPIRED), ({"revoked": True}, Reason.REVOKED)],
    )
    def test_if_expired_or_revoked_asked_then_refused_for_that_reason(
        self, options: dict[str, bool], reason: Reason
    ) -> None:
        with AuthTestKit() as kit:
            key, _ = kit.create_key(["read:calls"], **options)
            with pytest.raises(InvalidKeyError) as caught:
                kit.authenticator.verify(key)
            assert caught.value.reason is reason

    def test_if_clock_advanced_past_expiry_then_refused(self) -> None:
        with AuthTestKit() as kit:
            key, _ = kit.create_key(["read:calls"], expires_in=timedelta(hours=1))
            kit.authenticator.verify(key)
            kit.clock.advance(timedelta(hours=1))
            with pytest.raises(InvalidKeyError):
                kit.authenticator.verify(key)

    def test_if_other_team_then_member_added_and_headers_ready(self) -> None:
        with AuthTestKit() as kit:
            headers = kit.headers(["read:calls"], team_id="team_2")
            principal = kit.authenticator.authenticate(headers, team_id="team_2")
            assert principal.team_id == "team_2"
            assert kit.manager.get_member(team_id="team_2", user_id="user_1") is not None

    def test_if_policies_asked_then_the_key_carries_them(self) -> None:
        with AuthTestKit() as kit:
            key, record = kit.create_key(
                ["read:calls"],
                rate_limit="10/minute",
                remaining=1,
                allowed_ips=["203.0.113.0/24"],
                metadata={"plan": "pro"},
            )
            assert str(record.rate_limit) == "10/60s" and record.remaining == 1
            headers = {"Authorization": f"Bearer {key}"}
            principal = kit.authenticator.authenticate(headers, client="203.0.113.5")
            assert dict(principal.metadata) == {"plan": "pro"}
            with pytest.raises(UsageLimitExceededError):
                kit.authenticator.authenticate(headers, client="203.0.113.5")

    @pytest.mark.parametrize("expired", [False, True])
    def test_if_disabled_or_limited_asked_then_refused_for_that_reason(self, expired: bool) -> None:
        with AuthTestKit() as kit:
            key, record = kit.create_key(
                ["read:calls"], disabled=True, expired=expired, remaining=3
            )
            assert record.disabled_at is not None and record.remaining == 3
            with pytest.raises(InvalidKeyError) as refused:
                kit.authenticator.verify(key)
            assert refused.value.reason is (Reason.EXPIRED if expired else Reason.DISABLED)


class TestOverride:
    def test_if_overridden_then_every_authenticator_defers_and_then_stops(self) -> None:
        production = Authenticator(MemoryKeyStore())
        with AuthTestKit() as kit:
            key, _ = kit.create_key(["read:calls"])
            with pytest.raises(InvalidKeyError):
                production.verify(key)
            with kit.override():
                assert production.verify(key).team_id == "team_1"
                assert production.authenticate({"X-API-Key": key}).team_id == "team_1"
                with pytest.raises(InsufficientScopeError):
                    production.authorize(
                        kit.authenticator.verify(key), required_scopes=["write:calls"]
                    )
            with pytest.raises(InvalidKeyError):
                production.verify(key)
        production.close()

    def test_if_nested_then_previous_override_restored(self) -> None:
        production = Authenticator(MemoryKeyStore())
        with AuthTestKit() as outer, AuthTestKit() as inner:
            outer_key, _ = outer.create_key(["read:calls"])
            with override_authenticator(outer.authenticator):
                with override_authenticator(inner.authenticator):
                    with pytest.raises(InvalidKeyError):
                        production.verify(outer_key)
                assert production.verify(outer_key).team_id == "team_1"
        production.close()

    def test_if_async_then_overridden_too(self) -> None:
        import asyncio

        production = Authenticator(MemoryKeyStore())
        with AuthTestKit() as kit, kit.override():
            key, _ = kit.create_key(["read:calls"])
            principal = asyncio.run(production.authenticate_async({"X-API-Key": key}))
            assert principal is not None and principal.team_id == "team_1"
            assert (
                asyncio.run(production.authenticate_async({"x-api-key": key})).team_id == "team_1"
            )
            with pytest.raises(InvalidKeyError):
                asyncio.run(production.authenticate_async({"x-api-key": generate_key()}))
        production.close()


class UnittestStyle(unittest.TestCase):
    """The kit is runner-agnostic: plain unittest works the same."""

    def setUp(self) -> None:
        self.kit = AuthTestKit()
        self.addCleanup(self.kit.close)

    def test_headers_authenticate(self) -> None:
        principal = self.kit.authenticator.authenticate(self.kit.headers(["read:staff"]))
        self.assertEqual(principal.scopes, frozenset({"read:staff"}))
