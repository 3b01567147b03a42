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
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

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

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, generate_key
from skaala_auth.rules import Rule, Rules
from skaala_auth.starlette import ApiKeyMiddleware, requires_scope

SCOPE = "read:bookings"
CORE_ONLY = "reference: the core alone (check_request_async, nothing set)"
CORE_AND_WRAPPER = "reference: the core alone + a pass-through endpoint decorator"
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
    """Reference: a pure ASGI middleware that only calls the core (the non-raising
    ``check_request_async``, as ``ApiKeyMiddleware`` does) and sets nothing: what the core alone
    costs per request."""

    def __init__(self, app: Any, authenticator: Authenticator) -> None:
        self.app, self.check = app, authenticator.check_request_async

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.check(
                scope["headers"],
                required_scopes=(SCOPE,),
                query_string=scope["query_string"],
                required=False,
            )
        await self.app(scope, receive, send)


def passthrough(endpoint: Any) -> Any:
    """Reference: the cheapest possible endpoint decorator (an async wrapper that checks
    nothing), the floor under any ``@requires_scope``-style check."""

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await endpoint(*args, **kwargs)

    return wrapper


class NoOp(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


def build_apps(key: str, auth: Authenticator) -> dict[str, Starlette]:
    rules = Rules([Rule("/bookings", scopes=[SCOPE])])
    return {
        "bare": Starlette(routes=[Route("/bookings", bare_endpoint)]),
        "starlette AuthenticationMiddleware + requires": Starlette(
            routes=[Route("/bookings", starlette_endpoint)],
            middleware=[Middleware(AuthenticationMiddleware, backend=DictBackend({key: (SCOPE,)}))],
        ),
        CORE_ONLY: Starlette(
            routes=[Route("/bookings", bare_endpoint)],
            middleware=[Middleware(CoreOnly, authenticator=auth)],
        ),
        CORE_AND_WRAPPER: Starlette(
            routes=[Route("/bookings", passthrough(bare_endpoint))],
            middleware=[Middleware(CoreOnly, authenticator=auth)],
        ),
        "BaseHTTPMiddleware (no-op)": Starlette(
            routes=[Route("/bookings", bare_endpoint)], middleware=[Middleware(NoOp)]
        ),
        "ApiKeyMiddleware + requires_scope": Starlette(
            routes=[Route("/bookings", ours_endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth)],
        ),
        "ApiKeyMiddleware + rules table": Starlette(
            routes=[Route("/bookings", bare_endpoint)],
            middleware=[Middleware(ApiKeyMiddleware, authenticator=auth, rules=rules)],
        ),
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


async def inprocess(rounds: int, number: int) -> None:
    store = MemoryKeyStore()
    key = make_key(store)
    auth = Authenticator(store, last_used_interval=3600)
    apps = build_apps(key, auth)
    good = scope_for(f"Bearer {key}")
    bad_checksum = scope_for(f"Bearer {key[:-1]}{'A' if key[-1] != 'A' else 'B'}")
    unknown = scope_for(f"Bearer {generate_key()}")
    variants: dict[str, tuple[Any, dict[str, Any], int]] = {
        name: (app, good, 200) for name, app in apps.items()
    }
    ours = apps["ApiKeyMiddleware + requires_scope"]
    variants["ApiKeyMiddleware: invalid key (bad checksum) → 401"] = (ours, bad_checksum, 401)
    variants["ApiKeyMiddleware: unknown key (negative cache) → 401"] = (ours, unknown, 401)
    variants["ApiKeyMiddleware: no key, anonymous → 401 from requires_scope"] = (
        ours,
        scope_for(None),
        401,
    )
    for app, template, status in variants.values():  # warm up: caches, imports, code paths
        await time_requests(app, template, status, 200)
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    bare_times: list[float] = []
    names = list(variants)
    for _ in range(rounds):
        random.shuffle(names)
        times = {name: await time_requests(*variants[name], number) for name in names}
        bare_times.append(times["bare"])
        for name, seconds in times.items():
            ratios[name].append(seconds / times["bare"])
    targets = {
        "ApiKeyMiddleware + requires_scope": "≤ 1.35×",
        "starlette AuthenticationMiddleware + requires": "(≈ 1.46× where the targets were set)",
        "BaseHTTPMiddleware (no-op)": "(≈ 12× where the targets were set)",
        "ApiKeyMiddleware: invalid key (bad checksum) → 401": "≤ 0.3×",
        "ApiKeyMiddleware: unknown key (negative cache) → 401": "",
    }
    print(
        f"in process: rounds={rounds} number={number}; bare request = "
        f"{statistics.median(bare_times) * 1e6:.1f} µs (median)"
    )
    print("| variant | median ratio to the bare request | target |\n|---|---:|---|")
    for name in variants:
        print(f"| {name} | {statistics.median(ratios[name]):.2f}× | {targets.get(name, '')} |")
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
    from skaala_auth import SQLiteKeyStore

    auth = Authenticator(SQLiteKeyStore(db), last_used_interval=3600)
    return build_apps(key, auth)[variant]


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


def run_wrk(port: int, key: str, duration: int, connections: int) -> float:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "2s",
        "-H", f"Authorization: Bearer {key}", f"http://127.0.0.1:{port}/bookings",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} error responses:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def http(rounds: int, duration: int, connections: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    import tempfile

    from skaala_auth import SQLiteKeyStore

    db = os.path.join(tempfile.mkdtemp(), "bench.db")
    store = SQLiteKeyStore(db)
    key = make_key(store)  # type: ignore[arg-type]
    store.close()
    ours = "ApiKeyMiddleware + requires_scope"
    variants = [
        "bare",
        ours,
        "starlette AuthenticationMiddleware + requires",
        CORE_ONLY,
    ]
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    # Every server runs for the whole benchmark (idle when not under load) and the load
    # alternates between them in short bursts, so slow drifts of the machine hit all alike.
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name in variants:
            port = free_port()
            code = SERVER.format(bench_dir=bench_dir, variant=name, key=key, db=db, port=port)
            servers[name] = (subprocess.Popen([sys.executable, "-c", code]), port)  # noqa: S603
        for _, port in servers.values():
            wait_ready(port)
            run_wrk(port, key, 1, connections)  # warm up
        rps: dict[str, list[float]] = {name: [] for name in variants}
        ratios: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            order = variants[:]
            random.shuffle(order)
            measured = {
                name: run_wrk(servers[name][1], key, duration, connections) for name in order
            }
            for name, value in measured.items():
                rps[name].append(value)
                ratios[name].append(value / measured["bare"])
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=15)
    print(
        f"over HTTP: rounds={rounds} duration={duration}s connections={connections} "
        "(uvicorn, httptools, uvloop, 1 worker; wrk -t1)"
    )
    print("| variant | median requests/s | median ratio to bare | target |\n|---|---:|---:|---|")
    targets = {ours: "≥ 0.90×"}
    for name in variants:
        ratio, median_rps = statistics.median(ratios[name]), statistics.median(rps[name])
        print(f"| {name} | {median_rps:.0f} | {ratio:.2f}× | {targets.get(name, '')} |")


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
        try:
            import uvloop
        except ImportError:
            asyncio.run(inprocess(args.rounds, args.number))
        else:
            uvloop.run(inprocess(args.rounds, args.number))
    else:
        http(args.rounds, args.duration, args.connections)


if __name__ == "__main__":
    main()
