"""What a request needs: decided once, here, from the facts an adapter translated.

Rules of this module (they keep the invariant — *a protected handler runs only for a request
whose principal the core granted for that handler's scopes and team* — in one place):

- no I/O, no framework imports, no clock: pure functions of what the adapter handed over;
- adapters translate a request into :class:`RequestFacts` (method, the path as the router
  matches it, headers, query string, the router's path parameters) and say what protects the
  handler: an :class:`Endpoint` (a decorator, a dependency, a DRF permission) or a
  :class:`~skaala_auth.rules.Rules` table (a middleware); they never decide;
- the CORS-preflight exemption, the team parameter and the re-check of a principal a middleware
  already found are written here and nowhere else.

A CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``, method in any case) is
never challenged, and never reaches a protected handler: to a protected handler it is answered
``204`` with no body (:data:`PREFLIGHT`); a CORS middleware in front of ours answers it first
and adds the CORS headers. Elsewhere (a path no rule protects, a public path) it passes on.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final

from .credentials import HeadersLike, environ_headers
from .errors import AuthError, Reason
from .rules import OPTIONAL, PUBLIC, UNBOUND_TEAM, Requirement, Rules

__all__ = [
    "ANSWER_PREFLIGHT",
    "PREFLIGHT",
    "Endpoint",
    "PreflightAnswer",
    "RequestFacts",
    "is_preflight",
    "requirement",
]

log = logging.getLogger("skaala_auth")

_NO_PARAMS: Final[Mapping[str, object]] = MappingProxyType({})
_ACRM: Final = "access-control-request-method"
_ACRM_BYTES: Final = b"access-control-request-method"


class RequestFacts:
    """The whole of what an adapter translates from a framework request.

    Attributes:
        method: the request method, as the server handed it over (any case).
        path: the path as the router matches it (percent-decoded, ``root_path`` or
            ``SCRIPT_NAME`` removed).
        headers: see :data:`~skaala_auth.credentials.HeadersLike`; raw ASGI pairs, a mapping,
            or :func:`~skaala_auth.credentials.environ_headers` of a WSGI environ.
        query: the raw query string (checked for keys, which are refused there).
        path_params: the parameters the router resolved (``{"team_id": "team_1"}``); empty
            for a middleware, which runs before routing.

    A plain slotted class, built once or twice per request: a frozen dataclass costs three
    times as much to build. Its ``repr`` never shows the headers (they carry the key).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("headers", "method", "path", "path_params", "query")

    def __init__(
        self,
        method: str,
        path: str,
        headers: HeadersLike,
        query: str | bytes | None = None,
        path_params: Mapping[str, object] = _NO_PARAMS,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.query = query
        self.path_params = path_params

    def __repr__(self) -> str:
        return f"RequestFacts({self.method!r}, {self.path!r})"

    @classmethod
    def from_asgi(
        cls, scope: Mapping[str, object], path_params: Mapping[str, object] | None = None
    ) -> RequestFacts:
        """The facts of an ASGI ``http`` or ``websocket`` scope (a handshake is a ``GET``).

        ``path`` is the scope's path without its ``root_path``: what Starlette's router matches.
        """
        path: str = scope["path"]  # type: ignore[assignment]
        root_path = scope.get("root_path")
        if root_path and path.startswith(root_path):  # type: ignore[arg-type]
            path = path[len(root_path) :] or "/"  # type: ignore[arg-type]
        return cls(
            scope.get("method", "GET"),  # type: ignore[arg-type]
            path,
            scope["headers"],  # type: ignore[arg-type]
            scope.get("query_string"),  # type: ignore[arg-type]
            _NO_PARAMS if path_params is None else path_params,
        )

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, object], path_params: Mapping[str, object] | None = None
    ) -> RequestFacts:
        """The facts of a WSGI environ (PEP 3333), or of Django's ``request.META``.

        ``path`` is ``PATH_INFO`` decoded as werkzeug's router decodes it (the server's latin-1
        string re-read as UTF-8).
        """
        path = environ.get("PATH_INFO")
        if isinstance(path, str):
            if not path.isascii():  # ASCII reads the same in latin-1 and UTF-8
                path = _utf8(path)
        else:
            path = "/"
        query = environ.get("QUERY_STRING")
        return cls(
            str(environ.get("REQUEST_METHOD", "GET")),
            path or "/",
            environ_headers(environ),
            query if isinstance(query, str) else None,
            _NO_PARAMS if path_params is None else path_params,
        )


def _utf8(path: str) -> str:
    """A WSGI path (UTF-8 bytes the server decoded as latin-1) re-read as werkzeug reads it."""
    try:
        return path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # already decoded by the caller
        return path


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a handler declares: the scopes it needs (AND) and the path parameter that carries
    its team. Built once, when the handler is decorated.

    Attributes:
        scopes: every one of these must be granted.
        team_param: the router's path parameter that carries the team id; ``None`` for no team
            check. A route with a path parameter whose name contains ``team`` but is not
            ``team_param`` is refused (403) and logged: a misnamed team parameter must not
            switch the team check off silently.
        required: ``False`` for checks that let a request with no credentials through as
            anonymous (DRF's authentication class and permission composition).

    .. versionadded:: 0.1.0
    """

    scopes: tuple[str, ...] = ()
    team_param: str | None = "team_id"
    required: bool = True
    #: Requirements already built, by team (a frozen dataclass costs ~0.5 µs to build, and an
    #: endpoint sees a handful of teams again and again).
    _bound: dict[str | None, Requirement] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _warned: ClassVar[set[tuple[str, str]]] = set()

    def bind(self, facts: RequestFacts) -> Requirement:
        """This endpoint's requirement for one request: its scopes and the team in its path."""
        team_param = self.team_param
        team: str | None = None
        if team_param is not None:
            value = facts.path_params.get(team_param)
            if value is not None:
                team = value if type(value) is str else str(value)
            elif facts.path_params:
                team = self._unbound(facts.path_params)
        found = self._bound.get(team)
        if found is None:
            if len(self._bound) >= 1024:
                self._bound.clear()
            found = Requirement(required=self.required, scopes=self.scopes, team_id=team)
            self._bound[team] = found
        return found

    def _unbound(self, path_params: Mapping[str, object]) -> str | None:
        """:data:`UNBOUND_TEAM` when a path parameter looks like a misnamed team."""
        for name in path_params:
            if "team" in name.lower():
                self._misnamed(name)
                return UNBOUND_TEAM
        return None

    def _misnamed(self, name: str) -> None:
        assert self.team_param is not None  # noqa: S101 - bind() checked it
        if (self.team_param, name) in self._warned:
            return
        self._warned.add((self.team_param, name))
        log.error(
            "skaala_auth: a protected route has the path parameter %r but the check reads the "
            "team from %r: every request to it is refused (403). Name the parameter %r, or pass "
            "team_param=%r (team_param=None: no team check).",
            name,
            self.team_param,
            self.team_param,
            name,
        )


class PreflightAnswer(AuthError):  # noqa: N818 - an answer, rendered as refusals are
    """The answer to a CORS preflight for a protected handler: ``204`` with no body and no
    headers. Rendered by every adapter exactly as a refusal is (it carries its own rendering),
    so that no adapter can forget it; never audited, never a challenge.

    .. versionadded:: 0.1.0
    """

    status_code = 204
    error = "preflight"
    message = ""
    reason = Reason.MISSING

    def body_bytes(self) -> bytes:
        return b""

    def headers(self) -> list[tuple[str, str]]:
        return []

    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return ()

    def raisable(self) -> AuthError:
        return PreflightAnswer()


#: The one preflight answer every adapter sends (render it; :meth:`raisable` to raise it).
PREFLIGHT: Final = PreflightAnswer()
PREFLIGHT.shared = True

#: A preflight to a protected handler: answered, never passed on.
ANSWER_PREFLIGHT: Final = Requirement(public=True, required=True)


def requirement(facts: RequestFacts, need: Endpoint | Rules | None = None) -> Requirement:
    """Decide what a request needs, once for every adapter.

    Args:
        facts: what the adapter translated.
        need: the handler's :class:`Endpoint`, a middleware's :class:`~skaala_auth.rules.Rules`
            table, or ``None`` (a middleware without a table: a key is checked when one is
            sent, nothing is required).

    Returns:
        A :class:`~skaala_auth.rules.Requirement`; :data:`ANSWER_PREFLIGHT` for a preflight
        that must be answered (``public`` and ``required`` both true), ``public`` alone for a
        request to pass on unchallenged.

    .. versionadded:: 0.1.0
    """
    method = facts.method
    if need is None:
        if method == "GET" or method == "POST" or not is_preflight(facts):
            return OPTIONAL
        return PUBLIC
    preflight = method != "GET" and method != "POST" and is_preflight(facts)
    if type(need) is Endpoint:
        # A handler that declares protection never runs for a preflight.
        return ANSWER_PREFLIGHT if preflight else need.bind(facts)
    assert isinstance(need, Rules)  # noqa: S101 - the signature says so
    found = need.match(method, facts.path)
    if preflight:
        return ANSWER_PREFLIGHT if found.required else PUBLIC
    return found


def is_preflight(facts: RequestFacts) -> bool:
    """True for a CORS preflight: ``OPTIONS`` (any case) with ``Access-Control-Request-Method``.

    .. versionadded:: 0.1.0
    """
    if facts.method.upper() != "OPTIONS":
        return False
    headers = facts.headers
    if isinstance(headers, Mapping):
        if headers.get(_ACRM) is not None:
            return True  # a case-insensitive mapping (Starlette, werkzeug, Django) answers here
        names = headers.keys()  # not iteration: werkzeug's Headers iterates over pairs
        return any(isinstance(name, str) and name.lower() == _ACRM for name in names)
    for name, _ in headers:
        if type(name) is bytes:
            if name.lower() == _ACRM_BYTES:
                return True
        elif isinstance(name, str) and name.lower() == _ACRM:
            return True
    return False
