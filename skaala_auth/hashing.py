"""Key digests: what the store keeps instead of the key.

Keys carry 190 bits of randomness, so a single fast hash is enough: there is nothing to
brute-force, and a slow password hash (bcrypt, argon2) would only add milliseconds to every
request. The digest is SHA-256 of the whole key, or — when a server-side *pepper* is configured —
a keyed digest (keyed BLAKE2b by default, HMAC-SHA256 on request), so a leaked table is useless
without the pepper.

Stored digests describe themselves: ``sha256$<hex>``, ``blake2b-keyed$<hex>``,
``hmac-sha256$<hex>``. A key stored under an older algorithm is still found (through
:meth:`Hasher.legacy_digests`) and is re-hashed to the current one after it authenticates.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final, Literal

__all__ = ["Algorithm", "Hasher", "algorithm_of"]

Algorithm = Literal["sha256", "blake2b-keyed", "hmac-sha256"]
_KEYED: Final = ("blake2b-keyed", "hmac-sha256")


def algorithm_of(stored_digest: str) -> str:
    """The algorithm recorded in a stored digest (the part before ``$``).

    .. versionadded:: 0.1.0
    """
    return stored_digest.partition("$")[0]


class Hasher:
    """Turns a key into the digest used for look-ups.

    Args:
        pepper: a server-side secret (at least 16 bytes, at most 64). With it, digests are keyed;
            without it, plain SHA-256.
        algorithm: the keyed algorithm when a pepper is set: ``"blake2b-keyed"`` (default, about
            as fast as SHA-256) or ``"hmac-sha256"`` (about four times slower in CPython, for
            policies that name HMAC).

    The raw ``digest`` (bytes) is what the authenticator caches on; ``stored`` is the
    self-describing string the store indexes.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("algorithm", "digest", "new", "_pepper")

    algorithm: str
    digest: Callable[[bytes], bytes]
    #: ``new(data).digest()`` is ``digest(data)`` without a Python-level call in between
    #: (``hashlib`` constructors, or a ``functools.partial`` of one): the hot path uses it.
    new: Callable[[bytes], Any]

    def __init__(
        self, pepper: bytes | str | None = None, algorithm: Algorithm | None = None
    ) -> None:
        if isinstance(pepper, str):
            pepper = pepper.encode()
        if pepper is None:
            if algorithm not in (None, "sha256"):
                raise ValueError(f"{algorithm!r} needs a pepper")
            self.algorithm = "sha256"
            self.digest = _sha256
            self.new = hashlib.sha256
        else:
            if not 16 <= len(pepper) <= 64:
                raise ValueError("the pepper must be 16 to 64 bytes long")
            self.algorithm = algorithm or "blake2b-keyed"
            if self.algorithm == "blake2b-keyed":
                self.digest = _blake2b(pepper)
                self.new = functools.partial(hashlib.blake2b, key=pepper, digest_size=32)
            elif self.algorithm == "hmac-sha256":
                self.digest = _hmac_sha256(pepper)
                self.new = functools.partial(hmac.new, pepper, digestmod="sha256")
            else:
                raise ValueError(f"unknown keyed algorithm {self.algorithm!r}")
        self._pepper = pepper

    def stored(self, raw_digest: bytes) -> str:
        """The self-describing form of a raw digest, as the store indexes it."""
        return f"{self.algorithm}${raw_digest.hex()}"

    def stored_digest(self, key: str) -> str:
        """Digest ``key`` and return the self-describing form."""
        return self.stored(self.digest(key.encode()))

    def legacy_digests(self, key: bytes) -> list[str]:
        """Stored forms under the algorithms this hasher does not use but can still find.

        With a pepper, that is the plain SHA-256 form (keys created before the pepper was set);
        without one, nothing (a keyed digest cannot be recomputed without its pepper).
        """
        if self.algorithm == "sha256":
            return []
        return [f"sha256${_sha256(key).hex()}"]

    def needs_rehash(self, stored_digest: str) -> bool:
        """True when ``stored_digest`` was made with another algorithm than this hasher's."""
        return algorithm_of(stored_digest) != self.algorithm

    def __repr__(self) -> str:
        return f"Hasher(algorithm={self.algorithm!r})"


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _blake2b(pepper: bytes) -> Callable[[bytes], bytes]:
    def digest(data: bytes) -> bytes:
        return hashlib.blake2b(data, key=pepper, digest_size=32).digest()

    return digest


def _hmac_sha256(pepper: bytes) -> Callable[[bytes], bytes]:
    def digest(data: bytes) -> bytes:
        return hmac.digest(pepper, data, "sha256")

    return digest
