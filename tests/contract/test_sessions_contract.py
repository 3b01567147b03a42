"""Dashboard sessions through every adapter: the same answers as the core's, byte for byte, on
the bookings API each adapter serves (``adapter`` is parametrized over all of them).

The API is the contract suite's: ``GET /teams/{team_id}/bookings`` needs ``read:bookings``,
``POST`` needs ``write:bookings``. Sessions get their scopes from their role in the team of the
path: owners every scope, members the ``read:*`` ones.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skaala_auth import (
    Authenticator,
    InsufficientScopeError,
    InvalidKeyError,
    InvalidSessionError,
    KeyManager,
    MemoryKeyStore,
    NotTeamMemberError,
    OriginRejectedError,
)
from skaala_auth.testing import SessionKit

from ..conftest import Clock
from .apps import CALLS, Call
from .conftest import Serve
from .test_contract import assert_missing, assert_refused

BOOKINGS = "/teams/team_1/bookings"
DASHBOARD = "https://dashboard.example"


@pytest.fixture
def kit(clock: Clock) -> SessionKit:
    return SessionKit(project_id="test-project", clock=clock)


@pytest.fixture
def call(serve: Serve, store: MemoryKeyStore, clock: Clock, kit: SessionKit) -> Call:
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="owner_1", role="owner")
    manager.add_member(team_id="team_1", user_id="member_1", role="member")
    auth = Authenticator(
        store, clock=clock, session_verifier=kit.verifier(), allowed_origins=[DASHBOARD]
    )
    return serve(auth)


def session(kit: SessionKit, user: str, carrier: str = "cookie") -> list[tuple[str, str]]:
    return list(kit.headers(user_id=user, carrier=carrier).items())  # type: ignore[arg-type]


class TestSessions:
    @pytest.mark.parametrize("carrier", ["cookie", "sdk", "header"])
    def test_an_owners_session_reads_its_team(
        self, call: Call, kit: SessionKit, carrier: str
    ) -> None:
        reply = call("GET", BOOKINGS, session(kit, "owner_1", carrier), "")
        assert reply.status == 200, reply.body
        assert reply.json()["team_id"] == "team_1"
        assert reply.json()["key_id"] is None  # a session has no key
        assert CALLS == ["list"]

    def test_an_owners_cookie_post_from_the_dashboard_runs(
        self, call: Call, kit: SessionKit
    ) -> None:
        reply = call("POST", BOOKINGS, [*session(kit, "owner_1"), ("Origin", DASHBOARD)], "")
        assert reply.status == 201, reply.body
        assert CALLS == ["create"]

    @pytest.mark.parametrize(
        "origin", [None, "https://evil.example", "null", "https://dashboard.example.evil"]
    )
    def test_a_cookie_post_from_elsewhere_is_refused(
        self, call: Call, kit: SessionKit, origin: str | None
    ) -> None:
        headers = session(kit, "owner_1")
        if origin is not None:
            headers.append(("Origin", origin))
        assert_refused(call("POST", BOOKINGS, headers, ""), OriginRejectedError())

    def test_a_header_token_post_needs_no_origin(self, call: Call, kit: SessionKit) -> None:
        reply = call("POST", BOOKINGS, session(kit, "owner_1", "header"), "")
        assert reply.status == 201, reply.body

    def test_a_members_session_lacks_the_write_scope(self, call: Call, kit: SessionKit) -> None:
        headers = [*session(kit, "member_1"), ("Origin", DASHBOARD)]
        assert_refused(
            call("POST", BOOKINGS, headers, ""), InsufficientScopeError(["write:bookings"])
        )

    def test_another_teams_path(self, call: Call, kit: SessionKit) -> None:
        reply = call("GET", "/teams/team_2/bookings", session(kit, "owner_1"), "")
        assert_refused(reply, NotTeamMemberError())

    @pytest.mark.parametrize("expires_in", [-60, 600])
    def test_a_bad_token(self, call: Call, kit: SessionKit, expires_in: int) -> None:
        token = kit.mint("owner_1", expires_in=expires_in)
        if expires_in > 0:
            token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        headers = [("Cookie", f"stack-access-token={token}")]
        assert_refused(call("GET", BOOKINGS, headers, ""), InvalidSessionError())

    def test_the_key_decides_beside_a_session(self, call: Call, kit: SessionKit) -> None:
        junk = "sk_live_" + "a" * 38
        headers = [*session(kit, "owner_1"), ("X-API-Key", junk)]
        assert_refused(call("GET", BOOKINGS, headers, ""), InvalidKeyError())

    def test_nothing_sent(self, call: Call, adapter: str) -> None:
        assert_missing(call("GET", BOOKINGS, [], ""), adapter)

    def test_a_stale_cookie_does_not_block_a_public_page(self, call: Call, kit: SessionKit) -> None:
        token = kit.mint("owner_1", expires_in=-60)
        reply = call("GET", "/public/status", [("Cookie", f"stack-access-token={token}")], "")
        assert reply.status == 200

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        value=st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";"),
            max_size=80,
        ),
        name=st.sampled_from(["stack-access-token", "stack-access"]),
        method=st.sampled_from(["GET", "POST"]),
    )
    def test_garbage_cookies_never_reach_the_handler(
        self, call: Call, value: str, name: str, method: str
    ) -> None:
        CALLS.clear()
        reply = call(method, BOOKINGS, [("Cookie", f"{name}={value}"), ("Origin", DASHBOARD)], "")
        assert reply.status in (400, 401), reply.body
        assert CALLS == []
