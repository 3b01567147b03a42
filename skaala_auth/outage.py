"""How the library logs a dependency that keeps failing (the key store's polls, the last-used
writer, the rate limiter): one traceback when an outage starts, then one line per failure, and
one line when it ends — polls come twice a second, and a log full of identical tracebacks hides
the first one.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging

__all__ = ["Outage"]


class Outage:
    """The log of one dependency's outages.

    Args:
        log: where to write.
        failure: what failed, as a line (``"could not poll the key store for changes"``).
        recovery: the line that says it works again.
        recovery_level: the level of that line.

    Not locked: two threads that fail at once may both log a traceback, which is harmless.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_failure", "_log", "_recovery", "_recovery_level", "failing")

    def __init__(
        self,
        log: logging.Logger,
        failure: str,
        recovery: str,
        recovery_level: int = logging.WARNING,
    ) -> None:
        self._log = log
        self._failure = failure
        self._recovery = recovery
        self._recovery_level = recovery_level
        #: An outage is going on (the last call failed).
        self.failing = False

    def failed(self, error: BaseException) -> None:
        """Log a failure: with its traceback if it starts an outage, as one line if not."""
        if self.failing:
            self._log.warning("%s: %s", self._failure, error)
        else:
            self._log.warning(self._failure, exc_info=error)
        self.failing = True

    def succeeded(self) -> None:
        """A call worked: log the end of an outage, if there was one."""
        if self.failing:
            self.failing = False
            self._log.log(self._recovery_level, self._recovery)
