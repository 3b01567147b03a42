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
from collections.abc import Callable, Collection
from typing import Any, TypeVar, cast

try:
    from flask import Blueprint, Flask, Request, current_app, has_request_context, request
    from flask.ctx import _AppCtxGlobals
    from flask.typing import ResponseReturnValue
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("skaala_auth.flask needs Flask: pip install 'skaala-auth[flask]'") from error

from .authenticator import Authenticator
from .config import RULE_SETTINGS, authenticator_from_settings, rules_from_settings
from .errors import AuthError
from .flow import Credentials, Endpoint, RequestFacts
from .rules import Rules
from .wsgi import MIDDLEWARE_KEY, PRINCIPAL_KEY, ApiKeyMiddleware

__all__ = ["SkaalaAuth", "requires_scope"]

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
    endpoint = Endpoint(
        tuple(scopes),
        team_param,
        credentials=credentials,
        roles=None if roles is None else frozenset(roles),
    )

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
