"""Measure what a client gets, and how fast, when the key store, its change feed, the rate
limiter or the audit hook has a bad day, through every adapter (the fault table in
docs/security.md). Not a test: run it by hand::

    PYTHONPATH=. .venv/bin/python tests/hardening/measure_faults.py            # 3 runs
    PYTHONPATH=. .venv/bin/python tests/hardening/measure_faults.py --runs 1 --adapter flask

Each app is the contract suite's bookings API (tests/contract/apps.py) in Starlette, FastAPI,
Flask, plain WSGI, Django under WSGI and ASGI, and DRF, called through its framework's own test
client (the ASGI apps as a server runs them: every request on one event loop). The store is a
real ``SQLiteKeyStore`` in a temporary directory, subclassed to add the fault; a revocation "by
another process" is made by a real second Python process. Settings: ``store_timeout=0.5``,
``poll_interval=0.5``, ``cache_ttl=30``; a hanging store call waits 8 s.

A client's answer is printed as its status, with ``✓`` when it is the contract's rendering
(the exact body of the core's error, ``Retry-After`` on a 503); an exception that escaped the
app to the test client (a real server answers it 500, with a traceback in its log) prints as
``raised <type>``. Times are per request, as the client sees them (or from the fault's end to
the first good answer), min–max over the runs, per adapter and over all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    KeyManager,
    Principal,
    SQLiteKeyStore,
    StoreUnavailableError,
    generate_key,
)
from skaala_auth.audit import AuditEvent
from skaala_auth.models import KeyRecord
from tests.contract.apps import ADAPTERS, CALLS, Call, Headers, Reply

HANG = 8.0  # seconds a hanging store call waits
TIMEOUT = 0.5  # store_timeout
POLL = 0.5  # poll_interval
BOOKINGS = "/teams/team_1/bookings"


class FaultyStore(SQLiteKeyStore):
    """A real SQLite store with switchable faults: look-ups (``find_key``) and polls
    (``poll_changes``) that hang for :data:`HANG` seconds (until :attr:`back` is set) or raise,
    and keys whose rows come back unusable (no expiry)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.back = threading.Event()
        self.back.set()
        self.hang_finds = self.hang_polls = False
        self.raise_finds = self.raise_polls = False
        self.unusable: set[str] = set()

    def hang(self, *, finds: bool = True, polls: bool = False) -> None:
        self.back.clear()
        self.hang_finds, self.hang_polls = finds, polls

    def fail(self, *, finds: bool = True, polls: bool = False) -> None:
        self.raise_finds, self.raise_polls = finds, polls

    def recover(self) -> None:
        self.hang_finds = self.hang_polls = self.raise_finds = self.raise_polls = False
        self.back.set()

    def find_key(self, digest: str) -> KeyRecord | None:
        if self.hang_finds:
            self.back.wait(HANG)
        if self.raise_finds:
            raise sqlite3.OperationalError("disk I/O error")
        record = super().find_key(digest)
        if record is not None and record.key.id in self.unusable:
            key = dataclasses.replace(record.key, expires_at=None)  # type: ignore[arg-type]
            record = dataclasses.replace(record, key=key)
        return record

    def poll_changes(self) -> None:
        if self.hang_polls:
            self.back.wait(HANG)
        if self.raise_polls:
            raise sqlite3.OperationalError("disk I/O error")
        super().poll_changes()


@dataclasses.dataclass
class Seen:
    """One request as the client saw it."""

    answer: str  # "200", "503 ✓", "raised ConnectionError", …
    seconds: float
    handler_ran: bool


def _answer(reply: Reply) -> str:
    if reply.status < 400:
        return str(reply.status)
    contract = {401: InvalidKeyError(), 503: StoreUnavailableError()}.get(reply.status)
    good = contract is not None and reply.body == contract.body_bytes()
    if reply.status == 503:
        good = good and reply.headers.get("retry-after") == "5"
    return f"{reply.status} {'✓' if good else '✗ ' + reply.body[:40].decode(errors='replace')}"


class Client:
    """Requests to one adapter's bookings API, timed."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def get(self, key: str, *, alone: bool = True) -> Seen:
        """One request; ``alone``: no other request runs meanwhile, so :data:`CALLS` tells
        whether its handler ran."""
        CALLS.clear()
        started = time.monotonic()
        try:
            reply = self.call("GET", BOOKINGS, [("Authorization", f"Bearer {key}")], "")
        except Exception as error:  # escaped the app: a real server answers 500
            answer = f"raised {type(error).__name__}"
        else:
            answer = _answer(reply)
        seconds = time.monotonic() - started
        ran = alone and "list" in CALLS
        if ran and not answer.startswith("2"):
            answer += " (HANDLER RAN)"
        return Seen(answer, seconds, ran)

    def until(self, key: str, wanted: str, limit: float = 12.0) -> tuple[Seen, float]:
        """Ask until the answer starts with ``wanted``: that answer, and seconds since the
        first ask."""
        started = time.monotonic()
        while True:
            seen = self.get(key)
            if seen.answer.startswith(wanted):
                return seen, time.monotonic() - started
            if time.monotonic() - started > limit:
                return Seen(f"never {wanted} (last {seen.answer})", limit, False), limit
            time.sleep(0.002)


@dataclasses.dataclass
class World:
    """A fresh store, keys and adapter app for one fault."""

    store: FaultyStore
    auth: Authenticator
    client: Client
    keys: dict[str, str]
    ids: dict[str, str]
    path: Path


@contextmanager
def world(adapter: str, tmp: Path, **options: Any) -> Iterator[World]:
    path = tmp / f"{adapter}-{time.monotonic_ns()}.db"
    store = FaultyStore(path)
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    keys, ids = {}, {}
    for name in ("cached", "cold", "other", "bad"):
        keys[name], record = manager.create_key(
            team_id="team_1", user_id="user_1", name=name, scopes=["read:bookings"]
        )
        ids[name] = record.id
    auth = Authenticator(store, store_timeout=TIMEOUT, poll_interval=POLL, cache_ttl=30, **options)
    with ExitStack() as stack:
        stack.callback(_close_clients)
        stack.callback(store.close)
        stack.callback(store.recover)  # let hanging calls go before closing
        stack.callback(auth.close)
        call = stack.enter_context(ADAPTERS[adapter](auth))
        client = Client(call)
        assert client.get(keys["cached"]).answer == "200"  # warm: "cached" is in the cache
        yield World(store, auth, client, keys, ids, path)


Rows = dict[str, Seen | float]


def look_ups_hang(adapter: str, tmp: Path) -> Rows:
    with world(adapter, tmp) as w:
        w.store.hang(finds=True)
        rows: Rows = {
            "a key not in the cache": w.client.get(w.keys["cold"]),
            "the same key again (one look-up in flight)": w.client.get(w.keys["cold"]),
            "a key in the cache": w.client.get(w.keys["cached"]),
        }
        w.store.recover()
        rows["store answers again → first 200 of the key"] = w.client.until(w.keys["cold"], "2")[1]
        return rows


def everything_hangs(adapter: str, tmp: Path) -> Rows:
    """Look-ups and polls hang. A request is due to poll at 0 s; others come while its poll
    hangs: at 0.2 s, at 1 s (another poll is due) and at 8.5 s (the first request's endpoint
    check may be polling again by then)."""
    with world(adapter, tmp) as w:
        w.store.hang(finds=True, polls=True)
        time.sleep(POLL)  # a poll is due
        plan = [
            (0.0, "cached", "the request due to poll (a key in the cache)"),
            (0.2, "cached", "at 0.2 s, a key in the cache"),
            (0.2, "cold", "at 0.2 s, a key not in the cache"),
            (1.0, "cached", "at 1 s (a poll due again), a key in the cache"),
            (HANG + 0.5, "cached", f"at {HANG + 0.5:g} s, a key in the cache"),
        ]
        rows: Rows = {}
        started = time.monotonic()

        def request(offset: float, name: str, row: str) -> None:
            time.sleep(max(0.0, started + offset - time.monotonic()))
            rows[row] = w.client.get(w.keys[name], alone=False)

        threads = [threading.Thread(target=request, args=step) for step in plan]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        w.store.recover()
        rows["store answers again → first 200 of the key"] = w.client.until(w.keys["cold"], "2")[1]
        return {row: rows[row] for _, _, row in plan} | {
            row: value for row, value in rows.items() if row.startswith("store")
        }


def look_ups_raise(adapter: str, tmp: Path) -> Rows:
    with world(adapter, tmp) as w:
        w.store.fail(finds=True)
        rows: Rows = {
            "a key not in the cache": w.client.get(w.keys["cold"]),
            "a key in the cache": w.client.get(w.keys["cached"]),
        }
        w.store.recover()
        rows["store answers again → first 200 of the key"] = w.client.until(w.keys["cold"], "2")[1]
        return rows


def everything_raises(adapter: str, tmp: Path) -> Rows:
    with world(adapter, tmp) as w:
        w.store.fail(finds=True, polls=True)
        seen, after = w.client.until(w.keys["cached"], "503")
        rows: Rows = {"a key in the cache → first 503": after, "its answer": seen}
        rows["a key not in the cache"] = w.client.get(w.keys["cold"])
        w.store.recover()
        rows["store answers again → first 200 of a key"] = w.client.until(w.keys["cold"], "2")[1]
        return rows


def unusable_row(adapter: str, tmp: Path) -> Rows:
    with world(adapter, tmp) as w:
        w.store.unusable.add(w.ids["bad"])
        rows: Rows = {
            "the key whose row is unusable": w.client.get(w.keys["bad"]),
            "another key not in the cache": w.client.get(w.keys["other"]),
        }
        w.store.unusable.clear()
        rows["row fixed → first 200 of the key"] = w.client.until(w.keys["bad"], "2")[1]
        return rows


_REVOKER = """
import sys, time
from skaala_auth import KeyManager, SQLiteKeyStore
store = SQLiteKeyStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
KeyManager(store).revoke_key(sys.argv[2])
print(repr(time.time()), flush=True)
store.close()
"""


def _revoked_elsewhere(w: World, name: str) -> tuple[Seen, float]:
    """Revoke key ``name`` from a second process; ask until it is refused. Returns the
    refusal and the seconds from the other process's commit to it."""
    child = subprocess.Popen(
        [sys.executable, "-c", _REVOKER, str(w.path), w.ids[name]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("go\n")
        child.stdin.flush()
        committed = float(child.stdout.readline())
        # the child's commit happened before we read it: ask from now on, measure from then
        while True:
            seen = w.client.get(w.keys[name])
            if seen.answer.startswith("401") or time.time() - committed > 10:
                return seen, time.time() - committed
            time.sleep(0.002)
    finally:
        child.stdin.close()
        child.wait()
        child.stdout.close()


def revoked_by_another_process(adapter: str, tmp: Path) -> Rows:
    with world(adapter, tmp) as w:
        seen, after = _revoked_elsewhere(w, "cached")
        return {"the revoked key (was cached) → first 401": after, "its answer": seen}


def feed_fails(adapter: str, tmp: Path) -> Rows:
    with world(adapter, tmp) as w:
        w.store.fail(finds=False, polls=True)
        time.sleep(POLL)
        rows: Rows = {
            "a key in the cache, after a failed poll (the cache was dropped)": w.client.get(
                w.keys["cached"]
            ),
            "the same key again": w.client.get(w.keys["cached"]),
        }
        seen, after = _revoked_elsewhere(w, "cached")
        rows["revoked by another process meanwhile → first 401"] = after
        rows["its answer"] = seen
        return rows


class DownLimiter:
    """A rate limiter whose backend goes down (what a Redis client raises then)."""

    down = False

    def check(self, principal: Principal, now: float) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def limiter_raises(adapter: str, tmp: Path) -> Rows:
    limiter = DownLimiter()
    with world(adapter, tmp, rate_limiter=limiter) as w:
        limiter.down = True
        return {
            "a key in the cache": w.client.get(w.keys["cached"]),
            "a key not in the cache": w.client.get(w.keys["cold"]),
        }


def audit_raises(adapter: str, tmp: Path) -> Rows:
    def hook(event: AuditEvent) -> None:
        raise RuntimeError("the audit sink is down")

    with world(adapter, tmp, audit=hook) as w:
        rows: Rows = {
            "a key in the cache": w.client.get(w.keys["cached"]),
            "a key not in the cache": w.client.get(w.keys["cold"]),
            "an unknown key": w.client.get(generate_key()),
        }
        w.store.fail(finds=True)
        rows["the store raising too"] = w.client.get(w.keys["other"])
        return rows


FAULTS: dict[str, Callable[[str, Path], Rows]] = {
    f"look-ups hang ({HANG:.0f} s), store_timeout={TIMEOUT}": look_ups_hang,
    f"look-ups and polls hang ({HANG:.0f} s)": everything_hangs,
    "look-ups raise": look_ups_raise,
    "look-ups and polls raise (store down)": everything_raises,
    "one key's row unusable (no expiry)": unusable_row,
    "polls (the change feed) raise, look-ups answer": feed_fails,
    "key revoked by another process (healthy store)": revoked_by_another_process,
    "rate limiter raises ConnectionError": limiter_raises,
    "audit hook raises": audit_raises,
}


def _one_event_loop() -> None:
    """Call the ASGI apps as a server runs them: every request on one event loop (Starlette's
    TestClient outside a ``with`` block starts a loop per request)."""
    from starlette.testclient import TestClient

    from tests.contract import apps

    def asgi_call(app: Any) -> Call:
        client = TestClient(app)
        client.__enter__()  # one portal, one loop, for the life of the process
        clients.append(client)

        def call(method: str, path: str, headers: Headers, query: str) -> Reply:
            raw = [(name, value.encode("latin-1")) for name, value in headers]
            response = client.request(method, f"{path}?{query}" if query else path, headers=raw)
            return Reply(response.status_code, dict(response.headers), response.content)

        return call

    apps._asgi_call = asgi_call


clients: list[Any] = []


def _close_clients() -> None:
    while clients:
        clients.pop().__exit__(None, None, None)


def _adapters(wanted: list[str]) -> list[str]:
    import importlib.util

    from tests.contract.conftest import _NEEDS

    found = []
    for adapter in wanted or list(ADAPTERS):
        if all(importlib.util.find_spec(module) for module in _NEEDS[adapter]):
            found.append(adapter)
        else:
            print(f"skipped {adapter}: not importable", file=sys.stderr)
    return found


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value:.2f} s"


def _span(values: list[float]) -> str:
    return f"{_seconds(min(values))}–{_seconds(max(values))}"


def _line(values: list[Any]) -> str:
    """The answers seen and the min–max time, or the min–max of measured durations."""
    if isinstance(values[0], Seen):
        answers = " / ".join(sorted({v.answer for v in values}))
        return f"{answers} in {_span([v.seconds for v in values])}"
    return _span(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--adapter", action="append", default=[], choices=list(ADAPTERS))
    parser.add_argument("--fault", action="append", default=[], help="a fault name's start")
    options = parser.parse_args()
    from tests.django_settings import configure

    configure()
    # The audit log, the frameworks' tracebacks of 500s, the change feed's warnings: counted
    # by the tests, not shown here.
    logging.getLogger().addHandler(logging.NullHandler())
    warnings.simplefilter("ignore")
    if {"starlette", "fastapi"} & set(options.adapter or ADAPTERS):
        _one_event_loop()
    adapters = _adapters(options.adapter)
    faults = {
        name: measure
        for name, measure in FAULTS.items()
        if not options.fault or any(name.startswith(start) for start in options.fault)
    }
    print(
        f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
        f"{options.runs} run(s), adapters: {', '.join(adapters)}"
    )
    # seen[fault][row][adapter] = [Seen | float, …] over the runs
    seen: dict[str, dict[str, dict[str, list[Any]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        for run in range(options.runs):
            for name, measure in faults.items():
                for adapter in adapters:
                    for row, value in measure(adapter, tmp).items():
                        seen[name][row][adapter].append(value)
            print(f"run {run + 1} done", file=sys.stderr)
    for name in faults:
        print(f"\n## {name}")
        for row, by_adapter in seen[name].items():
            print(f"- {row}:")
            for adapter, values in by_adapter.items():
                print(f"    {adapter:12} {_line(values)}")
            if len(by_adapter) > 1:
                print(f"    {'(all)':12} {_line([v for vs in by_adapter.values() for v in vs])}")
    everyone = [s for f in seen.values() for r in f.values() for v in r.values() for s in v]
    ran = [s for s in everyone if isinstance(s, Seen) and "HANDLER RAN" in s.answer]
    print(f"\nrefusals that ran the handler: {len(ran)}")


if __name__ == "__main__":
    main()
