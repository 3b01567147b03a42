"""An invalidation bus over Redis pub/sub, for stores that cannot tell other processes what
changed (or for several stores' worth of authenticators that must hear each other).

The PostgreSQL store carries its own invalidations (LISTEN/NOTIFY) and the SQLite store its own
(a change log every process polls). A store without either — a third-party store, the Django ORM
store on a shared database — reaches only the authenticators of its own process: the others
keep serving a revoked key until their cache entry expires (``cache_ttl``). The bus closes that
gap with a Redis server the service already runs:

- every change a process makes through its store (a revocation, a rotation, a new key, a
  membership change) is published on the bus's channel, from the thread that made it, when the
  store announces it (after its commit);
- every process's bus subscribes to the channel in a background thread and hands the changes of
  the *other* processes to its authenticators, which drop the affected cache entries (and teach
  their digest filters the new keys).

**The reconnect rule** (as for PostgreSQL's listener): messages published while the subscriber
is not connected are lost, so while it is down (its connection dropped, or no answer to its
``PING`` for three ``heartbeat`` intervals) every poll of its authenticators drops their caches
(:meth:`RedisInvalidationBus.healthy` is false), and when it connects again it tells them to drop
everything once more (``Change("all")``), with a log line at WARNING on ``skaala_auth.bus``.

A change is published once, by the process that made it: a ``Change("all")`` (a process's own
uncertainty) is never published. If the publish fails (Redis down), it is logged, and the other
processes catch up through their own cache expiry, or through the reconnect rule if their
subscribers saw the same outage.

Needs the ``redis`` extra: ``pip install 'skaala-auth[redis]'``.

.. versionadded:: 0.5.0
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

try:
    import redis
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "the Redis invalidation bus needs redis-py: pip install 'skaala-auth[redis]'",
        name=error.name,
    ) from error

from .outage import Outage
from .stores.base import Change, ChangeFeed, KeyStore, Subscriber

__all__ = ["RedisInvalidationBus"]

log = logging.getLogger("skaala_auth.bus")

#: Seconds the subscriber waits for a message at a time: how long ``close()`` may wait for it.
_TICK: Final = 0.2
#: The subscriber's reconnection backoff: first wait, and the longest.
_BACKOFF: Final = (0.1, 5.0)
_KINDS: Final = frozenset({"key", "member", "all"})


class RedisInvalidationBus:
    """Carries :class:`~skaala_auth.stores.base.Change` events between processes over a Redis
    pub/sub channel (see the module's docstring).

    Args:
        url: a Redis URL (``redis://host:6379/0``, ``rediss://…``); or
        client: a ``redis.Redis`` of the service's own (its connection pool is shared; the
            subscriber takes one connection of it for good).
        channel: the channel; every process of one service (one store) uses the same one.
        heartbeat: seconds between the subscriber's ``PING``; three without an answer count as
            down.
        timeout: seconds a first subscriber waits for the bus's first connection attempt, and
            the socket timeout of connections the bus opens from ``url``.

    Plug it into every authenticator, and into any process that changes keys without one (a
    worker that runs :class:`~skaala_auth.KeyManager`)::

        bus = RedisInvalidationBus("redis://cache.internal:6379/0")
        auth = Authenticator(store, invalidation_bus=bus)
        bus.attach(store)  # a process with a KeyManager and no authenticator

    .. versionadded:: 0.5.0
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        channel: str = "skaala_auth:changes",
        heartbeat: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give the bus a url or a client, not both")
        if not channel:
            raise ValueError("channel must not be empty")
        self.channel = channel
        self.heartbeat = heartbeat
        self.timeout = timeout
        self._origin = secrets.token_hex(8)
        #: The name of the bus's connections (``CLIENT LIST``) when it opened them from ``url``.
        self.client_name: str | None = None
        if client is None:
            assert url is not None  # noqa: S101 - checked above
            self.client_name = f"skaala_auth:bus:{self._origin}"
            client = redis.Redis.from_url(
                url,
                client_name=self.client_name,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            self._owned = True
        else:
            self._owned = False
        self._redis = client
        self._feed = ChangeFeed()
        self._lock = threading.Lock()
        self._attached: dict[int, tuple[weakref.ref[Any], Callable[[], None]]] = {}
        self._subscriber: _Subscriber | None = None
        self._closed = False
        self._publish_outage = Outage(
            log,
            "could not publish a change on the invalidation bus: other processes hear of it "
            "only when their cache entries expire",
            "the invalidation bus takes changes again",
        )

    # -- the publishing half -------------------------------------------------------------------

    def attach(self, store: KeyStore) -> None:
        """Publish every change ``store`` announces in this process on the bus (idempotent)."""
        with self._lock:
            found = self._attached.get(id(store))
            if found is not None and found[0]() is store:
                return
            unsubscribe = store.subscribe(self._forward)
            self._attached[id(store)] = (weakref.ref(store), unsubscribe)

    def publish(self, change: Change) -> None:
        """Send ``change`` to the other processes on the bus (a ``Change("all")`` is not sent:
        it says what this process missed, nothing about the store). Never raises: a failure is
        logged."""
        if change.kind == "all" or self._closed:
            return
        payload: dict[str, str] = {"o": self._origin, "k": change.kind}
        for field, value in (("i", change.key_id), ("t", change.team_id), ("u", change.user_id)):
            if value is not None:
                payload[field] = value
        try:
            self._redis.publish(self.channel, json.dumps(payload, separators=(",", ":")))
        except redis.RedisError as error:
            self._publish_outage.failed(error)
        else:
            if self._publish_outage.failing:
                self._publish_outage.succeeded()

    def _forward(self, change: Change) -> None:
        self.publish(change)

    # -- the subscribing half ------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` (in the bus's thread) with every change the other processes publish,
        and with ``Change("all")`` when the subscriber reconnects; returns the unsubscribe
        function. The first subscriber starts the subscriber thread and waits (at most
        ``timeout``) for its first connection attempt."""
        unsubscribe = self._feed.subscribe(callback)
        with self._lock:
            subscriber = self._subscriber
            started = subscriber is None and not self._closed
            if started:
                subscriber = self._subscriber = _Subscriber(
                    self._redis, self.channel, self._origin, self._feed, self.heartbeat
                )
                subscriber.start()
        if started and subscriber is not None:
            subscriber.attempted.wait(self.timeout)
        return unsubscribe

    def healthy(self) -> bool:
        """True while the subscriber is connected and answers its heartbeat (and before anyone
        subscribed: there is nothing to miss then)."""
        subscriber = self._subscriber
        return subscriber is None or subscriber.healthy()

    def close(self) -> None:
        """Stop the subscriber, stop publishing, and close the connections the bus opened.
        Idempotent."""
        with self._lock:
            self._closed = True
            subscriber, self._subscriber = self._subscriber, None
            attached, self._attached = self._attached, {}
        for _, unsubscribe in attached.values():
            unsubscribe()
        if subscriber is not None:
            subscriber.stop()
        if self._owned:
            self._redis.close()

    def __repr__(self) -> str:
        return f"RedisInvalidationBus(channel={self.channel!r})"


class _Subscriber:
    """The subscribing connection in a daemon thread, reconnecting with backoff."""

    def __init__(
        self, client: redis.Redis, channel: str, origin: str, feed: ChangeFeed, heartbeat: float
    ) -> None:
        self._redis = client
        self._channel = channel
        self._origin = origin
        self._feed = feed
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        #: Set once the first connection attempt has succeeded or failed.
        self.attempted = threading.Event()
        self.connected = False
        self._heard = 0.0  # time.monotonic() of the last sign of life
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="skaala-auth-bus", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def healthy(self) -> bool:
        return self.connected and time.monotonic() - self._heard < 3 * self._heartbeat

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_TICK * 5)

    def _run(self) -> None:
        backoff = _BACKOFF[0]
        first = True
        while not self._stop.is_set():
            try:
                self._listen(first)
            except Exception as error:  # never let the thread die: a dead subscriber hears nothing
                self._lost(error)
            else:
                return  # stopped
            finally:
                self.connected = False
                self.attempted.set()
            first = False
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, _BACKOFF[1])

    def _listen(self, first: bool) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            confirmed = pubsub.get_message(timeout=max(self._heartbeat * 3, 1.0))
            if confirmed is None or confirmed["type"] != "subscribe":
                raise ConnectionError("Redis did not confirm the subscription")
            self._up(first)
            pinged = time.monotonic()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_TICK)
                now = time.monotonic()
                if message is not None:
                    self._heard = now
                    kind = message["type"]
                    if kind == "message":
                        self._deliver(message["data"])
                    elif kind == "subscribe":
                        # redis-py reconnected and subscribed again by itself: whatever was
                        # published in between is lost.
                        self._lost(ConnectionError("the subscriber's connection was re-made"))
                        self._up(False)
                if now - pinged >= self._heartbeat:
                    pubsub.ping()
                    pinged = now
                if now - self._heard > 3 * self._heartbeat:
                    raise TimeoutError(f"no answer to PING for {3 * self._heartbeat:g} s")
        finally:
            pubsub.close()

    def _up(self, first: bool) -> None:
        self._heard = time.monotonic()
        self.connected = True
        self.attempted.set()
        if self._down_since is not None:
            log.warning(
                "the invalidation bus is subscribed to Redis again after %.1f s: dropped every "
                "cached key (changes published meanwhile were not heard)",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        if not first:
            self._feed.publish(Change("all"))

    def _lost(self, error: BaseException) -> None:
        if self._stop.is_set():
            return
        was_up = self.connected
        self.connected = False
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "the invalidation bus lost its Redis subscription (%s): every poll drops the "
                "caches until it is back",
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            )
        if was_up:
            self._feed.publish(Change("all"))

    def _deliver(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            origin, kind = message["o"], message["k"]
            if kind not in _KINDS:
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError):
            # Not ours to read (another version, a hand-sent PUBLISH): assume the worst.
            self._feed.publish(Change("all"))
            return
        if origin == self._origin:
            return  # this process's own change: its authenticators heard it from the store
        get = message.get
        self._feed.publish(Change(kind, key_id=get("i"), team_id=get("t"), user_id=get("u")))
