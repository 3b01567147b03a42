"""Garbage in: headers, cookies and tokens of any shape are answered by an AuthError (a 400, a
401 or a 503), or by nothing — never by another exception, which would be a 500."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skaala_auth import AuthError
from skaala_auth.session import NeedKeys, SessionClaims, StackAuthVerifier
from skaala_auth.testing import SessionKit

from .conftest import NOW, PROJECT

KIT = SessionKit(project_id=PROJECT, clock=lambda: NOW)
VERIFIER = KIT.verifier()
URL_VERIFIER = StackAuthVerifier(project_id=PROJECT, jwks_url="http://127.0.0.1:9/jwks.json")
TOKEN = KIT.mint()

NAMES = st.sampled_from(
    ["cookie", "Cookie", "COOKIE", "x-stack-access-token", "X-Stack-Access-Token", "x-api-key"]
)
COOKIE_NAMES = st.sampled_from(
    ["stack-access-token", "stack-access", f"stack-refresh-{PROJECT}", "other", ""]
)
TEXT = st.text(max_size=300)
LATIN1 = st.binary(max_size=300)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
).map(repr)


def cookie_header(pairs: list[tuple[str, str]], separator: str) -> str:
    return separator.join(f"{name}={value}" for name, value in pairs)


SDK_VALUES = st.one_of(
    TEXT,
    JSONISH,
    JSONISH.map(quote),
    st.lists(st.text(max_size=40), max_size=4).map(lambda items: quote(str(items))),
    st.text(max_size=40).map(lambda refresh: quote(f'["{refresh}", "{TOKEN}"]')),
)


def outcome_of(headers: object) -> object:
    try:
        return VERIFIER.token(headers)  # type: ignore[arg-type]
    except AuthError as error:
        return error


@given(st.lists(st.tuples(NAMES, TEXT | LATIN1), max_size=6))
def test_if_any_headers_then_a_token_none_or_an_auth_error(
    headers: list[tuple[str, str | bytes]],
) -> None:
    outcome = outcome_of(headers)
    assert outcome is None or isinstance(outcome, str | AuthError)
    raw = [
        (name.lower().encode(), v if isinstance(v, bytes) else v.encode()) for name, v in headers
    ]
    outcome = outcome_of(raw)
    assert outcome is None or isinstance(outcome, str | AuthError)


@given(
    st.lists(st.tuples(COOKIE_NAMES, SDK_VALUES), max_size=5),
    st.sampled_from(["; ", ";", " ; ", ", "]),
)
def test_if_any_cookies_then_a_token_none_or_an_auth_error(
    pairs: list[tuple[str, str]], separator: str
) -> None:
    outcome = outcome_of({"cookie": cookie_header(pairs, separator)})
    assert outcome is None or isinstance(outcome, str | AuthError)


@given(SDK_VALUES)
def test_if_any_sdk_cookie_then_a_token_or_an_auth_error(value: str) -> None:
    outcome = outcome_of({"cookie": f"stack-access={value}"})
    assert outcome is None or isinstance(outcome, str | AuthError)


@given(
    st.text(max_size=400)
    | st.from_regex(
        r"[A-Za-z0-9_\-]{0,60}\.[A-Za-z0-9_\-=]{0,60}\.[A-Za-z0-9_\-]{0,90}", fullmatch=True
    )
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_if_any_token_then_decode_refuses_and_never_raises(token: str) -> None:
    for verifier in (VERIFIER, URL_VERIFIER):
        outcome = verifier.decode(token, NOW)
        assert isinstance(outcome, AuthError | NeedKeys), outcome


@given(st.integers(0, len(TOKEN) - 1), st.characters(codec="ascii"))
def test_if_one_character_of_a_token_changes_then_never_a_500(index: int, char: str) -> None:
    """A changed token is refused — except the few changes base64 cannot see (unused low bits
    of a segment's last character), which decode to the very same bytes."""
    mutated = TOKEN[:index] + char + TOKEN[index + 1 :]
    outcome = VERIFIER.decode(mutated, NOW)
    assert isinstance(outcome, AuthError | SessionClaims)
    if isinstance(outcome, SessionClaims):
        assert outcome == VERIFIER.decode(TOKEN, NOW)
