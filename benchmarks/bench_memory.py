"""Memory per cached key: what an authenticator holds for each key it has seen (tracemalloc).

    .venv/bin/python benchmarks/bench_memory.py [--keys 5000]

5,000 keys are created in a ``MemoryKeyStore`` first (the store and the key strings are not
counted); tracemalloc then starts, every key is verified once, and the memory still allocated
after a garbage collection, divided by the number of keys, is the figure. One key verified
before tracing starts keeps one-time allocations (code paths, interned names) out of it.

Two figures: with the default settings (the cache entry, the principal, and the pending
``last_used_at`` mark of each key, which a real server holds between flushes too), and with
``track_last_used=False`` (the cache alone).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore

SCOPES = ("read:bookings",)


@dataclass(frozen=True)
class MemoryResults:
    keys: int
    per_key: float  # bytes, default settings
    per_key_cache_only: float | None  # bytes, track_last_used=False (None: option unavailable)


def _per_key(store: MemoryKeyStore, keys: list[str], warm: str, **options: Any) -> float:
    auth = Authenticator(store, last_used_interval=3600, **options)
    try:
        auth.verify(warm, required_scopes=SCOPES)
        gc.collect()
        tracemalloc.start()
        try:
            for key in keys:
                auth.verify(key, required_scopes=SCOPES)
            gc.collect()
            current, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return current / len(keys)
    finally:
        auth.close()


def measure(keys: int = 5000) -> MemoryResults:
    store = MemoryKeyStore()
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    created = [
        manager.create_key(team_id="team_1", user_id="user_1", scopes=list(SCOPES))[0]
        for _ in range(keys + 1)
    ]
    warm, measured = created[0], created[1:]
    per_key = _per_key(store, measured, warm)
    try:
        cache_only: float | None = _per_key(store, measured, warm, track_last_used=False)
    except TypeError:  # the option is gone
        cache_only = None
    return MemoryResults(keys, per_key, cache_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=5000)
    found = measure(parser.parse_args().keys)
    print(f"{found.keys} keys: {found.per_key:.0f} bytes per cached key (default settings)")
    if found.per_key_cache_only is not None:
        print(f"{found.per_key_cache_only:.0f} bytes per cached key with track_last_used=False")


if __name__ == "__main__":
    main()
