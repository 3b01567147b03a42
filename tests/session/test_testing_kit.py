"""skaala_auth.testing's session helpers (SessionKit, mint_session, session_jwks), the pytest
fixture, and what works without the session extra."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest

from skaala_auth import InvalidSessionError, Reason
from skaala_auth.session import SessionClaims, StackAuthVerifier
from skaala_auth.testing import SessionKit, mint_session, session_jwks
from skaala_auth.testing.sessions import _b64

from .conftest import NOW, PROJECT

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


class TestSessionKit:
    def test_if_minted_then_shaped_like_stack_auth(self, kit: SessionKit) -> None:
        header, payload, _ = kit.mint("user_5").split(".")
        fields = json.loads(_unb64(header))
        claims = json.loads(_unb64(payload))
        assert fields == {"alg": "ES256", "kid": kit.key_id}
        assert claims["sub"] == "user_5" and claims["aud"] == PROJECT
        assert claims["iss"] == f"https://api.stack-auth.com/api/v1/projects/{PROJECT}"
        assert claims["exp"] - claims["iat"] == 600 and claims["iat"] == NOW
        assert claims["is_anonymous"] is False and claims["role"] == "authenticated"

    def test_if_options_then_claims_follow(
        self, kit: SessionKit, verifier: StackAuthVerifier
    ) -> None:
        claims = verifier.decode(kit.mint(expires_in=timedelta(minutes=1)), NOW)
        assert isinstance(claims, SessionClaims) and claims.expires_at == NOW + 60
        expired = verifier.decode(kit.mint(expires_in=-60), NOW)
        assert isinstance(expired, InvalidSessionError) and expired.reason is Reason.EXPIRED
        anonymous = json.loads(_unb64(kit.mint(anonymous=True).split(".")[1]))
        assert anonymous["aud"] == f"{PROJECT}:anon" and anonymous["is_restricted"] is True
        assert anonymous["iss"].endswith(f"/projects-anonymous-users/{PROJECT}")

    def test_if_headers_then_every_carrier(self, kit: SessionKit) -> None:
        verifier = kit.verifier()
        cookie = kit.headers("u1")
        assert cookie["Cookie"].startswith("stack-access-token=")
        sdk = kit.headers("u2", carrier="sdk")["Cookie"]
        access, refresh = sdk.split("; ")
        pair = json.loads(unquote(access.removeprefix("stack-access=")))
        assert refresh == f"stack-refresh-{PROJECT}={pair[0]}"
        header = kit.headers("u3", carrier="header")
        for headers, user in ((cookie, "u1"), ({"cookie": sdk}, "u2"), (header, "u3")):
            token = verifier.token(headers)
            assert token is not None and verifier.verify(token).user_id == user

    def test_if_rotated_without_the_old_key_then_old_tokens_refused(self, kit: SessionKit) -> None:
        old = kit.mint()
        first = kit.key_id
        assert kit.rotate(keep_old=False) != first
        assert [k["kid"] for k in kit.jwks["keys"]] == [kit.key_id]
        outcome = kit.verifier().decode(old, NOW)
        assert isinstance(outcome, InvalidSessionError)
        assert outcome.reason is Reason.UNKNOWN_SIGNING_KEY

    def test_if_added_key_then_in_jwks_and_signs_on_request(self, kit: SessionKit) -> None:
        extra = kit.add_key("extra")
        assert {k["kid"] for k in kit.jwks["keys"]} == {kit.key_id, extra}
        claims = kit.verifier().verify(kit.mint(key_id=extra))
        assert claims.key_id == "extra"
        assert "test-project" in repr(kit)

    def test_if_process_kit_then_settings_can_use_its_jwks(self) -> None:
        verifier = StackAuthVerifier(project_id="test-project", jwks=session_jwks())
        assert verifier.verify(mint_session("user_8")).user_id == "user_8"
        assert session_jwks() == session_jwks()
        other = StackAuthVerifier(project_id="shop", jwks=session_jwks())
        token = mint_session("user_9", project_id="shop", now=NOW, expires_in=60)
        claims = other.verify(token, now=NOW)
        assert claims.user_id == "user_9" and claims.expires_at == NOW + 60
        with pytest.raises(InvalidSessionError):
            verifier.verify(token, now=NOW)  # another project's audience


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_b64_has_no_padding() -> None:
    assert _b64(b"a") == "YQ"


PLUGIN_TESTS = """
from skaala_auth.session import SessionClaims


def test_session_kit_fixture(skaala_session_kit, skaala_clock):
    verifier = skaala_session_kit.verifier()
    token = verifier.token(skaala_session_kit.headers("user_1"))
    claims = verifier.verify(token)
    assert isinstance(claims, SessionClaims) and claims.user_id == "user_1"
    skaala_clock.advance(3600)
    assert verifier.decode(token, skaala_clock()).reason.value == "expired"


def test_fresh_key_per_test(skaala_session_kit):
    assert len(skaala_session_kit.jwks["keys"]) == 1
"""


def test_if_a_service_uses_the_session_fixture_then_it_works(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sessions=PLUGIN_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


WITHOUT_THE_EXTRA = """
import sys

sys.modules["jwt"] = None  # what a core-only install looks like
sys.modules["cryptography"] = None

import skaala_auth
import skaala_auth.testing
import skaala_auth.testing.plugin
from skaala_auth.testing import SessionKit, mint_session

for attempt in (lambda: __import__("skaala_auth.session"), SessionKit, mint_session):
    try:
        attempt()
    except ImportError as error:
        assert "skaala-auth[session]" in str(error), error
    else:
        raise AssertionError("the session helpers worked without their extra")
print("ok")
"""


def test_if_the_extra_is_missing_then_the_core_imports_and_session_names_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_EXTRA],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.stdout.strip() == "ok", result.stderr
