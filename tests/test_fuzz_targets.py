"""The fuzz targets (``fuzz/``) hold on a fixed sample of inputs, in the test run: a target
broken by a change in the library fails here, before CI's few seconds of real fuzzing
(``fuzz/run.py``, see docs/security.md) — and their properties count for coverage."""

from __future__ import annotations

import functools
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for Linux x86-64 only")

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = sorted(path.stem for path in FUZZ.glob("fuzz_*.py"))


@functools.cache
def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"skaala_fuzz_{name}", FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_if_the_targets_are_listed_then_all_three_are_there() -> None:
    assert TARGETS == ["fuzz_credentials", "fuzz_keys", "fuzz_rules"]


@pytest.mark.parametrize("name", TARGETS)
def test_if_a_target_is_fed_a_sample_then_its_properties_hold(name: str) -> None:
    target = load(name)
    sample = random.Random(name)  # the same inputs on every run
    for size in [0, 1, 2, 8, *[sample.randrange(4, 160) for _ in range(1500)]]:
        target.test_one_input(sample.randbytes(size))
