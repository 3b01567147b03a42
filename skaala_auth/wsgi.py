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

from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from .authenticator import Authenticator
from .errors import AuthError
from .flow import RequestFacts
from .models import Principal
from .rules import Rule, Rules

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
    headers = error.headers()
    start_response(
        _STATUS_LINES[error.status_code],
        [*headers, ("content-length", str(len(body)))] if body else headers,
    )
    return [body]


def _stating(start_response: StartResponse, headers: list[tuple[str, str]]) -> StartResponse:
    """``start_response`` that adds the rate limit headers (unless the app set its own)."""

    def start_stated(status: str, response_headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        present = {name.lower() for name, _ in response_headers}
        added = [pair for pair in headers if pair[0] not in present]
        return start_response(status, [*response_headers, *added], *exc_info)

    return start_stated


class ApiKeyMiddleware:
    """Authenticate every request before the wrapped WSGI application sees it.

    Three outcomes: a request without credentials is anonymous (``None``) unless the rules
    require a key for it (401); a request with a bad key is refused wherever it goes (401); a
    good key becomes the :class:`~skaala_auth.Principal`, checked against the rule's scopes and
    team. Public paths are never challenged; a CORS preflight to a path the rules protect is
    answered 204 with no body (put a CORS middleware outside this one to add CORS headers),
    and never reaches the application.

    Args:
        app: the WSGI application to protect.
        authenticator: the :class:`~skaala_auth.Authenticator`.
        rules: the :class:`~skaala_auth.rules.Rules` table (or its rows, as ``Rules`` takes
            them); by default no path needs a key, but a key that is sent is still checked.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        authenticator: Authenticator,
        rules: Rules | Sequence[Rule | tuple[str, Iterable[str]]] | None = None,
    ) -> None:
        if not isinstance(authenticator, Authenticator):
            raise TypeError("ApiKeyMiddleware needs authenticator=Authenticator(store)")
        self.app = app
        self.authenticator = authenticator
        if rules is not None and not isinstance(rules, Rules):
            rules = Rules(rules)  # rows, as Flask config and Django settings accept them
        self.rules = rules

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        outcome = self.authenticator.decide(RequestFacts.from_environ(environ), self.rules)
        if isinstance(outcome, AuthError):
            return error_response(outcome, start_response)
        environ[PRINCIPAL_KEY] = outcome
        environ[MIDDLEWARE_KEY] = self
        if outcome is not None and outcome.rate_limit_state is not None:
            start_response = _stating(start_response, outcome.rate_limit_state.headers())
        return self.app(environ, start_response)

    def authenticate(self, environ: WSGIEnvironment) -> Principal | None:
        """Decide one request: its principal, or ``None`` (anonymous).

        Raises:
            AuthError: the refusal to render.
        """
        outcome = self.authenticator.decide(RequestFacts.from_environ(environ), self.rules)
        if isinstance(outcome, AuthError):
            raise outcome.raisable()
        return outcome
