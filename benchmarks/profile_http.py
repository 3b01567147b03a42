"""Where a request's time goes under a real server, and what the in-process run does not see.

    .venv/bin/pip install py-spy                  # a profiling tool, not a project dependency
    .venv/bin/python benchmarks/profile_http.py   # about 4 minutes; needs wrk too

For the bare app, Starlette's own ``AuthenticationMiddleware`` + ``requires``, ours
(``ApiKeyMiddleware`` + ``requires_scope``) and a calibration app (the bare app plus a fixed
amount of pure-Python work in the endpoint), each served by uvicorn (httptools, uvloop, one
worker) under ``wrk -t1 -c32`` as in ``bench_asgi.py http``, ``py-spy record`` samples the
server in ``--rounds`` interleaved recordings of ``--duration`` seconds; ours is also profiled
in process (the ASGI app called in a loop, as ``bench_asgi.py inprocess`` does). Writes to
``benchmarks/profiles/``:

- ``<name>.svg``: py-spy's flame graph of Python frames (a second recording, same load; the
  towers under ``Thread._bootstrap`` are idle worker threads);
- ``<name>.txt.gz``: the collapsed stacks behind the tables (py-spy ``raw``, with ``--native``:
  C frames of uvloop, httptools, OpenSSL and the interpreter too);
- ``profiles.json``: requests and CPU seconds per profile (``--report-only`` rebuilds
  ``profile.md`` from these two);
- ``profile.md``: per profile, the share of CPU samples by layer and in µs of server CPU per
  request (samples × the process's CPU time ÷ the requests served while it was sampled), and
  the functions with the most self time.

Only the main thread's busy samples count (worker threads idle on locks, and the event loop
waiting in ``epoll``, are left out). A sample belongs to its innermost frame that is not the
standard library or the interpreter (``json`` called by Starlette's ``JSONResponse`` counts as
Starlette's response rendering; OpenSSL's SHA-256 as the core), except for the C frames that
name a layer of their own: socket reads and writes (uvloop and the kernel), the HTTP parser
(httptools). Samples whose innermost Python frame is the event loop's ``run`` are uvloop's own
scheduling work.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_asgi
from bench_asgi import BARE, BUSY, OURS, STARLETTE
from harness import cpu_seconds

HERE = Path(__file__).resolve().parent
OUT = HERE / "profiles"
HTTP_NAMES = {
    BARE: "http-bare",
    STARLETTE: "http-starlette",
    OURS: "http-ours",
    BUSY: "http-bare-busy",
}
INPROCESS_NAME = "inprocess-ours"
FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
STDLIB = set(sys.stdlib_module_names)
LOOP_LEAVES = {"Runner.run", "BaseEventLoop.run_forever", "BaseEventLoop.run_until_complete"}
UVICORN_PARSE = re.compile(r"data_received|on_|handle_|_get_upgrade|_should_upgrade")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def record(pid: int, seconds: int, rate: int, fmt: str, path: Path, native: bool = False) -> None:
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", str(rate), "--format", fmt, "--output", str(path)]
    if native:
        command.append("--native")
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603


# -- one profile ------------------------------------------------------------------------------


@dataclass
class Profile:
    name: str
    requests: int
    cpu: float  # seconds of the profiled process's CPU while it served ``requests``
    stacks: dict[tuple[str, ...], int] = field(default_factory=dict)

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu / self.requests * 1e6

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    @property
    def busy(self) -> int:
        """Samples of the main thread doing work: the denominator of every share."""
        return sum(shares(self).values())


def read_stacks(path: Path) -> dict[tuple[str, ...], int]:
    """Collapsed stacks (py-spy ``raw``), plain or gzipped (``.gz``)."""
    stacks: dict[tuple[str, ...], int] = collections.Counter()
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def parse(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    return (match["func"], match["path"]) if match else (frame, "")


def is_other_thread(stack: tuple[str, ...]) -> bool:
    """A worker or background thread (idle on a lock: py-spy may still count it as active)."""
    return any(f.startswith(("Thread._bootstrap ", "thread_run ")) for f in stack[:4])


def native_layer(func: str, path: str) -> str | None:
    """The layer of a C frame, or ``None`` to let the Python frame that called it decide."""
    if func.startswith(("epoll_", "uv__io_poll")):
        return IDLE
    if func.startswith(("uv__write", "uv_try_write", "uv__try_write", "UVStream__exec_write")):
        return "kernel + uvloop: socket write"
    if func.startswith(("uv__read", "uv__stream_io")) and "feed_data" not in func:
        return "kernel + uvloop: socket read"
    if path.startswith(("llhttp", "api.c", "http.c")) or func.startswith("llhttp"):
        return "httptools: the HTTP parser (C)"
    return None


IDLE = "idle: waiting in epoll (not counted)"


def layer(stack: tuple[str, ...]) -> str:
    """The layer that owns one sample: its innermost frame outside the standard library and
    the interpreter (C frames of uvloop, httptools and the kernel calls are named)."""
    for frame in reversed(stack):
        func, path = parse(frame)
        if not path.endswith(".py") and ".py:" not in path and not path.startswith("<"):
            found = native_layer(func, path)
            if found is not None:
                return found
            continue  # the interpreter, libc, OpenSSL: the calling Python frame decides
        if func in LOOP_LEAVES:
            return "event loop: uvloop's own work (scheduling, callbacks, timers)"
        top = path.split("/", 1)[0].removesuffix(".py").split(":")[0]
        if path.startswith("skaala_auth/starlette.py"):
            return "ours: the Starlette adapter (skaala_auth/starlette.py)"
        if path.startswith("skaala_auth/"):
            return f"ours: the core ({path.split(':')[0]})"
        if path.startswith("starlette/"):
            part = path.split("/", 1)[1]
            if part.startswith("responses"):
                return "starlette: response (JSONResponse render, send)"
            if part.startswith(STARLETTE_STACK):
                return "starlette: app, middleware stack and routing"
            if part.startswith(("requests", "datastructures")):
                return "starlette: Request / Headers objects"
            if part.startswith(("authentication", "middleware/authentication")):
                return "starlette: AuthenticationMiddleware + requires"
            return f"starlette: {part.split(':')[0]}"
        if path.startswith("uvicorn/"):
            if UVICORN_PARSE.search(func):
                return "uvicorn: request parsing callbacks, headers and scope building"
            if "send" in func:
                return "uvicorn: response (status line, headers, transport.write call)"
            if "run_asgi" in func:
                return "uvicorn: run_asgi (the request's task)"
            if "proxy_headers" in path:
                return "uvicorn: ProxyHeadersMiddleware"
            return f"uvicorn: other ({func})"
        if path.startswith("bench_asgi.py"):
            if func.startswith(("DictBackend", "CoreOnly")):
                return "starlette: AuthenticationMiddleware + requires"
            return "the endpoint (benchmark app code)"
        if path.startswith("profile_http.py"):
            return "the in-process driver (this script's loop)"
        if top in STDLIB or path.startswith("<"):
            continue
        return f"other: {top}"
    return "other: standard library only"


STARLETTE_STACK = (
    "routing",
    "_exception_handler",
    "applications",
    "middleware/errors",
    "middleware/exceptions",
)


def shares(profile: Profile) -> dict[str, int]:
    """Samples by layer, main thread only, idle excluded (see :attr:`Profile.busy`)."""
    by_layer: dict[str, int] = collections.Counter()
    for stack, count in profile.stacks.items():
        if not is_other_thread(stack):
            by_layer[layer(stack)] += count
    by_layer.pop(IDLE, None)
    return dict(by_layer)


def self_times(profile: Profile) -> dict[str, int]:
    """Busy main-thread samples by their innermost Python frame."""
    by_function: dict[str, int] = collections.Counter()
    for stack, count in profile.stacks.items():
        if is_other_thread(stack) or layer(stack) == IDLE:
            continue
        python = [f for f in stack if ".py:" in f] or [stack[-1]]
        func, path = parse(python[-1])
        by_function[f"{func} ({path.split(':')[0]})"] += count
    return dict(by_function)


def inclusive(profile: Profile, needle: str) -> int:
    """Busy main-thread samples with a frame that contains ``needle`` anywhere on the stack."""
    return sum(
        n
        for stack, n in profile.stacks.items()
        if not is_other_thread(stack) and layer(stack) != IDLE and any(needle in f for f in stack)
    )


# -- running ----------------------------------------------------------------------------------


def under_load(server: bench_asgi.Server, key: str, args: argparse.Namespace, fmt: str,
               path: Path) -> tuple[int, float]:  # fmt: skip
    """Record the server while ``wrk`` loads it: ``(requests served, CPU seconds)`` over the
    whole ``wrk`` run (which starts 1 s before the recording and ends 1 s after it)."""
    pid = server.process.pid
    before = cpu_seconds(pid)
    load = subprocess.Popen(  # noqa: S603
        ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration + 2}s",  # noqa: S607
         "-H", f"Authorization: Bearer {key}", f"http://127.0.0.1:{server.port}/bookings"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    record(pid, args.duration, args.rate, fmt, path, native=fmt == "raw")
    output, _ = load.communicate()
    cpu = cpu_seconds(pid) - before
    if re.search(r"Non-2xx", output):
        raise RuntimeError(f"wrk saw error responses:\n{output}")
    return int(re.search(r"(\d+) requests in", output)[1]), cpu  # type: ignore[index]


def in_process(args: argparse.Namespace, fmt: str, path: Path) -> tuple[int, float]:
    """Record the in-process driver: ``(requests, CPU seconds)`` of its timed loop."""
    run = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "_driver", str(args.duration + 2)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    assert run.stdout.readline().strip() == "ready"
    record(run.pid, args.duration, args.rate, fmt, path, native=fmt == "raw")
    done = json.loads(run.stdout.readline())
    run.wait()
    return done["requests"], done["cpu"]


def profile_all(args: argparse.Namespace) -> list[Profile]:
    """Every profile, recorded in interleaved rounds (a shuffled order each round) so that
    the machine's slow drifts spread over all of them; then one flame graph each."""
    db, key = bench_asgi.make_db()
    servers = {variant: bench_asgi.start_server(variant, key, db) for variant in HTTP_NAMES}
    names = [*HTTP_NAMES.values(), INPROCESS_NAME]
    found = {name: Profile(name, 0, 0.0, collections.Counter()) for name in names}
    by_name = {HTTP_NAMES[variant]: server for variant, server in servers.items()}
    part = OUT / "part.txt"

    def one(name: str, fmt: str, path: Path) -> tuple[int, float]:
        if name == INPROCESS_NAME:
            return in_process(args, fmt, path)
        return under_load(by_name[name], key, args, fmt, path)

    try:
        for server in servers.values():
            bench_asgi.wait_ready(server.port)
            bench_asgi.run_wrk(server.port, key, 2, args.connections)  # warm up
        for turn in range(args.rounds):
            print(f"[profile] round {turn + 1}/{args.rounds}", file=sys.stderr, flush=True)
            random.shuffle(names)
            for name in names:
                requests, cpu = one(name, "raw", part)
                profile = found[name]
                profile.requests += requests
                profile.cpu += cpu
                for stack, count in read_stacks(part).items():
                    profile.stacks[stack] = profile.stacks.get(stack, 0) + count
        for name in names:
            one(name, "flamegraph", OUT / f"{name}.svg")
    finally:
        part.unlink(missing_ok=True)
        for server in servers.values():
            server.stop()
    for profile in found.values():
        lines = [f"{';'.join(stack)} {count}" for stack, count in profile.stacks.items()]
        data = ("\n".join(sorted(lines)) + "\n").encode()
        (OUT / f"{profile.name}.txt.gz").write_bytes(gzip.compress(data, mtime=0))
    return [found[name] for name in [*HTTP_NAMES.values(), INPROCESS_NAME]]


def driver(seconds: float) -> None:
    """The in-process run, to be profiled: ours called as an ASGI app in a loop."""
    db, key = bench_asgi.make_db()
    app = bench_asgi.serve_app(OURS, key, db)
    template = bench_asgi.scope_for(f"Bearer {key}")

    async def loop() -> None:
        await bench_asgi.time_requests(app, template, 200, 2000)  # warm up
        print("ready", flush=True)
        count, deadline = 0, time.monotonic() + seconds
        cpu = time.process_time()
        while time.monotonic() < deadline:
            await bench_asgi.time_requests(app, template, 200, 200)
            count += 200
        cpu = time.process_time() - cpu
        print(json.dumps({"requests": count, "cpu": cpu}), flush=True)

    event_loop = bench_asgi.new_loop()
    try:
        event_loop.run_until_complete(loop())
    finally:
        event_loop.close()


# -- the report -------------------------------------------------------------------------------


def report(profiles: list[Profile], args: argparse.Namespace) -> str:
    lines = [
        "# Profiles: uvicorn under wrk, and the in-process run",
        "",
        "Written by `benchmarks/profile_http.py` "
        f"(py-spy {py_spy_version()}, {args.rate} Hz, {args.rounds} interleaved recordings of "
        f"{args.duration} s per profile, "
        f"wrk -t1 -c{args.connections}); the flame graphs are the `.svg` files beside this one. "
        "µs are of the profiled process's CPU per request while py-spy sampled it (py-spy "
        "pauses the process to sample: compare µs and shares between profiles, not "
        "requests/s with the benchmarks).",
        "",
        "| profile | requests | CPU per request | samples | busy (main thread, not idle) |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in profiles:
        lines.append(
            f"| {p.name} | {p.requests} | {p.cpu_per_request_us:.1f} µs | {p.samples} | {p.busy} |"
        )
    lines += summary(profiles)
    lines += steps_table(profiles)
    every = sorted({name for p in profiles for name in shares(p)})
    lines += [
        "",
        "## By layer: share of samples, and µs of CPU per request",
        "",
        "| layer | " + " | ".join(p.name for p in profiles) + " |",
        "|---|" + "---:|" * len(profiles),
    ]
    by_profile = [shares(p) for p in profiles]
    order = sorted(
        every,
        key=lambda n: -max(s.get(n, 0) / p.busy for s, p in zip(by_profile, profiles, strict=True)),
    )
    for name in order:
        cells = []
        for s, p in zip(by_profile, profiles, strict=True):
            n = s.get(name, 0)
            share = n / p.busy
            cells.append(f"{share:.1%} · {share * p.cpu_per_request_us:.2f}" if n else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Inclusive: everything under a frame (share · µs per request)", ""]
    needles = {
        "ApiKeyMiddleware.__call__ (whole app below it included)": "ApiKeyMiddleware.__call__",
        "Authenticator.decide_async (the middleware's core call)": "Authenticator.decide_async",
        "requires_scope's endpoint wrapper (async_endpoint)": "async_endpoint (skaala_auth",
        "RequestFacts.from_asgi": "RequestFacts.from_asgi",
        "AuthenticationMiddleware.__call__ (whole app below it included)": (
            "AuthenticationMiddleware.__call__"
        ),
        "JSONResponse (render + send)": "starlette/responses.py",
        "uvicorn RequestResponseCycle.send": "RequestResponseCycle.send",
        "uvicorn HttpToolsProtocol.data_received (parse, scope)": "data_received",
    }
    lines += [
        "| frame | " + " | ".join(p.name for p in profiles) + " |",
        "|---|" + "---:|" * len(profiles),
    ]
    for title, needle in needles.items():
        cells = []
        for p in profiles:
            n = inclusive(p, needle)
            share = n / p.busy
            cells.append(f"{share:.1%} · {share * p.cpu_per_request_us:.2f}" if n else "")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    for p in profiles:
        lines += [
            "",
            f"## Top self time: {p.name}",
            "",
            "| function (file) | self samples | share | µs per request |",
            "|---|---:|---:|---:|",
        ]
        top = sorted(self_times(p).items(), key=lambda item: -item[1])[: args.top]
        for func, n in top:
            share = n / p.busy
            lines.append(f"| {func} | {n} | {share:.1%} | {share * p.cpu_per_request_us:.2f} |")
    return "\n".join(lines) + "\n"


OURS_GROUP = "ours: core + adapter"
PEER_GROUP = "Starlette's auth (the peer: AuthenticationMiddleware, backend, requires)"
GROUPS = {
    OURS_GROUP: ("ours:",),
    PEER_GROUP: ("starlette: AuthenticationMiddleware",),
    "starlette (app, routing, middleware stack, Request, response)": ("starlette:",),
    "the endpoint": ("the endpoint",),
    "uvicorn (Python)": ("uvicorn:",),
    "kernel + uvloop: socket read/write": ("kernel + uvloop",),
    "uvloop scheduling + httptools parser (C)": ("event loop:", "httptools:"),
}


def grouped(profile: Profile) -> dict[str, float]:
    """µs of CPU per request by group of layers."""
    per = profile.cpu_per_request_us / profile.busy
    out = dict.fromkeys(GROUPS, 0.0)
    for name, n in shares(profile).items():
        for group, prefixes in GROUPS.items():  # the first group that matches
            if name.startswith(prefixes):
                out[group] += n * per
                break
    return out


def summary(profiles: list[Profile]) -> list[str]:
    """µs per request by group in every profile, and what ours and Starlette's add over the
    bare app, against what a known amount of added work (``busy_work``) adds."""
    by = {p.name: p for p in profiles}
    names = [*HTTP_NAMES.values(), INPROCESS_NAME]
    if not all(name in by for name in names):
        return []
    groups = {name: grouped(by[name]) for name in names}
    ours, inproc = groups[HTTP_NAMES[OURS]], groups[INPROCESS_NAME]
    lines = [
        "",
        "## Summary: µs of CPU per request by group",
        "",
        "| group | " + " | ".join(names) + " | http-ours ÷ inprocess-ours |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for group in GROUPS:
        ratio = f"{ours[group] / inproc[group]:.1f}×" if inproc[group] else ""
        cells = " | ".join(f"{groups[name][group]:.1f}" for name in names)
        lines.append(f"| {group} | {cells} | {ratio} |")
    totals = " | ".join(f"{by[name].cpu_per_request_us:.1f}" for name in names)
    lines.append(f"| **all** (CPU per request) | {totals} | |")
    bare = by[HTTP_NAMES[BARE]].cpu_per_request_us

    def extra(name: str) -> float:
        return by[HTTP_NAMES[name]].cpu_per_request_us - bare

    busy_own = groups[HTTP_NAMES[BUSY]]["the endpoint"] - groups[HTTP_NAMES[BARE]]["the endpoint"]
    lines += [
        "",
        f"Over http-bare: ours adds {extra(OURS):+.1f} µs of CPU per request, its own functions "
        f"{ours[OURS_GROUP]:.1f} µs; Starlette's own adds {extra(STARLETTE):+.1f} µs, its auth "
        f"{groups[HTTP_NAMES[STARLETTE]][PEER_GROUP]:.1f} µs; the calibration app adds "
        f"{extra(BUSY):+.1f} µs, `busy_work()` itself {busy_own:.1f} µs. CPU per request is "
        "measured per profile (separate processes): on a busy machine it moves by several µs "
        "between runs, while the shares within one profile hold.",
    ]
    return lines


#: The steps of our code, by the innermost skaala_auth function of a sample.
STEPS: dict[str, tuple[str, ...]] = {
    "checksum (well_formed_bytes: shape, CRC32, base62)": ("well_formed_bytes", "_checksum"),
    "credential extraction (extract_key, _scheme, _bearer)": ("extract_key", "_scheme", "_bearer"),
    "facts and requirement (RequestFacts ×2, requirement, Endpoint.bind)": (
        "RequestFacts",
        "requirement",
        "Endpoint.",
        "is_preflight",
    ),
    "cache read (KeyCache.peek)": ("KeyCache.",),
    "decision (_finish, verify.decide, refusal, _settled)": (
        "_finish",
        "refusal",
        "_settled",
        "decide (",
    ),
    "poll for changes (_poll_async → asyncio.to_thread)": ("_poll",),
    "Authenticator call layers (check_async, decide_async, decide: own lines)": ("Authenticator.",),
    "adapter: ApiKeyMiddleware (__call__, _set_identity)": ("ApiKeyMiddleware.",),
    "adapter: requires_scope (wrapper, _guard_found, _scope_of, _credentials, _granted)": (
        "requires_scope",
        "_guard",
        "_scope_of",
        "_credentials",
        "_granted",
    ),
}
SHA = "SHA-256 (OpenSSL: the hash object, update, digest, free)"


def ours_steps(profile: Profile) -> dict[str, int]:
    """Busy samples in our code by step (the SHA-256 by the C frames under the digest call)."""
    steps: dict[str, int] = collections.Counter()
    for stack, count in profile.stacks.items():
        if is_other_thread(stack) or not layer(stack).startswith("ours"):
            continue
        inner = max(i for i, frame in enumerate(stack) if "skaala_auth/" in frame)
        func, _ = parse(stack[inner])
        func = "decide (" if func == "decide" else func  # verify.decide, not a method
        below = " ".join(stack[inner + 1 :])
        if "sha256" in below or "EVP_" in below or "hashopenssl" in below:
            steps[SHA] += count
            continue
        for step, names in STEPS.items():
            if func.startswith(names) or any(name in func for name in names):
                steps[step] += count
                break
        else:
            steps[f"other ({func})"] += count
    return dict(steps)


def steps_table(profiles: list[Profile]) -> list[str]:
    chosen = [p for p in profiles if p.name in (HTTP_NAMES[OURS], INPROCESS_NAME)]
    counted = [ours_steps(p) for p in chosen]
    names = sorted({n for c in counted for n in c}, key=lambda n: -counted[0].get(n, 0))
    lines = [
        "",
        "## Our code by step (share of the profile's busy samples · µs per request)",
        "",
        "| step | " + " | ".join(p.name for p in chosen) + " |",
        "|---|" + "---:|" * len(chosen),
    ]
    for name in names:
        cells = []
        for c, p in zip(counted, chosen, strict=True):
            n = c.get(name, 0)
            cells.append(f"{n / p.busy:.1%} · {n / p.busy * p.cpu_per_request_us:.2f}" if n else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = []
    for c, p in zip(counted, chosen, strict=True):
        n = sum(c.values())
        totals.append(f"{n / p.busy:.1%} · {n / p.busy * p.cpu_per_request_us:.2f}")
    lines.append("| **all of our code** | " + " | ".join(totals) + " |")
    return lines


def py_spy_version() -> str:
    done = subprocess.run([py_spy(), "--version"], capture_output=True, text=True)  # noqa: S603
    return done.stdout.split()[-1] if done.stdout else "?"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_driver":
        driver(float(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="recordings per profile")
    parser.add_argument("--duration", type=int, default=5, help="seconds per recording")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=25, help="rows of each self-time table")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite profile.md from the saved profiles"
    )
    args = parser.parse_args()
    py_spy()
    saved = OUT / "profiles.json"
    if args.report_only:
        data = json.loads(saved.read_text())
        vars(args).update(data["args"])
        profiles = [
            Profile(name, d["requests"], d["cpu"], read_stacks(OUT / f"{name}.txt.gz"))
            for name, d in data["profiles"].items()
        ]
    else:
        if not bench_asgi.have_wrk():
            sys.exit("wrk is not installed (Debian: apt-get install -y wrk)")
        OUT.mkdir(exist_ok=True)
        profiles = profile_all(args)
        data = {
            "args": {k: vars(args)[k] for k in ("rounds", "duration", "rate", "connections")},
            "profiles": {p.name: {"requests": p.requests, "cpu": p.cpu} for p in profiles},
        }
        saved.write_text(json.dumps(data, indent=1) + "\n")
    (OUT / "profile.md").write_text(report(profiles, args))
    print(f"written: {OUT}/profile.md and the .svg/.txt.gz files beside it")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
