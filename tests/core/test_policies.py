"""Keys' own restrictions in the core: disabling, IP allow-lists (and the client address behind
trusted proxies), usage limits, metadata, and their migration on rotation."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    IpNotAllowedError,
    KeyManager,
    MemoryKeyStore,
    Reason,
    UsageLimitExceededError,
)
from skaala_auth.audit import AuditEvent
from skaala_auth.models import METADATA_MAX_BYTES
from skaala_auth.policy import client_address, parse_networks

from ..conftest import Clock

SCOPES = ["read:bookings"]


def create(manager: KeyManager, **policy: object) -> tuple[str, str]:
    key, record = manager.create_key(team_id="team_1", user_id="user_1", scopes=SCOPES, **policy)
    return key, record.id


class TestClientAddress:
    TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8::/32"])

    @pytest.mark.parametrize(
        ("peer", "forwarded", "expected"),
        [
            pytest.param("198.51.100.7", "203.0.113.9", "198.51.100.7", id="untrusted-peer"),
            pytest.param("10.1.2.3", "203.0.113.9", "203.0.113.9", id="trusted-proxy"),
            pytest.param("10.1.2.3", "203.0.113.9, 10.9.9.9", "203.0.113.9", id="two-proxies"),
            pytest.param("10.1.2.3", "6.6.6.6, 203.0.113.9", "203.0.113.9", id="spoofed-left"),
            pytest.param("10.1.2.3", None, "10.1.2.3", id="no-header"),
            pytest.param("10.1.2.3", "10.2.2.2", "10.2.2.2", id="all-trusted"),
            pytest.param("10.1.2.3", "junk, 203.0.113.9", "203.0.113.9", id="junk-left"),
            pytest.param("10.1.2.3", "203.0.113.9, junk", None, id="junk-right"),
            pytest.param("2001:db8::1", "2001:db8::2, ::ffff:203.0.113.9", "203.0.113.9", id="v6"),
            pytest.param(None, "203.0.113.9", None, id="no-peer"),
        ],
    )
    def test_if_a_request_comes_through_proxies_then_the_right_most_untrusted_hop_counts(
        self, peer: str | None, forwarded: str | None, expected: str | None
    ) -> None:
        headers = [] if forwarded is None else [("X-Forwarded-For", forwarded)]
        assert client_address(peer, headers, self.TRUSTED) == expected

    def test_if_no_proxy_is_trusted_then_the_header_is_never_read(self) -> None:
        headers = [("X-Forwarded-For", "203.0.113.9")]
        assert client_address("10.1.2.3", headers, ()) == "10.1.2.3"

    @pytest.mark.parametrize("network", ["10.0.0.1/8", "10.0.0.0/33", "localhost", ""])
    def test_if_a_network_is_malformed_then_value_error(self, network: str) -> None:
        with pytest.raises(ValueError):
            parse_networks([network])


class TestRestrictions:
    def test_if_a_key_is_disabled_then_401_with_the_disabled_reason_and_back_once_enabled(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, key_id = create(manager)
        events: list[AuditEvent] = []
        with Authenticator(store, clock=clock, audit=events.append) as auth:
            auth.verify(key)
            manager.disable_key(key_id)
            with pytest.raises(InvalidKeyError) as refused:
                auth.verify(key)
            assert refused.value.reason is Reason.DISABLED
            assert manager.get_key(key_id).status(manager._now()) == "disabled"
            manager.enable_key(key_id)
            assert auth.verify(key).key_id == key_id

    def test_if_a_key_has_an_allow_list_then_its_client_address_decides(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, _ = create(manager, allowed_ips=["203.0.113.0/24"])
        with Authenticator(store, clock=clock, trusted_proxies=["10.0.0.0/8"]) as auth:
            headers = {"Authorization": f"Bearer {key}"}
            assert auth.authenticate(headers, client="203.0.113.7").key_id is not None
            with pytest.raises(IpNotAllowedError):
                auth.authenticate(headers, client="198.51.100.7")
            with pytest.raises(IpNotAllowedError):  # no address known: refused
                auth.authenticate(headers)
            with pytest.raises(IpNotAllowedError):  # verify() has no client
                auth.verify(key)
            behind = {**headers, "X-Forwarded-For": "203.0.113.7"}
            assert auth.authenticate(behind, client="10.0.0.1").key_id is not None

    def test_if_threads_use_a_limited_key_then_exactly_its_uses_are_granted(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, key_id = create(manager, remaining=30)
        outcomes: list[str] = []
        lock = threading.Lock()
        with Authenticator(store, clock=clock) as auth:

            def hammer() -> None:
                for _ in range(12):
                    try:
                        auth.verify(key)
                        result = "ok"
                    except UsageLimitExceededError:
                        result = "used up"
                    with lock:
                        outcomes.append(result)

            threads = [threading.Thread(target=hammer) for _ in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert outcomes.count("ok") == 30 and outcomes.count("used up") == 30
        assert manager.get_key(key_id).remaining == 0

    def test_if_a_key_carries_metadata_then_the_principal_has_it_and_no_log_shows_it(
        self,
        store: MemoryKeyStore,
        manager: KeyManager,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        key, key_id = create(manager, metadata={"customer": "cus_secretvalue42", "tier": 3})
        caplog.set_level(logging.DEBUG)
        with Authenticator(store, clock=clock) as auth:
            principal = auth.verify(key)
        assert dict(principal.metadata) == {"customer": "cus_secretvalue42", "tier": 3}
        assert dict(manager.get_key(key_id).metadata) == dict(principal.metadata)
        with pytest.raises(TypeError):
            principal.metadata["tier"] = 4  # type: ignore[index]
        assert "cus_secretvalue42" not in repr(principal)
        assert not any("cus_secretvalue42" in record.getMessage() for record in caplog.records)

    @pytest.mark.parametrize(
        "metadata",
        [
            pytest.param({"blob": "x" * METADATA_MAX_BYTES}, id="too-large"),
            pytest.param({"when": object()}, id="not-json"),
            pytest.param({1: "a"}, id="non-string-name"),
            pytest.param(["a"], id="not-an-object"),
        ],
    )
    def test_if_metadata_is_not_small_json_then_refused(
        self, manager: KeyManager, metadata: object
    ) -> None:
        with pytest.raises((TypeError, ValueError)):
            create(manager, metadata=metadata)

    def test_if_a_key_is_rotated_then_its_policies_go_with_it(self, manager: KeyManager) -> None:
        _, key_id = create(
            manager,
            rate_limit="10/minute",
            remaining=7,
            allowed_ips=["203.0.113.0/24"],
            metadata={"plan": "pro"},
        )
        _, new = manager.rotate_key(key_id, grace=timedelta(0))
        old = manager.get_key(key_id)
        assert (new.rate_limit, new.remaining, new.allowed_ips, new.metadata) == (
            old.rate_limit,
            old.remaining,
            old.allowed_ips,
            old.metadata,
        )
        assert str(new.rate_limit) == "10/60s" and new.allowed_ips == ("203.0.113.0/24",)

    def test_if_a_key_is_updated_then_only_what_is_given_changes(self, manager: KeyManager) -> None:
        _, key_id = create(manager, rate_limit="10/minute", metadata={"plan": "pro"})
        updated = manager.update_key(key_id, allowed_ips=["10.0.0.0/8"])
        assert str(updated.rate_limit) == "10/60s" and dict(updated.metadata) == {"plan": "pro"}
        cleared = manager.update_key(key_id, rate_limit=None, metadata=None)
        assert cleared.rate_limit is None and not cleared.metadata
        assert cleared.allowed_ips == ("10.0.0.0/8",)
