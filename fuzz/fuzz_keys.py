"""Fuzz key parsing, and the authenticator's first steps, with atheris.

Properties, for any input:

- ``is_well_formed``, ``well_formed_bytes``, ``looks_like_key`` and ``display_prefix`` never
  raise; ``parse_key`` raises nothing but ``ValueError``, and only for what ``is_well_formed``
  refuses;
- a string is well formed exactly when an independent reading of the format says so (prefix,
  46 ASCII letters and digits, the base62 CRC32 of the first 40 characters as the last 6), and
  then ``KEY_PATTERN`` finds it;
- ``Authenticator.verify`` raises nothing but an ``AuthError``, grants only the one key the
  store holds, and consults the store only for a well-formed key (junk never reaches a cache or
  a store).

Run: ``python fuzz/fuzz_keys.py [corpus_dir] -max_total_time=60`` (see docs/security.md).
"""

from __future__ import annotations

import sys
import zlib

import atheris

with atheris.instrument_imports(include=["skaala_auth"]):
    from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, Principal
    from skaala_auth.errors import AuthError
    from skaala_auth.keys import (
        ANY_PREFIX,
        KEY_PATTERN,
        display_prefix,
        is_well_formed,
        looks_like_key,
        parse_key,
        well_formed_bytes,
    )

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def oracle(text: str) -> bool:
    """The key format read independently of skaala_auth.keys."""
    if len(text) != 46 or text[:8] not in ("sk_live_", "sk_test_"):
        return False
    if not all(char in ALPHABET for char in text[8:]):
        return False
    crc = zlib.crc32(text[:40].encode("ascii"))
    digits = []
    for _ in range(6):
        crc, digit = divmod(crc, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits)) == text[40:]


class CountingStore(MemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.finds = 0

    def find_key(self, digest: str):  # type: ignore[no-untyped-def]
        self.finds += 1
        return super().find_key(digest)


STORE = CountingStore()
_manager = KeyManager(STORE)
_manager.add_member(team_id="team_1", user_id="user_1", role="owner")
ISSUED, _ = _manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
AUTH = Authenticator(STORE, accept_test_keys=True, negative_cache_size=0, cache_size=0)


def candidate(data: bytes) -> str:
    """Raw text, or the issued key with a few edits (so that the checksum and store paths are
    reached as often as the junk ones)."""
    provider = atheris.FuzzedDataProvider(data)
    if provider.ConsumeBool():
        if provider.ConsumeBool():
            return provider.ConsumeUnicodeNoSurrogates(64)
        return provider.ConsumeUnicode(64)  # lone surrogates too
    text = list(ISSUED)
    for _ in range(provider.ConsumeIntInRange(0, 3)):
        position = provider.ConsumeIntInRange(0, len(text))
        action = provider.ConsumeIntInRange(0, 3)
        char = provider.ConsumeUnicode(1) or "x"
        if action == 0 and position < len(text):
            text[position] = char
        elif action == 1:
            text.insert(position, char)
        elif action == 2 and position < len(text):
            del text[position]
        elif action == 3:
            text = text[:position]
    return "".join(text)


def test_one_input(data: bytes) -> None:
    text = candidate(data)
    well_formed = is_well_formed(text)
    assert well_formed == oracle(text), (text, well_formed)
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        encoded = None
    if encoded is not None:
        assert well_formed_bytes(encoded, ANY_PREFIX) == well_formed
    looks_like_key(text)
    display = display_prefix(text)
    assert len(display) <= 13 + 4 or len(text) < 17
    try:
        parsed = parse_key(text)
    except ValueError as error:
        assert not well_formed and str(error) == "malformed API key"  # never the input
    else:
        assert well_formed and parsed.environment in ("live", "test")
        assert text not in repr(parsed)
    if well_formed:
        assert KEY_PATTERN.fullmatch(text)

    finds = STORE.finds
    try:
        principal = AUTH.verify(text)
    except AuthError as refusal:
        assert text != ISSUED, refusal
    else:
        assert isinstance(principal, Principal)
        assert text == ISSUED, "granted a key that is not the issued one"
    if not well_formed:
        assert STORE.finds == finds, "a malformed key reached the store"


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
