"""Every row of issue 16's table in one run: the core, Starlette in process and over HTTP, Flask,
DRF and memory, each with the peers measured beside us in the same rounds.

    .venv/bin/python benchmarks/run_all.py           # the full run (about 6 minutes)
    .venv/bin/python benchmarks/run_all.py --quick   # a smoke run (under a minute), same rows
    .venv/bin/python benchmarks/run_all.py --docs    # also rewrite docs/performance.md's table

``make bench`` runs the full run with ``--docs``; ``make bench-quick`` the smoke run.

Writes ``benchmarks/results.md`` (the table, then every variant of every part) and
``benchmarks/results.json`` (the same, with the per-round values); a ``--quick`` run writes
``results-quick.*`` instead and never touches the docs. Every figure is a median over
interleaved rounds of a ratio of two variants measured in the same round (``harness.py``); the
quartiles of those per-round ratios are given as the spread.

The HTTP rows need ``wrk`` (Debian: ``apt-get install -y wrk``); without it they are reported
as not measured and the rest of the run goes on. The store-growth rows (latency against the
number of keys, key creation, bulk import) come from ``bench_growth.py`` when it is present and
offers ``summary_rows(quick: bool) -> list[dict]`` with the keys ``work``, ``now``, ``target``,
``met`` (bool or None) and ``peers``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Run as a script, this folder is on sys.path; each bench module puts the checkout's root there
# too, so the skaala_auth measured is the one beside this folder.
import bench_asgi
import bench_core
import bench_memory
import bench_wsgi
from harness import Ratio, Rounds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "performance.md"
BEGIN = (
    "<!-- results: begin (written by benchmarks/run_all.py --docs; edit the script, not this) -->"
)
END = "<!-- results: end -->"
PACKAGES = (
    "starlette",
    "uvicorn",
    "httptools",
    "uvloop",
    "flask",
    "werkzeug",
    "django",
    "djangorestframework",
    "djangorestframework-api-key",
)


@dataclass
class Settings:
    core_rounds: int = 25
    core_number: int = 20_000
    asgi_rounds: int = 21
    asgi_number: int = 3000
    wsgi_rounds: int = 40
    wsgi_calls: int = 400
    http_rounds: int = 15
    http_duration: int = 2
    http_connections: int = 32
    memory_keys: int = 5000


QUICK = Settings(
    core_rounds=5,
    core_number=3000,
    asgi_rounds=5,
    asgi_number=500,
    wsgi_rounds=5,
    wsgi_calls=100,
    http_rounds=3,
    http_duration=1,
)


@dataclass
class Row:
    work: str
    now: str
    spread: str
    target: str
    met: bool | None  # None: no target, or not measured
    peers: str
    #: Partly met (the first step of a two-step target).
    note: str = ""

    def mark(self) -> str:
        if self.met is None:
            return "—" if self.now != "not measured" else "not measured"
        return ("✓ " + self.note).strip() if self.met else ("✗ " + self.note).strip()


# -- the rows ---------------------------------------------------------------------------------


def core_rows(found: bench_core.CoreResults) -> list[Row]:
    r = found.rounds
    sha, floor = bench_core.BASELINE, bench_core.FLOOR
    floor_sha = r.ratio(floor, sha)
    verify = r.ratio(bench_core.VERIFY, floor)
    headers = r.ratio(bench_core.AUTHENTICATE, floor)
    bad = r.ratio(bench_core.BAD_CHECKSUM, sha)
    hashed = found.bad_checksum_hashed
    if hashed is None:
        limit, when = 1.5, "order not observable (compiled core): the looser bound applied"
    elif hashed:
        limit, when = 1.5, "hashed and probed before the checksum refuses it"
    else:
        limit, when = 0.5, "refused before any hash"
    miss = r.ratio(bench_core.MISS, bench_core.QUERY)
    return [
        Row(
            "core: the bare floor (length/prefix + SHA-256 + dict + expiry + scope) ÷ one "
            "SHA-256 call",
            floor_sha.text(),
            floor_sha.spread(),
            "(≈ 1.7× where the targets were set)",
            None,
            "the unit of the next two rows",
        ),
        Row(
            "core: `verify(key)`, cached key, ÷ the floor",
            verify.text(),
            verify.spread(),
            "≤ 1.3×",
            verify.median <= 1.3,
            f"{r.ratio(bench_core.VERIFY, sha).text()} one SHA-256 call; the flow's key step "
            f"alone (`Flow.start`, no clock or poll: the old `check`): "
            f"{r.ratio(bench_core.FLOW_HIT, floor).text()} the floor",
        ),
        Row(
            "core: `authenticate(headers dict)`, cached key, ÷ the floor",
            headers.text(),
            headers.spread(),
            "≤ 1.6×",
            headers.median <= 1.6,
            f"{r.ratio(bench_core.AUTHENTICATE, sha).text()} one SHA-256 call; "
            f"`decide(RequestFacts)` on ASGI pairs, no requirement: "
            f"{r.ratio(bench_core.DECIDE, floor).text()} the floor",
        ),
        Row(
            "core: malformed key (bad checksum) refused by `decide(RequestFacts)` (no raise), "
            "÷ one SHA-256 call",
            bad.text(),
            bad.spread(),
            "≤ 0.5× before any hash, or ≤ 1.5× after the cache probe",
            bad.median <= limit,
            f"{when}; the flow's key step alone (`Flow.start`): "
            f"{r.ratio(bench_core.FLOW_BAD, sha).text()}; `verify(key)` raising (caught): "
            f"{r.ratio(bench_core.VERIFY_BAD, sha).text()}; wrong length: "
            f"{r.ratio(bench_core.WRONG_LENGTH, sha).text()}; unknown well-formed key: "
            f"{r.ratio(bench_core.UNKNOWN, sha).text()}",
        ),
        Row(
            "core: SQLite miss (`verify(key)`, cache off) ÷ the indexed query alone "
            "(`execute` + `fetchone`, same file)",
            miss.text(),
            miss.spread(),
            "≤ 2×",
            miss.median <= 2.0,
            f"the query alone: {r.ratio(bench_core.QUERY, sha).text(1)} one SHA-256 call; "
            f"the load in the caller's thread (no worker-thread hop, so no `store_timeout`): "
            f"{r.ratio(bench_core.MISS_INLINE, bench_core.QUERY).text()}",
        ),
    ]


def starlette_row(r: Rounds) -> Row:
    a = bench_asgi
    ours = r.ratio(a.OURS, a.STARLETTE)
    bare_us = r.median(a.BARE) * 1e6
    return Row(
        "Starlette in process: `ApiKeyMiddleware` + `requires_scope` ÷ Starlette's own "
        "`AuthenticationMiddleware` (dict backend, no hashing) + `requires`",
        ours.text(),
        ours.spread(),
        "≤ 1.0",
        ours.median <= 1.0,
        f"÷ the bare app ({bare_us:.1f} µs): ours {r.ratio(a.OURS, a.BARE).text()}, "
        f"Starlette's own {r.ratio(a.STARLETTE, a.BARE).text()}, the core alone "
        f"{r.ratio(a.CORE_ONLY, a.BARE).text()}, `BaseHTTPMiddleware` no-op "
        f"{r.ratio(a.BASE_HTTP, a.BARE).text()}",
    )


def http_rows(r: Rounds | None, cpu: Rounds | None, why: str = "") -> list[Row]:
    work_ours = (
        "uvicorn + httptools over HTTP: `ApiKeyMiddleware` + `requires_scope`, requests/s ÷ bare"
    )
    work_theirs = "uvicorn + httptools over HTTP: Starlette's own middleware, requests/s ÷ bare"
    if r is None:
        return [
            Row(work_ours, "not measured", "", "≥ 0.88×, then 0.90×", None, why),
            Row(work_theirs, "not measured", "", "(peer)", None, why),
        ]
    a = bench_asgi
    assert cpu is not None
    ours, theirs = r.ratio(a.OURS, a.BARE), r.ratio(a.STARLETTE, a.BARE)
    first_step_only = 0.88 <= ours.median < 0.90

    def by_cpu(name: str) -> str:
        return f"{cpu.ratio(a.BARE, name).text()} ({cpu.ratio(a.BARE, name).spread()})"

    return [
        Row(
            work_ours,
            ours.text(),
            ours.spread(),
            "≥ 0.88×, then 0.90×",
            ours.median >= 0.88,
            f"bare {r.median(a.BARE):.0f} requests/s; Starlette's own {theirs.text()}; "
            f"the core alone {r.ratio(a.CORE_ONLY, a.BARE).text()}; ours ÷ Starlette's own "
            f"{r.ratio(a.OURS, a.STARLETTE).text()}. By server CPU per request (bare ÷ this, "
            f"steadier on a busy machine): ours {by_cpu(a.OURS)}, Starlette's own "
            f"{by_cpu(a.STARLETTE)}, the core alone {by_cpu(a.CORE_ONLY)}",
            "(0.88× step only)" if first_step_only else "",
        ),
        Row(
            work_theirs,
            theirs.text(),
            theirs.spread(),
            "(peer)",
            None,
            "the same servers and rounds as the row above",
        ),
    ]


def wsgi_rows(flask: Rounds, drf: Rounds) -> list[Row]:
    w = bench_wsgi
    ours = flask.ratio(w.FLASK_OURS, w.FLASK_BARE)
    # Throughput ratio = their time per request ÷ ours, per round.
    versus = drf.ratio(w.DRF_THEIRS, w.DRF_OURS)
    return [
        Row(
            "Flask `@requires_scope` (cached key) ÷ the bare view",
            ours.text(3),
            ours.spread(3),
            "≤ 1.10×",
            ours.median <= 1.10,
            f"bare view {flask.median(w.FLASK_BARE) * 1e6:.1f} µs; the core alone "
            "(`authenticate` before the bare app) "
            f"{flask.ratio(w.FLASK_CORE, w.FLASK_BARE).text(3)}",
        ),
        Row(
            "DRF: `HasScopes` throughput ÷ djangorestframework-api-key `HasAPIKey` throughput",
            versus.text(),
            versus.spread(),
            "≥ 3×",
            versus.median >= 3.0,
            f"÷ `AllowAny`: ours {drf.ratio(w.DRF_OURS, w.DRF_OPEN).text(3)}, with "
            f"`ApiKeyAuthentication` {drf.ratio(w.DRF_OURS_USER, w.DRF_OPEN).text(3)}, "
            f"`HasAPIKey` {drf.ratio(w.DRF_THEIRS, w.DRF_OPEN).text(3)}",
        ),
    ]


def memory_row(found: bench_memory.MemoryResults) -> Row:
    alone = (
        ""
        if found.per_key_cache_only is None
        else f"; the cache alone (`track_last_used=False`): {found.per_key_cache_only:.0f} B"
    )
    return Row(
        f"memory per cached key (tracemalloc, {found.keys:,} keys)",
        f"{found.per_key:.0f} B",
        "",
        "≤ 1 KiB",
        found.per_key <= 1024,
        f"with each key's pending `last_used_at` mark{alone}",
    )


def growth_rows(quick: bool) -> list[Row]:
    try:
        growth = importlib.import_module("bench_growth")
    except ImportError:
        growth = None
    summary: Callable[[bool], list[dict[str, Any]]] | None = getattr(growth, "summary_rows", None)
    if summary is None:
        return [
            Row(
                "store growth: SQLite miss latency 1 → 1M keys; key creation; bulk import",
                "not measured",
                "",
                "flat; a 100k import in seconds",
                None,
                "`benchmarks/bench_growth.py` (see Store growth)",
            )
        ]
    return [
        Row(d["work"], d["now"], d.get("spread", ""), d["target"], d["met"], d.get("peers", ""))
        for d in summary(quick)
    ]


# -- the run ----------------------------------------------------------------------------------


def run(settings: Settings, quick: bool, skip_http: bool) -> tuple[list[Row], dict[str, Any]]:
    parts: dict[str, Any] = {}

    def step(name: str, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        print(f"[run_all] {name} …", file=sys.stderr, flush=True)
        result = call()
        print(f"[run_all] {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        return result

    s = settings
    core = step("core", lambda: bench_core.measure(s.core_rounds, s.core_number))
    memory = step("memory", lambda: bench_memory.measure(s.memory_keys))
    asgi = step(
        "starlette in process", lambda: bench_asgi.measure_inprocess(s.asgi_rounds, s.asgi_number)
    )
    flask = step("flask", lambda: bench_wsgi.measure_flask(s.wsgi_rounds, s.wsgi_calls))
    drf = step("drf", lambda: bench_wsgi.measure_drf(s.wsgi_rounds, s.wsgi_calls))
    http: Rounds | None = None
    http_cpu: Rounds | None = None
    why = ""
    if skip_http:
        why = "skipped (--no-http)"
    elif not bench_asgi.have_wrk():
        why = "wrk is not installed (Debian: apt-get install -y wrk)"
        print(f"[run_all] HTTP rows not measured: {why}", file=sys.stderr)
    else:
        http, http_cpu = step(
            "uvicorn over HTTP",
            lambda: bench_asgi.measure_http(s.http_rounds, s.http_duration, s.http_connections),
        )
    growth = step("store growth", lambda: growth_rows(quick))

    rows = [
        *core_rows(core),
        starlette_row(asgi),
        *http_rows(http, http_cpu, why),
        *wsgi_rows(flask, drf),
        memory_row(memory),
        *growth,
    ]
    parts = {
        "core": (core.rounds, bench_core.BASELINE),
        "starlette in process": (asgi, bench_asgi.BARE),
        "flask": (flask, bench_wsgi.FLASK_BARE),
        "drf": (drf, bench_wsgi.DRF_OPEN),
    }
    if http is not None and http_cpu is not None:
        parts["uvicorn over HTTP"] = (http, bench_asgi.BARE)
        parts["uvicorn over HTTP: server CPU per request"] = (http_cpu, bench_asgi.BARE)
    extra = {
        "bad_checksum_hashed": core.bad_checksum_hashed,
        "memory": asdict(memory),
        "http_not_measured": why,
    }
    return rows, {"parts": parts, "extra": extra}


def environment(settings: Settings, quick: bool, argv: list[str]) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(  # noqa: S603
                ["git", "-C", str(ROOT), *args],  # noqa: S607
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)  # noqa: S607
        match = re.search(r"wrk (?:debian/)?([\d.]+)", wrk.stdout + wrk.stderr)
        versions["wrk"] = match.group(1) if match else "?"
    except OSError:
        versions["wrk"] = "absent"
    import skaala_auth

    compiled = not str(sys.modules["skaala_auth.authenticator"].__file__).endswith(".py")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["benchmarks/run_all.py", *argv]),
        "quick": quick,
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "skaala_auth")),
        "skaala_auth": str(Path(skaala_auth.__file__).parent),
        "compiled_core": compiled,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "packages": versions,
        "settings": asdict(settings),
    }


# -- writing ----------------------------------------------------------------------------------


def summary_table(rows: list[Row]) -> str:
    lines = [
        "| work | now | spread (quartiles) | target | met | peers and context, same run |",
        "|---|---:|---:|---|:-:|---|",
    ]
    for row in rows:
        now = f"**{row.now}**" if row.met is not None else row.now
        lines.append(
            f"| {row.work} | {now} | {row.spread} | {row.target} | {row.mark()} | {row.peers} |"
        )
    return "\n".join(lines)


def provenance(env: dict[str, Any]) -> str:
    pk = env["packages"]
    dirty = " + uncommitted changes in skaala_auth/" if env["dirty"] else ""
    compiled = " (core compiled)" if env["compiled_core"] else ""
    start = ", ".join(f"{x:.1f}" for x in env["load_average_start"])
    end = ", ".join(f"{x:.1f}" for x in env.get("load_average_end", ()))
    return (
        f"`{env['command']}` on {env['date']}: skaala_auth at {env['commit']}{dirty}{compiled}, "
        f"Python {env['python']}, {env['cpus']} CPUs (load averages at the start: {start}; at the "
        f"end: {end}); "
        f"Starlette {pk['starlette']}, uvicorn {pk['uvicorn']}, httptools {pk['httptools']}, "
        f"uvloop {pk['uvloop']}, wrk {pk['wrk']}, Flask {pk['flask']}, Django {pk['django']}, "
        f"DRF {pk['djangorestframework']}, djangorestframework-api-key "
        f"{pk['djangorestframework-api-key']}."
    )


def detail_tables(parts: dict[str, tuple[Rounds, str]]) -> str:
    out = []
    for title, (rounds, baseline) in parts.items():
        unit = {"requests/s": "requests/s", "s/request": "µs/request"}.get(rounds.unit, "µs/call")
        scale = 1.0 if rounds.unit == "requests/s" else 1e6
        out += [
            f"### {title} ({rounds.rounds} rounds)",
            "",
            f"| variant | median {unit} | ÷ {baseline} | spread (quartiles) |",
            "|---|---:|---:|---:|",
        ]
        for name in rounds.values:
            ratio: Ratio = rounds.ratio(name, baseline)
            value = rounds.median(name) * scale
            shown = f"{value:.0f}" if scale == 1.0 else f"{value:.3f}"
            out.append(f"| {name} | {shown} | {ratio.text(3)} | {ratio.spread(3)} |")
        out.append("")
    return "\n".join(out)


def busy_warning(env: dict[str, Any]) -> str:
    """A warning when other work shared the machine (1-minute load average above its CPUs)."""
    loads = [env["load_average_start"][0], *env.get("load_average_end", ())[:1]]
    cpus = env["cpus"] or 1
    if max(loads) <= cpus:
        return ""
    return (
        f"**The machine was busy during this run** (1-minute load average up to "
        f"{max(loads):.1f} on {cpus} CPUs): other processes competed for the CPUs, so the "
        "spread is wide; trust a row only as far as its quartiles agree, and prefer the HTTP "
        "rows' CPU-per-request figures to their requests/s."
    )


def write(rows: list[Row], found: dict[str, Any], env: dict[str, Any], stem: Path) -> None:
    md = [
        "# Benchmark results (issue 16's table)",
        "",
        "Written by `benchmarks/run_all.py`; do not edit by hand. " + provenance(env),
        "",
        busy_warning(env),
        "",
        summary_table(rows),
        "",
        "Every figure is a median over interleaved rounds of a ratio measured within one round "
        "(`benchmarks/harness.py`); the spread is the first and third quartile of those "
        "per-round ratios. Absolute timings below are for orientation only: the machine is "
        "shared and noisy.",
        "",
        "## Every variant",
        "",
        detail_tables(found["parts"]),
    ]
    stem.with_suffix(".md").write_text("\n".join(md))
    data = {
        "environment": env,
        "rows": [asdict(row) for row in rows],
        "extra": found["extra"],
        "parts": {
            title: {
                "unit": rounds.unit,
                "baseline": baseline,
                "variants": {
                    name: {
                        "median": rounds.median(name),
                        "ratio": rounds.ratio(name, baseline).as_dict(),
                        "per_round": values,
                    }
                    for name, values in rounds.values.items()
                },
            }
            for title, (rounds, baseline) in found["parts"].items()
        },
    }
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def update_docs(rows: list[Row], env: dict[str, Any]) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{DOCS}: the markers {BEGIN!r} … {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    warning = busy_warning(env)
    warning = f"\n\n{warning}" if warning else ""
    block = f"{BEGIN}\n{summary_table(rows)}\n\nMeasured by {provenance(env)}{warning}\n{END}"
    DOCS.write_text(head + block + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few, short rounds")
    parser.add_argument("--docs", action="store_true", help="rewrite the table in the docs")
    parser.add_argument("--no-http", action="store_true", help="skip the uvicorn/wrk rows")
    args = parser.parse_args()
    if args.quick and args.docs:
        parser.error("--quick figures are a smoke test: they never go into the docs")
    settings = QUICK if args.quick else Settings()
    env = environment(settings, args.quick, sys.argv[1:])
    started = time.monotonic()
    rows, found = run(settings, args.quick, args.no_http)
    env["seconds"] = round(time.monotonic() - started)
    env["load_average_end"] = os.getloadavg()
    stem = HERE / ("results-quick" if args.quick else "results")
    write(rows, found, env, stem)
    print(summary_table(rows))
    print(f"\nwritten: {stem.with_suffix('.md')}, {stem.with_suffix('.json')}")
    if args.docs:
        update_docs(rows, env)
        print(f"updated: {DOCS}")


if __name__ == "__main__":
    main()
