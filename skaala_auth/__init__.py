"""skaala_auth: API keys and dashboard sessions for Python web APIs.

The core (this package's top level) imports no web framework; adapters are imported explicitly:
``skaala_auth.starlette``, ``skaala_auth.fastapi``, ``skaala_auth.flask``, ``skaala_auth.wsgi``,
``skaala_auth.django``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from .__about__ import __version__
from .audit import AuditEvent
from .authenticator import Authenticator
from .errors import (
    AuthError,
    ConfigurationError,
    ForbiddenError,
    InsufficientScopeError,
    InvalidBatchError,
    InvalidExpiryError,
    InvalidKeyError,
    InvalidRequestError,
    InvalidSessionError,
    IpNotAllowedError,
    JwksUnavailableError,
    KeyManagementError,
    KeyNotFoundError,
    MembershipRevokedError,
    MissingKeyError,
    MissingSessionError,
    NotAMemberError,
    NotTeamMemberError,
    OriginRejectedError,
    RateLimitedError,
    RateLimiterUnavailableError,
    Reason,
    RoleRequiredError,
    ServiceUnavailableError,
    SessionRequiredError,
    StoreUnavailableError,
    TeamMismatchError,
    UnknownScopeError,
    UsageLimitExceededError,
)
from .hashing import Hasher
from .keys import KEY_PATTERN, display_prefix, generate_key, is_well_formed, parse_key
from .manager import KeyManager
from .models import ApiKey, Member, Principal, RateLimit, RateLimitState, Role
from .ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from .scopes import DEFAULT_SCOPES, ScopeRegistry
from .stores import KeyStore, MemoryKeyStore, SQLiteKeyStore

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuthError",
    "Authenticator",
    "ConfigurationError",
    "DEFAULT_SCOPES",
    "ForbiddenError",
    "Hasher",
    "InsufficientScopeError",
    "InvalidBatchError",
    "InvalidExpiryError",
    "InvalidKeyError",
    "InvalidRequestError",
    "InvalidSessionError",
    "IpNotAllowedError",
    "JwksUnavailableError",
    "KEY_PATTERN",
    "KeyManagementError",
    "KeyManager",
    "KeyNotFoundError",
    "KeyStore",
    "Member",
    "MembershipRevokedError",
    "MemoryKeyStore",
    "MemoryRateLimiter",
    "MissingKeyError",
    "MissingSessionError",
    "NotAMemberError",
    "NotTeamMemberError",
    "OriginRejectedError",
    "Principal",
    "RateLimit",
    "RateLimitState",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "Reason",
    "RedisRateLimiter",
    "Role",
    "RoleRequiredError",
    "SQLiteKeyStore",
    "ScopeRegistry",
    "ServiceUnavailableError",
    "SessionRequiredError",
    "StoreUnavailableError",
    "TeamMismatchError",
    "UnknownScopeError",
    "UsageLimitExceededError",
    "__version__",
    "display_prefix",
    "generate_key",
    "is_well_formed",
    "parse_key",
]
