from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skaala_auth import InvalidRequestError, generate_key
from skaala_auth.credentials import check_query_string, extract_key

KEY = generate_key()


class TestExtract:
    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": f"Bearer {KEY}"},
            {"authorization": f"bearer {KEY}"},
            {"AUTHORIZATION": f"BEARER   {KEY}  "},
            {"X-API-Key": KEY},
            {"x-api-key": f" {KEY} "},
            [("Authorization", f"Bearer {KEY}"), ("Accept", "*/*")],
            [(b"host", b"x"), (b"authorization", f"Bearer {KEY}".encode())],
            [(b"x-api-key", KEY.encode())],
            {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": KEY},
        ],
        ids=[
            "bearer",
            "lower",
            "upper-spaces",
            "x-api-key",
            "x-api-key-padded",
            "pairs",
            "asgi-bearer",
            "asgi-x-api-key",
            "basic-plus-x-api-key",
        ],
    )
    def test_if_one_credential_then_it_is_returned(self, headers: object) -> None:
        assert extract_key(headers) == KEY  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": ""},
            {"Accept": "x"},
            {"Authorization": 'Digest username="u", realm="r", nonce="n"'},
        ],
        ids=["none", "basic", "empty-authorization", "unrelated", "digest-with-commas"],
    )
    def test_if_no_credential_of_ours_then_none(self, headers: dict[str, str]) -> None:
        assert extract_key(headers) is None

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            ({"Authorization": f"Bearer {KEY}", "X-API-Key": KEY}, "one header"),
            ([("Authorization", f"Bearer {KEY}"), ("authorization", f"Bearer {KEY}")], "Repeated"),
            ([(b"x-api-key", KEY.encode()), (b"x-api-key", KEY.encode())], "Repeated"),
            ([("Authorization", "Basic x"), ("Authorization", f"Bearer {KEY}")], "Repeated"),
            ({"Authorization": "Bearer"}, "Empty bearer"),
            ({"Authorization": "Bearer    "}, "Empty bearer"),
            ({"X-API-Key": "  "}, "Empty X-API-Key"),
            ({"X-API-Key": f"{KEY}, {KEY}"}, "Repeated X-API-Key"),
            ({"Authorization": f"Bearer {KEY},Bearer {KEY}"}, "Repeated Authorization"),
            ({"Authorization": f"Basic dXNlcjpwYXNz, Bearer {KEY}"}, "Repeated Authorization"),
            ({"Authorization": f"Bearer {KEY}, Basic dXNlcjpwYXNz"}, "Repeated Authorization"),
        ],
        ids=[
            "both",
            "repeated-authorization",
            "repeated-x-api-key",
            "basic-and-bearer",
            "empty-bearer",
            "blank-bearer",
            "blank-x-api-key",
            "merged",
            "merged-bearer",
            "merged-basic-then-bearer",
            "merged-bearer-then-basic",
        ],
    )
    def test_if_ambiguous_then_400(self, headers: object, message: str) -> None:
        with pytest.raises(InvalidRequestError, match=message) as caught:
            extract_key(headers)  # type: ignore[arg-type]
        assert caught.value.status_code == 400
        assert KEY not in str(caught.value)

    @given(st.dictionaries(st.text(max_size=20), st.text(max_size=80), max_size=6))
    def test_if_arbitrary_headers_then_key_none_or_400(self, headers: dict[str, str]) -> None:
        try:
            found = extract_key(headers)
        except InvalidRequestError:
            return
        assert found is None or isinstance(found, str)


class TestQueryString:
    @pytest.mark.parametrize(
        "query",
        [
            f"api_key={KEY}",
            f"page=2&access_token={KEY}",
            f"x={KEY}",
            "apikey=",
            f"q=%20{KEY}",
            f"API_KEY={KEY}".encode(),
            "token=abc&bearer=1",
        ],
    )
    def test_if_key_in_query_then_400(self, query: str | bytes) -> None:
        with pytest.raises(InvalidRequestError, match="query string"):
            check_query_string(query)

    @pytest.mark.parametrize("query", ["", "page=2&sort=name", "q=sk_", "token_count=3"])
    def test_if_ordinary_query_then_accepted(self, query: str) -> None:
        check_query_string(query)
        assert extract_key({"X-API-Key": KEY}, query) == KEY

    def test_if_header_key_and_query_key_then_400(self) -> None:
        with pytest.raises(InvalidRequestError):
            extract_key({"X-API-Key": KEY}, f"api_key={KEY}")


class TestHttpWhitespaceOnly:
    """Only space and tab are whitespace in HTTP: nothing else is trimmed into a valid key, and
    a bearer credential is one token (issue 8, finding 7)."""

    def test_if_a_tab_follows_bearer_then_it_is_a_bearer_and_two_credentials_are_400(
        self,
    ) -> None:
        other = generate_key()
        assert extract_key({"Authorization": f"Bearer\t{KEY}"}) == KEY
        with pytest.raises(InvalidRequestError):
            extract_key({"Authorization": f"Bearer\t{KEY}", "X-API-Key": other})
        with pytest.raises(InvalidRequestError):  # merged by a WSGI server
            extract_key([("authorization", f"Bearer\t{KEY},Bearer\t{other}")])

    @pytest.mark.parametrize("space", ["\xa0", "\x85", "\x0b", "\x0c", "\u2003"])
    def test_if_other_unicode_space_surrounds_a_key_then_it_is_kept(self, space: str) -> None:
        assert (
            extract_key({"Authorization": f"Bearer {space}{KEY}{space}"}) == f"{space}{KEY}{space}"
        )
        assert extract_key({"X-API-Key": f"{KEY}{space}"}) == f"{KEY}{space}"

    @pytest.mark.parametrize(
        "value", [f"Bearer {KEY} extra", f"Bearer {KEY}\tx", f"Bearer:{KEY}", f"Bearer{KEY}"]
    )
    def test_if_the_bearer_is_not_one_token_then_400(self, value: str) -> None:
        with pytest.raises(InvalidRequestError):
            extract_key({"Authorization": value})

    def test_if_several_spaces_or_tabs_follow_bearer_then_accepted(self) -> None:
        assert extract_key({"Authorization": f"Bearer    {KEY}"}) == KEY
        assert extract_key({"Authorization": f" \tBearer \t {KEY} \t"}) == KEY

    @pytest.mark.parametrize(
        "query", [f"a=1;api_key={KEY}", f"a=1;x={KEY}", f"page=2;access_token={KEY}&b=2"]
    )
    def test_if_a_key_follows_a_semicolon_then_400(self, query: str) -> None:
        with pytest.raises(InvalidRequestError):
            check_query_string(query)


@pytest.mark.parametrize("query", [KEY, f"a=1&{KEY}", f"a=1;{KEY}", f"{KEY}=1"])
def test_if_a_bare_key_is_in_the_query_then_400(query: str) -> None:
    with pytest.raises(InvalidRequestError):
        check_query_string(query)
