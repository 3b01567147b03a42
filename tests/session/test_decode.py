"""Verification: what is accepted, every refusal (with its reason), the time boundaries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from skaala_auth import InvalidSessionError, JwksUnavailableError, Reason, ServiceUnavailableError
from skaala_auth.session import NeedKeys, SessionClaims, StackAuthVerifier
from skaala_auth.testing import SessionKit

from .conftest import NOW, PROJECT


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: object) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def refused(outcome: object, reason: Reason) -> bool:
    return isinstance(outcome, InvalidSessionError) and outcome.reason is reason


class TestAccepted:
    def test_if_a_stack_token_then_its_claims(
        self, kit: SessionKit, verifier: StackAuthVerifier
    ) -> None:
        """A token shaped like Stack Auth's gives the user, the expiry and the session id."""
        claims = verifier.decode(kit.mint("user_42"), NOW)
        assert isinstance(claims, SessionClaims)
        assert claims.user_id == "user_42"
        assert claims.expires_at == NOW + 600 and claims.issued_at == NOW
        assert claims.session_id is not None and claims.session_id.startswith("rt-")
        assert claims.key_id == kit.key_id
        assert not claims.anonymous and not claims.restricted

    def test_if_claims_shown_then_no_token_in_them(
        self, kit: SessionKit, verifier: StackAuthVerifier
    ) -> None:
        token = kit.mint()
        claims = verifier.decode(token, NOW)
        assert token not in repr(claims)
        assert token.split(".")[2] not in repr(claims)

    def test_if_no_iat_then_still_accepted(
        self, kit: SessionKit, verifier: StackAuthVerifier
    ) -> None:
        claims = verifier.decode(kit.mint(iat=None), NOW)
        assert isinstance(claims, SessionClaims) and claims.issued_at is None

    def test_if_float_times_then_accepted(
        self, kit: SessionKit, verifier: StackAuthVerifier
    ) -> None:
        claims = verifier.decode(kit.mint(exp=NOW + 0.5, iat=NOW - 0.5), NOW)
        assert isinstance(claims, SessionClaims) and claims.expires_at == NOW + 0.5

    def test_if_anonymous_allowed_then_anonymous_claims(self, kit: SessionKit) -> None:
        verifier = kit.verifier(allow_anonymous=True)
        claims = verifier.decode(kit.mint(anonymous=True), NOW)
        assert isinstance(claims, SessionClaims) and claims.anonymous and claims.restricted

    def test_if_restricted_allowed_then_restricted_claims(self, kit: SessionKit) -> None:
        verifier = kit.verifier(allow_restricted=True)
        claims = verifier.decode(kit.mint(restricted=True), NOW)
        assert isinstance(claims, SessionClaims) and claims.restricted and not claims.anonymous
        assert refused(verifier.decode(kit.mint(anonymous=True), NOW), Reason.ANONYMOUS)

    def test_if_the_key_is_rotated_then_both_kids_verify(self, kit: SessionKit) -> None:
        old = kit.mint()
        kit.rotate()
        verifier = kit.verifier()
        assert isinstance(verifier.decode(old, NOW), SessionClaims)
        assert isinstance(verifier.decode(kit.mint(), NOW), SessionClaims)

    def test_if_issuers_configured_then_only_those(self, kit: SessionKit) -> None:
        verifier = kit.verifier(issuers="https://auth.example.com")
        assert refused(verifier.decode(kit.mint(), NOW), Reason.WRONG_ISSUER)
        token = kit.mint(iss="https://auth.example.com")
        assert isinstance(verifier.decode(token, NOW), SessionClaims)


def alg_none(kit: SessionKit) -> str:
    token = kit.mint()
    header = {"alg": "none", "kid": kit.key_id}
    return f"{segment(header)}.{token.split('.')[1]}."


def hs256_with_public_key(encoding: str) -> Callable[[SessionKit], str]:
    """The classic confusion: an HMAC "signed" with the verifier's own public key as secret."""

    def forge(kit: SessionKit) -> str:
        public = kit._keys[kit.key_id].public_key()
        if encoding == "pem":
            secret = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            secret = public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        header = segment({"alg": "HS256", "kid": kit.key_id, "typ": "JWT"})
        payload = kit.mint().split(".")[1]
        signing_input = f"{header}.{payload}".encode()
        return f"{header}.{payload}.{b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"

    return forge


def resigned_under_alg(alg: str) -> Callable[[SessionKit], str]:
    return lambda kit: kit.mint(header={"alg": alg})


def other_key_same_kid(kit: SessionKit) -> str:
    impostor = SessionKit(project_id=PROJECT, clock=lambda: NOW)
    return impostor.sign(
        json.loads(unb64(kit.mint().split(".")[1])),
        key_id=impostor.key_id,
        header={"kid": kit.key_id},
    )


def embedded_jwk(kit: SessionKit) -> str:
    """A token that brings its own key (``jwk`` header), signed by it: the key is ignored."""
    impostor = SessionKit(project_id=PROJECT, clock=lambda: NOW)
    jwk = impostor.jwks["keys"][0]
    payload = json.loads(unb64(kit.mint().split(".")[1]))
    return impostor.sign(payload, key_id=impostor.key_id, header={"kid": kit.key_id, "jwk": jwk})


def tampered_payload(kit: SessionKit) -> str:
    header, payload, signature = kit.mint("user_1").split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = "user_admin"
    return f"{header}.{segment(claims)}.{signature}"


def tampered_header(kit: SessionKit) -> str:
    header, payload, signature = kit.mint().split(".")
    fields = json.loads(unb64(header))
    fields["typ"] = "JWT"
    return f"{segment(fields)}.{payload}.{signature}"


def truncated_signature(kit: SessionKit) -> str:
    header, payload, signature = kit.mint().split(".")
    return f"{header}.{payload}.{b64(unb64(signature)[:-2])}"


def der_signature(kit: SessionKit) -> str:
    """ES256 in JWS is raw r||s; the DER form of the same signature must not pass."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    header, payload, _ = kit.mint().split(".")
    der = kit._keys[kit.key_id].sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    return f"{header}.{payload}.{b64(der)}"


def unknown_kid(kit: SessionKit) -> str:
    stranger = SessionKit(project_id=PROJECT, clock=lambda: NOW)
    return stranger.mint()


REFUSALS = [
    pytest.param(alg_none, Reason.DISALLOWED_ALGORITHM, id="alg-none"),
    pytest.param(
        lambda kit: kit.mint(header={"alg": "None"}), Reason.DISALLOWED_ALGORITHM, id="alg-None"
    ),
    pytest.param(hs256_with_public_key("pem"), Reason.DISALLOWED_ALGORITHM, id="hs256-pem"),
    pytest.param(hs256_with_public_key("raw"), Reason.DISALLOWED_ALGORITHM, id="hs256-point"),
    pytest.param(resigned_under_alg("RS256"), Reason.DISALLOWED_ALGORITHM, id="alg-rs256"),
    pytest.param(resigned_under_alg("ES384"), Reason.DISALLOWED_ALGORITHM, id="alg-es384"),
    pytest.param(resigned_under_alg("es256"), Reason.DISALLOWED_ALGORITHM, id="alg-lowercase"),
    pytest.param(
        lambda kit: kit.mint(header={"alg": None}), Reason.DISALLOWED_ALGORITHM, id="alg-missing"
    ),
    pytest.param(unknown_kid, Reason.UNKNOWN_SIGNING_KEY, id="unknown-kid"),
    pytest.param(other_key_same_kid, Reason.BAD_SIGNATURE, id="other-key-same-kid"),
    pytest.param(embedded_jwk, Reason.BAD_SIGNATURE, id="embedded-jwk-header"),
    pytest.param(
        lambda kit: kit.mint(header={"jku": "https://evil.example/jwks.json", "kid": "evil"}),
        Reason.UNKNOWN_SIGNING_KEY,
        id="jku-header",
    ),
    pytest.param(tampered_payload, Reason.BAD_SIGNATURE, id="tampered-payload"),
    pytest.param(tampered_header, Reason.BAD_SIGNATURE, id="tampered-header"),
    pytest.param(truncated_signature, Reason.BAD_SIGNATURE, id="truncated-signature"),
    pytest.param(der_signature, Reason.BAD_SIGNATURE, id="der-signature"),
    pytest.param(lambda kit: kit.mint(anonymous=True), Reason.ANONYMOUS, id="anonymous"),
    pytest.param(
        lambda kit: kit.mint(is_anonymous=True), Reason.ANONYMOUS, id="anonymous-flag-only"
    ),
    pytest.param(
        lambda kit: kit.mint(aud=f"{PROJECT}:anon", is_anonymous=False),
        Reason.ANONYMOUS,
        id="anonymous-audience-only",
    ),
    pytest.param(lambda kit: kit.mint(restricted=True), Reason.ANONYMOUS, id="restricted"),
    pytest.param(
        lambda kit: kit.mint(aud="other-project"), Reason.WRONG_AUDIENCE, id="other-audience"
    ),
    pytest.param(lambda kit: kit.mint(aud=[PROJECT]), Reason.WRONG_AUDIENCE, id="audience-list"),
    pytest.param(lambda kit: kit.mint(aud=None), Reason.WRONG_AUDIENCE, id="no-audience"),
    pytest.param(
        lambda kit: kit.mint(aud=f"{PROJECT}:admin"), Reason.WRONG_AUDIENCE, id="audience-suffix"
    ),
    pytest.param(
        lambda kit: kit.mint(iss="https://api.stack-auth.com/api/v1/projects/other"),
        Reason.WRONG_ISSUER,
        id="other-issuer",
    ),
    pytest.param(lambda kit: kit.mint(iss=None), Reason.WRONG_ISSUER, id="no-issuer"),
    pytest.param(
        lambda kit: kit.mint(iss=kit.issuer("anonymous")),
        Reason.WRONG_ISSUER,
        id="anonymous-issuer-normal-audience",
    ),
    pytest.param(lambda kit: kit.mint(exp=None), Reason.MALFORMED, id="no-exp"),
    pytest.param(lambda kit: kit.mint(exp=str(NOW + 600)), Reason.MALFORMED, id="exp-string"),
    pytest.param(lambda kit: kit.mint(exp=True), Reason.MALFORMED, id="exp-boolean"),
    pytest.param(lambda kit: kit.mint(exp=float("inf")), Reason.MALFORMED, id="exp-infinite"),
    pytest.param(lambda kit: kit.mint(exp=float("nan")), Reason.MALFORMED, id="exp-nan"),
    pytest.param(lambda kit: kit.mint(exp=10**400), Reason.MALFORMED, id="exp-huge"),
    pytest.param(lambda kit: kit.mint(nbf="soon"), Reason.MALFORMED, id="nbf-string"),
    pytest.param(lambda kit: kit.mint(iat=[NOW]), Reason.MALFORMED, id="iat-list"),
    pytest.param(lambda kit: kit.mint(sub=None), Reason.MALFORMED, id="no-sub"),
    pytest.param(lambda kit: kit.mint(""), Reason.MALFORMED, id="empty-sub"),
    pytest.param(lambda kit: kit.mint(sub=42), Reason.MALFORMED, id="sub-number"),
    pytest.param(lambda kit: kit.mint(header={"crit": ["exp"]}), Reason.MALFORMED, id="crit"),
    pytest.param(lambda kit: kit.mint(header={"kid": None}), Reason.MALFORMED, id="no-kid"),
    pytest.param(lambda kit: kit.mint(header={"kid": ""}), Reason.MALFORMED, id="empty-kid"),
    pytest.param(lambda kit: kit.mint(header={"kid": 7}), Reason.MALFORMED, id="kid-number"),
    pytest.param(
        lambda kit: kit.mint(header={"kid": "k" * 300}), Reason.MALFORMED, id="kid-too-long"
    ),
    pytest.param(
        lambda kit: kit.mint(exp=NOW - 3600, iat=NOW - 4200), Reason.EXPIRED, id="expired"
    ),
    pytest.param(lambda kit: kit.mint(nbf=NOW + 3600), Reason.NOT_YET_VALID, id="nbf-future"),
    pytest.param(lambda kit: kit.mint(issued_at=NOW + 3600), Reason.NOT_YET_VALID, id="iat-future"),
]


@pytest.mark.parametrize(("forge", "reason"), REFUSALS)
def test_if_forged_or_wrong_then_refused_with_its_reason(
    kit: SessionKit,
    verifier: StackAuthVerifier,
    forge: Callable[[SessionKit], str],
    reason: Reason,
) -> None:
    outcome = verifier.decode(forge(kit), NOW)
    assert isinstance(outcome, InvalidSessionError), outcome
    assert outcome.reason is reason


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="one-part"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("a.b.c.d", id="four-parts"),
        pytest.param("a.b.c", id="not-base64-json"),
        pytest.param("W10.e30.", id="header-not-an-object"),
        pytest.param("eyJhbGciOiJFUzI1NiJ9.e30.é", id="not-ascii"),
        pytest.param("x" * 9000 + "..", id="too-long"),
        pytest.param(b64(b"[" * 5000) + ".e30.", id="deep-json"),
    ],
)
def test_if_not_a_jws_then_malformed(verifier: StackAuthVerifier, token: str) -> None:
    assert refused(verifier.decode(token, NOW), Reason.MALFORMED)


def test_if_payload_not_an_object_then_malformed(
    kit: SessionKit, verifier: StackAuthVerifier
) -> None:
    header, _, _ = kit.mint().split(".")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    payload = segment([1, 2])
    der = kit._keys[kit.key_id].sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    token = f"{header}.{payload}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    assert refused(verifier.decode(token, NOW), Reason.MALFORMED)


class TestTimeBoundaries:
    """Accepted while ``now < exp + leeway``, and from ``nbf - leeway`` and ``iat - leeway``
    on; always against the ``now`` passed in, never the system clock."""

    LEEWAY = 10.0
    EXP = NOW + 600

    @pytest.mark.parametrize(
        ("now", "accepted"),
        [
            pytest.param(EXP - 1, True, id="before-exp"),
            pytest.param(EXP, True, id="at-exp-within-leeway"),
            pytest.param(EXP + LEEWAY - 0.001, True, id="just-inside-leeway"),
            pytest.param(EXP + LEEWAY, False, id="at-exp-plus-leeway"),
            pytest.param(EXP + LEEWAY + 1, False, id="past-leeway"),
        ],
    )
    def test_exp(self, kit: SessionKit, now: float, accepted: bool) -> None:
        verifier = kit.verifier(leeway=self.LEEWAY)
        outcome = verifier.decode(kit.mint(exp=self.EXP), now)
        assert isinstance(outcome, SessionClaims) is accepted
        if not accepted:
            assert refused(outcome, Reason.EXPIRED)

    @pytest.mark.parametrize(
        ("now", "accepted"),
        [
            pytest.param(NOW - LEEWAY - 0.001, False, id="before-leeway"),
            pytest.param(NOW - LEEWAY, True, id="at-nbf-minus-leeway"),
            pytest.param(NOW, True, id="at-nbf"),
        ],
    )
    def test_nbf(self, kit: SessionKit, now: float, accepted: bool) -> None:
        verifier = kit.verifier(leeway=self.LEEWAY)
        outcome = verifier.decode(kit.mint(nbf=NOW, iat=None), now)
        assert isinstance(outcome, SessionClaims) is accepted
        if not accepted:
            assert refused(outcome, Reason.NOT_YET_VALID)

    @pytest.mark.parametrize(
        ("now", "accepted"),
        [
            pytest.param(NOW - LEEWAY - 0.001, False, id="before-leeway"),
            pytest.param(NOW - LEEWAY, True, id="at-iat-minus-leeway"),
        ],
    )
    def test_iat(self, kit: SessionKit, now: float, accepted: bool) -> None:
        verifier = kit.verifier(leeway=self.LEEWAY)
        outcome = verifier.decode(kit.mint(issued_at=NOW), now)
        assert isinstance(outcome, SessionClaims) is accepted
        if not accepted:
            assert refused(outcome, Reason.NOT_YET_VALID)

    def test_if_no_leeway_then_refused_at_exp(self, kit: SessionKit) -> None:
        verifier = kit.verifier(leeway=0)
        token = kit.mint(exp=self.EXP)
        assert isinstance(verifier.decode(token, self.EXP - 0.001), SessionClaims)
        assert refused(verifier.decode(token, self.EXP), Reason.EXPIRED)

    def test_if_token_long_expired_by_the_system_clock_then_now_decides(self) -> None:
        """PyJWT's own time checks (system clock) are off: a token of 2001 verifies at an
        instant of 2001."""
        then = 1_000_000_000.0
        kit = SessionKit(project_id=PROJECT, clock=lambda: then)
        verifier = kit.verifier()
        assert isinstance(verifier.decode(kit.mint(), then), SessionClaims)
        with pytest.raises(InvalidSessionError) as caught:
            verifier.verify(kit.mint(), now=then + 3600)
        assert caught.value.reason is Reason.EXPIRED

    def test_if_verify_without_now_then_the_verifier_clock(self, kit: SessionKit) -> None:
        instants = [NOW]
        verifier = kit.verifier(clock=lambda: instants[0])
        token = kit.mint()
        assert verifier.verify(token).user_id == "user_1"
        instants[0] = NOW + 3600
        with pytest.raises(InvalidSessionError):
            verifier.verify(token)


class TestRendering:
    @pytest.mark.parametrize("reason", [r for r in Reason])
    def test_if_invalid_session_for_any_reason_then_byte_identical_401(
        self, reason: Reason
    ) -> None:
        error = InvalidSessionError(reason=reason)
        assert error.status_code == 401 and error.reason is reason
        assert error.body_bytes() == b'{"error":"unauthorized","message":"Invalid session"}'
        assert error.body == {"error": "unauthorized", "message": "Invalid session"}
        assert dict(error.headers())["www-authenticate"] == (
            'Bearer realm="api", error="invalid_token"'
        )
        assert reason.value not in error.body_bytes().decode()

    def test_if_jwks_unavailable_then_503_like_a_store_outage(self) -> None:
        error = JwksUnavailableError()
        assert isinstance(error, ServiceUnavailableError)
        assert error.status_code == 503 and error.reason is Reason.JWKS_UNAVAILABLE
        headers = dict(error.headers())
        assert headers["retry-after"] == "5" and "www-authenticate" not in headers
        assert error.body["error"] == "service_unavailable"


def test_if_static_jwks_then_never_need_keys(kit: SessionKit) -> None:
    verifier = kit.verifier()
    assert verifier.fetch_keys(NOW) is True
    outcome = verifier.decode(unknown_kid(kit), NOW)
    assert not isinstance(outcome, NeedKeys)
    assert refused(outcome, Reason.UNKNOWN_SIGNING_KEY)
