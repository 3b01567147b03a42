"""Where a session token is read from: the carriers, their order, and what is refused there."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import quote

import pytest

from skaala_auth import InvalidRequestError, InvalidSessionError, Reason
from skaala_auth.credentials import HeadersLike
from skaala_auth.session import StackAuthVerifier
from skaala_auth.testing import SessionKit

from .conftest import PROJECT

RAW = "raw.cookie.token"
SDK = "sdk.cookie.token"
HEADER = "header.carried.token"
REFRESH = "refresh-token-123"


def sdk_cookie(refresh: str = REFRESH, access: str = SDK, *, encoded: bool = True) -> str:
    value = json.dumps([refresh, access], separators=(",", ":"))
    return f"stack-access={quote(value) if encoded else value}"


class TestEachCarrier:
    def test_if_access_token_cookie_then_its_token(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token({"Cookie": f"stack-access-token={RAW}"}) == RAW

    @pytest.mark.parametrize("encoded", [True, False], ids=["url-encoded", "raw-json"])
    def test_if_sdk_cookie_then_its_access_token(
        self, verifier: StackAuthVerifier, encoded: bool
    ) -> None:
        """The Stack SDK's ``["<refresh>", "<access>"]``: element 1 is the token."""
        assert verifier.token({"cookie": sdk_cookie(encoded=encoded)}) == SDK

    def test_if_sdk_cookie_lowercase_escapes_then_read(self, verifier: StackAuthVerifier) -> None:
        value = quote(json.dumps([REFRESH, SDK])).lower()  # %5b%22…: still URL-encoding
        assert verifier.token({"cookie": f"stack-access={value}"}) == SDK

    def test_if_header_then_its_token(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token({"X-Stack-Access-Token": HEADER}) == HEADER

    def test_if_nothing_then_none(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token({}) is None
        assert verifier.token([]) is None
        assert verifier.token({"Cookie": "theme=dark; lang=en", "Authorization": "Basic x"}) is None

    def test_if_a_real_token_then_it_verifies_from_every_carrier(self, kit: SessionKit) -> None:
        verifier = kit.verifier()
        for carrier in ("cookie", "sdk", "header"):
            token = verifier.token(kit.headers("user_7", carrier=carrier))  # type: ignore[arg-type]
            assert token is not None
            assert verifier.verify(token).user_id == "user_7"


class TestFind:
    """``find`` says which carrier the token came in: the flow's CSRF check needs it."""

    @pytest.mark.parametrize(
        ("headers", "carrier", "by_cookie"),
        [
            pytest.param(
                {"cookie": f"stack-access-token={RAW}"},
                "access_token_cookie",
                True,
                id="access-token-cookie",
            ),
            pytest.param({"cookie": sdk_cookie()}, "sdk_cookie", True, id="sdk-cookie"),
            pytest.param({"x-stack-access-token": HEADER}, "header", False, id="header"),
        ],
    )
    def test_if_found_then_the_carrier_is_known(
        self, verifier: StackAuthVerifier, headers: HeadersLike, carrier: str, by_cookie: bool
    ) -> None:
        found = verifier.find(headers)
        assert found is not None
        assert (found.carrier, found.by_cookie) == (carrier, by_cookie)
        assert found.token == verifier.token(headers)
        assert found.token not in repr(found)

    def test_if_nothing_then_none(self, verifier: StackAuthVerifier) -> None:
        assert verifier.find({"cookie": "a=b"}) is None


class TestOrder:
    """First present wins: the access-token cookie, the SDK cookie, the header."""

    def test_if_all_three_then_the_access_token_cookie(self, verifier: StackAuthVerifier) -> None:
        headers = {
            "Cookie": f"{sdk_cookie()}; stack-access-token={RAW}",
            "x-stack-access-token": HEADER,
        }
        assert verifier.token(headers) == RAW

    def test_if_sdk_cookie_and_header_then_the_cookie(self, verifier: StackAuthVerifier) -> None:
        headers = {"Cookie": sdk_cookie(), "x-stack-access-token": HEADER}
        assert verifier.token(headers) == SDK

    def test_if_only_unrelated_cookies_then_the_header(self, verifier: StackAuthVerifier) -> None:
        headers = {"Cookie": "stack-access-token-old=x; a=b", "x-stack-access-token": HEADER}
        assert verifier.token(headers) == HEADER

    def test_if_empty_cookie_then_absent_and_the_next_carrier(
        self, verifier: StackAuthVerifier
    ) -> None:
        headers = {"Cookie": "stack-access-token=; stack-access=", "x-stack-access-token": HEADER}
        assert verifier.token(headers) == HEADER

    def test_if_empty_header_then_absent(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token({"x-stack-access-token": "  "}) is None

    def test_if_the_first_carrier_is_bad_then_no_fallback(
        self, verifier: StackAuthVerifier
    ) -> None:
        """A present carrier decides, even when it is garbage: no shopping for a better one."""
        headers = {"Cookie": "stack-access=garbage", "x-stack-access-token": HEADER}
        with pytest.raises(InvalidSessionError):
            verifier.token(headers)


class TestHeaderShapes:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({"Cookie": f"stack-access-token={RAW}"}, id="mapping"),
            pytest.param({"COOKIE": f"stack-access-token={RAW}"}, id="mapping-upper"),
            pytest.param([("Cookie", f"stack-access-token={RAW}")], id="str-pairs"),
            pytest.param([(b"cookie", f"stack-access-token={RAW}".encode())], id="asgi-pairs"),
            pytest.param({b"cookie": f"stack-access-token={RAW}".encode()}, id="bytes-mapping"),
            pytest.param((("cookie", f"stack-access-token={RAW}"),), id="tuple"),
        ],
    )
    def test_if_any_header_shape_then_read(
        self, verifier: StackAuthVerifier, headers: HeadersLike
    ) -> None:
        assert verifier.token(headers) == RAW

    def test_if_header_in_asgi_pairs_then_read(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token([(b"x-stack-access-token", HEADER.encode())]) == HEADER
        assert verifier.token([(b"X-Stack-Access-Token", HEADER.encode())]) == HEADER

    def test_if_several_cookie_headers_then_all_read(self, verifier: StackAuthVerifier) -> None:
        """HTTP/2 sends one ``cookie`` header per cookie; ASGI hands them over as they came."""
        headers = [
            (b"cookie", b"theme=dark"),
            (b"cookie", sdk_cookie().encode()),
            (b"cookie", f"stack-refresh-{PROJECT}={REFRESH}".encode()),
        ]
        assert verifier.token(headers) == SDK

    def test_if_values_are_not_strings_then_skipped(self, verifier: StackAuthVerifier) -> None:
        headers = [("cookie", None), (7, "x"), ("x-stack-access-token", HEADER)]
        assert verifier.token(headers) == HEADER  # type: ignore[arg-type]

    def test_if_quoted_cookie_value_then_unwrapped(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token({"cookie": f'stack-access-token="{RAW}"'}) == RAW

    def test_if_raw_json_before_then_later_cookies_still_read(
        self, verifier: StackAuthVerifier
    ) -> None:
        """Why not :mod:`http.cookies`: it stops at the SDK's raw JSON and loses what follows."""
        header = f"{sdk_cookie(encoded=False)}; stack-access-token={RAW}"
        assert "stack-access-token" not in SimpleCookie(header)
        assert verifier.token({"cookie": header}) == RAW

    def test_if_garbage_around_then_ignored(self, verifier: StackAuthVerifier) -> None:
        header = f';;=; novalue; ===; a="b; stack-access-token={RAW} ; c=\x00\xff; ;'
        assert verifier.token({"cookie": header}) == RAW

    def test_if_cookie_name_case_differs_then_not_ours(self, verifier: StackAuthVerifier) -> None:
        assert verifier.token({"cookie": f"Stack-Access-Token={RAW}"}) is None


class TestRefreshCookie:
    def test_if_refresh_cookie_matches_then_token(self, verifier: StackAuthVerifier) -> None:
        header = f"{sdk_cookie()}; stack-refresh-{PROJECT}={REFRESH}"
        assert verifier.token({"cookie": header}) == SDK

    def test_if_refresh_cookie_differs_then_session_mismatch(
        self, verifier: StackAuthVerifier
    ) -> None:
        header = f"{sdk_cookie()}; stack-refresh-{PROJECT}=another-refresh"
        with pytest.raises(InvalidSessionError) as caught:
            verifier.token({"cookie": header})
        assert caught.value.reason is Reason.SESSION_MISMATCH
        assert caught.value.status_code == 401

    def test_if_one_of_two_refresh_cookies_differs_then_mismatch(
        self, verifier: StackAuthVerifier
    ) -> None:
        header = f"{sdk_cookie()}; stack-refresh-{PROJECT}={REFRESH}; stack-refresh-{PROJECT}=x"
        with pytest.raises(InvalidSessionError):
            verifier.token({"cookie": header})

    def test_if_refresh_cookie_of_another_project_then_not_compared(
        self, verifier: StackAuthVerifier
    ) -> None:
        header = f"{sdk_cookie()}; stack-refresh-other-project=whatever"
        assert verifier.token({"cookie": header}) == SDK

    def test_if_refresh_cookie_url_encoded_then_compared_decoded(self) -> None:
        verifier = SessionKit(project_id=PROJECT).verifier()
        refresh = "a/b+c="
        header = f"{sdk_cookie(refresh)}; stack-refresh-{PROJECT}={quote(refresh, safe='')}"
        assert verifier.token({"cookie": header}) == SDK


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("garbage", id="not-json"),
        pytest.param(quote("[1, 2]"), id="numbers"),
        pytest.param(quote('["only-one"]'), id="one-element"),
        pytest.param(quote('["a", "b", "c"]'), id="three-elements"),
        pytest.param(quote('["a", ""]'), id="empty-access-token"),
        pytest.param(quote('["a", null]'), id="null-access-token"),
        pytest.param(quote('{"refresh": "a", "access": "b"}'), id="object"),
        pytest.param(quote('["a", "b"'), id="truncated"),
        pytest.param('["' + "[" * 50_000, id="deeply-nested"),
        pytest.param(quote('["a", ' + "[" * 3000 + "]" * 3000 + "]"), id="nested-element"),
        pytest.param("%5B%22" + "%ZZ", id="bad-escape"),
        pytest.param("x" * 20_000, id="too-long"),
    ],
)
def test_if_sdk_cookie_is_not_a_pair_of_strings_then_malformed(
    verifier: StackAuthVerifier, value: str
) -> None:
    with pytest.raises(InvalidSessionError) as caught:
        verifier.token({"cookie": f"stack-access={value}"})
    assert caught.value.reason is Reason.MALFORMED


class TestRepeated:
    def test_if_same_cookie_twice_with_one_value_then_fine(
        self, verifier: StackAuthVerifier
    ) -> None:
        headers = [("cookie", f"stack-access-token={RAW}"), ("cookie", f"stack-access-token={RAW}")]
        assert verifier.token(headers) == RAW

    def test_if_same_cookie_twice_with_two_values_then_400(
        self, verifier: StackAuthVerifier
    ) -> None:
        with pytest.raises(InvalidRequestError) as caught:
            verifier.token({"cookie": f"stack-access-token={RAW}; stack-access-token=other"})
        assert caught.value.status_code == 400

    def test_if_sdk_cookie_twice_with_two_values_then_400(
        self, verifier: StackAuthVerifier
    ) -> None:
        with pytest.raises(InvalidRequestError):
            verifier.token({"cookie": f"{sdk_cookie()}; {sdk_cookie(access='other')}"})

    def test_if_header_twice_with_two_values_then_400(self, verifier: StackAuthVerifier) -> None:
        headers = [(b"x-stack-access-token", b"a.b.c"), (b"x-stack-access-token", b"d.e.f")]
        with pytest.raises(InvalidRequestError, match="Repeated x-stack-access-token header"):
            verifier.token(headers)

    def test_if_header_merged_by_a_server_then_400(self, verifier: StackAuthVerifier) -> None:
        with pytest.raises(InvalidRequestError):
            verifier.token({"x-stack-access-token": "a.b.c, d.e.f"})


class TestNames:
    def test_if_names_configured_then_those_are_read(self, kit: SessionKit) -> None:
        verifier = kit.verifier(
            access_token_cookie="session",
            sdk_cookie="sdk",
            refresh_cookie="refresh",
            header="X-Session",
        )
        assert verifier.token({"cookie": f"session={RAW}"}) == RAW
        assert verifier.token({"cookie": f"stack-access-token={RAW}"}) is None
        pair = quote(json.dumps([REFRESH, SDK]))
        assert verifier.token({"cookie": f"sdk={pair}; refresh={REFRESH}"}) == SDK
        with pytest.raises(InvalidSessionError):
            verifier.token({"cookie": f"sdk={pair}; refresh=nope"})
        assert verifier.token({"x-session": HEADER}) == HEADER
        assert verifier.token({"x-stack-access-token": HEADER}) is None

    def test_if_environ_then_cookie_and_header_pairs(self, kit: SessionKit) -> None:
        environ = {
            "HTTP_COOKIE": f"stack-access-token={RAW}",
            "HTTP_X_STACK_ACCESS_TOKEN": HEADER,
            "HTTP_X_API_KEY": "not ours",
            "wsgi.input": object(),
        }
        verifier = kit.verifier()
        pairs = verifier.environ_headers(environ)
        assert pairs == [("cookie", f"stack-access-token={RAW}"), ("x-stack-access-token", HEADER)]
        assert verifier.token(pairs) == RAW
        custom = kit.verifier(header="X-Session")
        assert custom.environ_headers({"HTTP_X_SESSION": HEADER}) == [("x-session", HEADER)]
        assert verifier.environ_headers({}) == []
