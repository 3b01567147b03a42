from __future__ import annotations

import pytest

from skaala_auth import DEFAULT_SCOPES, ScopeRegistry, UnknownScopeError
from skaala_auth.scopes import all_of, any_of

DOCUMENTED = {
    "read:bookings",
    "read:contacts",
    "read:calls",
    "read:services",
    "read:staff",
    "write:bookings",
    "write:contacts",
    "write:calls",
    "webhooks:manage",
}


class TestRegistry:
    def test_if_default_then_the_documented_scopes(self) -> None:
        assert set(DEFAULT_SCOPES) == DOCUMENTED
        assert set(ScopeRegistry()) == DOCUMENTED

    def test_if_unknown_scope_then_error_names_it(self) -> None:
        with pytest.raises(UnknownScopeError, match="read:invoices") as caught:
            ScopeRegistry().validate(["read:bookings", "read:invoices"])
        assert caught.value.unknown == ("read:invoices",)

    def test_if_registered_then_valid(self) -> None:
        registry = ScopeRegistry()
        registry.register("read:invoices", "List invoices")
        assert registry.validate(["read:invoices"]) == frozenset({"read:invoices"})
        assert "read:invoices" in registry and registry.describe()["read:invoices"] == (
            "List invoices"
        )

    @pytest.mark.parametrize("name", ["", "READ:x", "bookings", "read:", ":x", "read bookings"])
    def test_if_badly_shaped_name_then_value_error(self, name: str) -> None:
        with pytest.raises(ValueError, match="invalid scope"):
            ScopeRegistry().register(name)

    def test_if_single_string_then_type_error(self) -> None:
        with pytest.raises(TypeError):
            ScopeRegistry().validate("read:bookings")

    def test_if_custom_base_then_only_those(self) -> None:
        registry = ScopeRegistry({"read:things": ""})
        assert set(registry) == {"read:things"}


class TestMatching:
    granted = frozenset({"read:bookings", "write:bookings"})

    @pytest.mark.parametrize(
        ("required", "expected"),
        [
            ((), True),
            (("read:bookings",), True),
            (("read:bookings", "write:bookings"), True),
            (("read:bookings", "read:contacts"), False),
            (("read:contacts",), False),
        ],
    )
    def test_if_all_of_then_and(self, required: tuple[str, ...], expected: bool) -> None:
        assert all_of(self.granted, required) is expected

    @pytest.mark.parametrize(
        ("required", "expected"),
        [
            ((), False),
            (("read:contacts", "read:bookings"), True),
            (("read:contacts", "read:calls"), False),
        ],
    )
    def test_if_any_of_then_or(self, required: tuple[str, ...], expected: bool) -> None:
        assert any_of(self.granted, required) is expected

    def test_if_write_granted_then_read_is_not_implied(self) -> None:
        assert not all_of(frozenset({"write:bookings"}), ["read:bookings"])
