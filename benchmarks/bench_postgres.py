"""Latency of the PostgreSQL store as it grows: ``find_key`` hits and misses, and the
authenticator's whole miss path, at 1,000 and 1,000,000 keys (or the sizes given).

    SKAALA_BENCH_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/bench_postgres.py          # --sizes 1000 1000000 --rounds 7
    .venv/bin/python benchmarks/bench_postgres.py --sizes 1000 10000 --rounds 3   # a quick look

Writes ``benchmarks/RESULTS-postgres.md`` (next to this script unless ``--output-dir`` says
otherwise). The DSN defaults to ``$SKAALA_TEST_POSTGRES_DSN`` or the test server's.

Method. One schema per size (``skaala_bench_<size>``, dropped at the end unless ``--keep``),
filled with ``KeyManager.create_keys`` (the bulk import: one ``COPY``; its time is reported),
then ``ANALYZE``. In every round, each (size, operation) pair runs ``--number`` calls, the pairs
in a shuffled order; the table gives the median over rounds of the median call (each call timed
on its own, so a burst of other work on the shared machine moves few of them), and the ratio of
the largest size to the smallest, per round, then the median: a digest index keeps it near 1.

Operations, each on a random key per call:

- ``store.find_key(digest)`` for an existing key (hit) and for a random digest (miss);
- ``Authenticator(store, cache_size=0).verify(key)``: the whole miss path, for an existing key
  ("cold hit") and a new unknown well-formed key ("cold miss": the negative cache never
  answers).

The client and the server share the machine: a round trip over loopback is most of each call.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from skaala_auth import Authenticator, Hasher, InvalidKeyError, KeyManager, generate_key
from skaala_auth.stores.postgres import PostgresKeyStore

SAMPLE = 20_000  # existing keys remembered per size, to look up at random
SPEC = {"team_id": "team_1", "user_id": "user_1", "scopes": ["read:bookings"]}
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("find_hit", "find_key, existing key"),
    ("find_miss", "find_key, missing key"),
    ("cold_hit", "Authenticator, cache off: existing key (cold hit)"),
    ("cold_miss", "Authenticator, cache off: unknown key (cold miss)"),
)


@dataclass
class Built:
    size: int
    schema: str
    store: PostgresKeyStore
    keys: list[str]
    digests: list[str]
    cold: Authenticator
    build_seconds: float
    table_mb: float
    index_mb: float
    plan: str


def build(dsn: str, size: int) -> Built:
    schema = f"skaala_bench_{size}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    store = PostgresKeyStore(dsn, schema=schema, timeout=30, statement_timeout=600)
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    started = time.perf_counter()
    made = manager.create_keys(SPEC for _ in range(size))
    build_seconds = time.perf_counter() - started
    keys = [key for key, _ in random.sample(made, min(size, SAMPLE))]
    del made
    table = sql.Identifier(schema, "api_keys")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        sizes = conn.execute(
            "SELECT pg_table_size(%s::regclass), pg_relation_size(%s::regclass)",
            (table.as_string(conn), f"{schema}.api_keys_digest_key"),
        ).fetchone()
        assert sizes is not None
        plan = "; ".join(
            row[0].strip()
            for row in conn.execute(
                sql.SQL("EXPLAIN SELECT id FROM {} WHERE digest = 'x'").format(table)
            )
        )
    hasher = Hasher()
    return Built(
        size,
        schema,
        store,
        keys,
        [hasher.stored_digest(key) for key in keys],
        Authenticator(store, cache_size=0, track_last_used=False),
        build_seconds,
        sizes[0] / 1e6,
        sizes[1] / 1e6,
        plan,
    )


def refused(auth: Authenticator) -> Callable[[str], None]:
    def call(key: str) -> None:
        try:
            auth.verify(key)
        except InvalidKeyError:
            pass
        else:  # a random key is never issued
            raise AssertionError("an unknown key was accepted")

    return call


def timed(call: Callable[[Any], object], arguments: list[Any]) -> float:
    """The median call, in microseconds."""
    times = []
    for argument in arguments:
        started = time.perf_counter_ns()
        call(argument)
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1000


def round_of(built: list[Built], number: int) -> dict[tuple[int, str], float]:
    pairs = [(b, op) for b in built for op, _ in OPERATIONS]
    random.shuffle(pairs)
    results: dict[tuple[int, str], float] = {}
    for b, op in pairs:
        if op == "find_hit":
            digests = random.choices(b.digests, k=number)
            results[b.size, op] = timed(b.store.find_key, digests)
        elif op == "find_miss":
            misses = [
                "sha256$" + hashlib.sha256(random.randbytes(32)).hexdigest() for _ in range(number)
            ]
            results[b.size, op] = timed(b.store.find_key, misses)
        elif op == "cold_hit":
            results[b.size, op] = timed(b.cold.verify, random.choices(b.keys, k=number))
        else:
            unknown = [generate_key() for _ in range(number)]
            results[b.size, op] = timed(refused(b.cold), unknown)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=300)
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent)
    parser.add_argument("--keep", action="store_true", help="keep the schemas")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SKAALA_BENCH_POSTGRES_DSN")
        or os.environ.get("SKAALA_TEST_POSTGRES_DSN")
        or "postgresql://postgres@127.0.0.1:5432/test",
    )
    args = parser.parse_args()
    started = time.monotonic()
    built = []
    for size in args.sizes:
        print(f"building {size:,} keys …", file=sys.stderr, flush=True)
        built.append(build(args.dsn, size))
    for b in built:  # warm: each store's pool and prepared statements
        round_of([b], 20)
    rounds = []
    for number in range(args.rounds):
        print(f"round {number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        rounds.append(round_of(built, args.number))
    smallest, largest = min(args.sizes), max(args.sizes)
    with psycopg.connect(args.dsn) as conn:
        server = conn.info.parameter_status("server_version") or "?"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    lines = [
        "# The PostgreSQL store at 1,000 and 1,000,000 keys",
        "",
        "Generated by `benchmarks/bench_postgres.py` (its docstring gives the method); do not",
        "edit by hand. Command:",
        "",
        "```sh",
        "python benchmarks/bench_postgres.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, PostgreSQL {server} on the same machine (loopback), "
        f"psycopg {psycopg.__version__}; skaala_auth at {commit}; "
        f"{datetime.date.today()}; {time.monotonic() - started:.0f} s in all. Timings on a "
        "shared machine are noisy: read the ratios.",
        "",
        "## Building each store (`KeyManager.create_keys`: one `COPY`)",
        "",
        "| keys | build time | keys per second | table | digest index | plan for a digest |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for b in built:
        lines.append(
            f"| {b.size:,} | {b.build_seconds:.1f} s | {b.size / b.build_seconds:,.0f} | "
            f"{b.table_mb:.1f} MB | {b.index_mb:.1f} MB | `{b.plan}` |"
        )
    lines += [
        "",
        f"## µs per call: the median call, median over {args.rounds} rounds of {args.number}",
        "",
        "| keys | " + " | ".join(label for _, label in OPERATIONS) + " |",
        "|---:|" + "---:|" * len(OPERATIONS),
    ]
    for b in built:
        cells = [f"{statistics.median(r[b.size, op] for r in rounds):.0f}" for op, _ in OPERATIONS]
        lines.append(f"| {b.size:,} | " + " | ".join(cells) + " |")
    if largest != smallest:
        ratios = [
            f"{statistics.median(r[largest, op] / r[smallest, op] for r in rounds):.2f}"
            for op, _ in OPERATIONS
        ]
        lines.append(f"| ratio {largest:,} / {smallest:,} | " + " | ".join(ratios) + " |")
    text = "\n".join(lines) + "\n"
    output = args.output_dir / "RESULTS-postgres.md"
    output.write_text(text)
    print(text)
    for b in built:
        b.cold.close()
        b.store.close()
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(b.schema))
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
