"""Stack Auth session tokens for tests: a signing key, its JWKS, and tokens minted to order.

Tokens are shaped like Stack Auth's (ES256, a ``kid``, ``iss``/``aud`` of the project, ``sub``,
``iat``/``exp``, ``refresh_token_id``, ``is_anonymous``…) and signed with a P-256 key made for the
test. Point a :class:`~skaala_auth.session.StackAuthVerifier` at the kit's JWKS
(:meth:`SessionKit.verifier`, or ``jwks=kit.jwks``) and mint::

    kit = SessionKit()
    token = kit.mint("user_1")                      # valid for 10 minutes from kit.clock()
    claims = kit.verifier().verify(token)
    headers = kit.headers("user_1")                 # {"Cookie": "stack-access-token=…"}

Needs ``cryptography`` (the ``session`` extra), imported on first use: importing
``skaala_auth.testing`` does not need it. :meth:`SessionKit.verifier` needs PyJWT as well.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from ..session import StackAuthVerifier

__all__ = ["SessionKit", "mint_session", "session_jwks"]

_API_URL = "https://api.stack-auth.com"  # skaala_auth.session.DEFAULT_API_URL, without PyJWT


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _new_key() -> EllipticCurvePrivateKey:
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError as error:  # pragma: no cover - the core-only CI job lacks it
        raise ImportError(
            "skaala_auth.testing's session helpers need cryptography: "
            "pip install 'skaala-auth[session]'"
        ) from error
    return ec.generate_private_key(ec.SECP256R1())


class SessionKit:
    """A Stack Auth project for tests: its signing keys, its JWKS, and tokens made to order.

    Args:
        project_id: the project (the audience of the tokens).
        api_url: the Stack Auth API the issuers are built from.
        clock: epoch seconds; tokens are issued at ``clock()`` unless told otherwise. Share the
            clock of the code under test (the ``skaala_session_kit`` fixture uses
            ``skaala_clock``).

    .. versionadded:: 0.1.0
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        *,
        project_id: str = "test-project",
        api_url: str = _API_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.project_id = project_id
        self.api_url = api_url.rstrip("/")
        self.clock = clock
        self._keys: dict[str, EllipticCurvePrivateKey] = {}
        self.key_id = self.add_key()

    # -- keys ----------------------------------------------------------------------------------

    def add_key(self, key_id: str | None = None) -> str:
        """Add a signing key to the JWKS (it does not sign until :meth:`rotate` or
        ``mint(key_id=...)``); returns its ``kid``."""
        kid = key_id or "test-" + secrets.token_hex(6)
        self._keys[kid] = _new_key()
        return kid

    def rotate(self, *, keep_old: bool = True) -> str:
        """Sign with a new key from now on; the old one stays in the JWKS unless
        ``keep_old=False``. Returns the new ``kid``."""
        old = self.key_id
        self.key_id = self.add_key()
        if not keep_old:
            del self._keys[old]
        return self.key_id

    @property
    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS (``{"keys": [...]}``): give it to the verifier, or serve it."""
        keys = []
        for kid, private in self._keys.items():
            numbers = private.public_key().public_numbers()
            keys.append(
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": kid,
                    "x": _b64(numbers.x.to_bytes(32, "big")),
                    "y": _b64(numbers.y.to_bytes(32, "big")),
                }
            )
        return {"keys": keys}

    def issuer(self, kind: Literal["normal", "restricted", "anonymous"] = "normal") -> str:
        """The ``iss`` Stack Auth gives a user of that kind."""
        suffix = {"normal": "", "restricted": "-restricted-users", "anonymous": "-anonymous-users"}
        project = urllib.parse.quote(self.project_id, safe="")
        return f"{self.api_url}/api/v1/projects{suffix[kind]}/{project}"

    # -- tokens --------------------------------------------------------------------------------

    def mint(
        self,
        user_id: str = "user_1",
        *,
        expires_in: float | timedelta = 600,
        issued_at: float | None = None,
        anonymous: bool = False,
        restricted: bool = False,
        key_id: str | None = None,
        header: Mapping[str, object] | None = None,
        **claims: Any,
    ) -> str:
        """A signed access token, as Stack Auth would issue it.

        Args:
            user_id: ``sub``.
            expires_in: seconds (or a timedelta) from ``iat`` to ``exp``; negative for a token
                already expired.
            issued_at: ``iat`` (epoch seconds); default ``clock()``, rounded down.
            anonymous: an anonymous user (audience ``<project>:anon``, its issuer, the flags).
            restricted: a restricted user (audience ``<project>:restricted``).
            key_id: sign with this key of the kit (default: the current one).
            header: more (or overriding) JWS header fields (``{"typ": "JWT"}``).
            **claims: more claims, or overrides (``aud="other"``, ``nbf=...``); ``None``
                removes a claim (``exp=None``: a token without expiry).
        """
        now = math.floor(self.clock() if issued_at is None else issued_at)
        lifetime = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
        kind: Literal["normal", "restricted", "anonymous"] = (
            "anonymous" if anonymous else "restricted" if restricted else "normal"
        )
        audience = {"normal": "", "restricted": ":restricted", "anonymous": ":anon"}[kind]
        payload: dict[str, Any] = {
            "sub": user_id,
            "iss": self.issuer(kind),
            "aud": self.project_id + audience,
            "iat": now,
            "exp": math.floor(now + lifetime),
            "project_id": self.project_id,
            "branch_id": "main",
            "refresh_token_id": "rt-" + secrets.token_hex(8),
            "role": "authenticated",
            "is_anonymous": anonymous,
            "is_restricted": anonymous or restricted,
        }
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return self.sign(payload, header=header, key_id=key_id)

    def sign(
        self,
        payload: Mapping[str, object],
        *,
        header: Mapping[str, object] | None = None,
        key_id: str | None = None,
    ) -> str:
        """Sign any payload with ES256 (for tokens no :meth:`mint` option makes). The header is
        ``{"alg": "ES256", "kid": <key_id>}`` updated with ``header``; a header that says
        another ``alg`` is still signed ES256 (that is the point of such a test)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        kid = key_id or self.key_id
        fields: dict[str, object] = {"alg": "ES256", "kid": kid, **(header or {})}
        signing_input = f"{_b64(_json(fields))}.{_b64(_json(payload))}".encode("ascii")
        r, s = decode_dss_signature(self._keys[kid].sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input.decode('ascii')}.{_b64(signature)}"

    def headers(
        self,
        user_id: str = "user_1",
        *,
        carrier: Literal["cookie", "sdk", "header"] = "cookie",
        **mint_options: Any,
    ) -> dict[str, str]:
        """Request headers carrying a fresh token for ``user_id``.

        Args:
            carrier: ``"cookie"``: ``Cookie: stack-access-token=<token>``; ``"sdk"``: the Stack
                SDK's pair, ``Cookie: stack-access=<URL-encoded ["<refresh>","<token>"]>;
                stack-refresh-<project>=<refresh>``; ``"header"``: ``X-Stack-Access-Token``.
            **mint_options: see :meth:`mint`.
        """
        token = self.mint(user_id, **mint_options)
        if carrier == "header":
            return {"X-Stack-Access-Token": token}
        if carrier == "sdk":
            refresh = secrets.token_urlsafe(24)
            pair = urllib.parse.quote(json.dumps([refresh, token], separators=(",", ":")))
            return {"Cookie": f"stack-access={pair}; stack-refresh-{self.project_id}={refresh}"}
        return {"Cookie": f"stack-access-token={token}"}

    def verifier(self, **options: Any) -> StackAuthVerifier:
        """A :class:`~skaala_auth.session.StackAuthVerifier` for this kit's project, JWKS (as it
        is now: inline) and clock; ``options`` override (needs PyJWT)."""
        from ..session import StackAuthVerifier

        options.setdefault("jwks", self.jwks)
        options.setdefault("api_url", self.api_url)
        options.setdefault("clock", self.clock)
        return StackAuthVerifier(project_id=self.project_id, **options)

    def __repr__(self) -> str:
        return f"SessionKit(project_id={self.project_id!r}, key_id={self.key_id!r})"


_default: SessionKit | None = None
_default_lock = threading.Lock()


def _default_kit() -> SessionKit:
    """One kit per process, made on first use: the key behind :func:`mint_session` and
    :func:`session_jwks`, for settings written at import time (Django ``settings.py``)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SessionKit()
        return _default


def session_jwks() -> dict[str, list[dict[str, str]]]:
    """The JWKS of the process's test signing key (made on first use, never written down:
    nothing outside this process can sign with it). Configure the service under test with it::

        StackAuthVerifier(project_id="test-project", jwks=session_jwks())

    .. versionadded:: 0.1.0
    """
    return _default_kit().jwks


def mint_session(
    user_id: str = "user_1",
    *,
    project_id: str = "test-project",
    expires_in: float | timedelta = 600,
    now: float | None = None,
    **claims: Any,
) -> str:
    """A Stack Auth access token for ``user_id``, signed by the key of :func:`session_jwks`.

    Args:
        user_id: ``sub``.
        project_id: the audience (and the project in the issuer).
        expires_in: seconds (or a timedelta) from ``now`` to ``exp``.
        now: ``iat`` (epoch seconds); default the system clock.
        **claims: see :meth:`SessionKit.mint` (``anonymous=True``, ``aud="other"``, ``exp=None``…).

    .. versionadded:: 0.1.0
    """
    kit = _default_kit()
    if project_id == kit.project_id:
        return kit.mint(user_id, expires_in=expires_in, issued_at=now, **claims)
    other = SessionKit(project_id=project_id, api_url=kit.api_url, clock=kit.clock)
    other._keys, other.key_id = kit._keys, kit.key_id  # the same key, another project
    return other.mint(user_id, expires_in=expires_in, issued_at=now, **claims)
