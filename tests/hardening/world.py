"""The world of the hardening suite: keys, dashboard users and their session tokens, recorded
handler runs, requests as real servers shape them, and the oracle that says whether a handler
run was allowed.

Nothing here imports a web framework: the apps are in :mod:`tests.hardening.apps`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, Principal, generate_key
from skaala_auth.testing import SessionKit

from ..conftest import Clock
from ..leakcheck import seen_response

ALL_SCOPES = ("read:bookings", "write:bookings", "read:staff")
BOOKINGS = "/api/v1/teams/{team}/bookings"
STAFF = "/api/v1/teams/{team}/staff"
HEALTH = "/health"
INTERNAL = "/internal/report"  # not in any rule, not under protect=: default deny covers it

# -- dashboard sessions ---------------------------------------------------------------------------

PROJECT = "hardening-project"  # the Stack Auth project (the tokens' audience)
HOST = "testserver"  # every request's Host header
DASHBOARD = "https://dashboard.example"  # the Authenticator's allowed_origins
#: The methods a cookie-authenticated request may use without an allowed Origin (any case).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Each dashboard user's role by team (the store's membership table); ``loner`` is in no team.
ROLES: dict[str, dict[str, str]] = {
    "user_1": {"team_1": "owner"},
    "member_1": {"team_1": "member"},
    "user_2": {"team_2": "owner"},
    "admin_2": {"team_2": "admin"},
    "loner": {},
}


def role_allows(role: str, scopes: frozenset[str]) -> bool:
    """The contract's scopes by role: owner and admin every scope, member the ``read:*`` ones."""
    if role in ("owner", "admin"):
        return True
    return role == "member" and all(scope.startswith("read:") for scope in scopes)


# -- recorded handler runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    handler: str  # list, create, other, staff, health, internal
    method: str  # the HTTP method, as the handler saw it
    team: str | None  # the router-resolved team path parameter
    key_id: str | None  # the key id of the principal the handler received
    user_id: str | None = None  # the principal's user
    principal_method: str | None = None  # the principal's method: "api_key" or "session"
    principal_team: str | None = None  # the principal's team ("" for a session of no team)


RUNS: list[Run] = []


def record(handler: str, method: str, team: object, principal: Principal | None) -> None:
    RUNS.append(
        Run(
            handler,
            method,
            None if team is None else str(team),
            None if principal is None else principal.key_id,
            None if principal is None else principal.user_id,
            None if principal is None else principal.method,
            None if principal is None else principal.team_id,
        )
    )


# -- keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    label: str
    key: str
    key_id: str | None  # None: never issued (unknown, junk)
    team: str | None
    scopes: frozenset[str]
    live: bool  # issued, not revoked, not expired, member of its team


@dataclass(frozen=True)
class Token:
    """A Stack Auth access token of the world, and what the contract makes of it."""

    label: str  # e.g. good:member_1, expired:user_1
    token: str
    user: str  # the user it claims (``sub``)
    refused: str | None  # why a verifier refuses it; ``None``: a good token


@dataclass
class World:
    store: MemoryKeyStore
    clock: Clock
    keys: dict[str, Key]
    kit: SessionKit
    tokens: dict[str, Token]

    def authenticator(self) -> Authenticator:
        """Keys from the store, and dashboard sessions from the kit's project (docs/sessions.md);
        cross-site cookie requests allowed from the dashboard only."""
        return Authenticator(
            self.store,
            clock=self.clock,
            session_verifier=self.kit.verifier(),
            allowed_origins=[DASHBOARD],
        )

    def by_key(self, key: str) -> Key | None:
        for found in self.keys.values():
            if found.key == key:
                return found
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return payload


def _tokens(kit: SessionKit, clock: Clock) -> dict[str, Token]:
    """A good token per user, and tokens every verifier must refuse."""
    tokens: dict[str, Token] = {}

    def add(label: str, token: str, user: str, refused: str | None) -> None:
        tokens[label] = Token(label, token, user, refused)

    for user in ROLES:
        add(f"good:{user}", kit.mint(user), user, None)
    now = clock()
    add("expired:user_1", kit.mint("user_1", issued_at=now - 7200), "user_1", "expired")
    add("future:user_1", kit.mint("user_1", issued_at=now + 3600), "user_1", "not yet valid")
    add("no_exp:user_1", kit.mint("user_1", exp=None), "user_1", "no exp")
    add("wrong_aud:user_1", kit.mint("user_1", aud="other-project"), "user_1", "wrong audience")
    add("anon:user_1", kit.mint("user_1", anonymous=True), "user_1", "anonymous")
    other = SessionKit(project_id=PROJECT, clock=clock)  # another signing key, unknown kid
    add("foreign:user_1", other.mint("user_1"), "user_1", "unknown signing key")
    forged = other.mint("user_1", header={"kid": kit.key_id})  # our kid, another key
    add("forged_kid:user_1", forged, "user_1", "bad signature")
    # A member's token with its payload rewritten to the owner: the signature no longer holds.
    head, _, signature = tokens["good:member_1"].token.split(".")
    payload = _payload(tokens["good:member_1"].token) | {"sub": "user_1"}
    tampered = f"{head}.{_b64(json.dumps(payload).encode())}.{signature}"
    add("tampered:member_1->user_1", tampered, "user_1", "tampered")
    none = _b64(json.dumps({"alg": "none", "kid": kit.key_id, "typ": "JWT"}).encode())
    unsigned = f"{none}.{_b64(json.dumps(_payload(tokens['good:user_1'].token)).encode())}."
    add("alg_none:user_1", unsigned, "user_1", "alg none")
    return tokens


def build_world() -> World:
    store = MemoryKeyStore()
    clock = Clock()
    manager = KeyManager(store, clock=clock)
    for user, teams in ROLES.items():
        for team, role in teams.items():
            manager.add_member(team_id=team, user_id=user, role=role)
    keys: dict[str, Key] = {}

    def issue(label: str, team: str, scopes: Iterable[str], **options: Any) -> tuple[str, str]:
        user = "user_1" if team == "team_1" else "user_2"
        key, record_ = manager.create_key(
            team_id=team, user_id=user, scopes=list(scopes), **options
        )
        keys[label] = Key(label, key, record_.id, team, frozenset(scopes), True)
        return key, record_.id

    issue("t1_all", "team_1", ALL_SCOPES)  # the good key
    issue("t1_read", "team_1", ["read:bookings"])  # misses write:bookings, read:staff
    issue("t1_staff", "team_1", ["read:staff"])  # misses the bookings scopes
    issue("t2_all", "team_2", ALL_SCOPES)  # another team
    issue("t2_staff", "team_2", ["read:staff"])  # issue 8, finding 2
    _, revoked_id = issue("revoked", "team_1", ALL_SCOPES)
    manager.revoke_key(revoked_id)
    issue("expired", "team_1", ALL_SCOPES, expires_in=timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    for label in ("revoked", "expired"):
        old = keys[label]
        keys[label] = Key(label, old.key, old.key_id, old.team, old.scopes, False)
    keys["unknown"] = Key("unknown", generate_key(), None, None, frozenset(), False)
    for label, junk in {
        "junk_typo": "sk_live_typo",
        "junk_text": "hello",
        "junk_long": "sk_live_" + "A" * 300,
        "junk_checksum": keys["t1_all"].key[:-1] + ("A" if keys["t1_all"].key[-1] != "A" else "B"),
    }.items():
        keys[label] = Key(label, junk, None, None, frozenset(), False)
    # Tokens live ten minutes from now; the suite's clock does not move.
    kit = SessionKit(project_id=PROJECT, clock=clock)
    return World(store, clock, keys, kit, _tokens(kit, clock))


# -- requests -------------------------------------------------------------------------------------

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Session:
    """The dashboard session a request carries, as its first carrier present has it (see
    docs/sessions.md, "Where the token is read")."""

    user: str  # the user the token claims
    by_cookie: bool  # a cookie carries it: an unsafe method needs an allowed Origin
    refused: str | None  # why the contract refuses it (a bad token, a refused carrier)


@dataclass(frozen=True)
class Credentials:
    """The credential part of a request: its headers, and the one key a strict reading of the
    contract accepts (``None``: the request must not reach a protected handler).

    When the request presents an API key (``key_presented``), the key decides and any session
    is ignored. Otherwise ``session`` is the session it carries (``None``: none, or none the
    contract could read: no protected handler may run)."""

    label: str
    headers: tuple[tuple[str, str], ...]
    accepted: str | None
    key_presented: bool = True
    session: Session | None = None


@dataclass(frozen=True)
class Request:
    method: str  # as sent on the wire
    target: str  # the request-target as sent: raw path, percent-encoding kept, and ?query
    credentials: Credentials
    preflight: bool
    extra_headers: tuple[tuple[str, str], ...] = ()
    query_has_key: bool = False

    @property
    def raw_path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def headers(self) -> Headers:
        return [("Host", HOST), *self.credentials.headers, *self.extra_headers]

    def is_preflight(self) -> bool:
        names = {name.lower() for name, _ in self.extra_headers}
        return self.method.upper() == "OPTIONS" and "access-control-request-method" in names


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _ows(value: str) -> str:
    """Servers strip optional whitespace (space, tab only) around a header value."""
    return value.strip(" \t")


# -- ASGI, as uvicorn builds the scope ------------------------------------------------------------


def asgi_scope(request: Request) -> dict[str, Any]:
    raw_path = request.raw_path
    path = unquote(raw_path) if "%" in raw_path else raw_path  # uvicorn (httptools and h11)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51000),
        "scheme": "http",
        "method": request.method,
        "root_path": "",
        "path": path,
        "raw_path": raw_path.encode("ascii"),
        "query_string": request.query.encode("ascii"),
        "headers": [
            (name.lower().encode("latin-1"), _ows(value).encode("latin-1"))
            for name, value in request.headers()
        ],
        "state": {},
    }


class AsgiDriver:
    """Calls an ASGI app directly, on one event loop kept for the whole test."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.runner = asyncio.Runner()

    def close(self) -> None:
        self.runner.close()

    def __call__(self, request: Request) -> Reply:
        reply = self.runner.run(self._call(request))
        seen_response("ASGI app", reply, request.target)
        return reply

    async def _call(self, request: Request) -> Reply:
        reply = Reply(0)
        sent_body = False
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await never.wait()  # a client that stays connected (Django listens for this)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                reply.status = message["status"]
                reply.headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", [])
                ]
            elif message["type"] == "http.response.body":
                reply.body += message.get("body", b"")

        try:
            await self.app(asgi_scope(request), receive, send)
        except Exception as error:  # a server answers 500 (Starlette re-raises after sending it)
            if reply.status == 0:
                reply.status, reply.body = 500, repr(error).encode()
        return reply


# -- WSGI, as gunicorn builds the environ ---------------------------------------------------------


def wsgi_environ(request: Request) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(request.raw_path).decode("latin-1"),
        "QUERY_STRING": request.query,
        "RAW_URI": request.target,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "51000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = _ows(value)
        environ[key] = f"{environ[key]},{value}" if key in environ else value  # gunicorn merges
    return environ


class WsgiDriver:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def close(self) -> None:
        pass

    def __call__(self, request: Request) -> Reply:
        reply = Reply(0)

        def start_response(status: str, headers: list[tuple[str, str]], info: Any = None) -> Any:
            reply.status = int(status.split(" ", 1)[0])
            reply.headers = list(headers)
            return lambda data: None

        try:
            result = self.app(wsgi_environ(request), start_response)
            try:
                reply.body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as error:  # gunicorn answers 500
            reply.status, reply.body = 500, repr(error).encode()
        seen_response("WSGI app", reply, request.target)
        return reply


# -- the oracle -----------------------------------------------------------------------------------

#: handler name -> the scopes it needs for a method (upper-case, HEAD already read as GET);
#: ``None``: the handler is not protected in this style.
Requirements = Callable[[str, str], frozenset[str] | None]


def decorator_requirements(table: dict[str, Iterable[str] | None]) -> Requirements:
    """Each handler declares its scopes once, whatever the method."""
    frozen = {name: None if scopes is None else frozenset(scopes) for name, scopes in table.items()}

    def required(handler: str, method: str) -> frozenset[str] | None:
        return frozen[handler]

    return required


#: The rules table every rules-style app uses, as docs/wsgi.md and docs/starlette.md write them.
TABLE: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("/api/v1/teams/{team_id}/bookings", ("read:bookings",), ("GET",)),
    ("/api/v1/teams/{team_id}/bookings", ("write:bookings",), ("POST",)),
    ("/api/v1/teams/{team_id}/staff", ("read:staff",), ("GET",)),
)
PUBLIC = ("/health", "/docs*")
PROTECT = ("/api/",)
_PATTERN_OF = {
    "list": TABLE[0][0],
    "create": TABLE[0][0],
    "other": TABLE[0][0],
    "staff": TABLE[2][0],
}


def rules_requirements(*, deny: bool) -> Requirements:
    """What the table asks of a handler's method: the rule listing that method, or for a method
    no rule of the pattern lists, the union of the pattern's rules (its strictest requirement).
    With default deny, a handler no rule covers still needs a live key (no scope)."""

    def required(handler: str, method: str) -> frozenset[str] | None:
        pattern = _PATTERN_OF.get(handler)
        if pattern is None:
            return frozenset() if (deny and handler == "internal") else None
        rows = [row for row in TABLE if row[0] == pattern]
        for _, scopes, methods in rows:
            if method in methods:
                return frozenset(scopes)
        return frozenset(scope for _, scopes, _ in rows for scope in scopes)

    return required


@dataclass(frozen=True)
class Violation:
    group: str  # target, cause, credential form, method, handler: to count them by cause
    text: str


def violations(
    world: World, target: str, request: Request, reply: Reply, runs: list[Run], need: Requirements
) -> list[Violation]:
    """Every way this request broke the invariant, in words."""
    problems: list[Violation] = []
    form = request.credentials.label.partition("(")[0]

    def add(cause: str, what: str, handler: str = "-") -> None:
        text = (
            f"[{target}] {request.method} {request.target!r} creds={request.credentials.label}"
            f"{' +preflight' if request.is_preflight() else ''} -> {reply.status}: {what}"
        )
        group = f"{target} | {cause} | {handler} {request.method.upper()}"
        if cause.startswith(
            ("no single", "preflight ran a protected handler (no single", "session", "handler got")
        ):
            group += f" | {form}"
        problems.append(Violation(group, text))

    if reply.status >= 500 or reply.status < 100:
        add(f"status {reply.status}", f"status {reply.status}, body {reply.body[:300]!r}")
    for run in runs:
        method = run.method.upper()
        method = "GET" if method == "HEAD" else method
        scopes = need(run.handler, method)
        if scopes is None:
            continue
        ran = (
            f"{run.handler} ran (method {run.method!r}, team {run.team!r}, key {run.key_id!r},"
            f" user {run.user_id!r} by {run.principal_method!r} of team {run.principal_team!r})"
        )
        cause = _refusal(world, request, run, scopes)
        if request.is_preflight():
            # Never, even for a request the key would have been granted for: a preflight is
            # answered (CORS middleware, or 204 with no body), it is not passed on.
            cause = f"preflight ran a protected handler ({cause or 'key otherwise granted'})"
            add(cause, ran, run.handler)
        elif cause is not None:
            add(cause, ran, run.handler)
    return problems


def _refusal(world: World, request: Request, run: Run, scopes: frozenset[str]) -> str | None:
    """Why the core should have refused this run; ``None`` when it was entitled to run."""
    if request.query_has_key:
        return "key in the query string"
    credentials = request.credentials
    if credentials.key_presented:  # the key decides: a session never rescues nor widens it
        return _key_refusal(world, credentials.accepted, run, scopes)
    if credentials.session is None:
        return "no single clean credential"
    return _session_refusal(request, credentials.session, run, scopes)


def _key_refusal(
    world: World, accepted: str | None, run: Run, scopes: frozenset[str]
) -> str | None:
    if accepted is None:
        return "no single clean credential"
    key = world.by_key(accepted)
    if key is None or not key.live:
        return f"key not live ({key and key.label})"
    if run.team is not None and key.team != run.team:
        return "key of another team"
    if not scopes <= key.scopes:
        return f"key lacks {sorted(scopes - key.scopes)}"
    if run.key_id != key.key_id or run.principal_method != "api_key":
        return "handler got another principal"
    return None


def _session_refusal(
    request: Request, session: Session, run: Run, scopes: frozenset[str]
) -> str | None:
    if session.refused is not None:
        return f"session refused ({session.refused})"
    if (
        session.by_cookie
        and request.method.upper() not in SAFE_METHODS
        and not origin_allowed(request.headers())
    ):
        return "session cookie on an unsafe method without an allowed Origin"
    if run.team is not None:
        role = ROLES[session.user].get(run.team)
        if role is None:
            return "session user not a member of the team"
        if not role_allows(role, scopes):
            return f"{role} session lacks {sorted(scopes)}"
    elif scopes:  # no team in the path: a session of no team has no scopes
        return f"session of no team lacks {sorted(scopes)}"
    if (run.principal_method, run.user_id, run.key_id) != ("session", session.user, None):
        return "handler got another principal than the session's"
    if run.team is not None and run.principal_team != run.team:
        return "handler got the session's principal for another team"
    return None


def origin_allowed(headers: Headers) -> bool:
    """The contract's CSRF check of a cookie-authenticated unsafe request: its ``Origin`` (or,
    with none, its ``Referer``'s origin) is the request's own host or the dashboard. Several
    different values, ``null``, or none at all: not allowed."""
    origins = {_ows(v).lower().rstrip("/") for n, v in headers if n.lower() == "origin"}
    if origins:
        if len(origins) != 1:
            return False
        origin = origins.pop()
    else:
        referers = {_ows(v) for n, v in headers if n.lower() == "referer"}
        if len(referers) != 1:
            return False
        parts = urlsplit(referers.pop())
        origin = f"{parts.scheme}://{parts.netloc}".lower()
    if origin == DASHBOARD:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == HOST
