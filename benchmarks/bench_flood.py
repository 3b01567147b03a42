"""Issue 12's figure: a flood of 100,000 unique well-formed unknown keys, interleaved with
legitimate traffic, against a real store. Counts the store look-ups the flood causes (target:
at most 1 % of the flood) and the cache hit ratio of the legitimate requests (target: at least
99 %), with the digest filter on (the default) and off (as before).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_flood.py                 # SQLite, 100k
    PYTHONPATH=. .venv/bin/python benchmarks/bench_flood.py --quick         # 10k, a smoke run
    PYTHONPATH=. .venv/bin/python benchmarks/bench_flood.py --store postgres  # the test server

Writes ``benchmarks/RESULTS-flood.md`` (unless ``--quick``).

Method. ``--keys`` legitimate keys are imported in bulk (``KeyManager.create_keys``); an
authenticator with the defaults (``cache_ttl=30``, ``unlisted_lookup_rate=50``) serves them
once (they are in use before the flood starts), and its filter's first full read is timed. The
flood is ``--flood`` fresh ``generate_key()`` keys sent through ``decide(RequestFacts)`` from
``--clients`` client addresses in turn, with one legitimate request (the keys in turn, from an
address of their own) after every ``--ratio`` junk ones, in real time. Store look-ups are
counted by wrapping the store's ``find_key``; a legitimate request is a hit when it caused no
look-up. The flood runs three times: filter on; filter on and ``failed_auth_limit=50`` (per
client, per minute); filter off (``digest_filter=False``: the negative cache alone).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skaala_auth import (
    Authenticator,
    KeyManager,
    Principal,
    SQLiteKeyStore,
    generate_key,
)
from skaala_auth.flow import Endpoint, RequestFacts
from skaala_auth.stores.base import KeyStore

HERE = Path(__file__).resolve().parent
READ = Endpoint(("read:bookings",))


@dataclass
class Run:
    variant: str
    flood: int
    junk_lookups: int
    legit_requests: int
    legit_lookups: int
    refused_429: int
    seconds: float

    @property
    def junk_share(self) -> float:
        return self.junk_lookups / self.flood

    @property
    def hit_ratio(self) -> float:
        return 1 - self.legit_lookups / self.legit_requests


def counting(store: Any) -> list[str]:
    """Wrap ``store.find_key`` so that every digest asked for is recorded."""
    asked: list[str] = []
    find = store.find_key

    def find_key(digest: str) -> Any:
        asked.append(digest)
        return find(digest)

    store.find_key = find_key
    return asked


def flood(
    store: KeyStore,
    asked: list[str],
    keys: list[str],
    args: argparse.Namespace,
    variant: str,
    **options: Any,
) -> tuple[Run, float | None]:
    with Authenticator(store, **options) as auth:
        started = time.perf_counter()
        legit_facts = [
            RequestFacts("GET", "/", [(b"x-api-key", key.encode())], client="203.0.113.5")
            for key in keys
        ]
        for facts in legit_facts:  # in use before the flood: cached
            assert isinstance(auth.decide(facts, READ), Principal)
        loaded: float | None = None
        if auth.digest_filter is not None:
            assert auth.digest_filter.wait_ready(600), "the digest filter did not load"
            loaded = time.perf_counter() - started
        legit_digests = {auth.hasher.stored_digest(key) for key in keys}
        asked.clear()
        junk = [generate_key().encode() for _ in range(args.flood)]
        clients = [f"198.51.{n // 256 % 256}.{n % 256}" for n in range(args.clients)]
        legit_requests = refused = 0
        started = time.perf_counter()
        for number, key in enumerate(junk):
            facts = RequestFacts(
                "GET", "/", [(b"x-api-key", key)], client=clients[number % len(clients)]
            )
            outcome = auth.decide(facts, READ)
            if getattr(outcome, "status_code", None) == 429:
                refused += 1
            if number % args.ratio == 0:
                legit = legit_facts[legit_requests % len(legit_facts)]
                assert isinstance(auth.decide(legit, READ), Principal)
                legit_requests += 1
        seconds = time.perf_counter() - started
        legit_lookups = sum(1 for digest in asked if digest in legit_digests)
    run = Run(
        variant,
        args.flood,
        len(asked) - legit_lookups,
        legit_requests,
        legit_lookups,
        refused,
        seconds,
    )
    return run, loaded


def open_store(args: argparse.Namespace, tmp: str) -> tuple[KeyStore, Callable[[], None]]:
    if args.store == "postgres":
        import psycopg
        from psycopg import sql

        from skaala_auth.stores.postgres import PostgresKeyStore

        dsn = os.environ.get(
            "SKAALA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        )
        schema = f"skaala_flood_{uuid.uuid4().hex[:8]}"
        store = PostgresKeyStore(dsn, schema=schema, timeout=30)

        def drop() -> None:
            store.close()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

        return store, drop
    sqlite = SQLiteKeyStore(Path(tmp) / "keys.db")
    return sqlite, sqlite.close


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--keys", type=int, default=1000, help="legitimate keys")
    parser.add_argument("--flood", type=int, default=100_000, help="unique junk keys")
    parser.add_argument("--clients", type=int, default=1000, help="flooding addresses")
    parser.add_argument("--ratio", type=int, default=10, help="junk keys per legit request")
    parser.add_argument("--quick", action="store_true", help="10,000 junk keys, no results file")
    parser.add_argument(
        "--filter-keys",
        type=int,
        nargs="*",
        default=[10_000, 100_000],
        help="store sizes at which the filter's first read is timed",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.flood, args.filter_keys = 10_000, []
    runs: list[tuple[Run, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store, close = open_store(args, tmp)
        try:
            manager = KeyManager(store)
            manager.add_member(team_id="team_1", user_id="user_1", role="owner")
            spec = {"team_id": "team_1", "user_id": "user_1", "scopes": ["read:bookings"]}
            keys = [key for key, _ in manager.create_keys([spec] * args.keys)]
            asked = counting(store)
            for variant, options in (
                ("filter on (default)", {}),
                ("filter on, failed_auth_limit=50", {"failed_auth_limit": 50}),
                ("filter off (negative cache only)", {"digest_filter": False}),
            ):
                print(f"[bench_flood] {variant} …", flush=True)
                runs.append(flood(store, asked, keys, args, variant, **options))
            sizes: list[tuple[int, float, int]] = []
            total = args.keys
            for size in args.filter_keys:
                if size > total:
                    manager.create_keys([spec] * (size - total))
                    total = size
                with Authenticator(store) as auth:
                    started = time.perf_counter()
                    auth.decide(RequestFacts("GET", "/", {}), None)  # the first poll starts it
                    assert auth.digest_filter is not None and auth.digest_filter.wait_ready(600)
                    base, index, added = auth.digest_filter._snapshot
                    held = base.itemsize * len(base) + index.itemsize * len(index)
                    sizes.append((size, time.perf_counter() - started, held))
        finally:
            close()
    lines = report(args, runs, sizes)
    print("\n".join(lines))
    if not args.quick:
        (HERE / "RESULTS-flood.md").write_text("\n".join(lines) + "\n")
    return 0


def report(
    args: argparse.Namespace,
    runs: list[tuple[Run, float | None]],
    sizes: list[tuple[int, float, int]],
) -> list[str]:
    lines = [
        "# A flood of well-formed unknown keys (issue 12)",
        "",
        f"`benchmarks/bench_flood.py` on {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores, store: {args.store}, "
        f"{datetime.date.today().isoformat()}. {args.keys:,} legitimate keys (cached before the "
        f"flood), {args.flood:,} unique junk keys from {args.clients:,} addresses, one "
        f"legitimate request per {args.ratio} junk ones, in real time.",
        "",
        "| variant | junk keys that reached the store | target ≤ 1 % | legit hit ratio | "
        "target ≥ 99 % | 429s | flood rate |",
        "|---|---:|:-:|---:|:-:|---:|---:|",
    ]
    for run, _ in runs:
        lines.append(
            f"| {run.variant} | {run.junk_lookups:,} ({run.junk_share:.3%}) | "
            f"{'✓' if run.junk_share <= 0.01 else '✗'} | {run.hit_ratio:.2%} | "
            f"{'✓' if run.hit_ratio >= 0.99 else '✗'} | {run.refused_429:,} | "
            f"{(run.flood + run.legit_requests) / run.seconds:,.0f} requests/s |"
        )
    lines += [
        "",
        "A run that lasts longer than `cache_ttl` (30 s) reloads every legitimate key once at its "
        "expiry: its hit ratio then shows `cache_ttl`, not the flood (junk never enters the "
        "positive cache).",
    ]
    loaded = [seconds for _, seconds in runs if seconds is not None]
    if loaded:
        lines += ["", f"The filter's first read at {args.keys:,} keys: {min(loaded):.2f} s."]
    if sizes:
        lines += [
            "",
            "| keys in the store | first full read (background) | filter memory |",
            "|---:|---:|---:|",
        ]
        for size, seconds, held in sizes:
            lines.append(f"| {size:,} | {seconds:.2f} s | {held / 2**20:.2f} MiB |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
