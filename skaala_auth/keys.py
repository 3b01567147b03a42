"""The API key format: generate, parse, checksum, display prefix.

A key is ``sk_live_`` (or ``sk_test_``) + 32 random base62 characters + a 6-character base62
CRC32 checksum of everything before it::

    sk_live_4qT0cBv8nX2mKp9ZyR1sWdLf7hJ3gA6e0Bx9Qk
    ^^^^^^^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ ^^^^^^
    prefix   secret: 32 x log2(62) = 190.5 bits checksum

The checksum is not a security feature: it lets the authenticator (and secret scanners) reject
typos and junk before the negative cache or the store, so junk costs about a microsecond and
cannot fill a cache. (The authenticator checks it once its positive cache misses: a digest found
there proves an issued, well-formed key.)

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "KEY_LENGTH",
    "ANY_PREFIX",
    "KEY_PATTERN",
    "LIVE_ONLY",
    "LIVE_PREFIX",
    "TEST_PREFIX",
    "Environment",
    "ParsedKey",
    "display_prefix",
    "generate_key",
    "is_well_formed",
    "looks_like_key",
    "parse_key",
    "random_base62",
    "well_formed_bytes",
]

Environment = Literal["live", "test"]

ALPHABET: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
LIVE_PREFIX: Final = "sk_live_"
TEST_PREFIX: Final = "sk_test_"
_PREFIXES: Final[dict[str, Environment]] = {LIVE_PREFIX: "live", TEST_PREFIX: "test"}
SECRET_LENGTH: Final = 32
CHECKSUM_LENGTH: Final = 6
PREFIX_LENGTH: Final = len(LIVE_PREFIX)
KEY_LENGTH: Final = PREFIX_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
assert KEY_LENGTH == 46, "well_formed_bytes spells the lengths out as literals"  # noqa: S101

#: A regular expression that matches skaala_auth keys anywhere in a text, for secret scanners
#: (GitHub push protection, gitleaks, trufflehog). Matches are candidates: confirm one with
#: :func:`is_well_formed`, which also checks the CRC32, to drop false positives.
KEY_PATTERN: Final = re.compile(r"\bsk_(?:live|test)_[0-9A-Za-z]{38}\b")
# Looser than KEY_PATTERN: a key cut short (by a terminal, a log line) still gives away most of
# its secret, so it is refused where an id belongs, never echoed and never stored.
_KEY_LIKE: Final = re.compile(r"sk_(?:live|test)_[0-9A-Za-z]{16}")

# Base62 in pairs: three table look-ups turn a CRC32 into its six characters. Encoding digit by
# digit costs three times as much, and this runs on every request.
_PAIRS: Final = tuple((a + b).encode() for a in ALPHABET for b in ALPHABET)
#: The prefixes :func:`well_formed_bytes` accepts, as bytes: both, or live keys only.
ANY_PREFIX: Final = frozenset(p.encode() for p in _PREFIXES)
LIVE_ONLY: Final = frozenset({LIVE_PREFIX.encode()})


def _checksum(head: bytes, _crc32: Callable[[bytes], int] = zlib.crc32) -> bytes:
    crc = _crc32(head)
    return _PAIRS[crc // 14_776_336] + _PAIRS[crc // 3844 % 3844] + _PAIRS[crc % 3844]


def well_formed_bytes(
    data: bytes,
    prefixes: frozenset[bytes] = ANY_PREFIX,
    _crc32: Callable[[bytes], int] = zlib.crc32,
    _pairs: tuple[bytes, ...] = _PAIRS,
) -> bool:
    """:func:`is_well_formed` on the UTF-8 encoding of a candidate key (the hot path, which
    needs the bytes for the digest anyway). ``bytes.isalnum`` is ASCII-only, so any non-ASCII
    character fails here. ``prefixes`` narrows the accepted prefixes (:data:`LIVE_ONLY`).

    Written for speed (literals, no calls but the CRC): it runs before every look-up.

    .. versionadded:: 0.1.0
    """
    if len(data) != 46 or data[:8] not in prefixes or not data[8:].isalnum():
        return False
    crc = _crc32(data[:40])
    return _pairs[crc // 14_776_336] + _pairs[crc // 3844 % 3844] + _pairs[crc % 3844] == data[40:]


# Random base62 by rejection sampling over random bytes: byte values 0-247 stand for
# ALPHABET[value % 62] (each character has exactly four of them), and 248-255 are dropped, so
# every character kept is uniform and independent of the others. One bytes.translate does a
# whole string: 20 times faster than a secrets.choice per character.
_BASE62_OF_BYTE: Final = bytes(ord(ALPHABET[value % 62]) for value in range(248)) + bytes(8)
_REJECTED_BYTES: Final = bytes(range(248, 256))


def random_base62(length: int) -> str:
    """``length`` characters drawn uniformly and independently from the base62 alphabet, with
    the operating system's CSPRNG (:func:`secrets.token_bytes`).

    .. versionadded:: 0.1.0
    """
    drawn = b""
    while len(drawn) < length:
        # 32 bytes a draw: Linux answers up to 32 in one ChaCha block, 3x faster than 33 or more.
        drawn += secrets.token_bytes(32).translate(_BASE62_OF_BYTE, _REJECTED_BYTES)
    return drawn[:length].decode("ascii")


def generate_key(environment: Environment = "live") -> str:
    """Generate a new random key.

    Args:
        environment: ``"live"`` for ``sk_live_`` keys, ``"test"`` for ``sk_test_`` keys.

    Returns:
        The plaintext key. Show it to its owner once; store only its digest.

    .. versionadded:: 0.1.0
    """
    if environment not in ("live", "test"):
        raise ValueError(f"environment must be 'live' or 'test', not {environment!r}")
    prefix = LIVE_PREFIX if environment == "live" else TEST_PREFIX
    head = (prefix + random_base62(SECRET_LENGTH)).encode()
    return (head + _checksum(head)).decode()


def is_well_formed(key: str) -> bool:
    """Tell whether ``key`` has a known prefix, the right length and charset, and a valid checksum.

    Never raises. The authenticator runs this check before its negative cache and the store.

    .. versionadded:: 0.1.0
    """
    return isinstance(key, str) and well_formed_bytes(key.encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A well-formed key, taken apart. Its ``repr`` never shows the secret.

    .. versionadded:: 0.1.0
    """

    environment: Environment
    prefix: str
    display: str

    def __repr__(self) -> str:
        return f"ParsedKey(environment={self.environment!r}, display={self.display!r})"


def parse_key(key: str) -> ParsedKey:
    """Validate ``key`` and take it apart.

    Raises:
        ValueError: the key is malformed (prefix, length, charset or checksum). The message never
            contains the key.

    .. versionadded:: 0.1.0
    """
    if not is_well_formed(key):
        raise ValueError("malformed API key")
    prefix = key[:PREFIX_LENGTH]
    return ParsedKey(environment=_PREFIXES[prefix], prefix=prefix, display=display_prefix(key))


def display_prefix(key: str) -> str:
    """The part of a key that is safe to show in dashboards and logs: ``sk_live_AbCd…wxyz``.

    Four characters of the secret and four of the checksum: enough to tell keys apart, far too
    little to guess the rest (186 bits stay hidden).

    .. versionadded:: 0.1.0
    """
    return f"{key[: PREFIX_LENGTH + 4]}…{key[-4:]}"


def looks_like_key(text: str) -> bool:
    """True when ``text`` holds a key, or enough of one to matter (a prefix and 16 characters of
    secret): such a text is refused where an id, a team, a user or a name belongs, and is never
    echoed back or stored.

    .. versionadded:: 0.1.0
    """
    return _KEY_LIKE.search(text) is not None
