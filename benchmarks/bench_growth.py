"""Latency as the SQLite store grows: look-ups, misses, key creation, and the authenticator cold
and cached, at 1 to 1,000,000 keys.

    .venv/bin/python benchmarks/bench_growth.py        # --max-keys 1000000 --rounds 15 --number 200
    .venv/bin/python benchmarks/bench_growth.py --max-keys 10000 --rounds 5     # a quick look

Writes ``benchmarks/RESULTS-growth.md`` (the tables) and ``benchmarks/growth.svg`` (the plot:
number of keys against µs per request, both on log scales), next to this script unless
``--output-dir`` says otherwise.

``--old-prune`` puts back the change-log prune of schema 1 (``SELECT max(seq) FROM changes WHERE
at < ?``, which walks the log) for a before/after comparison, and writes
``RESULTS-growth-old-prune.md`` and ``growth-old-prune.svg`` instead; cap it with ``--max-keys
100000``, as each write then costs O(keys):

    .venv/bin/python benchmarks/bench_growth.py --old-prune --max-keys 100000 --rounds 5

Method. One SQLite file per size, built with ``KeyManager.create_keys`` (the bulk import; its
time is reported). Its change log then gets one recent row per key, as if every key had been
created one by one within the hour: the longest log the store keeps, and the case where a
prune that walks the log costs most. Then, in every round, each (size, operation) pair runs
``--number`` calls, the pairs in a shuffled order; the tables give the median over rounds of
the median call (each call is timed on its own, so a burst of other work on the machine moves
few of them), and the median over rounds of per-round ratios (to the same operation on the
1-key store, and to the look-up query alone at the same size).

Operations, each on a random key per call:

- the look-up query alone: ``execute`` + ``fetchone`` of the store's digest query on the
  store's read connection, for an existing key (the floor under any SQLite look-up);
- ``store.find_key(digest)`` for an existing key, and for a missing one;
- ``Authenticator(store, cache_size=0).verify(key)``: the whole miss path, for an existing key
  ("cold hit") and for an unknown well-formed key ("cold miss", each one new, so the negative
  cache never answers);
- ``Authenticator(store).verify(key)`` for keys already in its cache ("cached");
- ``KeyManager.create_key(...)``: one key, committed (the keys a round creates are deleted
  after it, untimed, so that each store keeps its size).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skaala_auth import (
    Authenticator,
    Hasher,
    InvalidKeyError,
    KeyManager,
    SQLiteKeyStore,
    generate_key,
)
from skaala_auth.stores import sqlite as sqlite_module

SIZES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
SAMPLE = 20_000  # existing keys remembered per store, to look up at random
CACHED = 64  # keys kept hot in the cached authenticator
SPEC = {"team_id": "team_1", "user_id": "user_1", "scopes": ["read:bookings"]}

#: (column, label, SVG line colour or None for table-only, dashed)
OPERATIONS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("query", "query alone (hit)", None, False),
    ("find_hit", "find_key, existing key", "#1f77b4", True),
    ("find_miss", "find_key, missing key", "#ff7f0e", True),
    ("cold_hit", "Authenticator, cache off: existing key (cold hit)", "#1f77b4", False),
    ("cold_miss", "Authenticator, cache off: unknown key (cold miss)", "#ff7f0e", False),
    ("cached", "Authenticator, cached key", "#2ca02c", False),
    ("create", "KeyManager.create_key (one key)", "#d62728", False),
)


@dataclass
class Store:
    size: int
    path: Path
    store: SQLiteKeyStore
    manager: KeyManager
    keys: list[str]  # a sample of existing plaintexts
    digests: list[str]
    cold: Authenticator
    cached: Authenticator
    hot: list[str]
    build_seconds: float
    created: list[str] = field(default_factory=list)


def build(directory: Path, size: int) -> Store:
    path = directory / f"keys-{size}.db"
    store = SQLiteKeyStore(path)
    manager = KeyManager(store)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    started = time.perf_counter()
    made = manager.create_keys(SPEC for _ in range(size))
    build_seconds = time.perf_counter() - started
    keys = [key for key, _ in random.sample(made, min(size, SAMPLE))]
    del made
    recent = int(time.time() * 1e6)  # the store's own unit: microseconds since the epoch
    with store._write() as conn:  # a full hour of one-by-one creations, in the change log
        conn.executemany(
            "INSERT INTO changes (kind, at) VALUES ('key', ?)", itertools.repeat((recent,), size)
        )
    store.poll_changes()  # past those rows before any authenticator listens
    hasher = Hasher()
    cold = Authenticator(store, cache_size=0)
    cached = Authenticator(store)
    hot = keys[:CACHED]
    for key in hot:
        cached.verify(key)
    return Store(
        size, path, store, manager, keys, [hasher.stored_digest(k) for k in keys], cold, cached,
        hot, build_seconds,
    )  # fmt: skip


def refused(auth: Authenticator) -> Callable[[str], None]:
    def call(key: str) -> None:
        try:
            auth.verify(key)
        except InvalidKeyError:
            pass
        else:  # pragma: no cover - a random key is never issued
            raise AssertionError("an unknown key was accepted")

    return call


def _inputs_and_call(
    s: Store, operation: str, number: int
) -> tuple[list[Any], Callable[[Any], object]]:
    if operation == "query":
        reader, sql = s.store._reader, sqlite_module._FIND_SQL
        return random.choices(s.digests, k=number), lambda d: reader.execute(sql, (d,)).fetchone()
    if operation == "find_hit":
        return random.choices(s.digests, k=number), s.store.find_key
    if operation == "find_miss":
        return [f"sha256${random.getrandbits(256):064x}" for _ in range(number)], s.store.find_key
    if operation == "cold_hit":
        return random.choices(s.keys, k=number), s.cold.verify
    if operation == "cold_miss":
        return [generate_key() for _ in range(number)], refused(s.cold)
    if operation == "cached":
        return random.choices(s.hot, k=number), s.cached.verify
    if operation == "create":
        manager, created = s.manager, s.created

        def create(_: object) -> None:
            created.append(manager.create_key(**SPEC)[1].id)  # type: ignore[arg-type]

        return [None] * number, create
    raise ValueError(operation)


def measure(s: Store, operation: str, number: int) -> tuple[float, float]:
    """The median and the mean seconds per call of ``operation`` on ``s``, over ``number``
    calls, each timed on its own."""
    inputs, call = _inputs_and_call(s, operation, number)
    clock = time.perf_counter
    times = []
    for item in inputs:
        started = clock()
        call(item)
        times.append(clock() - started)
    if s.created:  # untimed: keep the store at its size
        with s.store._write() as conn:
            conn.executemany("DELETE FROM api_keys WHERE id = ?", [(i,) for i in s.created])
        s.created.clear()
    return statistics.median(times), statistics.fmean(times)


# -- output -------------------------------------------------------------------------------------


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _name(stem: str, args: argparse.Namespace) -> str:
    return f"{stem}-old-prune" if args.old_prune else stem


def _megabytes(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1e6:.1f} MB"
    except FileNotFoundError:
        return "-"


def _size(n: int) -> str:
    return f"{n:,}"


def markdown(
    args: argparse.Namespace,
    stores: list[Store],
    micros: dict[tuple[int, str], list[float]],
    means: dict[tuple[int, str], list[float]],
    ratios: dict[tuple[int, str], list[float]],
    query_ratios: dict[tuple[int, str], list[float]],
    wall: float,
) -> str:
    med = statistics.median
    lines = [
        "# Growth benchmark: the SQLite store from 1 to 1,000,000 keys"
        + (" (with the old change-log prune)" if args.old_prune else ""),
        "",
        "Generated by `benchmarks/bench_growth.py` (its docstring gives the method); do not edit",
        "by hand. Command:",
        "",
        "```sh",
        f".venv/bin/python benchmarks/bench_growth.py {'--old-prune ' if args.old_prune else ''}"
        f"--max-keys {args.max_keys} --rounds {args.rounds} --number {args.number}",
        "```",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; skaala_auth at "
        f"{_commit()}; {datetime.date.today().isoformat()}; {wall:.0f} s in all. Timings on",
        "a shared machine are noisy: read the ratios, which compare measurements of one round.",
        "",
        "## Building each store with the bulk import (`KeyManager.create_keys`)",
        "",
        "| keys | build time | keys per second | database file | its `-wal` file |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in stores:
        rate = s.size / s.build_seconds if s.build_seconds else 0
        lines.append(
            f"| {_size(s.size)} | {s.build_seconds:.2f} s | {rate:,.0f} | "
            f"{_megabytes(s.path)} | {_megabytes(s.path.with_name(s.path.name + '-wal'))} |"
        )
    lines += [
        "",
        "The `-wal` file is as large as the biggest transaction written since the file was",
        "opened (a checkpoint reuses it from the start, without shrinking it): after a bulk",
        "import, about the size of the batch, until the last connection closes.",
    ]
    lines += [
        "",
        "## µs per request: the median call (p50), median over rounds",
        "",
        "Each call is timed on its own and a round keeps the median call, which a burst of",
        "other work on the machine rarely moves. The last column is the mean of the creations",
        "instead, which includes the WAL checkpoint that every few hundred writes pay for.",
        "",
        "| keys | " + " | ".join(label for _, label, _, _ in OPERATIONS)
        + " | create_key, mean (with checkpoints) |",
        "|---:|" + "---:|" * (len(OPERATIONS) + 1),
    ]  # fmt: skip
    for s in stores:
        cells = [f"{med(micros[s.size, op]):.1f}" for op, _, _, _ in OPERATIONS]
        cells.append(f"{med(means[s.size, 'create']):.1f}")
        lines.append(f"| {_size(s.size)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Growth: each operation's p50 against its p50 on the 1-key store",
        "",
        "Median of per-round ratios.",
        "",
        "| keys | " + " | ".join(label for _, label, _, _ in OPERATIONS) + " |",
        "|---:|" + "---:|" * len(OPERATIONS),
    ]
    for s in stores:
        cells = [f"{med(ratios[s.size, op]):.2f}×" for op, _, _, _ in OPERATIONS]
        lines.append(f"| {_size(s.size)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Beyond the query: each look-up's p50 against the query alone at the same size",
        "",
        "Median of per-round ratios.",
        "",
        "The issue's target for the whole miss (the authenticator with its cache off) is ≤ 2× the",
        "query alone.",
        "",
        "| keys | find_key, existing key | find_key, missing key | Authenticator cold hit "
        "| Authenticator cold miss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in stores:
        cells = [
            f"{med(query_ratios[s.size, op]):.2f}×"
            for op in ("find_hit", "find_miss", "cold_hit", "cold_miss")
        ]
        lines.append(f"| {_size(s.size)} | " + " | ".join(cells) + " |")
    if args.old_prune:
        lines += [
            "",
            "Run with `--old-prune`: the change-log prune of schema 1, which walks the log on",
            "every write, put back for comparison. `RESULTS-growth.md` has the current figures.",
        ]
    lines += ["", f"The plot: `{_name('growth', args)}.svg` (log-log).", ""]
    return "\n".join(lines)


def svg(
    stores: list[Store],
    micros: dict[tuple[int, str], list[float]],
    means: dict[tuple[int, str], list[float]],
    title: str,
) -> str:
    """A self-contained log-log line plot, from plain string formatting."""
    width, height = 860, 520
    left, right, top, bottom = 70, 290, 40, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    sizes = [s.size for s in stores]
    lines = [
        (label, colour, "6 4" if dashed else "", [statistics.median(micros[n, op]) for n in sizes])
        for op, label, colour, dashed in OPERATIONS
        if colour
    ]
    lines.append(
        (
            "create_key, mean (with checkpoints)",
            "#d62728",
            "2 3",
            [statistics.median(means[n, "create"]) for n in sizes],
        )
    )
    values = [v for _, _, _, line in lines for v in line if v > 0]
    low = 10 ** int(_floor_log10(min(values)))
    high = 10 ** (int(_floor_log10(max(values))) + 1)
    x_high = max(10, 10 ** _ceil_log10(max(sizes)))

    def x(n: float) -> float:
        return left + plot_w * (_log10(n) / _log10(x_high))

    def y(v: float) -> float:
        return top + plot_h * (1 - (_log10(v) - _log10(low)) / (_log10(high) - _log10(low)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left + plot_w / 2}" y="22" text-anchor="middle" font-size="15">'
        f"{_escape(title)}</text>",
    ]
    decade = 1
    while decade <= x_high:
        px = x(decade)
        out.append(
            f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + plot_h}" stroke="#ddd"/>'
        )
        label = _tick(decade)
        out.append(
            f'<text x="{px:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{label}</text>'
        )
        decade *= 10
    value = low
    while value <= high:
        py = y(value)
        out.append(
            f'<line x1="{left}" y1="{py:.1f}" x2="{left + plot_w}" y2="{py:.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{left - 8}" y="{py + 4:.1f}" text-anchor="end">{_tick(value)}</text>')
        value *= 10
    out += [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#333"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">'
        "keys in the store (log scale)</text>",
        f'<text transform="translate(18 {top + plot_h / 2}) rotate(-90)" '
        'text-anchor="middle">µs per request (p50 unless marked; log scale)</text>',
    ]
    legend_y = top + 10
    for label, colour, pattern, series in lines:
        dash = f' stroke-dasharray="{pattern}"' if pattern else ""
        points = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in zip(sizes, series, strict=True))
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        for n, v in zip(sizes, series, strict=True):
            out.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        lx = left + plot_w + 15
        out.append(
            f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 28}" y2="{legend_y}" stroke="{colour}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 34}" y="{legend_y + 4}">{_escape(_short(label))}</text>')
        legend_y += 22
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _short(label: str) -> str:
    return {
        "find_key, existing key": "store.find_key, existing",
        "find_key, missing key": "store.find_key, missing",
        "Authenticator, cache off: existing key (cold hit)": "cold hit (cache off)",
        "Authenticator, cache off: unknown key (cold miss)": "cold miss (cache off)",
        "Authenticator, cached key": "cached",
        "KeyManager.create_key (one key)": "create_key (p50)",
        "create_key, mean (with checkpoints)": "create_key (mean, with checkpoints)",
    }.get(label, label)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _log10(value: float) -> float:
    return math.log10(value)


def _floor_log10(value: float) -> int:
    return math.floor(math.log10(value))


def _ceil_log10(value: float) -> int:
    return math.ceil(math.log10(value))


def _tick(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


# -- main ---------------------------------------------------------------------------------------


def summary_rows(quick: bool) -> list[dict[str, Any]]:
    """The store-growth rows of ``run_all.py``'s table: a smaller run of this script (stores of
    1, 1,000 and 100,000 keys; 10,000 with ``quick``), interleaved rounds, medians of per-round
    ratios to the 1-key store. The run to 1,000,000 keys, and the plot, are this script's own."""
    sizes = [1, 1_000, 10_000 if quick else 100_000]
    rounds, number = (3, 50) if quick else (7, 150)
    directory = Path(tempfile.mkdtemp(prefix="skaala-growth-"))
    stores: list[Store] = []
    try:
        for size in sizes:
            stores.append(build(directory, size))
        operations = ("find_hit", "find_miss", "cold_hit", "create")
        ratios: dict[tuple[int, str], list[float]] = {
            (s.size, op): [] for s in stores for op in operations
        }
        pairs = [(s, op) for s in stores for op in operations]
        for _ in range(rounds):
            random.shuffle(pairs)
            seconds = {(s.size, op): measure(s, op, number)[0] for s, op in pairs}
            for size, op in ratios:
                ratios[size, op].append(seconds[size, op] / seconds[1, op])
        big = sizes[-1]
        grown = {op: statistics.median(ratios[big, op]) for op in operations}
        import_seconds = stores[-1].build_seconds
    finally:
        for s in stores:
            s.cold.close()
            s.cached.close()
            s.store.close()
        shutil.rmtree(directory, ignore_errors=True)
    n = _size(big)
    return [
        {
            "work": f"store growth: SQLite look-up (`find_key`) at {n} keys ÷ at 1 key",
            "now": f"{grown['find_hit']:.2f}×",
            "target": "flat (indexed) to 1M",
            "met": grown["find_hit"] <= 2.0 and grown["find_miss"] <= 2.0,
            "peers": f"a missing key {grown['find_miss']:.2f}×; the authenticator's cold hit "
            f"{grown['cold_hit']:.2f}×; to 1M keys: `bench_growth.py` (Store growth)",
        },
        {
            "work": f"store growth: creating a key at {n} keys ÷ at 1 key",
            "now": f"{grown['create']:.2f}×",
            "target": "flat",
            "met": grown["create"] <= 1.5,
            "peers": "before schema 2: 50× at 100k keys (`bench_growth.py --old-prune`)",
        },
        {
            "work": f"store growth: bulk import of {n} keys (`KeyManager.create_keys`)",
            "now": f"{import_seconds:.1f} s",
            "target": "a 100k import in seconds",
            "met": import_seconds <= 30.0,
            "peers": "1,000,000 keys: about 45 s (Store growth)",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--max-keys", type=int, default=1_000_000, help="largest store")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=200, help="calls per operation per round")
    parser.add_argument("--dir", type=Path, help="where to build the stores (default: a temp dir)")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--old-prune", action="store_true", help="the prune of schema 1, for a before/after"
    )
    args = parser.parse_args()
    if args.old_prune:
        sqlite_module._PRUNE_SQL = "SELECT max(seq) FROM changes WHERE at < ?"  # type: ignore[misc]
    sizes = [n for n in SIZES if n <= args.max_keys]
    directory = Path(tempfile.mkdtemp(dir=args.dir, prefix="skaala-growth-"))
    started = time.perf_counter()
    stores: list[Store] = []
    try:
        for size in sizes:
            stores.append(build(directory, size))
            print(f"built {size:>9,} keys in {stores[-1].build_seconds:7.2f} s", flush=True)
        operations = [op for op, _, _, _ in OPERATIONS]
        micros: dict[tuple[int, str], list[float]] = {
            (n, op): [] for n in sizes for op in operations
        }
        means: dict[tuple[int, str], list[float]] = {key: [] for key in micros}
        ratios: dict[tuple[int, str], list[float]] = {key: [] for key in micros}
        query_ratios: dict[tuple[int, str], list[float]] = {key: [] for key in micros}
        pairs = [(s, op) for s in stores for op in operations]
        for round_number in range(1, args.rounds + 1):
            random.shuffle(pairs)
            measured = {(s.size, op): measure(s, op, args.number) for s, op in pairs}
            seconds = {pair: median for pair, (median, _) in measured.items()}
            for (size, op), value in seconds.items():
                micros[size, op].append(value * 1e6)
                means[size, op].append(measured[size, op][1] * 1e6)
                ratios[size, op].append(value / seconds[sizes[0], op])
                query_ratios[size, op].append(value / seconds[size, "query"])
            print(f"round {round_number}/{args.rounds} done", flush=True)
        wall = time.perf_counter() - started
        args.output_dir.mkdir(parents=True, exist_ok=True)
        report = markdown(args, stores, micros, means, ratios, query_ratios, wall)
        results = args.output_dir / f"{_name('RESULTS-growth', args)}.md"
        results.write_text(report, encoding="utf-8")
        plot = args.output_dir / f"{_name('growth', args)}.svg"
        title = "skaala_auth SQLite store: µs per request as the store grows"
        if args.old_prune:
            title += " (old prune)"
        plot.write_text(svg(stores, micros, means, title), encoding="utf-8")
        print(report)
    finally:
        for s in stores:
            s.cold.close()
            s.cached.close()
            s.store.close()
        shutil.rmtree(directory, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
