"""DEMO ONLY — a local stand-in for Stack Auth, so that the demo's dashboard can be tried
without a Stack Auth account. **Not Stack Auth, not for production.**

It makes its own ES256 key when the demo starts (kept in memory, never written down: a restart
signs everyone out), publishes the public half as a JWKS, and mints access tokens shaped like
Stack Auth's for the demo's owner. The demo's authenticator verifies them with the ordinary
:class:`~skaala_auth.session.StackAuthVerifier`, so the dashboard goes through the real
session path: cookie, signature, audience, issuer, role from the team's membership, CSRF
``Origin`` check.

Nothing outside :mod:`skaala_auth.demo` imports this module, and nothing in the library can
switch it on: a service trusts only the JWKS of the Stack Auth project it names.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from ..session import StackAuthVerifier

__all__ = ["DEMO_ISSUER", "DEMO_PROJECT", "DemoIssuer"]

#: The demo's project id: the audience of its tokens.
DEMO_PROJECT: Final = "skaala-auth-demo"
#: The ``iss`` of its tokens: says what it is to anyone who decodes one.
DEMO_ISSUER: Final = "urn:skaala-auth:demo-issuer:not-stack-auth"
#: How long a demo session lasts, in seconds (Stack Auth's access tokens live ten minutes and
#: its SDK refreshes them; the demo has no refresh, so its sessions last an hour).
DEMO_SESSION_SECONDS: Final = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DemoIssuer:
    """DEMO ONLY: an ES256 key of its own, its JWKS, and Stack-Auth-shaped access tokens.

    Args:
        clock: epoch seconds.

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        try:
            import jwt  # noqa: F401 - minting needs PyJWT, as verifying does
            from cryptography.hazmat.primitives.asymmetric import ec
        except ImportError as error:  # pragma: no cover - the demo extra brings both
            raise ImportError(
                "the demo's sign-in needs PyJWT and cryptography: pip install 'skaala-auth[demo]'"
            ) from error
        self.clock = clock
        self.key_id = "demo-" + secrets.token_hex(6)
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS (``{"keys": [...]}``): what the demo app serves and trusts."""
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": self.key_id,
                    "x": _b64(numbers.x.to_bytes(32, "big")),
                    "y": _b64(numbers.y.to_bytes(32, "big")),
                }
            ]
        }

    def verifier(self) -> StackAuthVerifier:
        """A verifier that trusts this issuer's key, and only it (given inline: never fetched)."""
        return StackAuthVerifier(
            project_id=DEMO_PROJECT, jwks=self.jwks, issuers=[DEMO_ISSUER], clock=self.clock
        )

    def mint(self, user_id: str, *, expires_in: float = DEMO_SESSION_SECONDS) -> str:
        """An access token for ``user_id``, valid for ``expires_in`` seconds."""
        import jwt

        now = int(self.clock())
        claims: dict[str, Any] = {
            "sub": user_id,
            "iss": DEMO_ISSUER,
            "aud": DEMO_PROJECT,
            "iat": now,
            "exp": now + int(expires_in),
            "project_id": DEMO_PROJECT,
            "branch_id": "main",
            "refresh_token_id": str(uuid.uuid4()),
            "role": "authenticated",
            "name": "Demo owner",
            "email": None,
            "email_verified": False,
            "selected_team_id": None,
            "is_anonymous": False,
            "is_restricted": False,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.key_id})
