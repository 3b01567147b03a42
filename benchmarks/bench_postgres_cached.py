"""A cached hit on the PostgreSQL store, with its listener running, ÷ a cached hit on the memory
store: what the many-machines store costs a request once the key is cached (issue 12).

    .venv/bin/python benchmarks/bench_postgres_cached.py [--rounds 15] [--number 20000]

Needs the server of ``SKAALA_TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/
test``); the tables go in a schema of their own, dropped at the end. Both authenticators run in
this process, interleaved in shuffled rounds (``harness.py``): the figure is the median of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from harness import Rounds, settled  # noqa: E402

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore  # noqa: E402

DSN = os.environ.get("SKAALA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()

    import psycopg
    from psycopg import sql

    from skaala_auth.stores.postgres import PostgresKeyStore

    schema = f"skaala_bench_{uuid.uuid4().hex[:10]}"
    postgres = PostgresKeyStore(DSN, schema=schema)
    memory = MemoryKeyStore()
    try:
        keys = {}
        auths = {}
        for name, store in (("postgres", postgres), ("memory", memory)):
            manager = KeyManager(store)
            manager.add_member(team_id="team_1", user_id="user_1", role="owner")
            key, _ = manager.create_key(
                team_id="team_1", user_id="user_1", scopes=["read:bookings"]
            )
            auth = Authenticator(store, last_used_interval=3600)
            auth.verify(key)
            settled(auth)
            keys[name], auths[name] = key, auth
        print(f"listener running: {postgres.listener_pid is not None}")

        def measure(name: str) -> float:
            verify, key, number = auths[name].verify, keys[name], args.number
            started = time.perf_counter()
            for _ in range(number):
                verify(key)
            return (time.perf_counter() - started) / number

        rounds = Rounds().run(
            {"postgres": lambda: measure("postgres"), "memory": lambda: measure("memory")},
            args.rounds,
        )
        ratio = rounds.ratio("postgres", "memory")
        print(
            f"cached verify(key): PostgreSQL {rounds.median('postgres') * 1e6:.2f} µs, "
            f"memory {rounds.median('memory') * 1e6:.2f} µs; PostgreSQL ÷ memory "
            f"{ratio.text()} ({ratio.spread()}, {ratio.rounds} rounds)"
        )
        for auth in auths.values():
            auth.close()
    finally:
        postgres.close()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
