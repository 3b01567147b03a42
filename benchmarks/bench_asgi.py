"""ASGI benchmark: ApiKeyMiddleware against a bare Starlette app and Starlette's own auth.

Two parts, each with its variants interleaved in rounds and reported as the median of per-round
ratios to the bare app measured in the same round:

1. In process: time per request, calling the ASGI app directly (no server, no sockets).

       .venv/bin/python benchmarks/bench_asgi.py inprocess [--rounds 21] [--number 3000]

2. Over HTTP: requests/s of uvicorn (httptools, uvloop, one worker) under ``wrk`` on 127.0.0.1
   (Debian's ``wrk`` package), bounded in connections and duration.

       .venv/bin/python benchmarks/bench_asgi.py http [--rounds 15] [--duration 2]

Every app has the same single route, ``GET /bookings`` returning a small JSON body.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Rounds, cpu_seconds
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
    requires,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, SQLiteKeyStore, generate_key
from skaala_auth.flow import RequestFacts
from skaala_auth.rules import Rule, Rules
from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

SCOPE = "read:bookings"
BARE = "bare"
OURS = "ApiKeyMiddleware + requires_scope"
STARLETTE = "starlette AuthenticationMiddleware (dict backend) + requires"
CORE_ONLY = "reference: the core alone (decide_async(RequestFacts), nothing set)"
BASE_HTTP = "BaseHTTPMiddleware (no-op)"
RULES = "ApiKeyMiddleware + rules table"
BAD_CHECKSUM = "ApiKeyMiddleware: invalid key (bad checksum) → 401"
UNKNOWN = "ApiKeyMiddleware: unknown key (negative cache) → 401"
NO_KEY = "ApiKeyMiddleware: no key → 401 from requires_scope"
BUSY = "calibration: the bare app + busy_work() in the endpoint"
BODY = {"data": [], "meta": {"total": 0}}


def make_key(store: MemoryKeyStore) -> str:
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=[SCOPE])
    return key


# -- the apps ---------------------------------------------------------------------------------


async def bare_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


@requires(SCOPE)
async def starlette_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


@requires_scope(SCOPE)
async def ours_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


def busy_work(rounds: int = 200) -> int:
    """A fixed amount of pure-Python work (a few µs), to calibrate what added CPU work costs
    a request over HTTP against what it costs alone (``profile_http.py``)."""
    total = 0
    for i in range(rounds):
        total += i & 7
    return total


async def busy_endpoint(request: Request) -> JSONResponse:
    busy_work()
    return JSONResponse(BODY)


class DictBackend(AuthenticationBackend):
    """Starlette's documented pattern with the cheapest possible look-up: a dict, no hashing."""

    def __init__(self, tokens: dict[str, tuple[str, ...]]) -> None:
        self.tokens = tokens

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        scopes = self.tokens.get(token)
        if scheme.lower() != "bearer" or scopes is None:
            return None
        return AuthCredentials(scopes), SimpleUser("user_1")


class CoreOnly:
    """Reference: a pure ASGI middleware that only calls the core as ``ApiKeyMiddleware`` does
    (the non-raising ``decide_async`` on the request's facts, no requirement) and sets nothing:
    what the core alone costs per request."""

    def __init__(self, app: Any, authenticator: Authenticator) -> None:
        self.app, self.decide = app, authenticator.decide_async

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            facts = RequestFacts(
                scope["method"], scope["path"], scope["headers"], scope["query_string"]
            )
            await self.decide(facts)
        await self.app(scope, receive, send)


class NoOp(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


def build_apps(key: str, auth: Authenticator) -> dict[str, Starlette]:
    rules = Rules([Rule("/bookings", scopes=[SCOPE])])
    return {
        BARE: Starlette(routes=[Route("/bookings", bare_endpoint)]),
        STARLETTE: Starlette(
            routes=[Route("/bookings", starlette_endpoint)],
            middleware=[Middleware(AuthenticationMiddleware, backend=DictBackend({key: (SCOPE,)}))],
        ),
        CORE_ONLY: Starlette(
            routes=[Route("/bookings", bare_endpoint)],
            middleware=[Middleware(CoreOnly, authenticator=auth)],
        ),
        BASE_HTTP: Starlette(
            routes=[Route("/bookings", bare_endpoint)], middleware=[Middleware(NoOp)]
        ),
        OURS: Starlette(
            routes=[Route("/bookings", ours_endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
        ),
        RULES: Starlette(
            routes=[Route("/bookings", bare_endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth, rules=rules)],
        ),
        BUSY: Starlette(routes=[Route("/bookings", busy_endpoint)]),
    }


# -- in process -------------------------------------------------------------------------------


def scope_for(authorization: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/bookings",
        "raw_path": b"/bookings",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def time_requests(app: Any, template: dict[str, Any], status: int, number: int) -> float:
    request = {"type": "http.request", "body": b"", "more_body": False}
    seen: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.append(message["status"])

    copy = dict.copy
    start = time.perf_counter()
    for _ in range(number):
        await app(copy(template), receive, send)
    elapsed = time.perf_counter() - start
    assert seen.count(status) == number, (seen[:3], status)
    return elapsed / number


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (as the HTTP servers run), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def measure_inprocess(rounds: int = 21, number: int = 3000) -> Rounds:
    """Seconds per request of every app, interleaved in rounds (ratios: to ``BARE``)."""
    store = MemoryKeyStore()
    key = make_key(store)
    auth = Authenticator(store, last_used_interval=3600)
    apps = build_apps(key, auth)
    good = scope_for(f"Bearer {key}")
    bad_checksum = scope_for(f"Bearer {key[:-1]}{'A' if key[-1] != 'A' else 'B'}")
    unknown = scope_for(f"Bearer {generate_key()}")
    variants: dict[str, tuple[Any, dict[str, Any], int]] = {
        name: (app, good, 200) for name, app in apps.items() if name != BUSY
    }
    ours = apps[OURS]
    variants[BAD_CHECKSUM] = (ours, bad_checksum, 401)
    variants[UNKNOWN] = (ours, unknown, 401)
    variants[NO_KEY] = (ours, scope_for(None), 401)
    loop = new_loop()
    try:
        for app, template, status in variants.values():  # warm up: caches, code paths
            loop.run_until_complete(time_requests(app, template, status, 200))

        def timer(name: str) -> Callable[[], float]:
            return lambda: loop.run_until_complete(time_requests(*variants[name], number))

        return Rounds().run({name: timer(name) for name in variants}, rounds)
    finally:
        loop.close()
        auth.close()


# -- over HTTP --------------------------------------------------------------------------------

SERVER = """
import sys, uvicorn
sys.path.insert(0, {bench_dir!r})
from bench_asgi import serve_app
uvicorn.run(serve_app({variant!r}, {key!r}, {db!r}), host="127.0.0.1", port={port},
            loop="uvloop", http="httptools", workers=1, log_level="warning", access_log=False,
            lifespan="on")
"""


def serve_app(variant: str, key: str, db: str) -> Starlette:
    """The app a benchmark server runs (the key store is rebuilt from a shared SQLite file)."""
    auth = Authenticator(SQLiteKeyStore(db), last_used_interval=3600)
    return build_apps(key, auth)[variant]


def make_db() -> tuple[str, str]:
    """A SQLite key store file with one key, for servers in other processes: ``(path, key)``."""
    db = os.path.join(tempfile.mkdtemp(), "bench.db")
    store = SQLiteKeyStore(db)
    key = make_key(store)  # type: ignore[arg-type]
    store.close()
    return db, key


def start_server(variant: str, key: str, db: str, prefix: tuple[str, ...] = ()) -> Server:
    """A uvicorn process serving ``variant`` on a free port (``prefix``: e.g. a profiler)."""
    port = free_port()
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    code = SERVER.format(bench_dir=bench_dir, variant=variant, key=key, db=db, port=port)
    process = subprocess.Popen([*prefix, sys.executable, "-c", code])  # noqa: S603
    return Server(process, port)


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def run_wrk(port: int, key: str | None, duration: int, connections: int) -> float:
    """Requests/s that ``wrk`` (one thread) reached; any non-2xx answer is an error."""
    return wrk_counts(port, key, duration, connections)[0]


def wrk_counts(port: int, key: str | None, duration: int, connections: int) -> tuple[float, int]:
    """``(requests/s, requests)`` of one ``wrk`` run; any non-2xx answer is an error."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "2s"]
    if key is not None:
        command += ["-H", f"Authorization: Bearer {key}"]
    command.append(f"http://127.0.0.1:{port}/bookings")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} error responses:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    assert match and count, output
    return float(match.group(1)), int(count.group(1))


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


HTTP_VARIANTS = (BARE, OURS, STARLETTE, CORE_ONLY)


def measure_http(
    rounds: int = 15, duration: int = 2, connections: int = 32
) -> tuple[Rounds, Rounds]:
    """Requests/s of one uvicorn server per app under ``wrk``, the load alternating between them
    in short bursts (shuffled each round), and the server's CPU seconds per request in the same
    bursts. Needs ``wrk`` (Debian: ``apt-get install wrk``).

    The second figure is the steadier one on a busy machine: a server that other processes
    keep off the CPU serves fewer requests, but spends the same CPU time on each. For a
    server that is CPU-bound under load, ``bare CPU ÷ ours`` estimates ``ours rps ÷ bare``.
    """
    if not have_wrk():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    db, key = make_db()
    # Every server runs for the whole benchmark (idle when not under load) and the load
    # alternates between them in short bursts, so slow drifts of the machine hit all alike.
    servers: dict[str, Server] = {}
    try:
        for name in HTTP_VARIANTS:
            servers[name] = start_server(name, key, db)
        for server in servers.values():
            wait_ready(server.port)
            run_wrk(server.port, key, 1, connections)  # warm up
        cpu = Rounds(unit="s/request")

        def burst(name: str, server: Server) -> float:
            before = cpu_seconds(server.process.pid)
            rps, requests = wrk_counts(server.port, key, duration, connections)
            spent = cpu_seconds(server.process.pid) - before
            cpu.values.setdefault(name, []).append(spent / requests)
            return rps

        measure = {name: functools.partial(burst, name, server) for name, server in servers.items()}
        return Rounds(unit="requests/s").run(measure, rounds), cpu
    finally:
        for server in servers.values():
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    one = parts.add_parser("inprocess")
    one.add_argument("--rounds", type=int, default=21)
    one.add_argument("--number", type=int, default=3000, help="requests per variant per round")
    two = parts.add_parser("http")
    two.add_argument("--rounds", type=int, default=15)
    two.add_argument("--duration", type=int, default=2, help="seconds of load per burst")
    two.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if args.part == "inprocess":
        found = measure_inprocess(args.rounds, args.number)
        print(
            f"in process: rounds={args.rounds} number={args.number}; bare request = "
            f"{found.median(BARE) * 1e6:.1f} µs (median)"
        )
        print("| variant | ÷ the bare request | ÷ Starlette's own |\n|---|---:|---:|")
        for name in found.values:
            to_bare, to_theirs = found.ratio(name, BARE), found.ratio(name, STARLETTE)
            print(f"| {name} | {to_bare.text()} | {to_theirs.text()} |")
    else:
        found, cpu = measure_http(args.rounds, args.duration, args.connections)
        print(
            f"over HTTP: rounds={args.rounds} duration={args.duration}s "
            f"connections={args.connections} (uvicorn, httptools, uvloop, 1 worker; wrk -t1)"
        )
        print(
            "| variant | median requests/s | ratio to bare | server CPU per request | "
            "bare CPU ÷ this |\n|---|---:|---:|---:|---:|"
        )
        for name in found.values:
            print(
                f"| {name} | {found.median(name):.0f} | {found.ratio(name, BARE).text()} | "
                f"{cpu.median(name) * 1e6:.1f} µs | {cpu.ratio(BARE, name).text()} |"
            )


if __name__ == "__main__":
    main()
