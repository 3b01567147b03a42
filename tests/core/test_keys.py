from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skaala_auth import KEY_PATTERN, display_prefix, generate_key, is_well_formed, parse_key
from skaala_auth import keys as keys_module
from skaala_auth.keys import (
    ALPHABET,
    KEY_LENGTH,
    LIVE_ONLY,
    _checksum,
    random_base62,
    well_formed_bytes,
)

secrets_ = st.text(alphabet=ALPHABET, min_size=32, max_size=32)


def make(prefix: str, secret: str) -> str:
    head = prefix + secret
    return head + _checksum(head.encode()).decode()


class TestRandomBase62:
    def test_if_a_byte_is_drawn_then_each_character_has_four_values_and_eight_are_dropped(
        self,
    ) -> None:
        """Uniform by construction: 248 byte values, four per character; 248-255 rejected."""
        kept = bytes(range(256)).translate(keys_module._BASE62_OF_BYTE, keys_module._REJECTED_BYTES)
        assert len(kept) == 248 == 4 * len(ALPHABET)
        assert {kept.count(char.encode()) for char in ALPHABET} == {4}
        assert keys_module._REJECTED_BYTES == bytes(range(248, 256))

    def test_if_a_draw_is_mostly_rejected_then_more_bytes_are_drawn(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        draws = iter([b"\xff" * 30 + b"\x00\x3f", b"\xf8" * 31 + b"\x01", bytes(range(32))])
        monkeypatch.setattr(keys_module.secrets, "token_bytes", lambda n: next(draws))
        assert random_base62(20) == "01" + "1" + ALPHABET[:17]

    @pytest.mark.parametrize("length", [0, 1, 20, 32, 100])
    def test_if_drawn_then_the_length_asked_in_the_alphabet(self, length: int) -> None:
        drawn = random_base62(length)
        assert len(drawn) == length and set(drawn) <= set(ALPHABET)


class TestFormat:
    def test_if_generated_then_live_prefix_length_and_charset(self) -> None:
        key = generate_key()
        assert key.startswith("sk_live_") and len(key) == KEY_LENGTH == 46
        assert all(c in ALPHABET for c in key[8:])

    def test_if_test_environment_then_test_prefix(self) -> None:
        assert generate_key("test").startswith("sk_test_")

    def test_if_unknown_environment_then_value_error(self) -> None:
        with pytest.raises(ValueError, match="environment"):
            generate_key("staging")  # type: ignore[arg-type]

    def test_if_generated_twice_then_different(self) -> None:
        assert len({generate_key() for _ in range(200)}) == 200

    def test_if_checksum_then_it_is_base62_crc32_of_the_head(self) -> None:
        key = generate_key()
        crc = zlib.crc32(key[:40].encode())
        value = 0
        for char in key[40:]:
            value = value * 62 + ALPHABET.index(char)
        assert value == crc

    @given(secrets_, st.sampled_from(["sk_live_", "sk_test_"]))
    def test_if_any_secret_then_the_key_parses(self, secret: str, prefix: str) -> None:
        key = make(prefix, secret)
        parsed = parse_key(key)
        assert parsed.environment == ("live" if prefix == "sk_live_" else "test")
        assert is_well_formed(key) and KEY_PATTERN.fullmatch(key)

    @given(secrets_, st.integers(0, 45), st.sampled_from(ALPHABET + "_-!é "))
    def test_if_one_character_changes_then_the_key_is_rejected(
        self, secret: str, position: int, replacement: str
    ) -> None:
        key = make("sk_live_", secret)
        if key[position] == replacement:
            return
        broken = key[:position] + replacement + key[position + 1 :]
        assert not is_well_formed(broken)
        with pytest.raises(ValueError, match="malformed") as caught:
            parse_key(broken)
        assert broken not in str(caught.value)

    @pytest.mark.parametrize(
        "mutate",
        [
            pytest.param(lambda k: k[:-1], id="too-short"),
            pytest.param(lambda k: k + "A", id="too-long"),
            pytest.param(lambda k: "sk_prod_" + k[8:], id="unknown-prefix"),
            pytest.param(lambda k: k.upper(), id="upper-cased"),
            pytest.param(lambda k: k[:20] + "é" + k[21:], id="non-ascii"),
            pytest.param(lambda k: "", id="empty"),
            pytest.param(lambda k: k[:8] + " " * 38, id="spaces"),
        ],
    )
    def test_if_mutated_then_not_well_formed(self, mutate: object) -> None:
        assert not is_well_formed(mutate(generate_key()))  # type: ignore[operator]

    def test_if_not_a_string_then_not_well_formed(self) -> None:
        assert not is_well_formed(None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            parse_key(42)  # type: ignore[arg-type]

    def test_if_live_only_then_test_keys_fail_the_byte_check(self) -> None:
        assert not well_formed_bytes(generate_key("test").encode(), LIVE_ONLY)
        assert well_formed_bytes(generate_key("live").encode(), LIVE_ONLY)

    @given(st.text(max_size=60))
    def test_if_arbitrary_text_then_never_raises(self, text: str) -> None:
        assert is_well_formed(text) in (True, False)


class TestDisplay:
    def test_if_displayed_then_prefix_four_and_last_four_only(self) -> None:
        key = generate_key()
        shown = display_prefix(key)
        assert shown == f"{key[:12]}…{key[-4:]}"
        assert key[12:-4] not in shown

    def test_if_parsed_then_repr_hides_the_secret(self) -> None:
        key = generate_key()
        assert key not in repr(parse_key(key)) and key[12:40] not in repr(parse_key(key))


class TestScannerPattern:
    def test_if_key_in_text_then_pattern_finds_it(self) -> None:
        key = generate_key()
        text = f'config = {{"token": "{key}"}}\nother sk_live_short'
        assert KEY_PATTERN.findall(text) == [key]
