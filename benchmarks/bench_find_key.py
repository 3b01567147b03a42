"""What SQLiteKeyStore.find_key costs beyond its query, and where it goes.

    .venv/bin/python benchmarks/bench_find_key.py [--rounds 25] [--number 3000] [--keys 1000]

Baseline: the look-up query alone, ``execute`` + ``fetchone`` on the store's own read connection
(the same SQL, the same digest), which is the floor under any store that answers from SQLite.
Every variant runs in every round, in a shuffled order, and is reported as the median over rounds
of its time divided by the baseline's time *in the same round*, so machine noise cancels out.

The parts (rows starting with "part:") are each timed alone on a row fetched once; they add up to
roughly what ``find_key`` costs beyond the query.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import timeit
from collections.abc import Callable
from pathlib import Path

from skaala_auth import ApiKey, Authenticator, KeyManager, SQLiteKeyStore
from skaala_auth.stores import sqlite as sqlite_module
from skaala_auth.stores.base import KeyRecord

BASELINE = "query alone (execute + fetchone), hit"


def build(path: Path, count: int) -> tuple[SQLiteKeyStore, list[str]]:
    store = SQLiteKeyStore(path)
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    created = manager.create_keys(
        [{"team_id": "team_1", "user_id": "user_1", "scopes": ["read:bookings"]}] * count
    )
    return store, [key for key, _ in created]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--number", type=int, default=3000, help="calls per variant per round")
    parser.add_argument("--keys", type=int, default=1000, help="keys in the store")
    args = parser.parse_args()

    store, keys = build(Path(tempfile.mkdtemp()) / "bench.db", args.keys)
    key = random.choice(keys)
    digest = KeyManager(store).hasher.stored_digest(key)
    missing = "sha256$" + "0" * 64
    sql = sqlite_module._FIND_SQL
    reader = store._reader
    row = reader.execute(sql, (digest,)).fetchone()
    record = store.find_key(digest)
    assert record is not None
    api_key = record.key
    lock = threading.RLock()
    uncached = Authenticator(store, cache_size=0, last_used_interval=3600)
    uncached.verify(key)

    def lock_and_check() -> None:
        with lock:
            if store._failure is not None:
                raise AssertionError

    def checked() -> KeyRecord:  # the column-by-column path every row took before
        return KeyRecord(sqlite_module._checked_key(row, store.path), row[11], None)

    values = tuple(getattr(api_key, name) for name in _FIELDS)

    def ready_key() -> ApiKey:
        return ApiKey(*values)

    epoch, micro = sqlite_module._EPOCH, sqlite_module._MICRO
    created_at, expires_at = row[6], row[7]
    variants: dict[str, Callable[[], object]] = {
        BASELINE: lambda: reader.execute(sql, (digest,)).fetchone(),
        "find_key, hit": lambda: store.find_key(digest),
        "query alone, miss": lambda: reader.execute(sql, (missing,)).fetchone(),
        "find_key, miss": lambda: store.find_key(missing),
        "whole miss: Authenticator(cache_size=0).verify(key)": lambda: uncached.verify(key),
        "part: row → KeyRecord (fast path)": lambda: sqlite_module._record(row, store.path),
        "part: row → KeyRecord (column-by-column checks)": checked,
        "part: lock + failure check": lock_and_check,
        "part: two timestamps (created, expires)": lambda: (
            epoch + created_at * micro,
            epoch + expires_at * micro,
        ),
        "part: scope set (remembered)": lambda: sqlite_module._SCOPE_SETS.get(row[4]),
        "part: ApiKey(…) from ready values": ready_key,
        "part: KeyRecord(…)": lambda: KeyRecord(api_key, digest, None),
    }
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    micros: dict[str, list[float]] = {name: [] for name in variants}
    miss_ratios: list[float] = []
    order = list(variants)
    for _ in range(args.rounds):
        random.shuffle(order)
        times = {name: timeit.timeit(variants[name], number=args.number) / args.number
                 for name in order}  # fmt: skip
        for name, seconds in times.items():
            ratios[name].append(seconds / times[BASELINE])
            micros[name].append(seconds * 1e6)
        miss_ratios.append(times["find_key, miss"] / times["query alone, miss"])

    print(f"rounds={args.rounds} number={args.number} keys={args.keys}")
    print("| variant | µs/call (median) | median ratio to the query alone (hit) |")
    print("|---|---:|---:|")
    for name in variants:
        median_us = statistics.median(micros[name])
        print(f"| {name} | {median_us:.2f} | {statistics.median(ratios[name]):.2f}× |")
    print(f"| find_key, miss ÷ query alone, miss | | {statistics.median(miss_ratios):.2f}× |")
    uncached.close()
    store.close()


_FIELDS = (
    "id team_id user_id name scopes prefix created_at expires_at revoked_at last_used_at "
    "rotated_from"
).split()

if __name__ == "__main__":
    main()
