"""Pull exactly one API key out of a request's headers (and refuse one in its query string).

Accepted: ``Authorization: Bearer <key>`` (scheme case-insensitive) or ``X-API-Key: <key>``.
An ``Authorization`` header with another scheme (``Basic …``) belongs to someone else and counts
as absent. Refused with 400 (:class:`InvalidRequestError`), before anything is looked up:

- both headers, or either one repeated (servers that merge repeated headers join them with a
  comma, and a comma is never part of a key, so a merged header is caught too);
- an empty bearer or an empty ``X-API-Key``;
- a key in the query string (it ends up in access logs, browser history and ``Referer``),
  whether its parameters are separated by ``&`` or ``;``;
- a bearer credential that is not one token (``Bearer <key> extra``), or a scheme glued to it
  (``Bearer:<key>``).

Whitespace is HTTP's: spaces and tabs (several are accepted between ``Bearer`` and the key, and
around a key); any other character (NBSP, NEL, VT…) is part of the value, so a key with one
around it is malformed (401), never cleaned into a valid one.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, TypeAlias
from urllib.parse import parse_qsl

from .errors import InvalidRequestError

__all__ = ["HeadersLike", "check_query_string", "environ_headers", "extract_key"]

#: Request headers as the core takes them: a mapping (names in any case), or the raw
#: ``(name, value)`` pairs, ``str`` or ``bytes`` (ASGI's ``scope["headers"]`` as it is), which is
#: the only form in which a repeated header can be seen.
HeadersLike: TypeAlias = (
    Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
)

#: HTTP's whitespace (RFC 9110 5.6.3): space and horizontal tab, nothing else.
_WHITESPACE: Final = " \t"

_QUERY_NAMES: Final = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "x_api_key", "access_token", "bearer"}
)


def extract_key(headers: HeadersLike, query_string: str | bytes | None = None) -> str | None:
    """The one API key the request carries, or ``None`` when it carries none.

    Args:
        headers: see :data:`HeadersLike`. ``bytes`` names must be lower-case, as ASGI
            guarantees; ``str`` names may be in any case.
        query_string: the raw query string, if the caller wants it checked for keys.

    Raises:
        InvalidRequestError: two credentials, a repeated header, an empty credential, or a key
            in the query string.

    .. versionadded:: 0.1.0
    """
    authorization: str | bytes | None = None
    api_key: str | bytes | None = None
    items: Iterable[tuple[str | bytes, str | bytes]]
    # type() first: isinstance against the Mapping ABC costs as much as the rest of this loop.
    if type(headers) is list:  # ASGI's scope["headers"], WSGI adapters' pairs
        items = headers
    elif type(headers) is dict or isinstance(headers, Mapping):
        items = headers.items()
    else:
        items = headers
    for name, value in items:
        if type(name) is bytes:
            if name == b"authorization":
                name = "authorization"
            elif name == b"x-api-key":
                name = "x-api-key"
            else:
                continue
        else:
            name = name.lower()  # (no typing.cast here: it is a call per header)
        if name == "authorization":
            if authorization is not None:
                raise InvalidRequestError("Repeated Authorization header")
            authorization = value
        elif name == "x-api-key":
            if api_key is not None:
                raise InvalidRequestError("Repeated X-API-Key header")
            api_key = value
    found: str | None = None
    if authorization is not None:
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        token = authorization[7:]
        if (
            authorization[:7].lower() == "bearer "
            and token
            and " " not in token
            and "\t" not in token
            and "," not in token
        ):
            found = token  # the common "Bearer <key>": what the general path returns for it
        else:
            if "," in authorization and _merged(authorization):
                raise InvalidRequestError("Repeated Authorization header")
            found = _bearer(authorization)
    if api_key is not None:
        if found is not None:
            raise InvalidRequestError("Send the API key in one header only")
        if isinstance(api_key, bytes):
            api_key = api_key.decode("latin-1")
        if "," in api_key:  # a key has no comma: servers joined repeated headers with one
            raise InvalidRequestError("Repeated X-API-Key header")
        found = api_key.strip(_WHITESPACE)
        if not found:
            raise InvalidRequestError("Empty X-API-Key header")
    if query_string:
        check_query_string(query_string)
    return found


def _bearer(authorization: str) -> str | None:
    """The token of a ``Bearer`` credential, or ``None`` for another scheme (not ours)."""
    scheme, token = _scheme(authorization)
    lowered = scheme.lower()
    if lowered != "bearer":
        if lowered.startswith("bearer"):  # Bearer:<key>, Bearer<key>: ours, and malformed
            raise InvalidRequestError("Malformed bearer credential")
        return None  # another scheme is not ours: absent
    token = token.strip(_WHITESPACE)
    if not token:
        raise InvalidRequestError("Empty bearer token")
    if " " in token or "\t" in token:
        raise InvalidRequestError("Malformed bearer credential")
    return token


def _merged(authorization: str) -> bool:
    """Whether a comma-joined ``Authorization`` value is several headers merged by a server
    (WSGI servers and Django's ASGI handler do that): one of its parts is a bearer credential.
    A single header of another scheme may hold commas of its own (``Digest a="1", b="2"``)."""
    parts = authorization.split(",")
    return any(_scheme(part)[0].lower().startswith("bearer") for part in parts)


def _scheme(authorization: str) -> tuple[str, str]:
    """An ``Authorization`` value split at the first space or tab: (scheme, the rest)."""
    value = authorization.strip(_WHITESPACE)
    scheme, _, rest = value.partition(" ")
    if "\t" in scheme:  # the scheme ended at a tab, not a space
        scheme, _, tail = value.partition("\t")
        rest = tail
    return scheme, rest


def environ_headers(environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """The credential headers (and the CORS-preflight marker, and ``X-Forwarded-For``) of a
    WSGI environ, or of Django's
    ``request.META`` under WSGI and ASGI alike, as the ``(name, value)`` pairs
    :func:`extract_key` takes.

    Servers merge a repeated header into one value joined by commas, and a comma is never part
    of a key, so :func:`extract_key` still refuses a repeated header.

    .. versionadded:: 0.1.0
    """
    pairs: list[tuple[str, str]] = []
    authorization = environ.get("HTTP_AUTHORIZATION")
    if isinstance(authorization, str):
        pairs.append(("authorization", authorization))
    api_key = environ.get("HTTP_X_API_KEY")
    if isinstance(api_key, str):
        pairs.append(("x-api-key", api_key))
    preflight = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
    if isinstance(preflight, str):  # tells a CORS preflight (skaala_auth.flow.is_preflight)
        pairs.append(("access-control-request-method", preflight))
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if isinstance(forwarded, str):  # read only from trusted proxies (skaala_auth.policy)
        pairs.append(("x-forwarded-for", forwarded))
    carriers = _SESSION_CARRIERS
    if any(key in environ for key, _ in carriers):
        # A dashboard session may be present: its carriers, and what its CSRF check reads.
        for key, name in (*carriers, *_CSRF_ITEMS):
            value = environ.get(key)
            if isinstance(value, str):
                pairs.append((name, value))
    return pairs


def read_session_header(name: str) -> None:
    """Make :func:`environ_headers` carry the header ``name`` too (a session verifier
    configured with another token header than ``x-stack-access-token`` calls this).

    .. versionadded:: 0.1.0
    """
    global _SESSION_CARRIERS
    item = ("HTTP_" + name.upper().replace("-", "_"), name.lower())
    if item not in _SESSION_CARRIERS:
        _SESSION_CARRIERS = (*_SESSION_CARRIERS, item)


#: The environ keys that may carry a dashboard session (skaala_auth.sessionflow), as
#: (environ key, header name).
_SESSION_CARRIERS: tuple[tuple[str, str], ...] = (
    ("HTTP_COOKIE", "cookie"),
    ("HTTP_X_STACK_ACCESS_TOKEN", "x-stack-access-token"),
)
#: What the CSRF check of a cookie-authenticated unsafe request reads.
_CSRF_ITEMS: Final = (
    ("HTTP_ORIGIN", "origin"),
    ("HTTP_REFERER", "referer"),
    ("HTTP_HOST", "host"),
)


def check_query_string(query_string: str | bytes) -> None:
    """Refuse a query string that carries an API key.

    Raises:
        InvalidRequestError: a parameter named like a credential (``api_key``,
            ``access_token``, …) or any name or value that starts like a key (``sk_live_``,
            ``sk_test_``: ``?sk_live_…`` is a key in the query string too).

    .. versionadded:: 0.1.0
    """
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    lowered = query_string.lower()
    # Cheap screen first: most query strings (page=2&sort=name) cannot hold a key.
    if not any(marker in lowered for marker in ("sk_", "api", "token", "bearer", "%")):
        return
    # Both separators: ``;`` still separates parameters for some frameworks and proxies.
    for name, value in parse_qsl(query_string.replace(";", "&"), keep_blank_values=True):
        if name.lower() in _QUERY_NAMES or any(
            part.lstrip().startswith(("sk_live_", "sk_test_")) for part in (name, value)
        ):
            raise InvalidRequestError("API keys are not accepted in the query string")
