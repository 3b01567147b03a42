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
  configurable) is the team the request must belong to; a segment whose name contains ``team``
  but is not the team parameter is an error when the table is built (a misnamed team segment
  would switch the team check off).
- ``public`` paths are never challenged, even with a bad key. Checked first, exactly as written.
- Rules are grouped by pattern, in table order: the first pattern that matches the path
  decides. Within it, the rule that lists the method (or lists none) gives the scopes; ``HEAD``
  counts as ``GET``; a method that no rule of that pattern lists (``PUT`` on a ``GET``/``POST``
  pattern) needs the union of the pattern's scopes — never the fall-through.
- ``protect`` prefixes: a request under one of them that no rule matched still needs a valid key
  (no particular scope).
- Everything else follows ``default``: ``"allow"`` (the default) lets it through anonymous
  unless it carries a key (a key that is present is still checked: a bad key is a 401
  anywhere); ``"deny"`` requires a valid key. For drop-in use — a service that protects its
  endpoints with this table alone — use ``default="deny"`` and list what is public.
- Paths are matched the way routers route them, so that no spelling of a protected path slips
  past its rule: protection (rules, ``protect``) matches without regard to case or a trailing
  slash, and a path with empty or dot segments (``//api/…``, ``/api//x``, ``/./``, ``/a/../``)
  is matched in every form a router may route it as (as sent, with leading slashes stripped as
  werkzeug does, with slashes merged and dot segments resolved); it gets the strictest of those
  forms' requirements, and is public only when every form is.
- CORS preflights are decided by :func:`skaala_auth.flow.requirement`, not here.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["UNBOUND_TEAM", "Requirement", "Rule", "Rules"]

_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile(pattern: str, *, protective: bool = False) -> re.Pattern[str]:
    """A pattern's regex. ``protective``: also match in any case and with or without a trailing
    slash (routers that fold case or redirect slashes must not route around a rule)."""
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
    tail = body[position:]
    if protective and not wildcard and len(body) > 1 and tail.endswith("/"):
        tail = tail[:-1]
    out.append(re.escape(tail))
    if wildcard:
        out.append(".*")
    elif protective and len(body) > 1:
        out.append("/?")
    flags = re.DOTALL | (re.IGNORECASE if protective else 0)
    return re.compile("".join(out), flags)


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
        object.__setattr__(self, "regex", _compile(self.pattern, protective=True))
        methods = None
        if self.methods is not None:
            methods = frozenset(method.upper() for method in self.methods)
            if "GET" in methods:
                methods |= {"HEAD"}  # HEAD is GET: it runs the same handler
        object.__setattr__(self, "method_set", methods)

    @property
    def params(self) -> tuple[str, ...]:
        """The names of the pattern's ``{name}`` segments."""
        return tuple(match.group(1) for match in _PARAM.finditer(self.pattern))


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a request needs, as :meth:`Rules.match` or an endpoint decides it.

    Attributes:
        public: never challenged (public path or CORS preflight); credentials are not read.
            With ``required`` too, a CORS preflight to a protected handler, to be answered
            rather than passed on (see :func:`skaala_auth.flow.requirement`).
        required: a valid key is needed; without one, 401.
        scopes: every one of these must be granted.
        team_id: the team in the path (from the rule's ``{team_id}`` segment), if any.
        credentials: what the handler accepts: ``"any"`` (an API key, or else a dashboard
            session when the authenticator verifies them), ``"api_key"`` or ``"session"``.
        roles: the caller's role in the team must be one of these (``None``: any role).
        origins: origins allowed for cookie-authenticated unsafe requests, beside the
            authenticator's own (see :class:`~skaala_auth.flow.Endpoint`).
        plain: no credential kind or role condition: what most requirements are (computed;
            the endpoint re-check of a found principal has a fast path for them).

    .. versionadded:: 0.1.0
    """

    public: bool = False
    required: bool = False
    scopes: tuple[str, ...] = ()
    team_id: str | None = None
    credentials: Literal["any", "api_key", "session"] = "any"
    roles: frozenset[str] | None = None
    origins: frozenset[str] = frozenset()
    plain: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain", self.credentials == "any" and self.roles is None)


PUBLIC: Final = Requirement(public=True)
OPTIONAL: Final = Requirement()
PROTECTED: Final = Requirement(required=True)

#: The team of a request whose team cannot be told for sure (forms of its path that name
#: different teams, or a misnamed team parameter): no key belongs to it, so every key is
#: refused with 403. (A NUL never appears in a team id a router hands over.)
UNBOUND_TEAM: Final = "\x00unbound-team"


class Rules:
    """A rules table (see the module documentation for the matching rules).

    Args:
        rules: :class:`Rule` rows, or ``(pattern, scopes)`` / ``(pattern, scopes, methods)``
            tuples.
        public: patterns that are never challenged.
        protect: path prefixes under which every request needs a valid key.
        team_param: the name of the path segment that carries the team id.
        default: what a request that matches no rule, public pattern or protected prefix
            needs: ``"allow"`` — nothing (a key that is sent is still checked) — or ``"deny"``
            — a valid key. Recommended for drop-in use.

    Raises:
        ValueError: a bad pattern, or a ``{…team…}`` segment that is not ``team_param``.

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
        default: Literal["allow", "deny"] = "allow",
    ) -> None:
        if default not in ("allow", "deny"):
            raise ValueError(f"default is 'allow' or 'deny', not {default!r}")
        self.rules = tuple(rule if isinstance(rule, Rule) else _from_tuple(rule) for rule in rules)
        for rule in self.rules:
            for name in rule.params:
                if name != team_param and "team" in name.lower():
                    raise ValueError(
                        f"rule {rule.pattern!r}: the segment {{{name}}} looks like a team but "
                        f"the team parameter is {team_param!r}, so it would not be checked; "
                        f"name it {{{team_param}}} or pass team_param={name!r}"
                    )
        if isinstance(public, str) or isinstance(protect, str):
            raise TypeError("public and protect are lists, not single strings")
        self.public = tuple(_compile(pattern) for pattern in public)
        self.protect = tuple(protect)
        self._protect_lower = tuple(prefix.lower() for prefix in self.protect)
        self.team_param = team_param
        self.default = default
        self._unmatched = PROTECTED if default == "deny" else OPTIONAL
        # Rows grouped by pattern, in table order: the first pattern that matches decides.
        groups: dict[str, list[Rule]] = {}
        for rule in self.rules:
            groups.setdefault(rule.pattern, []).append(rule)
        self._groups = tuple((rows[0].regex, tuple(rows)) for rows in groups.values())

    def match(self, method: str, path: str) -> Requirement:
        """Decide what a request to ``path`` with ``method`` needs (preflights aside: see
        :func:`skaala_auth.flow.requirement`)."""
        upper = method.upper()
        if "//" not in path and "/." not in path:  # the common case: one form
            if self._is_public(path):
                return PUBLIC
            return self._match_form(upper, path)
        forms = _forms(path)
        if all(self._is_public(form) for form in forms):
            return PUBLIC
        found = self._match_form(upper, forms[0])
        for form in forms[1:]:
            found = _stricter(found, self._match_form(upper, form))
        return found

    def _is_public(self, path: str) -> bool:
        return any(pattern.fullmatch(path) for pattern in self.public)

    def _match_form(self, method: str, path: str) -> Requirement:
        for regex, rows in self._groups:
            found = regex.fullmatch(path)
            if found is None:
                continue
            team = found.groupdict().get(self.team_param)
            for rule in rows:
                if rule.method_set is None or method in rule.method_set:
                    return Requirement(required=True, scopes=tuple(rule.scopes), team_id=team)
            # A method the pattern's rows do not list: the strictest of them, not the fall-through.
            scopes = tuple(dict.fromkeys(scope for rule in rows for scope in rule.scopes))
            return Requirement(required=True, scopes=scopes, team_id=team)
        lowered = path.lower()
        if any(lowered.startswith(prefix) for prefix in self._protect_lower):
            return PROTECTED
        return self._unmatched

    def __repr__(self) -> str:
        return f"Rules({len(self.rules)} rules, protect={self.protect!r}, default={self.default!r})"


def _forms(path: str) -> tuple[str, ...]:
    """The forms a router may route ``path`` as: as sent; with leading slashes stripped
    (werkzeug); with slashes merged and dot segments resolved (RFC 3986 5.2.4, as proxies and
    clients normalise)."""
    forms = [path]
    stripped = "/" + path.lstrip("/")
    merged = re.sub(r"/{2,}", "/", path)
    segments: list[str] = []
    for segment in merged.split("/")[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    resolved = "/" + "/".join(segments)
    # A path ending in a dot segment keeps its trailing slash ("/a/." is "/a/"); one ending in
    # "/" has it already, as an empty last segment ("/a/./" is "/a/", never "/a//", which a
    # rule for "/a/" does not match).
    if merged.endswith(("/.", "/..")) and not resolved.endswith("/"):
        resolved += "/"
    for form in (stripped, merged, resolved):
        if form not in forms:
            forms.append(form)
    return tuple(forms)


def _stricter(first: Requirement, second: Requirement) -> Requirement:
    """What a request needs when it may be routed as either of two forms: both."""
    if first == second or second.public:
        return first
    if first.public:
        return second
    team = first.team_id
    if team is None:
        team = second.team_id
    elif second.team_id is not None and second.team_id != team:
        team = UNBOUND_TEAM  # the forms name different teams: no key may pass
    return Requirement(
        required=first.required or second.required,
        scopes=tuple(dict.fromkeys((*first.scopes, *second.scopes))),
        team_id=team,
    )


def _from_tuple(
    row: tuple[str, Iterable[str]] | tuple[str, Iterable[str], Iterable[str]],
) -> Rule:
    if len(row) == 2:
        return Rule(row[0], scopes=tuple(row[1]))
    return Rule(row[0], scopes=tuple(row[1]), methods=tuple(row[2]))
