"""Instructions per call of the hot path, counted by valgrind's callgrind: repeatable to a few
instructions whatever else the machine is doing, so it shows what a change costs where timings
on a busy 2-core machine cannot.

    .venv/bin/python benchmarks/count_instructions.py [VARIANT ...]     # needs valgrind

Each variant runs twice under ``valgrind --tool=callgrind`` (2,000 and 12,000 calls, or 500 and
2,500 requests for the ASGI apps); the difference ÷ the extra calls is its cost per call, with
everything the process does once (start-up, imports, warming) cancelled out. Instructions are
not time (a cache miss costs more than an add), but for the same interpreter and inputs they
move with it. Python 3.11 and this checkout's ``.venv``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from harness import settled  # noqa: E402 - after the path is set

CORE = (
    "one SHA-256 call",
    "the bare floor",
    "Flow.start, cached key",
    "verify(key), cached key",
    "authenticate(headers dict), cached key",
    "decide(ASGI facts, Endpoint), cached key",
    "extract_key(ASGI pairs)",
    "RequestFacts.from_asgi",
)
ASGI = ("asgi: bare app", "asgi: Starlette's own auth", "asgi: ApiKeyMiddleware + requires_scope")


def core_call(name: str) -> Callable[[], object]:
    from skaala_auth import Authenticator, KeyManager, MemoryKeyStore
    from skaala_auth.credentials import extract_key
    from skaala_auth.flow import Endpoint, RequestFacts

    store = MemoryKeyStore()
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    # No digest filter: it is not on the cached path (a positive-cache hit returns before it),
    # and with its 512 KiB index allocated the counts stop being repeatable (measured: floors
    # of 10,084 and 10,485 in two runs, against 9,331 and 9,388 without it).
    auth = Authenticator(store, last_used_interval=3600, clock=lambda: 1e9, digest_filter=False)
    auth.verify(key)
    settled(auth)
    scopes = ("read:bookings",)
    floor_table = {hashlib.sha256(key.encode()).digest(): (4e9, frozenset(scopes))}

    def floor() -> object:
        data = key.encode()
        if len(data) != 46 or data[:8] != b"sk_live_":
            return None
        entry = floor_table.get(hashlib.sha256(data).digest())
        if entry is None or time.time() >= entry[0]:
            return None
        return entry[1].issuperset(scopes)

    headers = {"Authorization": f"Bearer {key}"}
    pairs = [
        (b"host", b"api.example.com"),
        (b"user-agent", b"curl/8.5.0"),
        (b"accept", b"*/*"),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    scope = {"type": "http", "method": "GET", "path": "/bookings", "root_path": "",
             "query_string": b"", "headers": pairs}  # fmt: skip
    facts = RequestFacts("GET", "/bookings", pairs, b"")
    endpoint = Endpoint(scopes)
    calls: dict[str, Callable[[], object]] = {
        "one SHA-256 call": lambda: hashlib.sha256(key.encode()).digest(),
        "the bare floor": floor,
        "Flow.start, cached key": lambda: auth._flow.start(key, scopes, None, 1e9),
        "verify(key), cached key": lambda: auth.verify(key, required_scopes=scopes),
        "authenticate(headers dict), cached key": lambda: auth.authenticate(
            headers, required_scopes=scopes
        ),
        "decide(ASGI facts, Endpoint), cached key": lambda: auth.decide(facts, endpoint),
        "extract_key(ASGI pairs)": lambda: extract_key(pairs),
        "RequestFacts.from_asgi": lambda: RequestFacts.from_asgi(scope),
    }
    return calls[name]


def asgi_run(name: str, number: int) -> None:
    import bench_asgi as b

    from skaala_auth import Authenticator, MemoryKeyStore

    store = MemoryKeyStore()
    key = b.make_key(store)
    auth = Authenticator(store, last_used_interval=3600, digest_filter=False)  # as above
    apps = b.build_apps(key, auth)
    app = apps[{ASGI[0]: b.BARE, ASGI[1]: b.STARLETTE, ASGI[2]: b.OURS}[name]]
    loop = b.new_loop()
    template = b.scope_for(f"Bearer {key}")
    loop.run_until_complete(b.time_requests(app, template, 200, 50))
    settled(auth)
    loop.run_until_complete(b.time_requests(app, template, 200, number))


def child(name: str, number: int) -> None:
    if name in ASGI:
        asgi_run(name, number)
        return
    call = core_call(name)
    call()
    for _ in range(number):
        call()


def count(name: str, number: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--child", name, str(number)]
    # valgrind from PATH (see the docstring) running this very script: no untrusted input.
    result = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise RuntimeError(result.stderr[-2000:])
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
        return
    names = sys.argv[1:] or [*CORE, *ASGI]
    print("| variant | instructions per call |\n|---|---:|")
    for name in names:
        low, high = (500, 2500) if name in ASGI else (2000, 12000)
        per_call = (count(name, high) - count(name, low)) / (high - low)
        print(f"| {name} | {per_call:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
