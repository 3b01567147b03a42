from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skaala_auth import Hasher, generate_key
from skaala_auth.hashing import algorithm_of

PEPPER = b"p" * 32


class TestHasher:
    def test_if_no_pepper_then_sha256_of_the_whole_key(self) -> None:
        key = generate_key()
        hasher = Hasher()
        assert hasher.stored_digest(key) == "sha256$" + hashlib.sha256(key.encode()).hexdigest()

    def test_if_pepper_then_keyed_blake2b(self) -> None:
        key = generate_key()
        expected = hashlib.blake2b(key.encode(), key=PEPPER, digest_size=32).hexdigest()
        assert Hasher(PEPPER).stored_digest(key) == f"blake2b-keyed${expected}"

    def test_if_hmac_asked_then_hmac_sha256(self) -> None:
        key = generate_key()
        expected = hmac.new(PEPPER, key.encode(), "sha256").hexdigest()
        assert Hasher(PEPPER, "hmac-sha256").stored_digest(key) == f"hmac-sha256${expected}"

    def test_if_string_pepper_then_same_as_bytes(self) -> None:
        key = generate_key()
        assert Hasher("p" * 32).stored_digest(key) == Hasher(PEPPER).stored_digest(key)

    @pytest.mark.parametrize(
        ("pepper", "algorithm"),
        [(b"short", None), (b"x" * 65, None), (None, "hmac-sha256"), (PEPPER, "md5")],
    )
    def test_if_bad_configuration_then_value_error(
        self, pepper: bytes | None, algorithm: str | None
    ) -> None:
        with pytest.raises(ValueError):
            Hasher(pepper, algorithm)  # type: ignore[arg-type]

    def test_if_peppered_then_legacy_sha256_is_offered_and_needs_rehash(self) -> None:
        key = generate_key()
        hasher = Hasher(PEPPER)
        legacy = hasher.legacy_digests(key.encode())
        assert legacy == [Hasher().stored_digest(key)]
        assert hasher.needs_rehash(legacy[0])
        assert not hasher.needs_rehash(hasher.stored_digest(key))
        assert Hasher().legacy_digests(key.encode()) == []

    @given(st.sampled_from([(None, None), (PEPPER, "blake2b-keyed"), (PEPPER, "hmac-sha256")]))
    def test_if_hashed_then_verifies_and_describes_itself(
        self, config: tuple[bytes | None, str | None]
    ) -> None:
        key = generate_key()
        hasher = Hasher(*config)  # type: ignore[arg-type]
        stored = hasher.stored_digest(key)
        assert algorithm_of(stored) == hasher.algorithm
        assert hmac.compare_digest(stored, hasher.stored_digest(key))
        assert stored != hasher.stored_digest(generate_key())
        assert key not in repr(hasher) and PEPPER.decode() not in repr(hasher)
