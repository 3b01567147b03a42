from __future__ import annotations

import pytest

from skaala_auth.flow import ANSWER_PREFLIGHT, RequestFacts, requirement
from skaala_auth.rules import UNBOUND_TEAM, Requirement, Rule, Rules

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


READ_WRITE = Requirement(required=True, scopes=("read:bookings", "write:bookings"))
TEAM_READ = Requirement(required=True, scopes=("read:bookings",), team_id="team_1")


def test_if_cors_preflight_to_a_protected_path_then_answered_and_plain_options_not() -> None:
    preflight = {"Origin": "https://x", "Access-Control-Request-Method": "POST"}
    facts = RequestFacts("OPTIONS", "/api/v1/bookings", preflight)
    assert requirement(facts, RULES) == ANSWER_PREFLIGHT
    assert requirement(RequestFacts("options", "/api/v1/bookings", preflight), RULES).public
    # a plain OPTIONS is not a preflight: the pattern's strictest requirement
    assert requirement(RequestFacts("OPTIONS", "/api/v1/bookings", {}), RULES) == READ_WRITE
    # public and unprotected paths: passed on, unchallenged
    assert requirement(RequestFacts("OPTIONS", "/health", preflight), RULES) == Requirement(
        public=True
    )
    assert requirement(RequestFacts("OPTIONS", "/about", preflight), RULES) == Requirement(
        public=True
    )
    assert requirement(RequestFacts("GET", "/api/v1/bookings", preflight), RULES) == (
        RULES.match("GET", "/api/v1/bookings")
    )


@pytest.mark.parametrize("method", ["HEAD", "head", "get"])
def test_if_head_or_lower_case_then_as_get(method: str) -> None:
    assert RULES.match(method, "/api/v1/teams/team_1/bookings") == TEAM_READ


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "patch"])
def test_if_method_not_listed_then_the_patterns_strictest_never_the_fall_through(
    method: str,
) -> None:
    assert RULES.match(method, "/api/v1/bookings") == READ_WRITE
    assert RULES.match(method, "/api/v1/teams/team_1/bookings") == TEAM_READ


def test_if_a_later_catch_all_then_it_does_not_weaken_an_earlier_pattern() -> None:
    rules = Rules([("/api/v1/bookings", ["read:bookings"], ["GET"]), ("/api/*", [])])
    assert rules.match("DELETE", "/api/v1/bookings").scopes == ("read:bookings",)
    assert rules.match("DELETE", "/api/v1/contacts") == Requirement(required=True)


@pytest.mark.parametrize(
    "path",
    [
        "//api/v1/teams/team_1/bookings",
        "///api/v1/teams/team_1/bookings",
        "/api//v1/teams/team_1/bookings",
        "/api/v1/teams/team_1/bookings/",
        "/./api/v1/teams/team_1/bookings",
        "/api/v1/x/../teams/team_1/bookings",
        "/API/V1/TEAMS/team_1/BOOKINGS",
        "//api/v1/teams/team_1//bookings/",
    ],
)
def test_if_a_protected_path_is_spelt_otherwise_then_still_protected(path: str) -> None:
    assert RULES.match("GET", path) == TEAM_READ


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/teams/team_1/bookings/./",
        "/api/v1/teams/team_1/bookings/.",
        "/api/v1/teams/team_1/bookings/x/../",
        "/API/V1/TEAMS/team_1/BOOKINGS/./",
    ],
)
def test_if_a_protected_path_ends_in_a_dot_segment_then_still_protected(path: str) -> None:
    """Found by fuzz/fuzz_rules.py: "/a/./" resolved to "/a//", which the rule for "/a" (or
    "/a/") does not match, so the request was not challenged."""
    assert RULES.match("GET", path) == TEAM_READ


@pytest.mark.parametrize("path", ["//api/v1/contacts", "/api/./contacts", "/x/../api/v1/y"])
def test_if_under_a_protected_prefix_spelt_otherwise_then_protected(path: str) -> None:
    assert RULES.match("GET", path).required


@pytest.mark.parametrize("path", ["/api/v1/../../health", "//health", "/Health", "/health/"])
def test_if_public_only_in_some_forms_then_not_public(path: str) -> None:
    assert not RULES.match("GET", path).public


def test_if_forms_name_different_teams_then_no_team_can_pass() -> None:
    rules = Rules([("/t/{team_id}/x", ["read:bookings"]), ("/t/{team_id}/y/*", [])])
    need = rules.match("GET", "/t/team_2/y/../../team_1/x")
    assert need.team_id == UNBOUND_TEAM
    assert need.required


def test_if_default_deny_then_unmatched_needs_a_key() -> None:
    rules = Rules([("/api/v1/bookings", ["read:bookings"])], public=["/health"], default="deny")
    assert rules.match("GET", "/about") == Requirement(required=True)
    assert rules.match("GET", "/health").public
    assert Rules().match("GET", "/about") == Requirement()
    with pytest.raises(ValueError, match="allow"):
        Rules(default="closed")  # type: ignore[arg-type]


def test_if_a_team_segment_is_misnamed_then_value_error() -> None:
    with pytest.raises(ValueError, match="team_param='team'"):
        Rules([("/teams/{team}/bookings", ["read:bookings"])])
    assert Rules([("/teams/{team}/x", [])], team_param="team").match("GET", "/teams/t/x").team_id


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
