"""Generated credential headers against every adapter: never a 500, never a 200 without the
valid key."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .apps import CALLS
from .conftest import Api, Keys

# What can reach an application: latin-1 text without CR, LF or NUL (servers refuse those).
_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)
_NAMES = st.sampled_from(["Authorization", "authorization", "X-API-Key", "x-api-key", "X-Other"])


def _values(valid: str) -> st.SearchStrategy[str]:
    return st.one_of(
        _TEXT,
        _TEXT.map(lambda text: f"Bearer {text}"),
        st.sampled_from(
            ["", " ", "Bearer", "Bearer ", "bearer\t", "Basic Zm9vOmJhcg==", "Token x"]
        ),
        st.sampled_from([valid, f"Bearer {valid}", f" {valid} ", f"Bearer {valid}x"]),
        st.integers(1, 20_000).map(lambda n: "Bearer " + "A" * n),  # huge values
        st.builds(lambda text, i: valid[:i] + text + valid[i:], _TEXT, st.integers(0, 46)),
    )


def _credentials(headers: list[tuple[str, str]]) -> list[str]:
    """The credentials of ours in ``headers`` (an Authorization of another scheme is absent)."""
    found = []
    for name, value in headers:
        if name.lower() == "x-api-key":
            found.append(value.strip())
        elif name.lower() == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                found.append(token.strip())
    return found


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_if_headers_are_generated_then_never_a_500_nor_a_200_without_the_valid_key(
    api: Api, keys: Keys, data: st.DataObject
) -> None:
    headers = data.draw(st.lists(st.tuples(_NAMES, _values(keys.read)), max_size=4))
    CALLS.clear()
    reply = api.get("/teams/team_1/bookings", headers)
    assert reply.status in (200, 400, 401), reply.body
    if reply.status == 200:
        # (That it was the only credential is the repeated-header row of test_contract.py: WSGI
        # servers merge repeated headers, and the core reads some merges as "absent".)
        assert keys.read in _credentials(headers)
    else:
        assert CALLS == []
        assert reply.headers["content-type"] == "application/json"
