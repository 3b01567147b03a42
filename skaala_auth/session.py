"""Dashboard sessions: Stack Auth access tokens, verified offline against the project's JWKS.

Rules of this module (they let the core's flow drive it, as it drives key look-ups):

- :meth:`StackAuthVerifier.token` and :meth:`StackAuthVerifier.decode` do no I/O and read no
  clock: the instant is a parameter (epoch seconds, the core's clock). ``decode`` reads an
  immutable snapshot of the key cache, so any number of threads may call it at once.
- :meth:`StackAuthVerifier.fetch_keys` is the only I/O (a blocking ``urllib`` GET of the JWKS).
  The core runs it in its worker threads, under its ``store_timeout``; it never raises.
- The token stops here: :class:`NeedKeys`, :class:`SessionClaims`, errors and log lines never
  hold it.

Driving it::

    token = verifier.token(headers)            # None: no session. Raises AuthError (400/401).
    outcome = verifier.decode(token, now)      # pure
    if isinstance(outcome, NeedKeys):          # an unknown kid, or no keys yet, or stale keys
        verifier.fetch_keys(now)               # I/O, in a worker thread; never raises
        outcome = verifier.decode(token, now, fetched=True)   # never NeedKeys
    # outcome: SessionClaims, InvalidSessionError (401) or JwksUnavailableError (503)

What is refused (401 ``Invalid session``): a token that is not a compact JWS, an ``alg`` other
than ES256 (``none``, HMAC — an HS256 token "signed" with the public key's bytes —, RSA, other
curves), a ``crit`` header, a ``kid`` that is not in the JWKS, a signature that does not verify
(a tampered header or payload), ``exp`` passed or ``nbf``/``iat`` in the future (past the
leeway), no ``sub``, an audience other than the project (anonymous users' ``<project>:anon`` and
restricted users' ``<project>:restricted`` unless allowed), an issuer outside the list.
PyJWT verifies the signature with the algorithm pinned; every claim is checked here against the
``now`` the caller passes (PyJWT's own time checks, which read the system clock, are off).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

try:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
except ImportError as error:  # pragma: no cover - the core-only CI job has neither
    raise ImportError(
        "skaala_auth.session needs PyJWT and cryptography: pip install 'skaala-auth[session]'"
    ) from error

from .__about__ import __version__
from .credentials import read_session_header
from .errors import (
    AuthError,
    ConfigurationError,
    InvalidRequestError,
    InvalidSessionError,
    JwksUnavailableError,
    Reason,
)
from .sessionflow import CarriedToken, NeedKeys, SessionClaims

if TYPE_CHECKING:
    from .credentials import HeadersLike

__all__ = [
    "CarriedToken",
    "DEFAULT_API_URL",
    "NeedKeys",
    "SessionClaims",
    "StackAuthVerifier",
]

log = logging.getLogger("skaala_auth")

#: Stack Auth's hosted API: the default base of the JWKS URL and of the issuers.
DEFAULT_API_URL: Final = "https://api.stack-auth.com"
#: The one algorithm Stack Auth signs access tokens with, and the only one accepted.
ALGORITHM: Final = "ES256"
#: A Stack Auth access token is about 1 KB; a browser sends at most 4 KB of cookie per name.
MAX_TOKEN_LENGTH: Final = 8192
_MAX_SDK_COOKIE: Final = 16384
_MAX_KID: Final = 256
_MAX_JWKS_BYTES: Final = 1 << 20
_MAX_JWKS_KEYS: Final = 64
_WHITESPACE: Final = " \t"
_BASE64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

# PyJWT checks the signature (algorithm pinned) and nothing else: its time checks read the
# system clock, and the core decides on its own clock. Claims are checked in _claims().
_PYJWT_OPTIONS: Final[Any] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "require": [],
}


@dataclass(frozen=True, slots=True)
class _KeyCache:
    """One immutable state of the key cache: readers take the whole of it in one attribute read,
    so they never see keys of one fetch with the bookkeeping of another."""

    keys: Mapping[str, ec.EllipticCurvePublicKey]
    #: When the keys were fetched (the caller's ``now``); ``None`` before the first success.
    fetched_at: float | None = None
    #: When the last fetch started; ``None`` before the first.
    attempted_at: float | None = None
    #: The last fetch failed: an unknown ``kid`` is answered 503 until the next one.
    failing: bool = False
    #: A fetch is running: an unknown ``kid`` waits for it instead of being refused.
    in_flight: bool = False


class StackAuthVerifier:
    """Verifies Stack Auth access tokens (ES256 JWTs) offline, against the project's JWKS.

    Args:
        project_id: the Stack Auth project: the only audience accepted.
        jwks: the JWKS itself (``{"keys": [...]}``), for tests and air-gapped services.
        jwks_url: where to fetch the JWKS. ``https://`` (plain ``http://`` only to a loopback
            address). Default, when neither ``jwks`` nor ``jwks_file`` is given:
            ``{api_url}/api/v1/projects/<project_id>/.well-known/jwks.json`` (with
            ``include_anonymous``/``include_restricted`` when those users are allowed: Stack
            Auth signs their tokens with other keys).
        jwks_file: a file holding the JWKS, read once, now.
        api_url: Stack Auth's API, for the default JWKS URL and issuers.
        issuers: the accepted ``iss`` values. Default: ``{api_url}/api/v1/projects/<project_id>``
            (plus ``projects-restricted-users/…`` and ``projects-anonymous-users/…`` when those
            users are allowed).
        leeway: seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (0–300).
        allow_anonymous: accept Stack Auth's anonymous users (audience ``<project_id>:anon``);
            implies ``allow_restricted``. Default: refused.
        allow_restricted: accept restricted users (audience ``<project_id>:restricted``).
        access_token_cookie: the cookie that carries the raw access token.
        sdk_cookie: the Stack SDK's cookie, a JSON array ``["<refresh>", "<access>"]``, raw or
            URL-encoded.
        refresh_cookie: the SDK's refresh-token cookie; when present, element 0 of
            ``sdk_cookie`` must equal it. Default ``stack-refresh-<project_id>``.
        header: the header that carries the raw access token.
        refetch_interval: seconds between two fetches of the JWKS, at most one per interval
            whatever the number of unknown ``kid`` values (and between retries while the JWKS
            endpoint is down).
        jwks_max_age: seconds after which fetched keys are refetched (a key Stack Auth removed
            stops being trusted); ``None``: only on an unknown ``kid``. While a refetch fails,
            the keys already fetched keep verifying.
        fetch_timeout: seconds the JWKS GET may take.
        clock: epoch seconds, for :meth:`verify` (the core passes its own ``now`` to
            :meth:`decode`).

    Raises:
        ConfigurationError: a setting that cannot be used (two JWKS sources, a JWKS without a
            usable key, a plain-``http`` URL to another machine, …).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        project_id: str,
        jwks: Mapping[str, object] | None = None,
        jwks_url: str | None = None,
        jwks_file: str | os.PathLike[str] | None = None,
        api_url: str = DEFAULT_API_URL,
        issuers: Iterable[str] | None = None,
        leeway: float = 10.0,
        allow_anonymous: bool = False,
        allow_restricted: bool = False,
        access_token_cookie: str = "stack-access-token",  # noqa: S107 - a cookie's name
        sdk_cookie: str = "stack-access",
        refresh_cookie: str | None = None,
        header: str = "x-stack-access-token",
        refetch_interval: float = 5.0,
        jwks_max_age: float | None = 3600.0,
        fetch_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(project_id, str) or not project_id.strip():
            raise ConfigurationError("project_id must be a non-empty string", setting="project_id")
        self.project_id = project_id
        api_url = api_url.rstrip("/")
        self.allow_restricted = allow_restricted or allow_anonymous
        self.allow_anonymous = allow_anonymous
        self.leeway = _seconds("leeway", leeway, low=0.0, high=300.0)
        self.refetch_interval = _seconds("refetch_interval", refetch_interval, low=0.001)
        self.fetch_timeout = _seconds("fetch_timeout", fetch_timeout, low=0.001)
        self.jwks_max_age = (
            None if jwks_max_age is None else _seconds("jwks_max_age", jwks_max_age, low=1.0)
        )
        self.clock = clock

        #: The accepted audiences: the project, and the user kinds allowed.
        self.audiences: frozenset[str] = frozenset(
            [project_id]
            + ([f"{project_id}:restricted"] if self.allow_restricted else [])
            + ([f"{project_id}:anon"] if allow_anonymous else [])
        )
        if issuers is None:
            kinds = [""]
            kinds += ["-restricted-users"] if self.allow_restricted else []
            kinds += ["-anonymous-users"] if allow_anonymous else []
            issuers = [f"{api_url}/api/v1/projects{kind}/{_quoted(project_id)}" for kind in kinds]
        elif isinstance(issuers, str):
            issuers = [issuers]
        self.issuers: frozenset[str] = frozenset(issuers)
        if not self.issuers or not all(isinstance(i, str) and i for i in self.issuers):
            raise ConfigurationError("issuers must be non-empty strings", setting="issuers")

        self.access_token_cookie = _cookie_name("access_token_cookie", access_token_cookie)
        self.sdk_cookie = _cookie_name("sdk_cookie", sdk_cookie)
        self.refresh_cookie = _cookie_name(
            "refresh_cookie",
            f"stack-refresh-{project_id}" if refresh_cookie is None else refresh_cookie,
        )
        if not isinstance(header, str) or not header or not header.isascii() or ":" in header:
            raise ConfigurationError(f"not a header name: {header!r}", setting="header")
        self.header = header.lower()
        self._header_bytes = self.header.encode("ascii")
        self._environ_key = "HTTP_" + self.header.upper().replace("-", "_")
        read_session_header(self.header)  # WSGI and Django facts carry it from now on
        self._cookie_names = frozenset(
            {self.access_token_cookie, self.sdk_cookie, self.refresh_cookie}
        )

        sources = [s for s in (jwks, jwks_url, jwks_file) if s is not None]
        if len(sources) > 1:
            raise ConfigurationError("give one of jwks, jwks_url and jwks_file", setting="jwks")
        #: The URL the JWKS is fetched from; ``None`` for keys given inline or in a file.
        self.jwks_url: str | None = None
        self._fetch: Callable[[], dict[str, ec.EllipticCurvePublicKey]] | None = None
        self._source: str
        if jwks is not None:
            self._cache = _KeyCache(_static_keys(jwks, "jwks"))
            self._source = "inline"
        elif jwks_file is not None:
            self._cache = _KeyCache(_static_keys(_read_file(jwks_file), "jwks_file"))
            self._source = f"file {os.fspath(jwks_file)!r}"
        else:
            if jwks_url is None:
                jwks_url = f"{api_url}/api/v1/projects/{_quoted(project_id)}/.well-known/jwks.json"
                if allow_anonymous:
                    jwks_url += "?include_anonymous=true"
                elif allow_restricted:
                    jwks_url += "?include_restricted=true"
            _check_url(jwks_url)
            self.jwks_url = jwks_url
            self._opener = urllib.request.build_opener(_SafeRedirects())
            self._fetch = self._fetch_url
            self._cache = _KeyCache({})
            self._source = jwks_url
        self._fetch_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StackAuthVerifier(project_id={self.project_id!r}, jwks={self._source})"

    # -- carriers ------------------------------------------------------------------------------

    def token(self, headers: HeadersLike) -> str | None:
        """The session token the request carries, or ``None`` when it carries none: the token
        of :meth:`find`.

        Raises:
            InvalidRequestError: a carrier sent twice with different values (400).
            InvalidSessionError: an SDK cookie that is not a pair of strings, or whose refresh
                token is not the refresh cookie's (401).

        .. versionadded:: 0.1.0
        """
        found = self.find(headers)
        return None if found is None else found.token

    def find(self, headers: HeadersLike) -> CarriedToken | None:
        """The session token the request carries and the carrier it came in (a cookie needs
        the CSRF check of unsafe methods; a header cannot be sent cross-site without a CORS
        preflight), or ``None`` when it carries none.

        Carriers, first present wins: the ``access_token_cookie`` (a raw JWT), the
        ``sdk_cookie`` (``["<refresh>", "<access>"]``, raw or URL-encoded; element 0 must equal
        the ``refresh_cookie`` when that is present), the ``header``. Every ``Cookie`` header
        is read (HTTP/2 sends several). An empty carrier counts as absent. Nothing is verified
        here: the token goes to :meth:`decode`.

        Args:
            headers: see :data:`~skaala_auth.credentials.HeadersLike` (a mapping with names in
                any case, or raw ``(name, value)`` pairs, ``str`` or ``bytes``).

        Raises:
            InvalidRequestError: a carrier sent twice with different values (400).
            InvalidSessionError: an SDK cookie that is not a pair of strings, or whose refresh
                token is not the refresh cookie's (401).

        .. versionadded:: 0.1.0
        """
        cookie_headers, header_values = self._read(headers)
        if cookie_headers:
            cookies = _cookies(cookie_headers, self._cookie_names)
            found = _one(cookies.get(self.access_token_cookie), "Repeated session cookie")
            if found is not None:
                return CarriedToken(found, "access_token_cookie")
            sdk = _one(cookies.get(self.sdk_cookie), "Repeated session cookie")
            if sdk is not None:
                access = self._sdk_access_token(sdk, cookies.get(self.refresh_cookie, []))
                return CarriedToken(access, "sdk_cookie")
        if header_values:
            repeated = f"Repeated {self.header} header"
            found = _one(header_values, repeated)
            if found is None:
                return None
            if "," in found:  # a JWT has no comma: several headers joined by a server
                raise InvalidRequestError(repeated)
            return CarriedToken(found, "header")
        return None

    def environ_headers(self, environ: Mapping[str, object]) -> list[tuple[str, str]]:
        """The headers :meth:`token` reads, from a WSGI environ or Django's ``request.META``
        (``HTTP_COOKIE`` and the token header), as ``(name, value)`` pairs.

        .. versionadded:: 0.1.0
        """
        pairs: list[tuple[str, str]] = []
        cookie = environ.get("HTTP_COOKIE")
        if isinstance(cookie, str):
            pairs.append(("cookie", cookie))
        value = environ.get(self._environ_key)
        if isinstance(value, str):
            pairs.append((self.header, value))
        return pairs

    def _read(self, headers: HeadersLike) -> tuple[list[str], list[str]]:
        """The ``Cookie`` values and the token-header values of a request."""
        cookies: list[str] = []
        tokens: list[str] = []
        items: Iterable[tuple[object, object]]
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            if isinstance(name, bytes):
                lowered = name.lower()
                if lowered == b"cookie":
                    target = cookies
                elif lowered == self._header_bytes:
                    target = tokens
                else:
                    continue
            elif isinstance(name, str):
                lowered_name = name.lower()
                if lowered_name == "cookie":
                    target = cookies
                elif lowered_name == self.header:
                    target = tokens
                else:
                    continue
            else:
                continue
            if isinstance(value, bytes):
                target.append(value.decode("latin-1"))
            elif isinstance(value, str):
                target.append(value)
        return cookies, tokens

    def _sdk_access_token(self, value: str, refresh_values: list[str]) -> str:
        """The access token of the SDK's cookie, checked against the refresh cookie."""
        if len(value) > _MAX_SDK_COOKIE:
            raise InvalidSessionError(reason=Reason.MALFORMED)
        if not value.startswith("["):
            value = urllib.parse.unquote(value)  # the SDK URL-encodes it; a proxy may not
        if not value.startswith('["'):
            raise InvalidSessionError(reason=Reason.MALFORMED)
        try:
            pair = json.loads(value)
        except (ValueError, RecursionError):
            raise InvalidSessionError(reason=Reason.MALFORMED) from None
        if (
            type(pair) is not list
            or len(pair) != 2
            or type(pair[0]) is not str
            or type(pair[1]) is not str
            or not pair[1]
        ):
            raise InvalidSessionError(reason=Reason.MALFORMED)
        refresh: str = pair[0]
        access: str = pair[1]
        for expected in refresh_values:
            # The SDK drops an access token that is not its refresh token's: so do we (a stale
            # cookie of another sign-in must not stand for this one).
            if not hmac.compare_digest(urllib.parse.unquote(expected).encode(), refresh.encode()):
                raise InvalidSessionError(reason=Reason.SESSION_MISMATCH)
        return access

    # -- verification (pure) -------------------------------------------------------------------

    def decode(
        self, token: str, now: float, *, fetched: bool = False
    ) -> SessionClaims | NeedKeys | AuthError:
        """Verify a token against the cached keys at ``now``. No I/O, no clock; never raises.

        Args:
            token: what :meth:`token` returned.
            now: the instant (epoch seconds) every time claim is checked against.
            fetched: the caller has just performed :meth:`fetch_keys` for this request:
                decide on what the cache holds now, never :class:`NeedKeys` again.

        Returns:
            :class:`SessionClaims` for a valid token; :class:`NeedKeys` when the JWKS must be
            fetched first (keys from a URL only); :class:`~skaala_auth.InvalidSessionError`
            (401) for a refused token; :class:`~skaala_auth.JwksUnavailableError` (503) when
            the token's key cannot be known because the JWKS endpoint is failing.

        .. versionadded:: 0.1.0
        """
        kid = _kid(token)
        if isinstance(kid, AuthError):
            return kid
        cache = self._cache  # one read: a consistent snapshot, whatever other threads do
        key = cache.keys.get(kid)
        if self._fetch is not None:
            may_fetch = not fetched and self._may_fetch(cache, now)
            if key is None:
                if may_fetch or (cache.in_flight and not fetched):
                    return NeedKeys(kid)
                if cache.failing or cache.fetched_at is None:
                    return JwksUnavailableError()  # fail closed: we cannot know this key
                return InvalidSessionError(reason=Reason.UNKNOWN_SIGNING_KEY)
            max_age = self.jwks_max_age
            if (
                may_fetch
                and max_age is not None
                and cache.fetched_at is not None
                and abs(now - cache.fetched_at) >= max_age
                and not cache.in_flight
            ):
                return NeedKeys(kid)
        elif key is None:
            return InvalidSessionError(reason=Reason.UNKNOWN_SIGNING_KEY)
        try:
            payload = jwt.decode(token, key, algorithms=[ALGORITHM], options=_PYJWT_OPTIONS)
        except jwt.InvalidSignatureError:
            return InvalidSessionError(reason=Reason.BAD_SIGNATURE)
        except Exception:  # whatever hostile input makes a decoder raise is a refusal
            return InvalidSessionError(reason=Reason.MALFORMED)
        return self._claims(payload, kid, now)

    def _claims(self, payload: object, kid: str, now: float) -> SessionClaims | AuthError:
        """Check a signature-verified payload's claims against ``now``."""
        if not isinstance(payload, dict):  # pragma: no cover - PyJWT returns one or raises
            return InvalidSessionError(reason=Reason.MALFORMED)
        exp = _instant(payload.get("exp"))
        nbf = _instant(payload.get("nbf"))
        iat = _instant(payload.get("iat"))
        if exp is None or (nbf is None and "nbf" in payload) or (iat is None and "iat" in payload):
            return InvalidSessionError(reason=Reason.MALFORMED)
        leeway = self.leeway
        # The boundaries: accepted while now < exp + leeway; from nbf - leeway, iat - leeway on.
        if not now < exp + leeway:
            return InvalidSessionError(reason=Reason.EXPIRED)
        if (nbf is not None and now + leeway < nbf) or (iat is not None and now + leeway < iat):
            return InvalidSessionError(reason=Reason.NOT_YET_VALID)
        sub = payload.get("sub")
        if type(sub) is not str or not sub or len(sub) > 512:
            return InvalidSessionError(reason=Reason.MALFORMED)
        aud = payload.get("aud")
        project = self.project_id
        anonymous = payload.get("is_anonymous") is True or aud == f"{project}:anon"
        restricted = (
            anonymous or payload.get("is_restricted") is True or aud == f"{project}:restricted"
        )
        if (anonymous and not self.allow_anonymous) or (restricted and not self.allow_restricted):
            return InvalidSessionError(reason=Reason.ANONYMOUS)
        if type(aud) is not str or aud not in self.audiences:
            return InvalidSessionError(reason=Reason.WRONG_AUDIENCE)
        if payload.get("iss") not in self.issuers:
            return InvalidSessionError(reason=Reason.WRONG_ISSUER)
        session_id = payload.get("refresh_token_id")
        return SessionClaims(
            user_id=sub,
            expires_at=exp,
            issued_at=iat,
            session_id=session_id if type(session_id) is str else None,
            anonymous=anonymous,
            restricted=restricted,
            key_id=kid,
        )

    def _may_fetch(self, cache: _KeyCache, now: float) -> bool:
        attempted = cache.attempted_at
        # abs(): a clock set back (a test clock) must not stop refetches until it catches up.
        return attempted is None or abs(now - attempted) >= self.refetch_interval

    # -- keys (I/O) ----------------------------------------------------------------------------

    def fetch_keys(self, now: float) -> bool:
        """Fetch the JWKS (blocking I/O), at most once per ``refetch_interval``: callers that
        come while a fetch runs wait for it, and callers within the interval of the last one
        return at once. Never raises: a failure is remembered (``decode`` answers 503 for keys
        it does not know until the next allowed fetch, and keeps verifying with the keys it
        has) and logged.

        Args:
            now: the instant (epoch seconds), the same ``now`` given to :meth:`decode`.

        Returns:
            ``True`` when the cache holds the keys of a successful fetch (always, for keys given
            inline or in a file); ``False`` while the JWKS endpoint is failing.

        .. versionadded:: 0.1.0
        """
        fetch = self._fetch
        if fetch is None:
            return True
        with self._fetch_lock:  # one fetch at a time: the others wait, then find it done
            cache = self._cache
            if not self._may_fetch(cache, now):
                return not cache.failing and cache.fetched_at is not None
            self._cache = replace(cache, attempted_at=now, in_flight=True)
            try:
                keys = fetch()
            except Exception as error:
                if not cache.failing:
                    log.warning(
                        "skaala_auth: cannot fetch the session JWKS from %s (%s): sessions "
                        "signed by keys not in the cache are answered 503; retrying at most "
                        "every %g s",
                        self._source,
                        _describe(error),
                        self.refetch_interval,
                    )
                else:
                    log.info("skaala_auth: the session JWKS is still unavailable: %s", error)
                self._cache = replace(cache, attempted_at=now, in_flight=False, failing=True)
                return False
            except BaseException:
                self._cache = replace(cache, attempted_at=now, in_flight=False, failing=True)
                raise
            if cache.failing:
                log.warning("skaala_auth: the session JWKS is available again")
            self._cache = _KeyCache(keys, fetched_at=now, attempted_at=now)
            return True

    def _fetch_url(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """GET the JWKS. Raises on any failure (the caller logs and remembers it)."""
        assert self.jwks_url is not None  # noqa: S101 - only set as the fetcher with a URL
        request = urllib.request.Request(  # noqa: S310 - https, or http to loopback: checked
            self.jwks_url,
            headers={"Accept": "application/json", "User-Agent": f"skaala-auth/{__version__}"},
        )
        with self._opener.open(request, timeout=self.fetch_timeout) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = response.read(_MAX_JWKS_BYTES + 1)
        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("the JWKS is larger than 1 MiB")
        return _parse_jwks(json.loads(body))

    # -- blocking convenience ------------------------------------------------------------------

    def verify(self, token: str, *, now: float | None = None) -> SessionClaims:
        """:meth:`decode`, fetching the JWKS in this thread when needed: for scripts and tests.
        A service lets the core drive :meth:`decode` and :meth:`fetch_keys` instead.

        Raises:
            InvalidSessionError: the token is refused (401).
            JwksUnavailableError: the JWKS endpoint is failing (503).

        .. versionadded:: 0.1.0
        """
        moment = self.clock() if now is None else now
        outcome = self.decode(token, moment)
        if isinstance(outcome, NeedKeys):
            self.fetch_keys(moment)
            outcome = self.decode(token, moment, fetched=True)
        if isinstance(outcome, SessionClaims):
            return outcome
        raise outcome if isinstance(outcome, AuthError) else JwksUnavailableError()


# -- helpers -----------------------------------------------------------------------------------


def _quoted(project_id: str) -> str:
    """A project id as one path segment."""
    return urllib.parse.quote(project_id, safe="")


def _seconds(setting: str, value: float, *, low: float, high: float = math.inf) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high
        or math.isnan(value)
    ):
        bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise ConfigurationError(f"{setting} must be a number of seconds {bounds}", setting=setting)
    return float(value)


def _cookie_name(setting: str, name: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not name.isascii()
        or any(c in name for c in ' \t;=,"')
        or not name.isprintable()
    ):
        raise ConfigurationError(f"not a cookie name: {name!r}", setting=setting)
    return name


def _cookies(headers: list[str], names: frozenset[str]) -> dict[str, list[str]]:
    """The values of the cookies named in ``names``, from every ``Cookie`` header.

    A small tolerant parser rather than :class:`http.cookies.SimpleCookie`: that one stops at
    the first value outside RFC 6265's octets — the SDK's raw ``["…","…"]`` has quotes and a
    comma — and silently drops every cookie after it. Here a pair is split at ``;``, then at the
    first ``=``; names are matched exactly (cookie names are case-sensitive); whitespace is
    HTTP's; a value wrapped in double quotes is unwrapped; anything else is kept as it is, for
    the caller to refuse. Pairs without ``=`` and names not asked for are skipped.
    """
    found: dict[str, list[str]] = {}
    for header in headers:
        for part in _pairs(header):
            name, separator, value = part.partition("=")
            if not separator:
                continue
            name = name.strip(_WHITESPACE)
            if name not in names:
                continue
            value = value.strip(_WHITESPACE)
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            found.setdefault(name, []).append(value)
    return found


def _pairs(header: str) -> list[str]:
    """The ``name=value`` pairs of a ``Cookie`` header: split at ``;``, and at a ``,`` that
    starts another pair. Django's ASGI handler joins repeated headers with a comma (HTTP/2
    sends one ``Cookie`` header per cookie), so ``a=1,stack-access-token=…`` is two cookies;
    the SDK's raw ``["…","…"]`` keeps its comma (what follows it is no cookie name)."""
    if "," not in header:
        return header.split(";")
    pairs: list[str] = []
    for part in header.split(";"):
        pieces = part.split(",")
        pairs.append(pieces[0])
        for piece in pieces[1:]:
            if not piece.strip(_WHITESPACE):
                continue  # an empty header joined on (Django's test client sends one)
            if _COOKIE_NAME.match(piece):
                pairs.append(piece)
            else:
                pairs[-1] += "," + piece
    return pairs


#: A piece after a comma that starts a cookie pair: a token (RFC 9110) then ``=``.
_COOKIE_NAME: Final = re.compile(r"[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+=")


def _one(values: list[str] | None, repeated: str) -> str | None:
    """The one non-empty value of a carrier, ``None`` when it has none.

    Raises:
        InvalidRequestError: two different values (a carrier sent twice is ambiguous: which
            session is meant cannot be told).
    """
    if not values:
        return None
    found: str | None = None
    for value in values:
        value = value.strip(_WHITESPACE)
        if not value:
            continue
        if found is None:
            found = value
        elif value != found:
            raise InvalidRequestError(repeated)
    return found


def _kid(token: object) -> str | AuthError:
    """The ``kid`` of a compact JWS whose header asks for ES256, or the refusal."""
    if (
        type(token) is not str
        or not 0 < len(token) <= MAX_TOKEN_LENGTH
        or token.count(".") != 2
        or not token.isascii()
    ):
        return InvalidSessionError(reason=Reason.MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except Exception:  # whatever hostile input makes a decoder raise is a refusal
        return InvalidSessionError(reason=Reason.MALFORMED)
    if not isinstance(header, dict):  # pragma: no cover - PyJWT returns one or raises
        return InvalidSessionError(reason=Reason.MALFORMED)
    if header.get("alg") != ALGORITHM:  # none, HS256 "signed" with the public key, RS256, …
        return InvalidSessionError(reason=Reason.DISALLOWED_ALGORITHM)
    if "crit" in header:  # pragma: no cover - recent PyJWT refuses an unknown crit first
        return InvalidSessionError(reason=Reason.MALFORMED)  # we understand no extension
    kid = header.get("kid")
    if type(kid) is not str or not 0 < len(kid) <= _MAX_KID:
        return InvalidSessionError(reason=Reason.MALFORMED)
    return kid


def _instant(value: object) -> float | None:
    """A NumericDate (RFC 7519: a number of seconds, here finite and not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        instant = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return instant if math.isfinite(instant) else None


def _parse_jwks(document: object) -> dict[str, ec.EllipticCurvePublicKey]:
    """The usable keys of a JWKS, by ``kid``.

    Keys that are not ES256 public keys on P-256 are skipped with a warning (a JWKS may hold
    other kinds); a JWKS with no usable key, or not shaped like one, is an error.

    Raises:
        ValueError: not a JWKS, or no usable key in it.
    """
    if not isinstance(document, Mapping):
        raise ValueError("a JWKS is a JSON object")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError('a JWKS has a "keys" list')
    if len(entries) > _MAX_JWKS_KEYS:
        raise ValueError(f"a JWKS of more than {_MAX_JWKS_KEYS} keys")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries:
        try:
            kid, key = _public_key(entry)
        except ValueError as error:
            log.warning("skaala_auth: skipping a key of the session JWKS: %s", error)
            continue
        if kid in keys:
            log.warning("skaala_auth: the session JWKS has the kid %r twice; first kept", kid)
            continue
        keys[kid] = key
    if not keys:
        raise ValueError("the JWKS has no usable ES256 (P-256) public key")
    return keys


def _public_key(jwk: object) -> tuple[str, ec.EllipticCurvePublicKey]:
    if not isinstance(jwk, Mapping):
        raise ValueError("a key is a JSON object")
    kid = jwk.get("kid")
    if type(kid) is not str or not 0 < len(kid) <= _MAX_KID:
        raise ValueError("a key without a kid")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError(f"{kid!r} is not a P-256 key")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ValueError(f"{kid!r} is not an ES256 signing key")
    if "d" in jwk:
        raise ValueError(f"{kid!r} is a private key: a JWKS must hold public keys only")
    x, y = _coordinate(jwk.get("x")), _coordinate(jwk.get("y"))
    if x is None or y is None:
        raise ValueError(f"{kid!r} has malformed coordinates")
    try:  # cryptography checks that the point is on the curve
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        raise ValueError(f"{kid!r} is not a point of P-256") from None
    return kid, key


def _coordinate(value: object) -> int | None:
    """A P-256 coordinate: 32 bytes, base64url without padding."""
    if type(value) is not str or len(value) != 43 or not _BASE64URL.issuperset(value):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the charset was checked
        return None
    return int.from_bytes(raw, "big") if len(raw) == 32 else None


def _static_keys(document: object, setting: str) -> dict[str, ec.EllipticCurvePublicKey]:
    try:
        return _parse_jwks(document)
    except ValueError as error:
        raise ConfigurationError(f"{setting}: {error}", setting=setting) from None


def _read_file(path: str | os.PathLike[str]) -> object:
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"jwks_file: cannot read a JWKS from {os.fspath(path)!r}: {error}",
            setting="jwks_file",
        ) from None


def _check_url(url: str) -> None:
    """A JWKS URL must be ``https``; plain ``http`` only to this machine (tests, a sidecar): a
    JWKS read over the network in clear text would let anyone on the path sign sessions."""
    if not isinstance(url, str):
        raise ConfigurationError("jwks_url must be a string", setting="jwks_url")
    if not _safe_url(url):
        raise ConfigurationError(
            f"jwks_url must be https:// (http:// only to a loopback address): {url!r}",
            setting="jwks_url",
        )


def _safe_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if not host:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to where a JWKS URL may point (never down to plain http)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not _safe_url(newurl):
            raise urllib.error.URLError(f"refusing a redirect to {newurl!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _describe(error: BaseException) -> str:
    cause = f"{type(error).__name__}: {error}"
    return cause if len(cause) <= 300 else cause[:297] + "..."
