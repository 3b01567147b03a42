"""Audit events: every authentication outcome, observable, never containing a key.

Events go to the ``skaala_auth.audit`` logger (successes at DEBUG, refusals at INFO, outages —
the key store, the session JWKS: 503 — at WARNING) and, when one is given, to the
authenticator's ``audit`` callback.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from .errors import AuthError, Reason
from .models import Principal

__all__ = ["AuditEvent", "AuditHook", "audit_logger"]

audit_logger: Final = logging.getLogger("skaala_auth.audit")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One authentication outcome.

    Attributes:
        outcome: ``"success"`` or ``"failure"``.
        reason: why it failed (``None`` on success).
        status_code: the HTTP status the request gets (200 on success).
        key_id: the key's id, when the key was found.
        key_prefix: the display prefix (``sk_live_AbCd…wxyz``) of a well-formed key; never more.
        team_id: the key's team, when known.
        user_id: the key's user, when known.
        method: ``"api_key"`` or ``"session"``: the credential that was (or was being)
            checked, when known.

    .. versionadded:: 0.1.0
    """

    outcome: Literal["success", "failure"]
    reason: Reason | None
    status_code: int
    key_id: str | None = None
    key_prefix: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    method: str | None = None

    @classmethod
    def success(cls, principal: Principal) -> AuditEvent:
        return cls(
            "success",
            None,
            200,
            principal.key_id,
            principal.key_prefix,
            principal.team_id,
            principal.user_id,
            principal.method,
        )

    @classmethod
    def failure(
        cls, error: AuthError, principal: Principal | None = None, key_prefix: str | None = None
    ) -> AuditEvent:
        if principal is None:
            return cls("failure", error.reason, error.status_code, key_prefix=key_prefix)
        return cls(
            "failure",
            error.reason,
            error.status_code,
            principal.key_id,
            principal.key_prefix,
            principal.team_id,
            principal.user_id,
            principal.method,
        )

    def log(self) -> None:
        if self.outcome == "success":
            level = logging.DEBUG
        elif self.status_code >= 500:  # the store, the session JWKS: an outage
            level = logging.WARNING
        else:
            level = logging.INFO
        if audit_logger.isEnabledFor(level):
            audit_logger.log(
                level,
                "auth %s reason=%s status=%s key_id=%s prefix=%s team=%s user=%s method=%s",
                self.outcome,
                self.reason.value if self.reason else "-",
                self.status_code,
                self.key_id or "-",
                self.key_prefix or "-",
                self.team_id or "-",
                self.user_id or "-",
                self.method or "-",
                extra={"skaala_audit": self},
            )


AuditHook = Callable[[AuditEvent], None]
