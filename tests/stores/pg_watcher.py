"""The other process of tests/stores/test_postgres.py: an authenticator on a PostgreSQL store,
driven line by line on standard input.

    python tests/stores/pg_watcher.py DSN SCHEMA

Prints ``ready`` once its store listens. Then, for each line ``watch <team> <key>`` (the key
comes through the pipe, never an argument or an output), it authenticates the key once (it must
be granted: the grant is now in its cache) and answers ``granted``, then authenticates it again
and again until it is refused, and answers ``refused <status> <time.time()>`` (or
``still-granted`` after 10 seconds: a change that never arrived). Anything else stops it.
"""

from __future__ import annotations

import sys
import time

from skaala_auth import Authenticator, AuthError
from skaala_auth.stores.postgres import PostgresKeyStore

#: Seconds to keep trying before giving up on a refusal.
PATIENCE = 10.0


def main() -> int:
    dsn, schema = sys.argv[1], sys.argv[2]
    store = PostgresKeyStore(dsn, schema=schema)
    # The defaults a service runs with: a 30-second cache, polls every half second.
    with Authenticator(store) as auth:
        print("ready", flush=True)
        for line in sys.stdin:
            command, team, key = (line.split() + ["", "", ""])[:3]
            if command != "watch":
                break
            headers = {"authorization": f"Bearer {key}"}
            del key, line
            try:
                auth.authenticate(headers, team_id=team)
            except AuthError as error:
                print(f"error {error.status_code}", flush=True)
                continue
            print("granted", flush=True)
            deadline = time.monotonic() + PATIENCE
            answer = "still-granted"
            while time.monotonic() < deadline:
                try:
                    auth.authenticate(headers, team_id=team)
                except AuthError as error:
                    answer = f"refused {error.status_code} {time.time():.6f}"
                    break
                time.sleep(0.002)
            print(answer, flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
