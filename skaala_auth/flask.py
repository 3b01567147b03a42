"""Flask: the :class:`SkaalaAuth` extension and the :func:`requires_scope` decorator.

::

    from flask import Flask, g
    from skaala_auth.flask import SkaalaAuth, requires_scope

    app = Flask(__name__)
    SkaalaAuth(app, authenticator=auth)   # or SkaalaAuth() + init_app(app), or app.config

    @app.get("/teams/<team_id>/bookings")
    @requires_scope("read:bookings")
    def bookings(team_id: str):
        return {"team": g.principal.team_id}

The extension wraps ``app.wsgi_app`` with :class:`skaala_auth.wsgi.ApiKeyMiddleware` (Flask is a
WSGI application, and this module is built on that one): a bad key is answered before Flask
builds a request, and every view sees ``flask.g.principal`` (``None`` when anonymous). Refusals
are returned as responses, never raised, so the app's own error handlers cannot reshape them.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar, cast

try:
    from flask import Blueprint, Flask, Request, current_app, has_request_context, request
    from flask.ctx import _AppCtxGlobals
    from flask.typing import ResponseReturnValue
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("skaala_auth.flask needs Flask: pip install 'skaala-auth[flask]'") from error

from .authenticator import Authenticator
from .config import RULE_SETTINGS, authenticator_from_settings, rules_from_settings
from .dashboard import Dashboard, DashboardResponse
from .errors import AuthError, MissingKeyError
from .flow import Credentials, Endpoint, RequestFacts
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
from .wsgi import MIDDLEWARE_KEY, PRINCIPAL_KEY, ApiKeyMiddleware

__all__ = ["SkaalaAuth", "dashboard_blueprint", "management_blueprint", "requires_scope"]

T = TypeVar("T")  # a view function, a Blueprint or a Flask app
_EXTENSION = "skaala_auth"
#: The request behind Flask's ``request`` proxy (werkzeug's ``LocalProxy._get_current_object``).
_current_request: Callable[[], Request] = request._get_current_object  # type: ignore[attr-defined]


class SkaalaAuth:
    """The Flask extension.

    Args:
        app: the application, or ``None`` to call :meth:`init_app` later (application factory).
        authenticator: the :class:`~skaala_auth.Authenticator`. Without one, each application
            builds its own from its config: ``SKAALA_AUTH_DB`` (SQLite path) or
            ``SKAALA_AUTH_DSN``, plus any of :data:`skaala_auth.config.AUTHENTICATOR_SETTINGS`
            with the ``SKAALA_AUTH_`` prefix (``SKAALA_AUTH_PEPPER``, ``SKAALA_AUTH_CACHE_TTL``,
            …); a misspelt ``SKAALA_AUTH_*`` name is an error.
        rules: a :class:`~skaala_auth.rules.Rules` table for paths that no decorator protects;
            default from ``SKAALA_AUTH_RULES`` (a ``Rules``, or rows) with ``SKAALA_AUTH_PUBLIC``
            and ``SKAALA_AUTH_PROTECT``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        authenticator: Authenticator | None = None,
        rules: Rules | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._rules = rules
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the extension on ``app``: state in ``app.extensions["skaala_auth"]``."""
        if _EXTENSION in app.extensions:
            raise RuntimeError("SkaalaAuth is already installed on this app")
        settings = {
            name.removeprefix("SKAALA_AUTH_"): value
            for name, value in app.config.items()
            if name.startswith("SKAALA_AUTH_")
        }
        authenticator = self._authenticator
        if authenticator is None:
            if "DB" not in settings and "DSN" not in settings:
                raise RuntimeError(
                    "SkaalaAuth needs authenticator=Authenticator(store), SKAALA_AUTH_DB or "
                    "SKAALA_AUTH_DSN"
                )
            authenticator = authenticator_from_settings(settings, ignore=RULE_SETTINGS)
        rules = self._rules if self._rules is not None else rules_from_settings(settings)
        app.extensions[_EXTENSION] = authenticator
        app.wsgi_app = ApiKeyMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, authenticator=authenticator, rules=rules
        )
        if not issubclass(app.app_ctx_globals_class, _Globals):
            globals_class = type("SkaalaAuthGlobals", (_Globals, app.app_ctx_globals_class), {})
            app.app_ctx_globals_class = cast("type[_AppCtxGlobals]", globals_class)


class _Globals:
    """Mixed into the app's ``g`` class: ``g.principal`` reads the request's principal where
    the middleware left it (no per-request hook to pay for). Assigning ``g.principal`` works
    as for any attribute of ``g``."""

    def __getattr__(self, name: str) -> Any:
        if name == "principal":
            return request.environ.get(PRINCIPAL_KEY) if has_request_context() else None
        return super().__getattr__(name)  # type: ignore[misc]


def requires_scope(
    *scopes: str,
    team_param: str | None = "team_id",
    credentials: Credentials = "any",
    roles: Collection[str] | None = None,
) -> Callable[[T], T]:
    """Require a valid key with every one of ``scopes`` (AND) for a view, or for every view of a
    blueprint (``requires_scope("read:bookings")(blueprint)``).

    The team is the ``team_param`` view argument, when the route has one: it must be the key's
    team (``team_param=None``: no team check; a view argument whose name contains ``team`` but
    is not ``team_param`` is refused and logged, never ignored). A CORS preflight to the view
    is answered 204 with no body; the view never runs for it. On success ``flask.g.principal``
    is the principal.

    Args:
        scopes: the scopes the view needs (AND).
        team_param: the view argument that carries the team id (``None``: no team check).
        credentials: ``"any"`` (an API key, or else a dashboard session when the
            authenticator verifies them), ``"api_key"`` or ``"session"`` (keys refused: 403).
        roles: the caller's role in the team must be one of these (``"owner"``, ``"admin"``,
            ``"member"``); ``None``: any role.

    .. versionadded:: 0.1.0
    """
    endpoint = Endpoint.declare(scopes, team_param, credentials=credentials, roles=roles)

    def decorate(target: T) -> T:
        if isinstance(target, Flask | Blueprint):
            target.before_request(lambda: _check(endpoint, request.view_args))
            return target
        function = cast(Callable[..., Any], target)
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_view(*args: Any, **kwargs: Any) -> ResponseReturnValue:
                refusal = _check(endpoint, kwargs)
                return refusal if refusal is not None else await function(*args, **kwargs)

            return cast(T, async_view)

        @functools.wraps(function)
        def view(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            refusal = _check(endpoint, kwargs)
            return refusal if refusal is not None else function(*args, **kwargs)

        return cast(T, view)

    return decorate


def _check(endpoint: Endpoint, view_args: dict[str, Any] | None) -> ResponseReturnValue | None:
    """``None`` when the request may go on, else the answer to send (the core decides)."""
    # The request itself, then its environ: 0.3 µs inside a Flask request, where
    # ``request.environ`` through the proxy's __getattr__ measured 1.2 µs.
    environ = _current_request().environ
    middleware = environ.get(MIDDLEWARE_KEY)
    if middleware is not None:
        authenticator = middleware.authenticator
    else:  # called without the middleware (a test request context, another WSGI server path)
        authenticator = current_app.extensions.get(_EXTENSION)
        if authenticator is None:
            raise RuntimeError("@requires_scope needs the SkaalaAuth extension on this app")
    found = environ.get(PRINCIPAL_KEY)
    method = environ.get("REQUEST_METHOD")
    if found is not None and (method == "GET" or method == "POST") and found.method == "api_key":
        # The middleware's key principal against this view: for these methods the requirement
        # reads only the view arguments (no preflight, no path), so no headers are gathered.
        # (A session may be decided afresh for this view's team, from its cookies.)
        facts = RequestFacts(method, "", (), None, view_args or {})
    else:
        facts = RequestFacts.from_environ(environ, view_args or {})
    outcome = authenticator.decide(facts, endpoint, found=found)
    if isinstance(outcome, AuthError):
        return current_app.response_class(
            outcome.body_bytes(), status=outcome.status_code, headers=outcome.headers()
        )
    environ[PRINCIPAL_KEY] = outcome
    return None


#: Every method goes to the management views: the layer answers one a path does not serve
#: with its JSON 405, and the core answers a CORS preflight (Flask's automatic OPTIONS is off).
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def management_blueprint(
    *,
    authenticator: Authenticator,
    manager: KeyManager,
    allowed_origins: Iterable[str] = (),
    url_prefix: str = "/api/v1",
    name: str = "skaala_auth_management",
    audit: ManagementHook | None = None,
) -> Blueprint:
    """The key-management API (:mod:`skaala_auth.management`) as a blueprint:
    ``app.register_blueprint(management_blueprint(...))``.

    Every request is decided by the core first: a dashboard session of an owner or admin of the
    team in the path (an API key gets 403 whatever its scopes); a cookie-carried ``POST``,
    ``PATCH`` or ``DELETE`` needs an ``Origin`` (or ``Referer``) in ``allowed_origins`` (or the
    authenticator's). The :class:`SkaalaAuth` extension is not needed, and does not get in the
    way.

    Args:
        authenticator: the :class:`~skaala_auth.Authenticator`, with a session verifier.
        manager: the :class:`~skaala_auth.KeyManager` that makes the changes.
        allowed_origins: origins allowed to send cookie-authenticated changes, besides the
            authenticator's.
        url_prefix: the path the API is mounted under.
        name: the blueprint's name.
        audit: called with each :class:`~skaala_auth.management.ManagementEvent`.

    .. versionadded:: 0.1.0
    """
    api = ManagementApi(manager, audit=audit)
    endpoint = management_endpoint(allowed_origins)
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix.rstrip("/") or None)
    for resource in RESOURCES:
        blueprint.add_url_rule(
            resource.path_as("flask"),
            endpoint=resource.name,
            view_func=_management_view(api, authenticator, endpoint, resource),
            methods=_ALL_METHODS,
            provide_automatic_options=False,
        )
    return blueprint


def _management_view(
    api: ManagementApi, authenticator: Authenticator, endpoint: Endpoint, resource: Resource
) -> Callable[..., ResponseReturnValue]:
    def view(**params: Any) -> ResponseReturnValue:
        current = _current_request()
        outcome = authenticator.decide(RequestFacts.from_environ(current.environ, params), endpoint)
        if not isinstance(outcome, Principal):
            error = outcome if isinstance(outcome, AuthError) else MissingKeyError()
            return current_app.response_class(
                error.body_bytes(), status=error.status_code, headers=error.headers()
            )
        body = b""
        while len(body) <= MAX_BODY:  # at most one byte past the limit is read
            chunk = current.stream.read(MAX_BODY + 1 - len(body))
            if not chunk:
                break
            body += chunk
        response = api.handle(
            resource,
            method=current.method,
            principal=outcome,
            path_params=params,
            body=body,
            content_type=current.headers.get("Content-Type"),
        )
        answer = current_app.response_class(
            response.body, status=response.status, headers=list(response.headers)
        )
        if response.status == 204:
            answer.headers.remove("Content-Type")  # Flask's default, for a response with no body
        return answer

    view.__name__ = f"skaala_auth_{resource.name}"
    return view


def dashboard_blueprint(
    *,
    url_prefix: str = "/dashboard",
    api_prefix: str = "/api/v1",
    name: str = "skaala_auth_dashboard",
    scopes: ScopeRegistry | Mapping[str, str] | None = None,
    sign_in_url: str | None = None,
    notice: str | None = None,
) -> Blueprint:
    """The key-management page (:mod:`skaala_auth.dashboard`) as a blueprint, beside
    :func:`management_blueprint`: ``app.register_blueprint(dashboard_blueprint())``.

    The page is ``GET url_prefix`` (and ``url_prefix/``), for ``?team=<team id>``; its files
    are under ``url_prefix/static/``. It holds no data: the management API decides every call
    the page makes.

    Args:
        url_prefix: where the page is served.
        api_prefix: where :func:`management_blueprint` is mounted (its ``url_prefix``).
        name: the blueprint's name.
        scopes: the scopes offered for a new key (default: the documented set).
        sign_in_url: where the page sends a visitor who is not signed in.
        notice: a line shown in a banner at the top of the page.

    .. versionadded:: 0.1.0
    """
    dashboard = Dashboard(
        api_prefix=api_prefix, scopes=scopes, sign_in_url=sign_in_url, notice=notice
    )
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix.rstrip("/") or None)

    # HEAD is answered as GET: werkzeug leaves the body out of a HEAD answer by itself, and
    # keeps its Content-Length.
    def page() -> ResponseReturnValue:
        current = _current_request()
        method = "GET" if current.method == "HEAD" else current.method
        return _dashboard_response(dashboard.page(method, current.path))

    def asset(name: str) -> ResponseReturnValue:
        current = _current_request()
        method = "GET" if current.method == "HEAD" else current.method
        return _dashboard_response(dashboard.asset(method, name))

    for rule in ("", "/") if url_prefix.strip("/") else ("/",):
        blueprint.add_url_rule(
            rule, endpoint="page" if rule else "page_bare", view_func=page,
            methods=_ALL_METHODS, provide_automatic_options=False, strict_slashes=True,
        )  # fmt: skip
    blueprint.add_url_rule(
        "/static/<name>", endpoint="file", view_func=asset, methods=_ALL_METHODS,
        provide_automatic_options=False,
    )  # fmt: skip
    return blueprint


def _dashboard_response(answer: DashboardResponse) -> ResponseReturnValue:
    headers = list(answer.headers)
    return current_app.response_class(answer.body, status=answer.status, headers=headers)
