"""The key-management API over HTTP, framework-free: a request in, a response out.

Rules of this module:

- no framework import: the adapters (``skaala_auth.starlette.management_routes``,
  ``skaala_auth.flask.management_blueprint``, ``skaala_auth.django.management_urls``) mount
  :data:`RESOURCES` and translate requests and responses, nothing more;
- the core decided who is calling before a handler runs (a dashboard session, an owner or an
  admin of the team in the path, an allowed ``Origin`` for a cookie). The handlers re-check
  the principal cheaply (defence in depth), never the credentials;
- the I/O is the :class:`~skaala_auth.KeyManager`'s, synchronous: an adapter on an event loop
  calls :meth:`ManagementApi.handle` in a worker thread;
- every refusal is decided before the first write: a 4xx changes nothing;
- a plaintext key appears in exactly one place, the body of the ``201`` that creates it (create
  or rotate); never in a log record, an audit event or an error message.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NoReturn, TypeVar

from .audit import audit_logger
from .errors import InvalidExpiryError, KeyNotFoundError, NotAMemberError, UnknownScopeError
from .flow import Endpoint
from .keys import looks_like_key
from .manager import DEFAULT_GRACE, KeyManager
from .models import ApiKey, Member, Principal, RateLimit, Role, freeze_metadata, from_epoch
from .policy import parse_networks

__all__ = [
    "MANAGE_ROLES",
    "MAX_BODY",
    "RESOURCES",
    "ROUTES",
    "ManagementApi",
    "ManagementEvent",
    "ManagementHook",
    "ManagementResponse",
    "Resource",
    "Route",
    "key_json",
    "management_endpoint",
    "member_json",
]

log = logging.getLogger("skaala_auth.management")
T = TypeVar("T")

#: The session roles that may use the management API (every route).
MANAGE_ROLES: Final = frozenset({Role.OWNER.value, Role.ADMIN.value})
#: The largest request body read, in bytes; a larger one is answered ``413``.
MAX_BODY: Final = 64 * 1024
#: The longest key name, in characters.
MAX_NAME: Final = 100
#: The longest user id accepted for a member, in characters.
MAX_USER_ID: Final = 255
#: ``expires_in`` bounds, in seconds: one minute to five years.
MIN_EXPIRES_IN: Final = 60
MAX_EXPIRES_IN: Final = 5 * 365 * 24 * 3600
#: ``grace_period`` bound, in seconds (a rotated key works at most 30 days more).
MAX_GRACE: Final = 30 * 24 * 3600

_FIELD_NAME: Final = re.compile(r"[a-z_]{1,32}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCOPE_SHAPE: Final = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_MEMBER_CHANGES: Final = frozenset({"add_member", "update_member", "remove_member"})


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the management API.

    Attributes:
        name: the handler's name, also the audit action (``"create_key"``).
        method: the HTTP method it answers.
        path: its path under the adapter's prefix, ``{name}`` marking path parameters.

    .. versionadded:: 0.1.0
    """

    name: str
    method: str
    path: str

    @property
    def changes(self) -> bool:
        """True for a route that changes something (audited)."""
        return self.method != "GET"


#: Every route: the whole API.
ROUTES: Final = (
    Route("list_keys", "GET", "/teams/{team_id}/api-keys"),
    Route("create_key", "POST", "/teams/{team_id}/api-keys"),
    Route("get_key", "GET", "/teams/{team_id}/api-keys/{key_id}"),
    Route("update_key", "PATCH", "/teams/{team_id}/api-keys/{key_id}"),
    Route("revoke_key", "DELETE", "/teams/{team_id}/api-keys/{key_id}"),
    Route("rotate_key", "POST", "/teams/{team_id}/api-keys/{key_id}/rotate"),
    Route("list_members", "GET", "/teams/{team_id}/members"),
    Route("add_member", "POST", "/teams/{team_id}/members"),
    Route("update_member", "PATCH", "/teams/{team_id}/members/{user_id}"),
    Route("remove_member", "DELETE", "/teams/{team_id}/members/{user_id}"),
)


@dataclass(frozen=True, slots=True)
class Resource:
    """One path of the API and the routes on it, by method: what an adapter mounts (one view
    per resource, for every method, so that a method the path does not answer gets the same
    JSON ``405`` in every framework).

    Attributes:
        name: a name for the adapter's router (``"api_key"``).
        path: as :attr:`Route.path`.
        routes: the routes on this path, by method.
        params: the path parameters, in order.

    .. versionadded:: 0.1.0
    """

    name: str
    path: str
    routes: Mapping[str, Route]
    params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(re.findall(r"\{(\w+)\}", self.path)))

    @property
    def allow(self) -> str:
        """The ``Allow`` header of a ``405`` (``HEAD`` with ``GET``)."""
        methods = set(self.routes)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

    def path_as(self, style: Literal["starlette", "flask", "django"]) -> str:
        """The path in a router's syntax: ``{team_id}`` (Starlette), ``<team_id>`` (Flask),
        ``<str:team_id>`` (Django). Each matches one non-empty path segment."""
        if style == "starlette":
            return self.path
        replacement = r"<\1>" if style == "flask" else r"<str:\1>"
        return re.sub(r"\{(\w+)\}", replacement, self.path)


def _resources() -> tuple[Resource, ...]:
    names = {
        "/teams/{team_id}/api-keys": "api_keys",
        "/teams/{team_id}/api-keys/{key_id}": "api_key",
        "/teams/{team_id}/api-keys/{key_id}/rotate": "api_key_rotation",
        "/teams/{team_id}/members": "members",
        "/teams/{team_id}/members/{user_id}": "member",
    }
    grouped: dict[str, dict[str, Route]] = {}
    for route in ROUTES:
        grouped.setdefault(route.path, {})[route.method] = route
    return tuple(Resource(names[path], path, routes) for path, routes in grouped.items())


#: The paths of the API, each with its routes: what adapters mount.
RESOURCES: Final = _resources()
_BY_NAME: Final = {resource.name: resource for resource in RESOURCES}


@dataclass(frozen=True, slots=True)
class ManagementResponse:
    """What the API answers: an adapter sends it as it is.

    Attributes:
        status: the HTTP status.
        headers: ``(name, value)`` pairs, lower-case names.
        body: the body (JSON, or empty for ``204``).

    .. versionadded:: 0.1.0
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        """The body, parsed (``None`` for an empty body)."""
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class ManagementEvent:
    """One change made (or refused) through the management API, for the audit log. Never holds
    a plaintext key or a digest.

    Attributes:
        action: the route's name: ``create_key``, ``rotate_key``, ``revoke_key``,
            ``add_member``, ``update_member``, ``remove_member``.
        outcome: ``"success"`` or ``"failure"``.
        status_code: the HTTP status answered.
        actor: the user id of the session that asked.
        team_id: the team.
        key_id: the key created, rotated or revoked (for a rotation, the old key).
        new_key_id: for a rotation, the new key.
        member: the user id of the member added, changed or removed.
        role: the member's role after the change.
        error: for a failure, the ``error`` code answered.

    .. versionadded:: 0.1.0
    """

    action: str
    outcome: Literal["success", "failure"]
    status_code: int
    actor: str
    team_id: str
    key_id: str | None = None
    new_key_id: str | None = None
    member: str | None = None
    role: str | None = None
    error: str | None = None

    def log(self) -> None:
        """Write the event to the ``skaala_auth.audit`` logger, at INFO."""
        if audit_logger.isEnabledFor(logging.INFO):
            audit_logger.info(
                "manage %s %s status=%s actor=%s team=%s key_id=%s new_key_id=%s member=%s "
                "role=%s error=%s",
                self.action,
                self.outcome,
                self.status_code,
                self.actor,
                self.team_id,
                self.key_id or "-",
                self.new_key_id or "-",
                self.member or "-",
                self.role or "-",
                self.error or "-",
                extra={"skaala_audit": self},
            )


ManagementHook = Callable[[ManagementEvent], None]


# -- answers ------------------------------------------------------------------------------------

_HEADERS: Final = (
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
)


def _answer(status: int, body: object, *extra: tuple[str, str]) -> ManagementResponse:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return ManagementResponse(status, (*_HEADERS, *extra), data)


class _Refusal(Exception):  # noqa: N818 - an answer, not a failure of the library
    """A 4xx (or 503) decided by a handler; nothing was written."""

    def __init__(self, status: int, error: str, message: str, *extra: tuple[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra

    def response(self) -> ManagementResponse:
        body = {"error": self.error, "message": self.message}
        return _answer(self.status, body, *self.extra)


def _invalid(message: str) -> NoReturn:
    raise _Refusal(400, "invalid_request", message)


def _not_found(message: str) -> NoReturn:
    raise _Refusal(404, "not_found", message)


def _forbidden(message: str) -> NoReturn:
    raise _Refusal(403, "forbidden", message)


def _conflict(message: str) -> NoReturn:
    raise _Refusal(409, "conflict", message)


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_json(key: ApiKey, now: datetime) -> dict[str, Any]:
    """A key record as the API shows it: never its plaintext or digest.

    .. versionadded:: 0.1.0
    """
    return {
        "id": key.id,
        "team_id": key.team_id,
        "user_id": key.user_id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": sorted(key.scopes),
        "status": key.status(now),
        "created_at": _time(key.created_at),
        "expires_at": _time(key.expires_at),
        "last_used_at": _time(key.last_used_at),
        "revoked_at": _time(key.revoked_at),
        "rotated_from": key.rotated_from,
        "disabled_at": _time(key.disabled_at),
        "rate_limit": None if key.rate_limit is None else str(key.rate_limit),
        "remaining": key.remaining,
        "allowed_ips": list(key.allowed_ips),
        "metadata": dict(key.metadata),
    }


def member_json(member: Member) -> dict[str, Any]:
    """A team membership as the API shows it.

    .. versionadded:: 0.1.0
    """
    return {
        "team_id": member.team_id,
        "user_id": member.user_id,
        "role": member.role.value,
        "added_at": _time(member.added_at),
    }


# -- request bodies -----------------------------------------------------------------------------


def _shown(name: str) -> str:
    """A client-chosen name, echoed in a message only when it is short and plain."""
    return repr(name) if _FIELD_NAME.fullmatch(name) else "(not shown)"


def _body(body: bytes, content_type: str | None, *, required: bool) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body where none is required)."""
    if not body:
        if required:
            _invalid("the request needs a JSON object body")
        return {}
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise _Refusal(415, "unsupported_media_type", "the request body must be application/json")
    try:
        text = body.decode("utf-8")
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Refusal:
        raise
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a number too long, too deep
        _invalid("the request body is not valid JSON")
    if not isinstance(document, dict):
        _invalid("the request body must be a JSON object")
    return document


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            _invalid(f"the field {_shown(name)} is given twice")
        document[name] = value
    return document


#: The optional policy fields of a key, at creation and in a ``PATCH``.
_POLICY_FIELDS: Final = ("rate_limit", "remaining", "allowed_ips", "metadata")


def _policy(document: Mapping[str, Any]) -> dict[str, Any]:
    """The policy fields present in ``document``, checked (``null`` clears one)."""
    policy: dict[str, Any] = {}
    try:
        if "rate_limit" in document:
            value = document["rate_limit"]
            if value is not None and not isinstance(value, str):
                _invalid("'rate_limit' must be a string such as '100/minute', or null")
            policy["rate_limit"] = None if value is None else RateLimit.parse(value)
        if "remaining" in document:
            value = document["remaining"]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                _invalid("'remaining' must be a whole number of uses, or null")
            if value is not None and not 0 <= value <= 2**62:
                _invalid("'remaining' must not be negative")
            policy["remaining"] = value
        if "allowed_ips" in document:
            value = document["allowed_ips"]
            if value is None:
                value = []
            if not isinstance(value, list) or len(value) > 100:
                _invalid("'allowed_ips' must be a list of at most 100 networks")
            if any(isinstance(item, str) and looks_like_key(item) for item in value):
                _invalid("'allowed_ips' holds an API key: refused (not stored, not repeated)")
            policy["allowed_ips"] = tuple(str(network) for network in parse_networks(value))
        if "metadata" in document:
            value = document["metadata"]
            if value is not None and not isinstance(value, dict):
                _invalid("'metadata' must be a JSON object, or null")
            policy["metadata"] = freeze_metadata(value)
    except (TypeError, ValueError) as error:
        _invalid(str(error))
    return policy


def _no_constant(name: str) -> NoReturn:
    _invalid("NaN and Infinity are not JSON numbers")


def _fields(
    document: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    unknown = sorted(set(document) - set(required) - set(optional))
    if unknown:
        expected = ", ".join(repr(name) for name in (*required, *optional))
        shown = ", ".join(_shown(name) for name in unknown[:5])
        _invalid(f"unknown field(s) {shown}: expected {expected}")
    missing = [name for name in required if name not in document]
    if missing:
        _invalid(f"missing field(s): {', '.join(repr(name) for name in missing)}")


def _text(document: Mapping[str, Any], name: str, limit: int) -> str:
    value = document[name]
    if not isinstance(value, str):
        _invalid(f"{name!r} must be a string")
    if not value.strip():
        _invalid(f"{name!r} must not be empty")
    if len(value) > limit:
        _invalid(f"{name!r} must be at most {limit} characters")
    if _CONTROL.search(value):
        _invalid(f"{name!r} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): not storable text
        _invalid(f"{name!r} must be valid Unicode text")
    if looks_like_key(value):
        _invalid(f"{name!r} holds an API key: refused (it is not stored, and not repeated here)")
    return value


def _seconds(document: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        _invalid(f"{name!r} must be a whole number of seconds")
    if not low <= value <= high:
        _invalid(f"{name!r} must be between {low} and {high} seconds")
    return value


def _scopes(document: Mapping[str, Any], manager: KeyManager) -> frozenset[str]:
    value = document["scopes"]
    if not isinstance(value, list) or not all(isinstance(scope, str) for scope in value):
        _invalid("'scopes' must be a list of scope names")
    if not value:
        _invalid("'scopes' must name at least one scope")
    try:
        return manager.scopes.validate(value)
    except UnknownScopeError as error:
        # Only plain scope-shaped names are repeated: the body may hold anything (a pasted key).
        names = sorted(name for name in error.unknown if _shown_scope(name))[:10]
        hidden = len(error.unknown) - len(names)
        _invalid(f"unknown scope(s): {', '.join([*names, *[f'{hidden} not shown'][:hidden]])}")


def _shown_scope(name: str) -> bool:
    return _SCOPE_SHAPE.fullmatch(name) is not None and not looks_like_key(name)


def _role(document: Mapping[str, Any]) -> Role:
    value = document["role"]
    if value not in ("owner", "admin", "member"):  # Role("") and Role(1) raise; this does not
        _invalid("'role' must be one of 'owner', 'admin', 'member'")
    return Role(value)


def _path_id(value: object, what: str) -> str:
    """A path parameter naming a key or a member; anything that cannot be one is not found."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_USER_ID
        or _CONTROL.search(value)
        or looks_like_key(value)
    ):
        _not_found(f"no such {what} in this team")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _not_found(f"no such {what} in this team")
    return value


# -- the API ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """One request, once routed and checked: what a handler needs, and what it audits."""

    route: Route
    principal: Principal
    team_id: str
    params: Mapping[str, str]
    body: bytes
    content_type: str | None
    now: datetime
    event: dict[str, str | None] = field(default_factory=dict)


class ManagementApi:
    """The management API's handlers: create, list, get, rotate and revoke keys; list, add,
    change and remove members. Mounted by an adapter, which lets the core decide every request
    first (a session of an owner or admin of the team in the path; an allowed ``Origin`` for a
    cookie-carried, state-changing request).

    Args:
        manager: the :class:`~skaala_auth.KeyManager` that makes the changes.
        clock: epoch seconds, for a key's status (default: the manager's clock).
        audit: called with a :class:`ManagementEvent` for every change made or refused (the
            ``skaala_auth.audit`` logger gets them too, at INFO).

    Example::

        api = ManagementApi(manager)
        response = api.handle("api_keys", method="GET", principal=principal,
                              path_params={"team_id": "team_1"})
        response.status, response.json()  # 200, {"api_keys": [...]}

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        manager: KeyManager,
        *,
        clock: Callable[[], float] | None = None,
        audit: ManagementHook | None = None,
    ) -> None:
        self.manager = manager
        self.clock = clock if clock is not None else manager.clock
        self.audit = audit
        self._members_lock = threading.Lock()
        self._handlers: dict[str, Callable[[_Call], ManagementResponse]] = {
            "list_keys": self._list_keys,
            "create_key": self._create_key,
            "get_key": self._get_key,
            "revoke_key": self._revoke_key,
            "rotate_key": self._rotate_key,
            "list_members": self._list_members,
            "add_member": self._add_member,
            "update_member": self._update_member,
            "update_key": self._update_key,
            "remove_member": self._remove_member,
        }

    def handle(
        self,
        resource: Resource | str,
        *,
        method: str,
        principal: Principal,
        path_params: Mapping[str, object],
        body: bytes = b"",
        content_type: str | None = None,
    ) -> ManagementResponse:
        """Answer one request the core granted to ``principal``.

        Args:
            resource: the :class:`Resource` (or its name) the router matched.
            method: the request method (``HEAD`` is answered as ``GET``).
            principal: who the core granted (a session of an owner or admin of the team).
            path_params: the router's parameters (``team_id``, ``key_id``, ``user_id``).
            body: the request body, or its first ``MAX_BODY + 1`` bytes (more is a ``413``).
            content_type: the ``Content-Type`` header.

        Returns:
            The response to send. Never raises for anything a client sends; a key store that
            fails is a ``503``.

        .. versionadded:: 0.1.0
        """
        found = resource if isinstance(resource, Resource) else _BY_NAME[resource]
        verb = method.upper()
        route = found.routes.get("GET" if verb == "HEAD" else verb)
        if route is None:
            return _answer(
                405,
                {"error": "method_not_allowed", "message": "Method not allowed"},
                ("allow", found.allow),
            )
        team_id = path_params.get("team_id")
        if not self._may_manage(principal, team_id):
            return _Refusal(403, "forbidden", "Forbidden").response()
        assert isinstance(team_id, str)  # noqa: S101 - _may_manage checked it
        call = _Call(
            route,
            principal,
            team_id,
            {name: value for name, value in path_params.items() if isinstance(value, str)},
            body,
            content_type,
            from_epoch(self.clock()),
        )
        try:
            if len(body) > MAX_BODY:
                raise _Refusal(
                    413, "payload_too_large", f"the request body exceeds {MAX_BODY} bytes"
                )
            for name in found.params:
                if name not in call.params:
                    _not_found("not found")
            if route.name in _MEMBER_CHANGES:
                # The last-owner check and the write, one at a time in this process (another
                # process can still interleave: the store has no conditional write for it).
                with self._members_lock:
                    response = self._handlers[route.name](call)
            else:
                response = self._handlers[route.name](call)
        except _Refusal as refusal:
            response = refusal.response()
            if route.changes:
                self._emit(call, response.status, refusal.error)
            return response
        if route.changes:
            self._emit(call, response.status)
        return response

    # -- checks --------------------------------------------------------------------------------

    @staticmethod
    def _may_manage(principal: Principal, team_id: object) -> bool:
        """Defence in depth: the core granted only such principals. Anything else is a wiring
        mistake (an adapter that skipped the core, a wrong endpoint): refused and logged."""
        if (
            principal.method == "session"
            and isinstance(team_id, str)
            and principal.team_id == team_id
            and principal.role is not None
            and principal.role.value in MANAGE_ROLES
        ):
            return True
        log.error(
            "skaala_auth.management: a request reached the management API with a principal "
            "the core does not grant there (method=%s role=%s, team matches: %s): refused "
            "(403). Mount the API through its adapter, which lets the core decide first.",
            principal.method,
            principal.role.value if principal.role is not None else None,
            isinstance(team_id, str) and principal.team_id == team_id,
        )
        return False

    def _key(self, call: _Call) -> ApiKey:
        """The key in the path, of the team in the path: another team's key is not found (its
        existence is not revealed)."""
        key_id = _path_id(call.params["key_id"], "API key")
        key = self._store(lambda: self._find_key(key_id))
        if key is None or key.team_id != call.team_id:
            _not_found("no such API key in this team")
        call.event["key_id"] = key.id
        return key

    def _find_key(self, key_id: str) -> ApiKey | None:
        try:
            return self.manager.get_key(key_id)
        except KeyNotFoundError:
            return None

    def _member(self, call: _Call) -> Member:
        user_id = _path_id(call.params["user_id"], "member")
        manager = self.manager
        member = self._store(lambda: manager.get_member(team_id=call.team_id, user_id=user_id))
        if member is None:
            _not_found("no such member in this team")
        call.event["member"] = member.user_id
        return member

    def _keep_an_owner(self, call: _Call, member: Member, role: Role | None) -> None:
        """Refuse changes an admin may not make, and the loss of the team's last owner."""
        if call.principal.role is not Role.OWNER and (
            member.role is Role.OWNER or role is Role.OWNER
        ):
            _forbidden("only an owner can make, change or remove an owner")
        if member.role is Role.OWNER and role is not Role.OWNER:
            members = self._store(lambda: self.manager.list_members(team_id=call.team_id))
            owners = [other for other in members if other.role is Role.OWNER]
            if len(owners) <= 1:
                _conflict("a team must keep an owner: make another member owner first")

    @staticmethod
    def _store(operation: Callable[[], T]) -> T:
        """Run a store operation; a store that fails is a ``503`` (fail closed, logged with
        its traceback, never shown to the client)."""
        try:
            return operation()
        except (KeyNotFoundError, NotAMemberError, InvalidExpiryError, UnknownScopeError):
            raise
        except ValueError as error:  # the manager refusing a value: its message repeats no key
            _invalid(str(error))
        except Exception:
            log.exception("skaala_auth.management: the key store failed: answered 503")
            raise _Refusal(
                503,
                "service_unavailable",
                "Key management is temporarily unavailable",
                ("retry-after", "1"),
            ) from None

    def _emit(self, call: _Call, status: int, error: str | None = None) -> None:
        event = ManagementEvent(
            call.route.name,
            "failure" if error is not None else "success",
            status,
            call.principal.user_id,
            call.team_id,
            error=error,
            **call.event,
        )
        event.log()
        if self.audit is not None:
            try:
                self.audit(event)
            except Exception:
                log.exception("the management audit hook raised")

    # -- keys ----------------------------------------------------------------------------------

    def _list_keys(self, call: _Call) -> ManagementResponse:
        keys = self._store(lambda: self.manager.list_keys(team_id=call.team_id))
        return _answer(200, {"api_keys": [key_json(key, call.now) for key in keys]})

    def _create_key(self, call: _Call) -> ManagementResponse:
        document = _body(call.body, call.content_type, required=True)
        _fields(document, ("name", "scopes"), ("expires_in", *_POLICY_FIELDS))
        policy = _policy(document)
        name = _text(document, "name", MAX_NAME)
        scopes = _scopes(document, self.manager)
        seconds = _seconds(document, "expires_in", MIN_EXPIRES_IN, MAX_EXPIRES_IN)
        expires_in = None if seconds is None else timedelta(seconds=seconds)
        manager = self.manager
        try:
            plaintext, record = self._store(
                lambda: manager.create_key(
                    team_id=call.team_id,
                    user_id=call.principal.user_id,
                    name=name,
                    scopes=scopes,
                    expires_in=expires_in,
                    **policy,
                )
            )
        except NotAMemberError:
            _forbidden("your user is not a member of this team in the key store")
        call.event["key_id"] = record.id
        # The one display of the key: it is stored nowhere, and shown nowhere else.
        return _answer(201, {"key": plaintext, "api_key": key_json(record, call.now)})

    def _get_key(self, call: _Call) -> ManagementResponse:
        return _answer(200, {"api_key": key_json(self._key(call), call.now)})

    def _update_key(self, call: _Call) -> ManagementResponse:
        document = _body(call.body, call.content_type, required=True)
        _fields(document, (), ("disabled", *_POLICY_FIELDS))
        if not document:
            _invalid(
                "nothing to change: give disabled, rate_limit, remaining, allowed_ips or metadata"
            )
        disabled = document.get("disabled")
        if disabled is not None and not isinstance(disabled, bool):
            _invalid("'disabled' must be true or false")
        changes = _policy(document)
        key = self._key(call)
        manager = self.manager

        def update() -> ApiKey:
            found = key
            if "remaining" in changes:
                found = manager.refill_key(key.id, changes.pop("remaining"))
            if changes:
                found = manager.update_key(key.id, **changes)
            if disabled is True:
                found = manager.disable_key(key.id)
            elif disabled is False:
                found = manager.enable_key(key.id)
            return found

        try:
            updated = self._store(update)
        except KeyNotFoundError:
            _not_found("no such API key in this team")
        return _answer(200, {"api_key": key_json(updated, call.now)})

    def _revoke_key(self, call: _Call) -> ManagementResponse:
        key = self._key(call)
        try:
            revoked = self._store(lambda: self.manager.revoke_key(key.id))
        except KeyNotFoundError:  # revoked and deleted in between
            _not_found("no such API key in this team")
        # Its status as of the revocation (the manager's clock read after this request's).
        at = max(call.now, revoked.revoked_at or call.now)
        return _answer(200, {"api_key": key_json(revoked, at)})

    def _rotate_key(self, call: _Call) -> ManagementResponse:
        document = _body(call.body, call.content_type, required=False)
        _fields(document, (), ("grace_period",))
        seconds = _seconds(document, "grace_period", 0, MAX_GRACE)
        grace = DEFAULT_GRACE if seconds is None else timedelta(seconds=seconds)
        key = self._key(call)
        manager = self.manager
        try:
            plaintext, new = self._store(lambda: manager.rotate_key(key.id, grace=grace))
        except KeyNotFoundError:
            _not_found("no such API key in this team")
        except InvalidExpiryError:
            _conflict(f"the key is {key.status(call.now)} and cannot be rotated")
        except NotAMemberError:
            _conflict("the key's user is no longer a member of this team: create a new key")
        call.event["new_key_id"] = new.id
        try:  # the old key's record as stored now: its expiry is the end of the grace
            old = self._find_key(key.id) or key
        except Exception:  # the rotation is made: its new key must be shown, whatever happens
            old = dataclasses.replace(key, expires_at=min(key.expires_at, call.now + grace))
        body = {
            "key": plaintext,
            "api_key": key_json(new, call.now),
            "previous_api_key": key_json(old, call.now),
        }
        return _answer(201, body)

    # -- members -------------------------------------------------------------------------------

    def _list_members(self, call: _Call) -> ManagementResponse:
        members = self._store(lambda: self.manager.list_members(team_id=call.team_id))
        return _answer(200, {"members": [member_json(member) for member in members]})

    def _add_member(self, call: _Call) -> ManagementResponse:
        document = _body(call.body, call.content_type, required=True)
        _fields(document, ("user_id",), ("role",))
        user_id = _text(document, "user_id", MAX_USER_ID)
        role = _role(document) if "role" in document else Role.MEMBER
        call.event.update(member=user_id, role=role.value)
        manager = self.manager
        if self._store(lambda: manager.get_member(team_id=call.team_id, user_id=user_id)):
            _conflict("already a member of this team: change the role with PATCH")
        if role is Role.OWNER and call.principal.role is not Role.OWNER:
            _forbidden("only an owner can make, change or remove an owner")
        member = self._store(
            lambda: manager.add_member(team_id=call.team_id, user_id=user_id, role=role)
        )
        return _answer(201, {"member": member_json(member)})

    def _update_member(self, call: _Call) -> ManagementResponse:
        document = _body(call.body, call.content_type, required=True)
        _fields(document, ("role",), ())
        role = _role(document)
        member = self._member(call)
        call.event["role"] = role.value
        self._keep_an_owner(call, member, role)
        manager = self.manager
        try:
            updated = self._store(
                lambda: manager.set_role(team_id=call.team_id, user_id=member.user_id, role=role)
            )
        except NotAMemberError:  # removed in between
            _not_found("no such member in this team")
        return _answer(200, {"member": member_json(updated)})

    def _remove_member(self, call: _Call) -> ManagementResponse:
        member = self._member(call)
        self._keep_an_owner(call, member, None)
        manager = self.manager
        try:
            self._store(lambda: manager.remove_member(team_id=call.team_id, user_id=member.user_id))
        except NotAMemberError:  # removed in between
            _not_found("no such member in this team")
        return ManagementResponse(204, _HEADERS[1:], b"")


def management_endpoint(allowed_origins: Iterable[str] = ()) -> Endpoint:
    """What protects every route of the API, for the core to decide before a handler runs: a
    dashboard session (an API key gets 403, whatever its scopes) of an owner or admin of the
    ``team_id`` in the path; for a cookie-carried ``POST``/``PUT``/``PATCH``/``DELETE``, an
    ``Origin`` (or ``Referer``) among ``allowed_origins`` or the authenticator's.

    .. versionadded:: 0.1.0
    """
    return Endpoint(
        credentials="session",
        roles=MANAGE_ROLES,
        team_param="team_id",
        allowed_origins=frozenset(allowed_origins),
    )
