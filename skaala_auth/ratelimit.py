"""Rate limiting: the protocol an authenticator consults once a key is granted, and the limiter
of failed authentications per client address.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Protocol

from .errors import RateLimitedError
from .models import Principal

__all__ = ["FailedAuthLimiter", "RateLimiter"]


class RateLimiter(Protocol):
    """**Protocol:** decides whether an authenticated principal may make one more request.

    ``check`` returns ``None`` to allow, or raises :class:`~skaala_auth.RateLimitedError`.
    Implementations (in memory, Redis) plug in through ``Authenticator(rate_limiter=...)``.

    .. versionadded:: 0.1.0
    """

    def check(self, principal: Principal, now: float) -> None: ...


class FailedAuthLimiter:
    """Counts failed authentications per client address, and answers a client that fails too
    often 429 (:class:`~skaala_auth.RateLimitedError`, with ``Retry-After``) instead of 401.

    Only failures are counted and refused: a request whose key is valid is never answered by
    this limiter, whatever its address has sent before (see ``Authenticator(failed_auth_limit=)``
    for the order of the checks). A refused attempt is not counted, so ``Retry-After`` holds.

    The count is a moving window kept as a leaky bucket (GCRA): a client may fail ``limit``
    times in a row, and then once every ``window / limit`` seconds; it is free again once no
    failure remains in the last ``window`` seconds' worth. One float per client, at most
    ``max_clients`` of them (the least recently failing go first). IPv6 clients are counted by
    their ``/64``, which one host usually holds whole.

    Args:
        limit: failures allowed in a burst (and per ``window`` sustained).
        window: seconds.
        max_clients: clients remembered at most.

    Thread-safe (one lock, held for a dict update).

    .. versionadded:: 0.5.0
    """

    def __init__(self, limit: int, window: float, *, max_clients: int = 10_000) -> None:
        if limit < 1 or window <= 0 or max_clients < 1:
            raise ValueError("limit and max_clients must be at least 1, window positive")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._interval = window / limit
        self._due: dict[str, float] = {}  # client -> theoretical arrival time of its failures
        self._lock = threading.Lock()

    def refusal(self, client: str, now: float) -> RateLimitedError | None:
        """The 429 for ``client`` if one more failure would exceed its limit, else ``None``
        (nothing counted)."""
        due = self._due.get(_client_key(client))
        if due is None:
            return None
        wait = max(due, now) + self._interval - self.window - now
        if wait <= 0:
            return None
        return RateLimitedError(limit=self.limit, remaining=0, reset=wait)

    def failed(self, client: str, now: float) -> RateLimitedError | None:
        """Count one failed attempt by ``client``, or return the 429 (not counted) if it is
        over its limit."""
        name = _client_key(client)
        with self._lock:
            due = self._due.pop(name, None)
            start = now if due is None or due < now else due
            wait = start + self._interval - self.window - now
            if wait > 0:
                self._due[name] = start  # back at the young end, unchanged
                return RateLimitedError(limit=self.limit, remaining=0, reset=wait)
            self._due[name] = start + self._interval
            while len(self._due) > self.max_clients:
                del self._due[next(iter(self._due))]
        return None

    def __len__(self) -> int:
        return len(self._due)


def _client_key(client: str) -> str:
    """What a client is counted by: its address, or its /64 for an IPv6 address."""
    if ":" not in client:
        return client
    try:
        address = ipaddress.IPv6Address(client)
    except ValueError:
        return client
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return f"{int(address) >> 64:x}::/64"
