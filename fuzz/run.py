"""Run every fuzz target (or the ones named) for a few seconds each, and summarise.

    python fuzz/run.py                    # 5 s per target (CI runs 3)
    python fuzz/run.py --seconds 600 keys # a longer run of one target, corpus kept in fuzz/corpus/

Each target is ``fuzz/fuzz_<name>.py``, run by atheris (libFuzzer) in its own process. A crash
(a property broken, or an exception the target does not allow) fails the run; the input that
crashed is kept and the line to replay it printed. atheris ships wheels for CPython on Linux
x86-64; elsewhere this says so and exits 0 (1 under ``CI=true``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = sorted(path.stem.removeprefix("fuzz_") for path in HERE.glob("fuzz_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="target", help=f"of {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=int, default=5, help="per target (default 5)")
    parser.add_argument(
        "--keep-corpus", action="store_true", help="grow fuzz/corpus/<target>/ across runs"
    )
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}: the targets are {', '.join(TARGETS)}")
    if importlib.util.find_spec("atheris") is None:
        print("fuzz: atheris is not installed (wheels for Linux x86-64 only): not run")
        return 1 if os.environ.get("CI") == "true" else 0
    failed = False
    with tempfile.TemporaryDirectory(prefix="skaala-fuzz-") as scratch:
        for name in args.targets or TARGETS:
            corpus = HERE / "corpus" / name if args.keep_corpus else Path(scratch) / name
            corpus.mkdir(parents=True, exist_ok=True)
            artifacts = HERE / "crashes"
            artifacts.mkdir(exist_ok=True)
            command = [
                sys.executable,
                str(HERE / f"fuzz_{name}.py"),
                str(corpus),
                f"-max_total_time={args.seconds}",
                "-print_final_stats=1",
                f"-artifact_prefix={artifacts}/{name}-",
            ]
            started = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            elapsed = time.monotonic() - started
            stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", result.stderr))
            runs = int(stats.get("number_of_executed_units", 0))
            rate = int(stats.get("average_exec_per_sec", 0))
            print(
                f"fuzz {name:12} {runs:>9,} inputs ({rate:,}/s) in {elapsed:4.1f} s with start-up,"
                f" {stats.get('new_units_added', '?')} new units of coverage: "
                f"{'ok' if result.returncode == 0 else 'FAILED'}"
            )
            if result.returncode != 0:
                failed = True
                crash = re.search(r"Test unit written to (\S+)", result.stderr)
                tail = result.stderr.split("=== Uncaught Python exception: ===")[-1]
                print(tail[-3000:])
                if crash:
                    print(f"replay: {sys.executable} {command[1]} {crash.group(1)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
