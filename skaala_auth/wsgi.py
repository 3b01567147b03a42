"""Plain WSGI: :class:`ApiKeyMiddleware` protects any WSGI application (Falcon, Bottle, Pyramid,
legacy code) with a rules table.

::

    from skaala_auth import Authenticator, SQLiteKeyStore
    from skaala_auth.rules import Rules
    from skaala_auth.wsgi import ApiKeyMiddleware

    auth = Authenticator(SQLiteKeyStore("keys.db"))
    application = ApiKeyMiddleware(
        application,
        authenticator=auth,
        rules=Rules([("/teams/{team_id}/bookings", ["read:bookings"])], public=["/health"]),
    )

The principal (or ``None`` for an anonymous request) is in ``environ["skaala_auth.principal"]``.
Refusals are answered here, with the contract's status, headers and JSON body; the wrapped
application never runs for them.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

try:
    from werkzeug.datastructures import EnvironHeaders
    from werkzeug.wsgi import get_path_info
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("skaala_auth.wsgi needs Werkzeug: pip install 'skaala-auth[wsgi]'") from error

from .authenticator import Authenticator
from .credentials import environ_headers
from .errors import AuthError
from .models import Principal
from .rules import OPTIONAL, Requirement, Rules

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["MIDDLEWARE_KEY", "PRINCIPAL_KEY", "ApiKeyMiddleware", "error_response"]

#: The environ key that holds the request's :class:`~skaala_auth.Principal` (or ``None``).
PRINCIPAL_KEY: Final = "skaala_auth.principal"
#: The environ key that holds the :class:`ApiKeyMiddleware` that decided the request.
MIDDLEWARE_KEY: Final = "skaala_auth.middleware"

_STATUS_LINES: Final = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def error_response(error: AuthError, start_response: StartResponse) -> Iterable[bytes]:
    """Answer a refusal, as a WSGI application would: the contract's status, headers and body.

    .. versionadded:: 0.1.0
    """
    body = error.body_bytes()
    start_response(
        _STATUS_LINES[error.status_code],
        [*error.headers(), ("content-length", str(len(body)))],
    )
    return [body]


class ApiKeyMiddleware:
    """Authenticate every request before the wrapped WSGI application sees it.

    Three outcomes: a request without credentials is anonymous (``None``) unless the rules
    require a key for it (401); a request with a bad key is refused wherever it goes (401); a
    good key becomes the :class:`~skaala_auth.Principal`, checked against the rule's scopes and
    team. Public paths and CORS preflights are never challenged.

    Args:
        app: the WSGI application to protect.
        authenticator: the :class:`~skaala_auth.Authenticator`.
        rules: the :class:`~skaala_auth.rules.Rules` table; by default no path needs a key, but
            a key that is sent is still checked.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, app: WSGIApplication, *, authenticator: Authenticator, rules: Rules | None = None
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.rules = rules if rules is not None else Rules()
        # Without rules every request is optional (but for CORS preflights): skip the matching.
        self._no_rules = not (self.rules.rules or self.rules.public or self.rules.protect)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        outcome = self._check(environ)
        if isinstance(outcome, AuthError):
            return error_response(outcome, start_response)
        environ[PRINCIPAL_KEY] = outcome
        environ[MIDDLEWARE_KEY] = self
        return self.app(environ, start_response)

    def _check(self, environ: WSGIEnvironment) -> Principal | AuthError | None:
        """Decide one request without raising: its principal, ``None`` (anonymous), or the
        :class:`AuthError` to render (possibly a shared instance: render it, never raise it)."""
        requirement = self._requirement(environ)
        if requirement.public:
            return None
        return self.authenticator.check_request(
            environ_headers(environ),
            required_scopes=requirement.scopes,
            team_id=requirement.team_id,
            query_string=environ.get("QUERY_STRING"),
            required=requirement.required,
        )

    def authenticate(self, environ: WSGIEnvironment) -> Principal | None:
        """Decide one request: its principal, or ``None`` (anonymous).

        Raises:
            AuthError: the refusal to render.
        """
        outcome = self._check(environ)
        if isinstance(outcome, AuthError):
            raise outcome.raisable()
        return outcome

    def _requirement(self, environ: WSGIEnvironment) -> Requirement:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":  # headers are only consulted for CORS preflights
            headers = dict(EnvironHeaders(environ))
            return self.rules.match(method, get_path_info(environ), headers)
        if self._no_rules:
            return OPTIONAL
        return self.rules.match(method, get_path_info(environ))
