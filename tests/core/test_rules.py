from __future__ import annotations

import pytest

from skaala_auth.rules import Requirement, Rule, Rules, is_cors_preflight

RULES = Rules(
    [
        Rule("/api/v1/bookings", methods=["GET"], scopes=["read:bookings"]),
        Rule("/api/v1/bookings", methods=["post"], scopes=["write:bookings"]),
        ("/api/v1/teams/{team_id}/bookings", ["read:bookings"], ["GET"]),
        ("/api/v1/webhooks*", ["webhooks:manage"]),
    ],
    public=["/health", "/api/v1/public/*"],
    protect=["/api/"],
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/bookings", Requirement(required=True, scopes=("read:bookings",))),
        ("POST", "/api/v1/bookings", Requirement(required=True, scopes=("write:bookings",))),
        (
            "GET",
            "/api/v1/teams/team_1/bookings",
            Requirement(required=True, scopes=("read:bookings",), team_id="team_1"),
        ),
        ("GET", "/api/v1/teams/a/b/bookings", Requirement(required=True)),
        (
            "DELETE",
            "/api/v1/webhooks/wh_1",
            Requirement(required=True, scopes=("webhooks:manage",)),
        ),
        ("GET", "/api/v1/contacts", Requirement(required=True)),
        ("GET", "/health", Requirement(public=True)),
        ("GET", "/api/v1/public/x/y", Requirement(public=True)),
        ("GET", "/about", Requirement()),
        ("GET", "/api", Requirement()),
    ],
)
def test_if_matched_then_requirement(method: str, path: str, expected: Requirement) -> None:
    assert RULES.match(method, path) == expected


def test_if_cors_preflight_then_public_and_plain_options_not() -> None:
    preflight = {"Origin": "https://x", "Access-Control-Request-Method": "POST"}
    assert is_cors_preflight("OPTIONS", preflight)
    assert RULES.match("OPTIONS", "/api/v1/bookings", preflight) == Requirement(public=True)
    assert RULES.match("OPTIONS", "/api/v1/bookings", {}) == Requirement(required=True)
    assert not is_cors_preflight("GET", preflight)


@pytest.mark.parametrize("pattern", ["api/x", "/api/*/x"])
def test_if_bad_pattern_then_value_error(pattern: str) -> None:
    with pytest.raises(ValueError):
        Rule(pattern)


def test_if_single_string_scopes_then_type_error() -> None:
    with pytest.raises(TypeError):
        Rule("/x", scopes="read:bookings")  # type: ignore[arg-type]


def test_if_custom_team_param_then_used() -> None:
    rules = Rules([("/orgs/{org}/x", ["read:calls"])], team_param="org")
    assert rules.match("GET", "/orgs/o1/x").team_id == "o1"
    assert "1 rules" in repr(rules)
