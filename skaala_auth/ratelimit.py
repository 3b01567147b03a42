"""Rate limiting: the protocol an authenticator consults once a key is granted, two limiters
built on the `limits <https://limits.readthedocs.io>`_ library.

- :class:`MemoryRateLimiter` — one process: counts in this process's memory.
- :class:`RedisRateLimiter` — every instance of a service: counts in Redis, atomically (a Lua
  script per hit), so that N instances admit the limit between them, not N times it.

Both count per key by default (``per="team"``: one budget for all the keys of a team), apply a
key's own limit (``create_key(..., rate_limit="10/minute")``) over their default, and return
where the key stands (:class:`~skaala_auth.RateLimitState`), which every adapter sends as
``X-RateLimit-Limit/Remaining/Reset`` — on allowed answers as on 429s.

Dashboard sessions are never rate limited here: the limiter sees API keys only.

The default algorithm is the **moving window** (the exact log of the last ``window`` seconds'
hits): no burst past the limit in any window, which a fixed window allows at its edges (twice
the limit across a boundary). ``algorithm="sliding-window"`` (an approximation from two
counters: constant memory per key, for large limits) and ``"fixed-window"`` (one counter)
are there too.

:class:`FailedAuthLimiter` is another kind: the limiter of failed authentications per client
address (``Authenticator(failed_auth_limit=...)``), in this process's memory.

.. versionadded:: 0.1.0
.. versionchanged:: 0.4.0
   ``check`` returns a :class:`~skaala_auth.RateLimitState`; :class:`MemoryRateLimiter` and
   :class:`RedisRateLimiter`.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from .errors import ConfigurationError, RateLimitedError
from .models import Principal, RateLimit, RateLimitState
from .outage import Outage

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.storage import Storage
    from limits.strategies import RateLimiter as LimitsStrategy

__all__ = [
    "Algorithm",
    "FailedAuthLimiter",
    "MemoryRateLimiter",
    "RateLimit",
    "RateLimitState",
    "RateLimiter",
    "RedisRateLimiter",
]

log = logging.getLogger("skaala_auth")

#: The counting algorithms (see the module docstring).
Algorithm = Literal["moving-window", "sliding-window", "fixed-window"]


class RateLimiter(Protocol):
    """**Protocol:** decides whether an authenticated API key may make one more request.

    ``check`` returns where the key stands (:class:`~skaala_auth.RateLimitState`, sent as the
    ``X-RateLimit-*`` headers of the answer; ``None`` sends none) or raises
    :class:`~skaala_auth.RateLimitedError` (429). Anything else it raises is a 503 (fail
    closed): a limiter that prefers to fail open catches its backend's errors itself, as
    :class:`RedisRateLimiter` does by default.

    A limiter whose ``check`` waits on the network sets ``blocking = True``: the authenticator
    then never calls it on an event loop (its async driver runs it in a worker thread). Without
    the attribute a limiter is called inline.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.4.0
       ``check`` returns the state; ``blocking``.
    """

    def check(self, principal: Principal, now: float) -> RateLimitState | None: ...


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


_STRATEGIES: Final = {
    "moving-window": "MovingWindowRateLimiter",
    "sliding-window": "SlidingWindowCounterRateLimiter",
    "fixed-window": "FixedWindowRateLimiter",
}


def _limits() -> Any:
    try:
        import limits
        import limits.strategies
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the rate limiters need the limits library: pip install 'skaala-auth[ratelimit]'"
        ) from error
    return limits


class _LimitsRateLimiter:
    """What both limiters share: the default limit, per-key overrides, the ``limits`` calls."""

    blocking: bool = False

    def __init__(
        self,
        storage: Storage,
        *,
        limit: int,
        window: int,
        per: Literal["key", "team"],
        algorithm: Algorithm,
        team_limits: Mapping[str, RateLimit | str] | None,
    ) -> None:
        if per not in ("key", "team"):
            raise ConfigurationError("per is 'key' or 'team'", setting="per")
        if algorithm not in _STRATEGIES:
            raise ConfigurationError(
                f"algorithm is one of {', '.join(_STRATEGIES)}", setting="algorithm"
            )
        limits = _limits()
        self.default = RateLimit(limit, window)
        self.per = per
        self.algorithm: Algorithm = algorithm
        self.team_limits = {
            team: RateLimit.parse(value) for team, value in (team_limits or {}).items()
        }
        self._storage = storage
        self._strategy: LimitsStrategy = getattr(limits.strategies, _STRATEGIES[algorithm])(storage)
        self._items: dict[RateLimit, RateLimitItem] = {}
        self._item_class = limits.RateLimitItemPerSecond

    def limit_for(self, principal: Principal) -> tuple[RateLimit, str]:
        """The limit that applies to ``principal`` and the name it is counted under."""
        if self.per == "team":
            return self.team_limits.get(principal.team_id, self.default), "team:" + (
                principal.team_id
            )
        own = principal.rate_limit
        if own is None:
            own = self.team_limits.get(principal.team_id, self.default)
        return own, "key:" + (principal.key_id or principal.user_id)

    def _item(self, limit: RateLimit) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            if len(self._items) >= 1024:
                self._items.clear()
            item = self._items[limit] = self._item_class(limit.limit, limit.window)
        return item

    def _hit(self, principal: Principal) -> RateLimitState:
        """One hit: the state, or :class:`RateLimitedError`. Raises the storage's errors."""
        limit, name = self.limit_for(principal)
        item = self._item(limit)
        allowed = self._strategy.hit(item, name)
        stats = self._strategy.get_window_stats(item, name)
        # The reset is the storage's clock (limits counts on time.time()), never the request's.
        reset = max(stats.reset_time - time.time(), 0.0)
        if not allowed:
            raise RateLimitedError(limit=limit.limit, remaining=0, reset=reset)
        return RateLimitState(limit.limit, max(stats.remaining, 0), reset)

    def reset(self) -> None:
        """Forget every count (tests; an operator's reset)."""
        self._storage.reset()


class MemoryRateLimiter(_LimitsRateLimiter):
    """A rate limiter for one process: counts in memory, shared by this process's threads.

    Args:
        limit: requests allowed per window (the default; a key's own limit wins).
        window: the window, in seconds.
        per: ``"key"`` (default) or ``"team"`` — one budget for all of a team's keys.
        algorithm: ``"moving-window"`` (default, exact), ``"sliding-window"`` or
            ``"fixed-window"``.
        team_limits: limits by team id, over the default (and under a key's own).

    Counts on the wall clock (:func:`time.time`), not on the authenticator's injected clock.
    Several processes behind one port each count on their own: use :class:`RedisRateLimiter`.

    .. versionadded:: 0.4.0
    """

    def __init__(
        self,
        *,
        limit: int,
        window: int = 60,
        per: Literal["key", "team"] = "key",
        algorithm: Algorithm = "moving-window",
        team_limits: Mapping[str, RateLimit | str] | None = None,
    ) -> None:
        limits = _limits()
        super().__init__(
            limits.storage.MemoryStorage(),
            limit=limit,
            window=window,
            per=per,
            algorithm=algorithm,
            team_limits=team_limits,
        )

    def check(self, principal: Principal, now: float) -> RateLimitState:
        return self._hit(principal)

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(limit={self.default.limit}, window={self.default.window})"


class RedisRateLimiter(_LimitsRateLimiter):
    """A rate limiter shared by every instance of a service, counting in Redis.

    Each hit is one atomic script in Redis (the ``limits`` library's): instances never admit
    more than the limit between them.

    Args:
        url: ``redis://host:6379/0`` (or ``rediss://``, ``redis+unix://``); or
        client: a ``redis.Redis`` client to share its connection pool.
        limit: requests allowed per window (the default; a key's own limit wins).
        window: the window, in seconds.
        prefix: the prefix of every Redis key this limiter writes (one per service).
        per: ``"key"`` (default) or ``"team"``.
        algorithm: ``"moving-window"`` (default, exact), ``"sliding-window"`` or
            ``"fixed-window"``.
        team_limits: limits by team id, over the default (and under a key's own).
        fail_open: when Redis fails (down, slow past ``socket_timeout``), let the request
            through without a count (default) — rate limiting only: the key itself is always
            checked. ``False``: answer 503.
        socket_timeout: seconds a Redis call may take before it counts as a failure.

    A failure is logged with its traceback when an outage starts, then one line per failure,
    and once when Redis answers again.

    .. versionadded:: 0.4.0
    """

    blocking = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        limit: int,
        window: int = 60,
        prefix: str = "skaala_auth",
        per: Literal["key", "team"] = "key",
        algorithm: Algorithm = "moving-window",
        team_limits: Mapping[str, RateLimit | str] | None = None,
        fail_open: bool = True,
        socket_timeout: float = 0.5,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisRateLimiter needs url= or client=, one of them")
        limits = _limits()
        try:
            from limits.storage import RedisStorage
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "RedisRateLimiter needs redis: pip install 'skaala-auth[redis]'"
            ) from error
        del limits
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        if client is not None:
            storage = RedisStorage(
                "redis://", connection_pool=client.connection_pool, key_prefix=prefix
            )
        else:
            assert url is not None  # noqa: S101 - checked above
            storage = RedisStorage(url, key_prefix=prefix, **options)
        super().__init__(
            storage,
            limit=limit,
            window=window,
            per=per,
            algorithm=algorithm,
            team_limits=team_limits,
        )
        self.prefix = prefix
        self.fail_open = fail_open
        self._outage = Outage(
            log,
            "the Redis rate limiter failed: requests go through uncounted"
            if fail_open
            else "the Redis rate limiter failed: requests are refused (503)",
            "the Redis rate limiter answers again",
        )

    def check(self, principal: Principal, now: float) -> RateLimitState | None:
        try:
            state = self._hit(principal)
        except RateLimitedError:
            self._outage.succeeded()
            raise
        except Exception as error:
            if not self.fail_open:
                raise
            self._outage.failed(error)
            return None
        self._outage.succeeded()
        return state

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(limit={self.default.limit}, window={self.default.window}, "
            f"prefix={self.prefix!r})"
        )
