"""Core hot-path benchmark: the authenticator against one SHA-256 call.

Every variant runs in every round, interleaved, and is reported as the median over rounds of
its time divided by the baseline's time *in the same round*, so machine noise cancels out.

    .venv/bin/python benchmarks/bench_core.py [--rounds 25] [--number 20000]

Baseline: one ``hashlib.sha256(key.encode()).digest()`` call on a 40-character key.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    KeyManager,
    MemoryKeyStore,
    SQLiteKeyStore,
    generate_key,
)

SCOPES = ("read:bookings",)


def setup(store: MemoryKeyStore | SQLiteKeyStore) -> str:
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=list(SCOPES))
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--number", type=int, default=20_000, help="calls per variant per round")
    args = parser.parse_args()

    memory = MemoryKeyStore()
    key = setup(memory)
    auth = Authenticator(memory, last_used_interval=3600)
    auth.verify(key)
    headers = {"Authorization": f"Bearer {key}"}
    raw_headers = [
        (b"host", b"api.example.com"),
        (b"user-agent", b"curl/8.5.0"),
        (b"accept", b"*/*"),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    bad_checksum = key[:-1] + ("A" if key[-1] != "A" else "B")
    wrong_length = key[:-3]
    unknown = generate_key()

    tmp = Path(tempfile.mkdtemp())
    sqlite = SQLiteKeyStore(tmp / "bench.db")
    sqlite_key = setup(sqlite)
    uncached = Authenticator(sqlite, cache_size=0, last_used_interval=3600)

    key40 = key[:40]
    # The "bare floor": length/prefix check + SHA-256 + dict lookup + expiry + scope.
    floor_table = {hashlib.sha256(key.encode()).digest(): (4e9, frozenset(SCOPES))}

    def floor() -> object:
        if len(key) != 46 or not key.startswith("sk_live_"):
            return None
        expiry, scopes = floor_table[hashlib.sha256(key.encode()).digest()]
        return 1.8e9 < expiry and scopes.issuperset(SCOPES)

    def refuse(candidate: str) -> Callable[[], None]:
        def call() -> None:
            try:
                auth.verify(candidate)
            except InvalidKeyError:
                pass

        return call

    variants: dict[str, Callable[[], object]] = {
        "baseline sha256": lambda: hashlib.sha256(key40.encode()).digest(),
        "bare floor": floor,
        "check, cached hit": lambda: auth.check(key, SCOPES),
        "verify, cached hit": lambda: auth.verify(key, required_scopes=SCOPES),
        "check_request(ASGI header pairs), cached hit": lambda: auth.check_request(
            raw_headers, required_scopes=SCOPES
        ),
        "authenticate(headers dict), cached hit": lambda: auth.authenticate(
            headers, required_scopes=SCOPES
        ),
        "check, malformed: wrong length": lambda: auth.check(wrong_length),
        "check, malformed: bad checksum": lambda: auth.check(bad_checksum),
        "check, unknown well-formed key": lambda: auth.check(unknown),
        "verify (raises), malformed: bad checksum": refuse(bad_checksum),
        "verify (raises), unknown well-formed key": refuse(unknown),
        "miss against SQLite": lambda: uncached.verify(sqlite_key, required_scopes=SCOPES),
    }
    sqlite_number = max(args.number // 20, 100)
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    hit_ratios: list[float] = []
    for _ in range(args.rounds):
        times: dict[str, float] = {}
        for name, call in variants.items():
            number = sqlite_number if "SQLite" in name else args.number
            times[name] = timeit.timeit(call, number=number) / number
        for name, seconds in times.items():
            ratios[name].append(seconds / times["baseline sha256"])
        hit_ratios.append(times["check, unknown well-formed key"] / times["check, cached hit"])

    targets = {
        "check, cached hit": "≤ 2.0×",
        "verify, cached hit": "≤ 2.0×",
        "authenticate(headers dict), cached hit": "≤ 2.0×",
        "check, malformed: wrong length": "≤ 0.5×",
        "check, malformed: bad checksum": "≤ 0.5×",
        "miss against SQLite": "≤ 15×",
        "bare floor": "(≈ 1.7× on the issue's machine)",
    }
    print(f"rounds={args.rounds} number={args.number} (SQLite miss: {sqlite_number})")
    print("| variant | median ratio to one SHA-256 call | target |\n|---|---:|---|")
    for name in variants:
        print(f"| {name} | {statistics.median(ratios[name]):.2f}× | {targets.get(name, '')} |")
    unknown_vs_hit = statistics.median(hit_ratios)
    print(f"| check: unknown well-formed key / cached hit | {unknown_vs_hit:.2f}× | ≤ 1.0× |")
    auth.close()
    uncached.close()
    sqlite.close()


if __name__ == "__main__":
    main()
