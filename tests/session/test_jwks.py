"""Keys from a URL: fetched when needed, at most once per interval, fail closed while the
endpoint is down, back by themselves; keys inline or in a file; configuration errors."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from skaala_auth import ConfigurationError, InvalidSessionError, JwksUnavailableError, Reason
from skaala_auth.session import NeedKeys, SessionClaims, StackAuthVerifier
from skaala_auth.testing import SessionKit

from .conftest import NOW, PROJECT, JwksServer


def url_verifier(kit: SessionKit, server: JwksServer, **options: Any) -> StackAuthVerifier:
    options.setdefault("refetch_interval", 5.0)
    return StackAuthVerifier(project_id=PROJECT, jwks_url=server.url, **options)


def drive(verifier: StackAuthVerifier, token: str, now: float) -> object:
    """What the core's driver does: decode; on NeedKeys fetch, then decode once more."""
    outcome = verifier.decode(token, now)
    if isinstance(outcome, NeedKeys):
        verifier.fetch_keys(now)
        outcome = verifier.decode(token, now, fetched=True)
        assert not isinstance(outcome, NeedKeys)
    return outcome


class TestFetching:
    def test_if_first_token_then_need_keys_then_claims(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server)
        token = kit.mint()
        need = verifier.decode(token, NOW)
        assert need == NeedKeys(kit.key_id)
        assert token not in repr(need)
        assert jwks_server.requests == 0, "decode does no I/O"
        assert verifier.fetch_keys(NOW) is True
        assert isinstance(verifier.decode(token, NOW, fetched=True), SessionClaims)
        assert isinstance(verifier.decode(kit.mint("user_2"), NOW + 1), SessionClaims)
        assert jwks_server.requests == 1

    def test_if_verify_then_fetches_in_this_thread(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server, clock=lambda: NOW)
        assert verifier.verify(kit.mint("user_3")).user_id == "user_3"
        assert jwks_server.requests == 1

    def test_if_unknown_kid_then_refetched_at_most_once_per_interval(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server, refetch_interval=5.0)
        assert isinstance(drive(verifier, kit.mint(), NOW), SessionClaims)
        strangers = [SessionKit(project_id=PROJECT, clock=lambda: NOW) for _ in range(3)]
        # Within the interval of the first fetch: refused at once, nothing fetched.
        for stranger in strangers:
            outcome = verifier.decode(stranger.mint(), NOW + 1)
            assert isinstance(outcome, InvalidSessionError)
            assert outcome.reason is Reason.UNKNOWN_SIGNING_KEY
        assert jwks_server.requests == 1
        # After it: one refetch, whatever the number of unknown kids.
        for stranger in strangers:
            outcome = drive(verifier, stranger.mint(), NOW + 5)
            assert isinstance(outcome, InvalidSessionError)
            assert outcome.reason is Reason.UNKNOWN_SIGNING_KEY
        assert jwks_server.requests == 2
        assert drive(verifier, kit.mint(), NOW + 6) is not None
        assert jwks_server.requests == 2

    def test_if_stack_rotates_its_key_then_the_new_kid_is_fetched(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server)
        assert isinstance(drive(verifier, kit.mint(), NOW), SessionClaims)
        kit.rotate()
        jwks_server.document = kit.jwks
        assert isinstance(verifier.decode(kit.mint(), NOW + 10), NeedKeys)
        assert isinstance(drive(verifier, kit.mint(), NOW + 10), SessionClaims)
        assert jwks_server.requests == 2

    def test_if_keys_older_than_max_age_then_refetched_and_removed_keys_refused(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server, jwks_max_age=60)
        old_token = kit.mint(expires_in=3600)
        assert isinstance(drive(verifier, old_token, NOW), SessionClaims)
        kit.rotate(keep_old=False)  # Stack Auth stopped trusting the old key
        jwks_server.document = kit.jwks
        assert isinstance(verifier.decode(old_token, NOW + 59), SessionClaims)
        assert isinstance(verifier.decode(old_token, NOW + 60), NeedKeys)
        outcome = drive(verifier, old_token, NOW + 60)
        assert isinstance(outcome, InvalidSessionError)
        assert outcome.reason is Reason.UNKNOWN_SIGNING_KEY

    def test_if_no_max_age_then_keys_kept(self, kit: SessionKit, jwks_server: JwksServer) -> None:
        verifier = url_verifier(kit, jwks_server, jwks_max_age=None)
        token = kit.mint(expires_in=10**9)
        assert isinstance(drive(verifier, token, NOW), SessionClaims)
        assert isinstance(verifier.decode(token, NOW + 10**7), SessionClaims)
        assert jwks_server.requests == 1

    def test_if_many_threads_need_keys_at_once_then_one_fetch(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        jwks_server.delay = 0.3
        verifier = url_verifier(kit, jwks_server)
        token = kit.mint()
        results: list[object] = []
        start = threading.Barrier(16)

        def request(offset: float) -> None:
            start.wait()
            results.append(drive(verifier, token, NOW + offset))

        threads = [threading.Thread(target=request, args=(i / 100,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(results) == 16
        assert all(isinstance(r, SessionClaims) for r in results), results
        assert jwks_server.requests == 1

    def test_if_default_url_then_stack_auth_path(self) -> None:
        verifier = StackAuthVerifier(project_id="p-1")
        assert verifier.jwks_url == (
            "https://api.stack-auth.com/api/v1/projects/p-1/.well-known/jwks.json"
        )
        assert verifier.issuers == {"https://api.stack-auth.com/api/v1/projects/p-1"}
        assert verifier.audiences == {"p-1"}
        anonymous = StackAuthVerifier(
            project_id="p-1", api_url="https://auth.example.com/", allow_anonymous=True
        )
        assert anonymous.jwks_url == (
            "https://auth.example.com/api/v1/projects/p-1/.well-known/jwks.json"
            "?include_anonymous=true"
        )
        assert anonymous.issuers == {
            "https://auth.example.com/api/v1/projects/p-1",
            "https://auth.example.com/api/v1/projects-restricted-users/p-1",
            "https://auth.example.com/api/v1/projects-anonymous-users/p-1",
        }
        assert anonymous.audiences == {"p-1", "p-1:restricted", "p-1:anon"}
        restricted = StackAuthVerifier(project_id="p-1", allow_restricted=True)
        assert restricted.jwks_url is not None
        assert restricted.jwks_url.endswith("?include_restricted=true")
        assert "p-1" in repr(restricted)


class TestOutage:
    def test_if_endpoint_down_then_503_then_recovers_by_itself(
        self, kit: SessionKit, jwks_server: JwksServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        jwks_server.status = 500
        verifier = url_verifier(kit, jwks_server, refetch_interval=5.0)
        token = kit.mint()
        with caplog.at_level(logging.INFO, logger="skaala_auth"):
            outcome = drive(verifier, token, NOW)
        assert isinstance(outcome, JwksUnavailableError) and outcome.status_code == 503
        assert any("cannot fetch the session JWKS" in r.message for r in caplog.records)
        assert token not in caplog.text
        # Within the interval: 503 at once, no new attempt.
        assert isinstance(verifier.decode(token, NOW + 4.9), JwksUnavailableError)
        assert jwks_server.requests == 1
        # Next allowed fetch, still down: 503 again.
        assert isinstance(drive(verifier, token, NOW + 5), JwksUnavailableError)
        assert jwks_server.requests == 2
        # The endpoint is back: the next allowed fetch recovers, nobody restarts anything.
        jwks_server.status = 200
        assert isinstance(verifier.decode(token, NOW + 6), JwksUnavailableError)
        with caplog.at_level(logging.INFO, logger="skaala_auth"):
            assert isinstance(drive(verifier, token, NOW + 10), SessionClaims)
        assert any("available again" in r.message for r in caplog.records)
        assert jwks_server.requests == 3

    def test_if_endpoint_down_with_keys_cached_then_known_kids_still_verify(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server, jwks_max_age=60)
        token = kit.mint(expires_in=3600)
        assert isinstance(drive(verifier, token, NOW), SessionClaims)
        jwks_server.status = 503
        # Stale keys, refetch fails: the cached key keeps verifying.
        assert isinstance(drive(verifier, token, NOW + 100), SessionClaims)
        assert jwks_server.requests == 2
        # An unknown kid cannot be decided while the endpoint fails: 503, not 401.
        stranger = SessionKit(project_id=PROJECT, clock=lambda: NOW).mint()
        assert isinstance(verifier.decode(stranger, NOW + 101), JwksUnavailableError)

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param({"body": b"<html>not json</html>"}, id="not-json"),
            pytest.param({"document": {"keys": "none"}}, id="keys-not-a-list"),
            pytest.param({"document": []}, id="not-an-object"),
            pytest.param({"document": {"keys": []}}, id="no-keys"),
            pytest.param(
                {"document": {"keys": [{"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"}]}},
                id="no-usable-key",
            ),
            pytest.param({"body": b"[" * 100_000}, id="deep-json"),
            pytest.param({"body": b" " * (1 << 20) + b"{}"}, id="too-large"),
            pytest.param({"status": 404}, id="404"),
            pytest.param({"status": 204, "body": b""}, id="204"),
            pytest.param({"location": "http://example.com/jwks.json"}, id="redirect-to-http"),
            pytest.param({"location": "file:///etc/passwd"}, id="redirect-to-file"),
        ],
    )
    def test_if_endpoint_answers_nonsense_then_503(
        self, kit: SessionKit, jwks_server: JwksServer, answer: dict[str, Any]
    ) -> None:
        for name, value in answer.items():
            setattr(jwks_server, name, value)
        verifier = url_verifier(kit, jwks_server)
        assert verifier.fetch_keys(NOW) is False
        assert isinstance(verifier.decode(kit.mint(), NOW, fetched=True), JwksUnavailableError)
        assert isinstance(verifier.decode(kit.mint(), NOW), JwksUnavailableError)

    def test_if_redirect_to_https_or_loopback_then_followed(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        target = JwksServer().start()
        try:
            target.document = kit.jwks
            jwks_server.location = target.url
            verifier = url_verifier(kit, jwks_server)
            assert verifier.fetch_keys(NOW) is True
            assert target.requests == 1
        finally:
            target.stop()

    def test_if_endpoint_slower_than_fetch_timeout_then_503(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        jwks_server.delay = 1.0
        verifier = url_verifier(kit, jwks_server, fetch_timeout=0.1)
        assert isinstance(drive(verifier, kit.mint(), NOW), JwksUnavailableError)

    def test_if_nobody_listens_then_503(self, kit: SessionKit) -> None:
        with socket.socket() as probe:  # a port that was free a moment ago: refused
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}/jwks.json"
        verifier = StackAuthVerifier(project_id=PROJECT, jwks_url=url, fetch_timeout=0.5)
        with pytest.raises(JwksUnavailableError):
            verifier.verify(kit.mint(), now=NOW)

    def test_if_fetch_interrupted_then_state_is_not_stuck(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server)

        def interrupted() -> dict[str, Any]:
            raise KeyboardInterrupt

        verifier._fetch = interrupted  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            verifier.fetch_keys(NOW)
        assert isinstance(verifier.decode(kit.mint(), NOW + 1), JwksUnavailableError)
        assert isinstance(verifier.decode(kit.mint(), NOW + 5), NeedKeys)

    def test_if_clock_set_back_then_refetch_still_possible(
        self, kit: SessionKit, jwks_server: JwksServer
    ) -> None:
        verifier = url_verifier(kit, jwks_server)
        assert isinstance(drive(verifier, kit.mint(), NOW), SessionClaims)
        stranger = SessionKit(project_id=PROJECT, clock=lambda: NOW).mint()
        assert isinstance(verifier.decode(stranger, NOW - 3600), NeedKeys)


class TestStaticKeys:
    def test_if_jwks_file_then_read_once(self, kit: SessionKit, tmp_path: Path) -> None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(kit.jwks))
        verifier = StackAuthVerifier(project_id=PROJECT, jwks_file=path)
        assert verifier.jwks_url is None and "jwks.json" in repr(verifier)
        path.unlink()
        assert isinstance(verifier.decode(kit.mint(), NOW), SessionClaims)
        assert verifier.fetch_keys(NOW) is True

    def test_if_jwks_has_other_keys_then_they_are_skipped(
        self, kit: SessionKit, caplog: pytest.LogCaptureFixture
    ) -> None:
        good = kit.jwks["keys"][0]
        other = SessionKit(project_id=PROJECT).jwks["keys"][0]
        document = {
            "keys": [
                {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
                {**good, "kid": "p384", "crv": "P-384"},
                {**good, "kid": "hs", "alg": "HS256"},
                {**good, "kid": "enc", "use": "enc"},
                {**good, "kid": "private", "d": good["x"]},
                {**good, "kid": "short", "x": good["x"][:-1]},
                {**good, "kid": "off-curve", "y": good["x"]},
                {**good, "kid": "not-b64", "x": "!" * 43},
                {k: v for k, v in good.items() if k != "kid"},
                "not an object",
                good,
                {**other, "kid": good["kid"]},  # the same kid again: the first is kept
            ]
        }
        with caplog.at_level(logging.WARNING, logger="skaala_auth"):
            verifier = StackAuthVerifier(project_id=PROJECT, jwks=document)
        assert isinstance(verifier.decode(kit.mint(), NOW), SessionClaims)
        assert "private key" in caplog.text and "twice" in caplog.text
        for kid in ("rsa", "p384", "hs", "enc", "private", "short", "off-curve", "not-b64"):
            outcome = verifier.decode(kit.mint(header={"kid": kid}), NOW)
            assert isinstance(outcome, InvalidSessionError)
            assert outcome.reason is Reason.UNKNOWN_SIGNING_KEY


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        pytest.param({"project_id": ""}, "project_id", id="empty-project"),
        pytest.param({"jwks": {"keys": []}}, "jwks", id="jwks-without-keys"),
        pytest.param({"jwks": {"nope": 1}}, "jwks", id="jwks-not-a-jwks"),
        pytest.param({"jwks": {"keys": [1] * 100}}, "jwks", id="jwks-too-many-keys"),
        pytest.param({"jwks_file": "/nonexistent/jwks.json"}, "jwks_file", id="missing-file"),
        pytest.param(
            {"jwks_url": "http://auth.example.com/jwks.json"}, "jwks_url", id="plain-http-remote"
        ),
        pytest.param({"jwks_url": "file:///etc/jwks.json"}, "jwks_url", id="file-url"),
        pytest.param({"jwks_url": "ftp://example.com/jwks.json"}, "jwks_url", id="ftp-url"),
        pytest.param({"jwks_url": "https://"}, "jwks_url", id="no-host"),
        pytest.param({"jwks_url": "http://[::1"}, "jwks_url", id="unparsable"),
        pytest.param({"jwks_url": 42}, "jwks_url", id="not-a-string"),
        pytest.param({"jwks": {"keys": []}, "jwks_url": "https://x"}, "jwks", id="two-sources"),
        pytest.param({"leeway": -1}, "leeway", id="negative-leeway"),
        pytest.param({"leeway": 3600}, "leeway", id="huge-leeway"),
        pytest.param({"leeway": float("nan")}, "leeway", id="nan-leeway"),
        pytest.param({"leeway": True}, "leeway", id="boolean-leeway"),
        pytest.param({"refetch_interval": 0}, "refetch_interval", id="no-refetch-interval"),
        pytest.param({"jwks_max_age": 0}, "jwks_max_age", id="no-max-age"),
        pytest.param({"fetch_timeout": "5"}, "fetch_timeout", id="string-timeout"),
        pytest.param({"issuers": []}, "issuers", id="no-issuers"),
        pytest.param({"issuers": [""]}, "issuers", id="empty-issuer"),
        pytest.param({"header": "x-token:"}, "header", id="header-with-colon"),
        pytest.param({"header": ""}, "header", id="empty-header"),
        pytest.param({"access_token_cookie": "a;b"}, "access_token_cookie", id="cookie-semicolon"),
        pytest.param({"sdk_cookie": "a b"}, "sdk_cookie", id="cookie-space"),
        pytest.param({"refresh_cookie": "é"}, "refresh_cookie", id="cookie-not-ascii"),
    ],
)
def test_if_setting_unusable_then_configuration_error(
    kit: SessionKit, options: dict[str, Any], setting: str
) -> None:
    options.setdefault("project_id", PROJECT)
    if not {"jwks", "jwks_url", "jwks_file"} & set(options):
        options["jwks"] = kit.jwks
    with pytest.raises(ConfigurationError) as caught:
        StackAuthVerifier(**options)
    assert caught.value.setting == setting


def test_if_loopback_http_then_allowed() -> None:
    for url in ("http://127.0.0.1:9/j", "http://localhost/j", "http://[::1]:9/j"):
        assert StackAuthVerifier(project_id=PROJECT, jwks_url=url).jwks_url == url
