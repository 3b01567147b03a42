"""Scopes: the documented set, a registry a service can extend, and the one matching rule.

The matching rule, written down once: **a scope grants exactly itself.** There are no wildcards
and no implications (``write:bookings`` does not grant ``read:bookings``). A list of required
scopes is an AND (:func:`all_of`); an OR is spelled :func:`any_of` explicitly.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final

from .errors import UnknownScopeError

__all__ = [
    "DEFAULT_SCOPES",
    "ScopeRegistry",
    "UnknownScopeError",
    "all_of",
    "any_of",
    "default_registry",
]

#: The documented scopes, with what each one allows.
DEFAULT_SCOPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "read:bookings": "List and read bookings",
        "read:contacts": "List and read contacts",
        "read:calls": "List and read calls",
        "read:services": "List and read services",
        "read:staff": "List and read staff",
        "write:bookings": "Create, change and cancel bookings",
        "write:contacts": "Create and change contacts",
        "write:calls": "Create and change calls",
        "webhooks:manage": "Create, change and delete webhooks",
    }
)

_SCOPE_SYNTAX: Final = re.compile(r"[a-z][a-z0-9_-]*(?::[a-z][a-z0-9_.-]*)+")


class ScopeRegistry:
    """The scopes a service accepts. Starts with :data:`DEFAULT_SCOPES`; extend it with
    :meth:`register`.

    Example::

        registry = ScopeRegistry()
        registry.register("read:invoices", "List and read invoices")
        manager = KeyManager(store, scopes=registry)

    .. versionadded:: 0.1.0
    """

    def __init__(self, scopes: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[str, str] = {}
        for name, description in (DEFAULT_SCOPES if scopes is None else scopes).items():
            self.register(name, description)

    def register(self, name: str, description: str = "") -> None:
        """Add a scope. Names are ``resource:action`` style: lowercase, at least one colon.

        Raises:
            ValueError: the name does not have that shape.
        """
        if not isinstance(name, str) or not _SCOPE_SYNTAX.fullmatch(name):
            raise ValueError(f"invalid scope name {name!r}: expected 'resource:action'")
        with self._lock:
            self._scopes[name] = description

    def __contains__(self, name: object) -> bool:
        return name in self._scopes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._scopes))

    def describe(self) -> dict[str, str]:
        """Every known scope and its description, sorted by name."""
        return dict(sorted(self._scopes.items()))

    def validate(self, scopes: Iterable[str]) -> frozenset[str]:
        """Check that every scope is known and return them as a frozenset.

        Raises:
            UnknownScopeError: at least one scope is not registered.
            TypeError: ``scopes`` is a single string (a common slip: ``scopes="read:x"``).
        """
        if isinstance(scopes, str):
            raise TypeError("scopes must be a list of scope names, not a single string")
        wanted = frozenset(scopes)
        unknown = wanted.difference(self._scopes)
        if unknown:
            raise UnknownScopeError(unknown)
        return wanted


#: The process-wide registry used when none is given.
default_registry: Final = ScopeRegistry()


def all_of(granted: frozenset[str], required: Iterable[str]) -> bool:
    """True when every required scope is granted (AND). No required scopes: True."""
    return granted.issuperset(required)


def any_of(granted: frozenset[str], required: Iterable[str]) -> bool:
    """True when at least one required scope is granted (OR). No required scopes: False."""
    return not granted.isdisjoint(required)
