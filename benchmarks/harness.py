"""Interleaved rounds and medians of per-round ratios: the one measuring rule of this folder.

The machine is shared and noisy, so no absolute timing is ever the claim. Every variant of a
benchmark runs once per round, in a shuffled order, and a comparison of two variants is the
median, over rounds, of their ratio *within the same round*: whatever slowed the machine during
one round slowed both sides of that round's ratio.
"""

from __future__ import annotations

import os
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Rounds:
    """Per-round values (seconds per call, or requests per second) of interleaved variants."""

    unit: str = "s/call"
    values: dict[str, list[float]] = field(default_factory=dict)

    def run(self, measure: dict[str, Callable[[], float]], rounds: int) -> Rounds:
        """Run every variant once per round, in a new shuffled order each round."""
        names = list(measure)
        for name in names:
            self.values.setdefault(name, [])
        for _ in range(rounds):
            random.shuffle(names)
            measured = {name: measure[name]() for name in names}
            for name in measure:  # appended in one go: a round is whole or absent
                self.values[name].append(measured[name])
        return self

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def ratios(self, name: str, baseline: str) -> list[float]:
        return [a / b for a, b in zip(self.values[name], self.values[baseline], strict=True)]

    def ratio(self, name: str, baseline: str) -> Ratio:
        """``name`` ÷ ``baseline``, the median of per-round ratios (with its quartiles)."""
        return Ratio.of(self.ratios(name, baseline))

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.values.values()), default=0)


@dataclass(frozen=True)
class Ratio:
    """A median of per-round ratios, with the quartiles that show its spread."""

    median: float
    low: float  # first quartile
    high: float  # third quartile
    rounds: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Ratio:
        data = sorted(values)
        if len(data) < 2:
            only = data[0] if data else float("nan")
            return cls(only, only, only, len(data))
        low, _, high = statistics.quantiles(data, n=4)
        return cls(statistics.median(data), low, high, len(data))

    def text(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f}×"

    def spread(self, digits: int = 2) -> str:
        return f"{self.low:.{digits}f}–{self.high:.{digits}f}"

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "q1": self.low, "q3": self.high, "rounds": self.rounds}


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's main thread (Linux): ``schedstat``'s nanoseconds on a CPU, or
    ``stat``'s user + system ticks where ``schedstat`` is missing."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled(authenticator: object) -> None:
    """Wait until an authenticator's background start-up work is done (the digest filter's
    first full read of the store, which its first request starts in a worker thread), so that
    it does not run during a measurement. Call it after the first request."""
    digest_filter = getattr(authenticator, "digest_filter", None)
    if digest_filter is not None and not digest_filter.wait_ready(60):
        raise RuntimeError("the digest filter did not finish its first read within 60 s")
