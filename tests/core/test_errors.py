from __future__ import annotations

import json

import pytest

from skaala_auth import (
    AuthError,
    InsufficientScopeError,
    InvalidKeyError,
    InvalidRequestError,
    MembershipRevokedError,
    MissingKeyError,
    RateLimitedError,
    Reason,
    StoreUnavailableError,
    TeamMismatchError,
)


def rendered(error: AuthError) -> tuple[int, dict[str, object], dict[str, str]]:
    headers = dict(error.headers())
    assert len(headers) == len(error.headers()), "no header twice"
    return error.status_code, json.loads(error.body_bytes()), headers


class TestContract:
    def test_if_missing_then_401_without_error_attribute(self) -> None:
        status, body, headers = rendered(MissingKeyError())
        assert status == 401
        assert body == {"error": "unauthorized", "message": "Missing API key"}
        assert headers["www-authenticate"] == 'Bearer realm="api"'
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"

    @pytest.mark.parametrize(
        "reason", [Reason.MALFORMED, Reason.UNKNOWN, Reason.EXPIRED, Reason.REVOKED]
    )
    def test_if_invalid_for_any_reason_then_byte_identical(self, reason: Reason) -> None:
        error = InvalidKeyError(reason=reason)
        assert error.status_code == 401
        assert error.body_bytes() == b'{"error":"unauthorized","message":"Invalid API key"}'
        assert error.headers() == InvalidKeyError(reason=Reason.UNKNOWN).headers()
        assert dict(error.headers())["www-authenticate"] == (
            'Bearer realm="api", error="invalid_token"'
        )
        assert error.reason is reason and reason.value not in error.body_bytes().decode()

    def test_if_scope_missing_then_403_with_scope_challenge(self) -> None:
        status, body, headers = rendered(InsufficientScopeError(["write:bookings"]))
        assert status == 403
        assert body == {"error": "forbidden", "message": "Insufficient scopes"}
        assert headers["www-authenticate"] == (
            'Bearer realm="api", error="insufficient_scope", scope="write:bookings"'
        )

    @pytest.mark.parametrize("error", [TeamMismatchError(), MembershipRevokedError()])
    def test_if_team_or_membership_then_403_forbidden(self, error: AuthError) -> None:
        status, body, headers = rendered(error)
        assert status == 403 and body["error"] == "forbidden" and body["message"]
        assert "www-authenticate" not in headers

    def test_if_invalid_request_then_400(self) -> None:
        status, body, headers = rendered(InvalidRequestError("Empty bearer token"))
        assert status == 400
        assert body == {"error": "invalid_request", "message": "Empty bearer token"}
        assert headers["www-authenticate"] == 'Bearer realm="api", error="invalid_request"'

    def test_if_rate_limited_then_429_with_retry_headers(self) -> None:
        status, body, headers = rendered(RateLimitedError(limit=100, reset=12.2))
        assert status == 429 and body["error"] == "rate_limited"
        assert headers["retry-after"] == "13" and headers["x-ratelimit-limit"] == "100"
        assert headers["x-ratelimit-remaining"] == "0" and headers["x-ratelimit-reset"] == "13"

    def test_if_store_unavailable_then_503_with_retry_after(self) -> None:
        status, body, headers = rendered(StoreUnavailableError())
        assert status == 503 and body["error"] == "service_unavailable"
        assert headers["retry-after"] == "5"
        assert "www-authenticate" not in headers

    def test_if_repr_then_reason_shown(self) -> None:
        assert "expired" in repr(InvalidKeyError(reason=Reason.EXPIRED))


def test_if_shared_then_raisable_is_a_fresh_copy_else_itself() -> None:
    own = InvalidKeyError(reason=Reason.EXPIRED)
    assert own.raisable() is own
    shared = MissingKeyError()
    shared.shared = True
    copy = shared.raisable()
    assert copy is not shared and type(copy) is MissingKeyError and not copy.shared
    assert copy.body_bytes() == shared.body_bytes()


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(InvalidRequestError("two credentials"), id="400"),
        pytest.param(MissingKeyError(), id="401-missing"),
        pytest.param(InvalidKeyError(reason=Reason.UNKNOWN), id="401-invalid"),
        pytest.param(InsufficientScopeError(["write:bookings"]), id="403-scope"),
        pytest.param(RateLimitedError(limit=10, reset=3), id="429"),
        pytest.param(StoreUnavailableError(), id="503"),
    ],
)
def test_if_any_error_then_json_no_store_and_nosniff(error: AuthError) -> None:
    """Every rendering says JSON, not cacheable, and not to be sniffed into something else."""
    headers = rendered(error)[2]
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert (b"x-content-type-options", b"nosniff") in error.raw_headers()
