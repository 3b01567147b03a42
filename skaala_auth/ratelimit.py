"""Rate limiting: the protocol an authenticator consults once a key is granted.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import Protocol

from .models import Principal

__all__ = ["RateLimiter"]


class RateLimiter(Protocol):
    """**Protocol:** decides whether an authenticated principal may make one more request.

    ``check`` returns ``None`` to allow, or raises :class:`~skaala_auth.RateLimitedError`.
    Implementations (in memory, Redis) plug in through ``Authenticator(rate_limiter=...)``.

    .. versionadded:: 0.1.0
    """

    def check(self, principal: Principal, now: float) -> None: ...
