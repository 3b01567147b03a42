"""The drop-in rules table: which requests need a key, and which scopes, by path and method.

For services that cannot decorate their endpoints, every middleware takes a :class:`Rules`::

    rules = Rules(
        [
            Rule("/api/v1/bookings", methods=["GET"], scopes=["read:bookings"]),
            Rule("/api/v1/bookings", methods=["POST"], scopes=["write:bookings"]),
            Rule("/api/v1/teams/{team_id}/bookings", scopes=["read:bookings"]),
        ],
        public=["/health", "/docs*"],
        protect=["/api/"],
    )

Matching, written down once:

- Patterns are paths with ``{name}`` segments (one path segment, never a ``/``) and an optional
  trailing ``*`` (anything, including nothing and ``/``). A ``{team_id}`` segment (the name is
  configurable) is the team the request must belong to.
- ``public`` paths are never challenged, even with a bad key. Checked first.
- Rules are tried in order; the first whose pattern and method match decides the scopes.
- ``protect`` prefixes: a request under one of them that no rule matched still needs a valid key
  (no particular scope). Everything else is not ours: anonymous unless it carries a key, and a
  key that is present is still checked (a bad key is a 401 anywhere).
- CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are never challenged.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Requirement", "Rule", "Rules", "is_cors_preflight"]

_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/"):
        raise ValueError(f"path patterns start with '/': {pattern!r}")
    wildcard = pattern.endswith("*")
    body = pattern[:-1] if wildcard else pattern
    if "*" in body:
        raise ValueError(f"'*' is only allowed at the end of a pattern: {pattern!r}")
    out, position = [], 0
    for match in _PARAM.finditer(body):
        out.append(re.escape(body[position : match.start()]))
        out.append(f"(?P<{match.group(1)}>[^/]+)")
        position = match.end()
    out.append(re.escape(body[position:]))
    return re.compile("".join(out) + (".*" if wildcard else ""), re.DOTALL)


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: requests to ``pattern`` (with one of ``methods``, or any method when
    ``None``) need a valid key with every one of ``scopes``.

    .. versionadded:: 0.1.0
    """

    pattern: str
    scopes: tuple[str, ...] | list[str] = ()
    methods: tuple[str, ...] | list[str] | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    method_set: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.scopes, str) or isinstance(self.methods, str):
            raise TypeError("scopes and methods are lists, not single strings")
        object.__setattr__(self, "scopes", tuple(self.scopes))
        object.__setattr__(self, "regex", _compile(self.pattern))
        methods = None if self.methods is None else frozenset(m.upper() for m in self.methods)
        object.__setattr__(self, "method_set", methods)


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a request needs, as :meth:`Rules.match` decides it.

    Attributes:
        public: never challenged (public path or CORS preflight); credentials are not read.
        required: a valid key is needed; without one, 401.
        scopes: every one of these must be granted.
        team_id: the team in the path (from the rule's ``{team_id}`` segment), if any.

    .. versionadded:: 0.1.0
    """

    public: bool = False
    required: bool = False
    scopes: tuple[str, ...] = ()
    team_id: str | None = None


PUBLIC: Final = Requirement(public=True)
OPTIONAL: Final = Requirement()
PROTECTED: Final = Requirement(required=True)


class Rules:
    """A rules table (see the module documentation for the matching rules).

    Args:
        rules: :class:`Rule` rows, or ``(pattern, scopes)`` / ``(pattern, scopes, methods)``
            tuples.
        public: patterns that are never challenged.
        protect: path prefixes under which every request needs a valid key.
        team_param: the name of the path segment that carries the team id.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        rules: Iterable[
            Rule | tuple[str, Iterable[str]] | tuple[str, Iterable[str], Iterable[str]]
        ] = (),
        *,
        public: Iterable[str] = (),
        protect: Iterable[str] = (),
        team_param: str = "team_id",
    ) -> None:
        self.rules = tuple(rule if isinstance(rule, Rule) else _from_tuple(rule) for rule in rules)
        self.public = tuple(_compile(pattern) for pattern in public)
        self.protect = tuple(protect)
        self.team_param = team_param

    def match(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> Requirement:
        """Decide what a request to ``path`` with ``method`` needs.

        Args:
            headers: only consulted for ``OPTIONS``, to recognise a CORS preflight.
        """
        if method == "OPTIONS" and headers is not None and is_cors_preflight(method, headers):
            return PUBLIC
        for pattern in self.public:
            if pattern.fullmatch(path):
                return PUBLIC
        upper = method.upper()
        for rule in self.rules:
            found = rule.regex.fullmatch(path)
            if found is not None and (rule.method_set is None or upper in rule.method_set):
                groups = found.groupdict()
                return Requirement(
                    required=True,
                    scopes=tuple(rule.scopes),
                    team_id=groups.get(self.team_param),
                )
        if any(path.startswith(prefix) for prefix in self.protect):
            return PROTECTED
        return OPTIONAL

    def __repr__(self) -> str:
        return f"Rules({len(self.rules)} rules, protect={self.protect!r})"


def is_cors_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """True for a CORS preflight: ``OPTIONS`` with an ``Access-Control-Request-Method`` header
    (names in any case when ``headers`` is a plain dict; adapters pass case-insensitive ones).

    .. versionadded:: 0.1.0
    """
    if method.upper() != "OPTIONS":
        return False
    if headers.get("access-control-request-method") is not None:
        return True  # a case-insensitive mapping (Starlette, werkzeug, Django) answers here
    # keys(), not iteration: werkzeug's Headers iterates over (name, value) pairs.
    return any(name.lower() == "access-control-request-method" for name in headers.keys())


def _from_tuple(
    row: tuple[str, Iterable[str]] | tuple[str, Iterable[str], Iterable[str]],
) -> Rule:
    if len(row) == 2:
        return Rule(row[0], scopes=tuple(row[1]))
    return Rule(row[0], scopes=tuple(row[1]), methods=tuple(row[2]))
