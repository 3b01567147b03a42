"""Authentication and authorisation errors, each carrying its own HTTP rendering.

Adapters never branch on the class of an error: they send ``status_code``, ``headers()`` and
``body_bytes()``. That is what keeps the HTTP contract identical across frameworks.

::

    AuthError                              (never raised itself)
    ├── InvalidRequestError         400  invalid_request      several credentials, empty bearer,
    │                                                          key in the query string
    ├── MissingKeyError             401  unauthorized         "Missing API key"
    ├── InvalidKeyError             401  unauthorized         "Invalid API key" — reason: malformed,
    │                                                          unknown, expired, revoked, disabled,
    │                                                          test_key
    ├── InvalidSessionError         401  unauthorized         "Invalid session" — a refused
    │                                                          dashboard session (Stack Auth)
    ├── MissingSessionError         401  unauthorized         "Missing session" (session-only
    │                                                          endpoints)
    ├── ForbiddenError              403  forbidden
    │   ├── InsufficientScopeError                            "Insufficient scopes"
    │   ├── TeamMismatchError                                 key of another team
    │   ├── MembershipRevokedError                            key's user left the team
    │   ├── NotTeamMemberError                                session user not in the path's team
    │   ├── RoleRequiredError                                 role not allowed (owner/admin only)
    │   ├── SessionRequiredError                              an API key on a session-only endpoint
    │   ├── IpNotAllowedError                                 a key used from outside its
    │   │                                                      IP allow-list
    │   └── OriginRejectedError                               CSRF: a cookie-authenticated unsafe
    │                                                          request from another origin
    ├── RateLimitedError            429  rate_limited
    │   └── UsageLimitExceededError                           a key's usage limit is used up
    └── ServiceUnavailableError     503  service_unavailable
        ├── StoreUnavailableError                             the key store failed or timed out
        └── JwksUnavailableError                              the session signing keys (JWKS)
                                                              could not be fetched

    KeyManagementError                     (management API, not HTTP)
    ├── KeyNotFoundError            also a LookupError
    ├── NotAMemberError             also a ValueError
    ├── UnknownScopeError           also a ValueError
    ├── InvalidExpiryError          also a ValueError
    └── InvalidBatchError           also a ValueError: items of a bulk creation, none created

    ConfigurationError                     a ValueError: a setting that cannot be used as given

The public message never says *why* a key was refused; :attr:`AuthError.reason` does, for the
audit log only.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import ClassVar, Final

__all__ = [
    "AuthError",
    "ConfigurationError",
    "ForbiddenError",
    "InsufficientScopeError",
    "InvalidBatchError",
    "InvalidExpiryError",
    "InvalidKeyError",
    "InvalidRequestError",
    "InvalidSessionError",
    "IpNotAllowedError",
    "JwksUnavailableError",
    "KeyManagementError",
    "KeyNotFoundError",
    "MembershipRevokedError",
    "MissingKeyError",
    "MissingSessionError",
    "NotTeamMemberError",
    "OriginRejectedError",
    "RoleRequiredError",
    "SessionRequiredError",
    "NotAMemberError",
    "RateLimitedError",
    "RateLimiterUnavailableError",
    "Reason",
    "ServiceUnavailableError",
    "StoreUnavailableError",
    "TeamMismatchError",
    "UnknownScopeError",
    "UsageLimitExceededError",
]

REALM: Final = "api"
_JSON: Final = ("content-type", "application/json")
_NO_STORE: Final = ("cache-control", "no-store")
# An error body is JSON: no browser may sniff it into HTML or script.
_NO_SNIFF: Final = ("x-content-type-options", "nosniff")


class Reason(StrEnum):
    """Why an authentication failed. Goes to the audit log and metrics, never to the client.

    .. versionadded:: 0.1.0
    """

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    #: The key is disabled (:meth:`~skaala_auth.KeyManager.disable_key`): reversible.
    DISABLED = "disabled"
    TEST_KEY = "test_key"
    TEAM_MISMATCH = "team_mismatch"
    MEMBERSHIP_REVOKED = "membership_revoked"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    INVALID_REQUEST = "invalid_request"
    RATE_LIMITED = "rate_limited"
    #: The key's usage limit (``remaining``) is used up.
    USAGE_EXHAUSTED = "usage_exhausted"
    #: The client address is outside the key's IP allow-list.
    IP_NOT_ALLOWED = "ip_not_allowed"
    STORE_UNAVAILABLE = "store_unavailable"
    #: The rate limiter raised something other than a refusal (its backend is down).
    LIMITER_UNAVAILABLE = "limiter_unavailable"
    # Dashboard sessions (skaala_auth.session). MALFORMED and EXPIRED serve them too.
    #: The token is not valid yet (``nbf`` or ``iat`` in the future, past the leeway).
    NOT_YET_VALID = "not_yet_valid"
    #: The token's ``alg`` is not ES256 (``none``, HMAC, …).
    DISALLOWED_ALGORITHM = "disallowed_algorithm"
    #: No key of the JWKS has the token's ``kid``.
    UNKNOWN_SIGNING_KEY = "unknown_signing_key"
    #: The signature does not verify (a tampered header or payload, another key).
    BAD_SIGNATURE = "bad_signature"
    #: ``aud`` is not the project (or an audience this verifier does not accept).
    WRONG_AUDIENCE = "wrong_audience"
    #: ``iss`` is not in the configured list.
    WRONG_ISSUER = "wrong_issuer"
    #: An anonymous (or restricted) Stack Auth user, not accepted by this verifier.
    ANONYMOUS = "anonymous"
    #: The SDK's access cookie does not belong to its refresh cookie.
    SESSION_MISMATCH = "session_mismatch"
    #: The JWKS could not be fetched: sessions fail closed (503).
    JWKS_UNAVAILABLE = "jwks_unavailable"
    #: A session user who is not a member of the team in the path.
    NOT_A_MEMBER = "not_a_member"
    #: A role the endpoint does not allow (key management: owners and admins).
    ROLE = "role"
    #: An API key (or no session) on an endpoint that takes dashboard sessions only.
    SESSION_REQUIRED = "session_required"
    #: A cookie-authenticated unsafe request without an allowed ``Origin``/``Referer`` (CSRF).
    ORIGIN = "origin"


@functools.lru_cache(maxsize=128)
def _json(error: str, message: str) -> bytes:
    # Cached: there are a handful of (error, message) pairs, and refusals come in floods.
    return json.dumps({"error": error, "message": message}, separators=(",", ":")).encode()


class AuthError(Exception):
    """Base of every error that becomes an HTTP answer. Never raised itself.

    Attributes:
        status_code: the HTTP status.
        error: the ``error`` field of the JSON body.
        message: the ``message`` field of the JSON body (public, safe to show).
        reason: the internal reason, for the audit log.

    .. versionadded:: 0.1.0
    """

    status_code: ClassVar[int]
    error: ClassVar[str]
    #: Class-level defaults, overridden per instance only when given: creating an error is on
    #: the refusal path, which must stay cheap (junk keys are refused in bulk).
    message: str
    reason: Reason
    _raw_headers: tuple[tuple[bytes, bytes], ...] | None = None
    #: True for the few refusals :meth:`Authenticator.check` hands out to every caller.
    shared: bool = False

    def __init__(self, message: str | None = None, *, reason: Reason | None = None) -> None:
        if message is not None:
            self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message

    @property
    def body(self) -> dict[str, object]:
        """The JSON body, as a dict."""
        return {"error": self.error, "message": self.message}

    def body_bytes(self) -> bytes:
        """The JSON body, encoded: the exact bytes every adapter sends."""
        return _json(self.error, self.message)

    def www_authenticate(self) -> str | None:
        """The ``WWW-Authenticate`` value, or ``None`` when this error sends none."""
        return None

    def headers(self) -> list[tuple[str, str]]:
        """Every header of the response (lower-case names), ``content-length`` aside."""
        headers = [_JSON, _NO_STORE, _NO_SNIFF]
        challenge = self.www_authenticate()
        if challenge is not None:
            headers.append(("www-authenticate", challenge))
        return headers

    def raisable(self) -> AuthError:
        """This error, ready to ``raise``: a fresh copy when it is a shared refusal (a raised
        exception keeps a traceback and a context that threads must not share).

        .. versionadded:: 0.1.0
        """
        return type(self)(reason=self.reason) if self.shared else self

    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """:meth:`headers` plus ``content-length``, latin-1 encoded: what an ASGI server sends.
        Computed once per error object (shared refusals are rendered once per process), and
        a tuple, so that nothing downstream can edit a rendering other requests share — ASGI
        wants a list: send ``list(error.raw_headers())``.

        .. versionadded:: 0.1.0
        """
        raw = self._raw_headers
        if raw is None:
            body = self.body_bytes()
            raw = self._raw_headers = (
                *((name.encode(), value.encode("latin-1")) for name, value in self.headers()),
                (b"content-length", str(len(body)).encode()),
            )
        return raw

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason.value!r})"


class InvalidRequestError(AuthError):
    """400: the request is ambiguous or unsafe (two credentials, an empty bearer, a key in the
    query string). Nothing is looked up.

    .. versionadded:: 0.1.0
    """

    status_code = 400
    error = "invalid_request"
    message = "Invalid authentication request"
    reason = Reason.INVALID_REQUEST

    def www_authenticate(self) -> str:
        return f'Bearer realm="{REALM}", error="invalid_request"'


class MissingKeyError(AuthError):
    """401: a protected endpoint was called without credentials.

    .. versionadded:: 0.1.0
    """

    status_code = 401
    error = "unauthorized"
    message = "Missing API key"
    reason = Reason.MISSING

    def www_authenticate(self) -> str:
        return f'Bearer realm="{REALM}"'


_INVALID_KEY_BODY: Final = _json("unauthorized", "Invalid API key")


class InvalidKeyError(AuthError):
    """401: the key is malformed, unknown, expired or revoked. The answer is byte-identical in
    every case; only :attr:`reason` tells them apart.

    .. versionadded:: 0.1.0
    """

    status_code = 401
    error = "unauthorized"
    message = "Invalid API key"
    reason = Reason.UNKNOWN

    def __init__(self, *, reason: Reason = Reason.UNKNOWN) -> None:
        self.reason = reason

    def body_bytes(self) -> bytes:
        return _INVALID_KEY_BODY

    def www_authenticate(self) -> str:
        return f'Bearer realm="{REALM}", error="invalid_token"'


_INVALID_SESSION_BODY: Final = _json("unauthorized", "Invalid session")


class InvalidSessionError(AuthError):
    """401: a dashboard session token (Stack Auth) was presented and refused — malformed,
    expired, not yet valid, signed by an unknown key or with another algorithm, tampered, for
    another audience or issuer, an anonymous user, or an SDK cookie pair that does not match.
    The answer is byte-identical in every case; only :attr:`reason` tells them apart.

    .. versionadded:: 0.1.0
    """

    status_code = 401
    error = "unauthorized"
    message = "Invalid session"
    reason = Reason.MALFORMED

    def __init__(self, *, reason: Reason = Reason.MALFORMED) -> None:
        self.reason = reason

    def body_bytes(self) -> bytes:
        return _INVALID_SESSION_BODY

    def www_authenticate(self) -> str:
        return f'Bearer realm="{REALM}", error="invalid_token"'


class MissingSessionError(AuthError):
    """401: an endpoint that takes dashboard sessions only was called without one.

    .. versionadded:: 0.1.0
    """

    status_code = 401
    error = "unauthorized"
    message = "Missing session: sign in to the dashboard"
    reason = Reason.MISSING

    def www_authenticate(self) -> str:
        return f'Bearer realm="{REALM}"'


class ForbiddenError(AuthError):
    """403: the caller is authenticated but may not do this.

    .. versionadded:: 0.1.0
    """

    status_code = 403
    error = "forbidden"
    message = "Forbidden"
    reason = Reason.INSUFFICIENT_SCOPE


class InsufficientScopeError(ForbiddenError):
    """403: the key lacks at least one required scope.

    Args:
        required: the scopes the endpoint requires (sent in the challenge's ``scope``).

    .. versionadded:: 0.1.0
    """

    message = "Insufficient scopes"
    reason = Reason.INSUFFICIENT_SCOPE

    def __init__(self, required: Iterable[str] = ()) -> None:
        self.required = tuple(sorted(set(required)))

    def www_authenticate(self) -> str:
        scope = " ".join(self.required)
        return f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'


class TeamMismatchError(ForbiddenError):
    """403: the team in the path is not the key's team.

    .. versionadded:: 0.1.0
    """

    message = "API key does not belong to this team"
    reason = Reason.TEAM_MISMATCH


class MembershipRevokedError(ForbiddenError):
    """403: the key's user is no longer a member of the key's team.

    .. versionadded:: 0.1.0
    """

    message = "User is not a member of this team"
    reason = Reason.MEMBERSHIP_REVOKED


class NotTeamMemberError(ForbiddenError):
    """403: the session's user is not a member of the team in the path.

    .. versionadded:: 0.1.0
    """

    message = "You are not a member of this team: check the team id in the URL"
    reason = Reason.NOT_A_MEMBER


_ROLE_NAMES: Final = {"owner": "owners", "admin": "admins", "member": "members"}


class RoleRequiredError(ForbiddenError):
    """403: the caller's role in the team is not one the endpoint allows.

    Args:
        roles: the roles the endpoint allows (named in the message).

    .. versionadded:: 0.1.0
    """

    message = "Your role in this team does not allow this"
    reason = Reason.ROLE

    def __init__(self, roles: Iterable[str] = ()) -> None:
        order = [role for role in ("owner", "admin", "member") if role in set(roles)]
        if order:
            names = [
                f"team {_ROLE_NAMES[role]}" if i == 0 else _ROLE_NAMES[role]
                for i, role in enumerate(order)
            ]
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            self.message = f"Only {listed} can do this: ask one of them for a role change"


class SessionRequiredError(ForbiddenError):
    """403: an API key was presented to an endpoint that takes dashboard sessions only (key
    management): whatever its scopes, a key cannot manage keys.

    .. versionadded:: 0.1.0
    """

    message = (
        "This endpoint takes dashboard session cookies, not API keys: sign in to the dashboard "
        "(with cookies enabled) and send no API key"
    )
    reason = Reason.SESSION_REQUIRED


class OriginRejectedError(ForbiddenError):
    """403: a request authenticated by a session cookie, with an unsafe method (``POST``,
    ``PUT``, ``PATCH``, ``DELETE``, …), came without an ``Origin`` (or ``Referer``) from the
    allowed origins: a possible cross-site request forgery.

    .. versionadded:: 0.1.0
    """

    message = "Cross-site request refused: this Origin is not allowed"
    reason = Reason.ORIGIN


class IpNotAllowedError(ForbiddenError):
    """403: the key may not be used from this client address (its IP allow-list). The address
    is the server's client address, or behind a trusted proxy the forwarded one.

    .. versionadded:: 0.4.0
    """

    message = "This API key may not be used from this address"
    reason = Reason.IP_NOT_ALLOWED


class RateLimitedError(AuthError):
    """429: too many requests for this key.

    Args:
        limit: requests allowed per window.
        remaining: requests left in the window (0 here).
        reset: seconds until the window resets.

    .. versionadded:: 0.1.0
    """

    status_code = 429
    error = "rate_limited"
    message = "Rate limit exceeded"
    reason = Reason.RATE_LIMITED

    def __init__(self, *, limit: int, remaining: int = 0, reset: float) -> None:
        self.limit, self.remaining, self.reset = limit, remaining, reset

    def headers(self) -> list[tuple[str, str]]:
        seconds = str(max(1, int(self.reset + 0.999)))
        return [
            *super().headers(),
            ("retry-after", seconds),
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", seconds),
        ]


class UsageLimitExceededError(RateLimitedError):
    """429: the key's usage limit is used up (it was created with ``remaining=N`` and has been
    used N times). It works again once refilled (:meth:`~skaala_auth.KeyManager.refill_key`).
    No ``Retry-After``: waiting does not help.

    .. versionadded:: 0.4.0
    """

    message = "This API key's usage limit is used up"
    reason = Reason.USAGE_EXHAUSTED

    def __init__(self, *, limit: int = 0) -> None:
        super().__init__(limit=limit, remaining=0, reset=0)

    def headers(self) -> list[tuple[str, str]]:
        return AuthError.headers(self)


class ServiceUnavailableError(AuthError):
    """503: authentication cannot be decided right now. Fail closed: the request is refused.

    .. versionadded:: 0.1.0
    """

    status_code = 503
    error = "service_unavailable"
    message = "Authentication is temporarily unavailable"
    reason = Reason.STORE_UNAVAILABLE
    retry_after: ClassVar[int] = 5

    def headers(self) -> list[tuple[str, str]]:
        return [*super().headers(), ("retry-after", str(self.retry_after))]


class StoreUnavailableError(ServiceUnavailableError):
    """503: the key store raised, was unreachable, or was slower than its timeout.

    The underlying exception is chained (``__cause__``) for the server log.

    .. versionadded:: 0.1.0
    """


class RateLimiterUnavailableError(ServiceUnavailableError):
    """503: the rate limiter raised something other than
    :class:`RateLimitedError` (its backend is down, or a bug). Fail closed: the request is
    refused; a limiter that prefers to fail open catches its backend's errors itself.

    The underlying exception is chained (``__cause__``).

    .. versionadded:: 0.1.0
    """

    reason = Reason.LIMITER_UNAVAILABLE


class JwksUnavailableError(ServiceUnavailableError):
    """503: the signing keys of dashboard sessions (the Stack Auth JWKS) could not be fetched,
    so a session signed by a key not in the cache cannot be decided. Fail closed: the request
    is refused, and the next allowed fetch (see ``refetch_interval``) recovers by itself.

    The underlying exception is chained (``__cause__``) when there is one.

    .. versionadded:: 0.1.0
    """

    reason = Reason.JWKS_UNAVAILABLE


class KeyManagementError(Exception):
    """Base of the errors raised by :class:`~skaala_auth.KeyManager`.

    .. versionadded:: 0.1.0
    """


class KeyNotFoundError(KeyManagementError, LookupError):
    """No key with that id.

    .. versionadded:: 0.1.0
    """


class NotAMemberError(KeyManagementError, ValueError):
    """The user is not a member of the team (keys can only be made for members).

    .. versionadded:: 0.1.0
    """


class UnknownScopeError(KeyManagementError, ValueError):
    """A scope that the registry does not know was asked for (never a silent grant).

    .. versionadded:: 0.1.0
    """

    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown = tuple(sorted(unknown))
        super().__init__(f"unknown scope(s): {', '.join(self.unknown)}")


class InvalidExpiryError(KeyManagementError, ValueError):
    """An expiry in the past, naive, or given twice.

    .. versionadded:: 0.1.0
    """


class InvalidBatchError(KeyManagementError, ValueError):
    """Items of a bulk creation (:meth:`~skaala_auth.KeyManager.create_keys`) that cannot be
    created. Every item was checked first: none of the batch was created.

    Attributes:
        errors: ``(index, error)`` for the first :attr:`LIMIT` refused items, in order, with
            ``index`` counted from 0 and ``error`` what :meth:`~skaala_auth.KeyManager.create_key`
            would have raised for that item (messages never repeat a key).
        refused: how many items were refused in all.
        total: how many items the batch had.

    .. versionadded:: 0.1.0
    """

    #: How many refused items are kept (and the message names at most five).
    LIMIT: ClassVar[int] = 100

    def __init__(self, errors: Sequence[tuple[int, Exception]], refused: int, total: int) -> None:
        self.errors = tuple(errors[: self.LIMIT])
        self.refused = refused
        self.total = total
        shown = "; ".join(f"item {index}: {error}" for index, error in self.errors[:5])
        more = f"; and {refused - 5} more" if refused > 5 else ""
        super().__init__(f"{refused} of {total} items refused, no key created: {shown}{more}")


class ConfigurationError(ValueError):
    """Settings that cannot describe a store, an authenticator or a rules table: an unknown
    name, a value of the wrong kind (``ACCEPT_TEST_KEYS="maybe"``), a store file that does not
    exist. The message names the setting.

    Attributes:
        setting: the setting at fault, when there is one.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
