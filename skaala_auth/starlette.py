"""Starlette, FastAPI and any ASGI app: :class:`ApiKeyMiddleware` and :func:`requires_scope`.

::

    app = Starlette(routes=..., middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)])

    @requires_scope("read:bookings")
    async def list_bookings(request: Request) -> JSONResponse:
        principal = request.state.principal

The middleware is a pure ASGI callable: streaming responses, websockets and lifespan pass
through untouched. Errors are rendered from the core's :class:`~skaala_auth.AuthError`
(status, headers, body bytes), never invented here.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Final, ParamSpec, TypeVar, cast

try:
    from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute, Route
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from starlette.websockets import WebSocket
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "skaala_auth.starlette needs Starlette: pip install 'skaala-auth[starlette]'"
    ) from error

from .authenticator import Authenticator
from .dashboard import Dashboard, DashboardResponse
from .errors import AuthError, MissingKeyError
from .flow import Credentials, Endpoint, PreflightAnswer, RequestFacts
from .management import (
    MAX_BODY,
    RESOURCES,
    ManagementApi,
    ManagementHook,
    Resource,
    management_endpoint,
)
from .manager import KeyManager
from .models import Principal
from .rules import Rules
from .scopes import ScopeRegistry

__all__ = [
    "ApiKeyMiddleware",
    "ApiKeyUser",
    "authorize_connection",
    "dashboard_routes",
    "management_routes",
    "requires_scope",
]

P = ParamSpec("P")
R = TypeVar("R")

_CONNECTIONS: Final = frozenset({Request, WebSocket, HTTPConnection})
#: The scope key of the middleware's outcome (a ``_Credentials``), read by the endpoint checks.
_OUTCOME: Final = "skaala_auth"
_ANONYMOUS_USER: Final = UnauthenticatedUser()

ErrorHandler = Callable[[HTTPConnection, AuthError], Response]


class ApiKeyUser(BaseUser):
    """``request.user`` for an authenticated request: Starlette's ``requires(...)`` and
    ``request.user.is_authenticated`` work with it.

    Attributes:
        principal: the :class:`~skaala_auth.Principal`.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("principal",)

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.user_id

    @property
    def identity(self) -> str:
        return self.principal.key_id or self.principal.user_id

    def __repr__(self) -> str:
        return f"ApiKeyUser({self.principal!r})"


class ApiKeyMiddleware:
    """Authenticates every HTTP request and WebSocket handshake that carries credentials.

    No credentials: anonymous (``request.state.principal`` is ``None``), unless ``rules`` say
    the path needs a key (401); ``request.user`` and ``request.auth`` are left as another
    authentication middleware set them (a session login), else anonymous. A bad key: refused
    on any path that is not public. A good key: ``request.user``, ``request.auth.scopes`` and
    ``request.state.principal`` are set, whatever another middleware set before (the key
    decides).

    Args:
        app: the ASGI app to protect.
        authenticator: the :class:`~skaala_auth.Authenticator`.
        rules: a :class:`~skaala_auth.rules.Rules` table, for services that cannot decorate
            their endpoints.
        on_error: ``(connection, error) -> Response`` to render refusals differently (HTTP
            only). By default the core's rendering is sent as it is.
        close_on_shutdown: close the authenticator (flushing ``last_used_at`` writes) when
            the app shuts down; it is opened again at the next startup.

    Refused WebSocket handshakes are closed with code 1008 (1013 when the key store is
    unavailable), with the error message as the reason.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        rules: Rules | None = None,
        on_error: ErrorHandler | None = None,
        close_on_shutdown: bool = True,
    ) -> None:
        if not isinstance(authenticator, Authenticator):
            raise TypeError("ApiKeyMiddleware needs authenticator=Authenticator(store)")
        self.app = app
        self.authenticator = authenticator
        self.rules = rules
        self.on_error = on_error
        self.close_on_shutdown = close_on_shutdown
        self._decide = authenticator.decide_async
        self._anonymous = _Credentials(self, None)
        # One request.auth per principal (the core hands out the same Principal for every
        # request of a cached key); it is immutable.
        self._identities: dict[int, _Credentials] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        outcome = await self._decide(RequestFacts.from_asgi(scope), self.rules)
        if isinstance(outcome, AuthError):
            await self._refuse(scope, receive, send, outcome)
            return
        self._set_identity(scope, outcome)
        if outcome is not None and outcome.rate_limit_state is not None and kind == "http":
            send = _stating(send, outcome.rate_limit_state.raw_headers())
        try:
            await self.app(scope, receive, send)
        except AuthError as error:
            # Raised inside the app (by @requires_scope or a FastAPI dependency): rendered the
            # same way. Had the response already started, the server refuses the second start
            # and the original error is re-raised.
            try:
                await self._refuse(scope, receive, send, error)
            except Exception:
                raise error from None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: AuthError) -> None:
        if scope["type"] == "websocket":
            code = 1013 if error.status_code >= 500 else 1008
            await send({"type": "websocket.close", "code": code, "reason": error.message})
            return
        if self.on_error is not None and not isinstance(error, PreflightAnswer):
            response = self.on_error(HTTPConnection(scope, receive), error)
            await response(scope, receive, send)
            return
        # A copy of the core's cached list: an outer middleware (GZip) may edit it in place.
        headers = list(error.raw_headers())
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": error.body_bytes()})

    def _set_identity(self, scope: Scope, principal: Principal | None) -> None:
        # The endpoint checks find this middleware's outcome under its own key, never in
        # scope["auth"], which an authentication middleware inside this one (Starlette's, for
        # a session login) replaces. That key is the scope's 22nd behind uvicorn and Starlette's
        # router: the scope grows once more (~0.1 µs, measured).
        if principal is None:
            auth = self._anonymous
            scope[_OUTCOME] = auth
            if "user" not in scope:  # else another middleware's user (a session): kept
                scope["user"], scope["auth"] = auth.user, auth
        elif principal.rate_limit_state is not None:  # one principal per request: not kept
            fresh = _Credentials(self, principal)
            scope[_OUTCOME] = scope["auth"] = fresh
            scope["user"] = fresh.user
        else:
            found = self._identities.get(id(principal))
            if found is None or found.principal is not principal:
                if len(self._identities) >= 4096:
                    self._identities.clear()
                found = self._identities[id(principal)] = _Credentials(self, principal)
            scope[_OUTCOME] = scope["auth"] = found
            scope["user"] = found.user
        # The server gives each request its own copy of the lifespan state (ASGI spec).
        state = scope.get("state")
        if state is None:
            scope["state"] = {"principal": principal}
        else:
            state["principal"] = principal

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_manage() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await run_in_threadpool(self.authenticator.open)  # after a previous shutdown
            elif message["type"] == "lifespan.shutdown" and self.close_on_shutdown:
                # Before the app's own shutdown runs: requests have drained by now, and the app
                # may close the key store, which must still take the last-used writes.
                await run_in_threadpool(self.authenticator.close)
            return message

        await self.app(scope, receive_and_manage, send)


def _stating(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that adds the rate limit headers to the response's start (unless the app set
    its own)."""

    async def send_stated(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", ())}
            added = [pair for pair in headers if pair[0] not in present]
            message = {**message, "headers": [*message.get("headers", ()), *added]}
        await send(message)

    return send_stated


class _Credentials(AuthCredentials):
    """The middleware's outcome, in ``scope["skaala_auth"]``: what the endpoint checks need
    (the principal, ``None`` for anonymous, and the middleware that found it). Also
    ``request.auth``, with the scopes as a tuple (a shared instance cannot be changed)."""

    def __init__(self, middleware: ApiKeyMiddleware, principal: Principal | None) -> None:
        scopes = () if principal is None else tuple(sorted(principal.scopes))
        self.scopes = cast(list[str], scopes)
        self.principal = principal
        self.middleware = middleware
        self.user = _ANONYMOUS_USER if principal is None else ApiKeyUser(principal)


def _credentials(scope: Scope) -> _Credentials:
    auth = scope.get(_OUTCOME)
    if type(auth) is not _Credentials:
        raise _no_middleware()
    return auth


def _no_middleware() -> RuntimeError:
    return RuntimeError(
        "skaala_auth: requires_scope / RequireScopes need ApiKeyMiddleware on the app: "
        "Middleware(ApiKeyMiddleware, authenticator=auth)"
    )


async def _guard(scope: Scope, endpoint: Endpoint) -> Principal:
    """The endpoint check behind every per-endpoint form: the core decides, on the principal
    the middleware found (or, when it found none, on the request's credentials)."""
    auth = _credentials(scope)
    facts = RequestFacts.from_asgi(scope, scope.get("path_params"))
    authenticator = auth.middleware.authenticator
    found = auth.principal
    if found is not None and found.method == "api_key":  # no credential to read, no I/O
        return _granted(scope, auth, authenticator.decide(facts, endpoint, found=found))
    # A session found by the middleware may need its role in this route's team: awaited.
    return _granted(scope, auth, await authenticator.decide_async(facts, endpoint, found=found))


def _guard_found(scope: Scope, endpoint: Endpoint) -> Principal | None:
    """:func:`_guard` without a coroutine, for the common case: the middleware found a
    principal. ``None`` when it found none (then await :func:`_guard`)."""
    auth = _credentials(scope)
    found = auth.principal
    if found is None or found.method != "api_key":
        return None  # a session may need I/O (its role in this route's team): see _guard
    # An endpoint's requirement reads the method, the headers (a preflight) and the router's
    # path parameters, never the path: these facts skip from_asgi's path work.
    facts = RequestFacts(
        scope.get("method", "GET"), "", scope["headers"], None, scope.get("path_params") or {}
    )
    outcome = auth.middleware.authenticator.decide(facts, endpoint, found=found)
    return _granted(scope, auth, outcome)


def _guard_sync(scope: Scope, endpoint: Endpoint) -> Principal:
    """:func:`_guard` for sync endpoints (which run in a worker thread)."""
    auth = _credentials(scope)
    middleware = auth.middleware
    facts = RequestFacts.from_asgi(scope, scope.get("path_params"))
    outcome = middleware.authenticator.decide(facts, endpoint, found=auth.principal)
    return _granted(scope, auth, outcome)


def _granted(scope: Scope, auth: _Credentials, outcome: Principal | AuthError | None) -> Principal:
    if isinstance(outcome, AuthError):
        raise outcome.raisable()  # rendered by the middleware (a preflight: 204, no body)
    if outcome is None:  # pragma: no cover - an Endpoint requires a key: the core never says so
        raise MissingKeyError()
    if outcome is not auth.principal or scope.get("auth") is not auth:
        # A principal found here, or request.user replaced by an authentication middleware
        # inside ours (a session): the handler sees the principal that was granted.
        auth.middleware._set_identity(scope, outcome)
    return outcome


async def authorize_connection(
    conn: HTTPConnection, scopes: tuple[str, ...] = (), team_param: str | None = "team_id"
) -> Principal:
    """The endpoint-level check behind :func:`requires_scope` and FastAPI's ``RequireScopes``.

    Uses the principal the middleware found; when there is none (no credentials, or a public
    path where credentials are not read) it authenticates the request itself. The team is the
    router-resolved ``team_param`` path parameter.

    Raises:
        AuthError: rendered by :class:`ApiKeyMiddleware` (a CORS preflight: 204, no body).
        RuntimeError: the middleware is not installed.

    .. versionadded:: 0.1.0
    """
    return await _guard(conn.scope, Endpoint(tuple(scopes), team_param))


def _scope_of(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Scope:
    """The scope of the ``Request`` or ``WebSocket`` among an endpoint's arguments."""
    for value in args:
        if type(value) in _CONNECTIONS or isinstance(value, HTTPConnection):
            return value.scope  # type: ignore[no-any-return]
    for value in kwargs.values():
        if isinstance(value, HTTPConnection):
            return value.scope
    raise TypeError(
        f"@requires_scope: {func.__qualname__} was called without a Request or WebSocket"
    )


def _is_async(func: object) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - a callable object's method
    )


def requires_scope(
    *scopes: str,
    team_param: str | None = "team_id",
    credentials: Credentials = "any",
    roles: Collection[str] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Protect an endpoint: the request needs a valid key with every one of ``scopes`` (AND),
    and, when the route has a ``team_param`` path parameter, a key of that team.

    Works on function and class-based endpoints (``HTTPEndpoint`` methods), sync and async,
    HTTP and WebSocket, in Starlette and FastAPI (the endpoint takes a ``Request`` or
    ``WebSocket`` argument). Needs :class:`ApiKeyMiddleware` on the app, which renders the
    refusals (401, 403; a WebSocket is closed with 1008).

    Args:
        scopes: the scopes the endpoint needs.
        team_param: the path parameter that carries the team id (``None``: no team check).
        credentials: ``"any"`` (an API key, or else a dashboard session when the
            authenticator verifies them), ``"api_key"`` or ``"session"`` (keys refused: 403).
        roles: the caller's role in the team must be one of these (``"owner"``, ``"admin"``,
            ``"member"``); ``None``: any role.

    .. versionadded:: 0.1.0
    """
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError("requires_scope takes scope names: requires_scope('read:x', ...)")
    endpoint = Endpoint.declare(scopes, team_param, credentials=credentials, roles=roles)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if _is_async(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_endpoint(*args: P.args, **kwargs: P.kwargs) -> Any:
                scope = _scope_of(func, args, kwargs)
                if _guard_found(scope, endpoint) is None:
                    await _guard(scope, endpoint)
                return await async_func(*args, **kwargs)

            return async_endpoint  # type: ignore[return-value]

        @functools.wraps(func)
        def endpoint_function(*args: P.args, **kwargs: P.kwargs) -> R:
            _guard_sync(_scope_of(func, args, kwargs), endpoint)
            return func(*args, **kwargs)

        return endpoint_function

    return decorate


def management_routes(
    *,
    authenticator: Authenticator,
    manager: KeyManager,
    allowed_origins: Iterable[str] = (),
    prefix: str = "/api/v1",
    audit: ManagementHook | None = None,
) -> list[Route]:
    """The key-management API (:mod:`skaala_auth.management`) as Starlette routes, for
    ``Starlette(routes=[*management_routes(...), ...])`` or a FastAPI app's
    ``app.router.routes.extend(...)``.

    Every request is decided by the core first: a dashboard session of an owner or admin of the
    team in the path (an API key gets 403 whatever its scopes); a cookie-carried ``POST``,
    ``PATCH`` or ``DELETE`` needs an ``Origin`` (or ``Referer``) in ``allowed_origins`` (or the
    authenticator's). The handlers run in a worker thread: the manager's store I/O never blocks
    the event loop. :class:`ApiKeyMiddleware` is not needed, and does not get in the way.

    Args:
        authenticator: the :class:`~skaala_auth.Authenticator`, with a session verifier.
        manager: the :class:`~skaala_auth.KeyManager` that makes the changes.
        allowed_origins: origins (``https://dashboard.example.com``) allowed to send
            cookie-authenticated changes, besides the authenticator's.
        prefix: the path the API is mounted under.
        audit: called with each :class:`~skaala_auth.management.ManagementEvent`.

    .. versionadded:: 0.1.0
    """
    api = ManagementApi(manager, audit=audit)
    endpoint = management_endpoint(allowed_origins)
    prefix = prefix.rstrip("/")
    return [
        Route(
            prefix + resource.path_as("starlette"),
            _ManagementEndpoint(api, authenticator, endpoint, resource),
            name=f"skaala_auth_{resource.name}",
        )
        for resource in RESOURCES
    ]


class _ManagementEndpoint:
    """One resource of the management API, an ASGI app for every method (the layer answers a
    method the path does not serve with its JSON 405, as in every framework)."""

    def __init__(
        self,
        api: ManagementApi,
        authenticator: Authenticator,
        endpoint: Endpoint,
        resource: Resource,
    ) -> None:
        self.api = api
        self.authenticator = authenticator
        self.endpoint = endpoint
        self.resource = resource

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        params = request.path_params
        outcome = await self.authenticator.decide_async(
            RequestFacts.from_asgi(scope, params), self.endpoint
        )
        if not isinstance(outcome, Principal):
            error = outcome if isinstance(outcome, AuthError) else MissingKeyError()
            headers = list(error.raw_headers())  # a copy: an outer middleware may edit it
            await send(
                {"type": "http.response.start", "status": error.status_code, "headers": headers}
            )
            await send({"type": "http.response.body", "body": error.body_bytes()})
            return
        body = b""
        async for chunk in request.stream():  # at most one byte past the limit is kept
            body += chunk
            if len(body) > MAX_BODY:
                break
        response = await run_in_threadpool(
            functools.partial(
                self.api.handle,
                self.resource,
                method=request.method,
                principal=outcome,
                path_params=params,
                body=body,
                content_type=request.headers.get("content-type"),
            )
        )
        raw = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
        ]
        if response.status != 204:
            raw.append((b"content-length", str(len(response.body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": response.body})


def dashboard_routes(
    *,
    path: str = "/dashboard",
    api_prefix: str = "/api/v1",
    scopes: ScopeRegistry | Mapping[str, str] | None = None,
    sign_in_url: str | None = None,
    notice: str | None = None,
) -> list[BaseRoute]:
    """The key-management page (:mod:`skaala_auth.dashboard`) as Starlette routes, beside
    :func:`management_routes`: ``Starlette(routes=[*management_routes(...),
    *dashboard_routes()])``.

    The page is ``GET path`` (and ``path/``), for ``?team=<team id>``; its files are under
    ``path/static/``. It is public (it holds no data): what it shows comes from the management
    API, which decides every call. Behind :class:`ApiKeyMiddleware` with a rules table that
    denies by default, list ``path`` and ``path/*`` as public.

    Args:
        path: where the page is served.
        api_prefix: where :func:`management_routes` is mounted (its ``prefix``).
        scopes: the scopes offered for a new key (default: the documented set).
        sign_in_url: where the page sends a visitor who is not signed in.
        notice: a line shown in a banner at the top of the page.

    .. versionadded:: 0.1.0
    """
    dashboard = Dashboard(
        api_prefix=api_prefix, scopes=scopes, sign_in_url=sign_in_url, notice=notice
    )
    path = path.rstrip("/")

    async def page(request: Request) -> Response:
        return _dashboard_response(dashboard.page(request.method, request.url.path))

    async def asset(request: Request) -> Response:
        return _dashboard_response(dashboard.asset(request.method, request.path_params["name"]))

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]  # the page answers 405 itself
    return [
        Route(path or "/", page, methods=methods, name="skaala_auth_dashboard"),
        *([Route(path + "/", page, methods=methods)] if path else []),
        Route(path + "/static/{name}", asset, methods=methods, name="skaala_auth_dashboard_file"),
    ]


def _dashboard_response(answer: DashboardResponse) -> Response:
    response = Response(answer.body, status_code=answer.status)
    del response.headers["content-length"]
    response.raw_headers.extend(
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers
    )
    return response
