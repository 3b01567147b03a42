"""Write-behind ``last_used_at``: marks are cheap, writes are batched.

A successful authentication marks its key (a dict assignment). A background thread writes the
marks every ``interval`` seconds in one batch, so a key costs at most one write per interval
however busy it is. ``close()`` and interpreter exit flush what is pending. Times only move
forward: the store refuses to move ``last_used_at`` back, and a batch that fails is merged back
for the next try. A hard kill (SIGKILL, the OOM killer) loses what is pending: up to one
``interval`` of marks (see docs/operations.md).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Final

from .models import from_epoch
from .outage import Outage
from .stores.base import KeyStore

__all__ = ["LastUsedRecorder"]

log = logging.getLogger("skaala_auth.lastused")
_live: Final[weakref.WeakSet[LastUsedRecorder]] = weakref.WeakSet()


class LastUsedRecorder:
    """Batches ``last_used_at`` writes for one store.

    Args:
        store: where to write.
        interval: seconds between flushes.

    .. versionadded:: 0.1.0
    """

    def __init__(self, store: KeyStore, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the last-used interval must be positive")
        self._store = store
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._outage = Outage(
            log,
            "could not record last-used times; will retry",
            "recorded last-used times again",
            logging.INFO,
        )
        _live.add(self)

    def mark(self, key_id: str, when: float) -> None:
        with self._lock:
            if when > self._pending.get(key_id, 0.0):
                self._pending[key_id] = when
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="skaala-auth-last-used", daemon=True
                )
                self._thread.start()

    def pending(self) -> dict[str, float]:
        with self._lock:
            return dict(self._pending)

    def flush(self) -> int:
        """Write what is pending now. Returns how many keys were written."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            self._store.record_last_used({key: from_epoch(at) for key, at in batch.items()})
        except Exception as error:
            self._outage.failed(error)  # a store that is down fails every flush
            with self._lock:
                for key, at in batch.items():
                    if at > self._pending.get(key, 0.0):
                        self._pending[key] = at
            return 0
        self._outage.succeeded()
        return len(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def reopen(self) -> None:
        """Accept marks and run the background thread again after :meth:`close`."""
        with self._lock:
            self._closed = False
            self._stop = threading.Event()

    def close(self) -> None:
        """Stop the background thread and write what is pending."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.flush()


@atexit.register
def _flush_all() -> None:
    for recorder in list(_live):
        try:
            recorder.flush()
        except Exception:  # pragma: no cover - the store may be gone at exit
            log.warning("last-used flush at exit failed", exc_info=True)
