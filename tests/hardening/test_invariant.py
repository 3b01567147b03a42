"""The invariant of DESIGN.md, differentially, for every adapter × protection style (issue 8):
a handler declared protected runs only for a request whose principal the core granted for that
handler's scopes and team; never a 500.

Requests are generated (methods, mutated paths, credentials, preflights, keys in the query
string), shaped as uvicorn and gunicorn shape them, sent to the app object, and every handler
run is checked against what the request carried (see :func:`tests.hardening.world.violations`).
Credentials are API keys and dashboard sessions (docs/sessions.md): session cookies, the Stack
SDK's cookies, the ``x-stack-access-token`` header, bad tokens, a session beside a key, with
``Origin``/``Referer`` variants; a few plain session requests
(:func:`tests.hardening.strategies.session_examples`) go first to every target.

Environment:

- ``SKAALA_HARDENING_EXAMPLES``: generated requests per adapter × style (default 2000).
- ``SKAALA_HARDENING_SURVEY=1``: do not stop at the first violation; run every example and
  report all the violations, counted by cause (no shrinking). For triage, not for CI.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from .strategies import requests, session_examples
from .targets import TARGETS, serve
from .world import RUNS, Request, Violation, World, build_world, violations

EXAMPLES = int(os.environ.get("SKAALA_HARDENING_EXAMPLES", "2000"))
SURVEY = os.environ.get("SKAALA_HARDENING_SURVEY", "") not in ("", "0")


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


@pytest.fixture(autouse=True)
def _quiet_django() -> Iterator[None]:
    """Django logs every 4xx answer at WARNING: thousands of records to capture. Errors (the
    500s) still go through."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def _report(found: list[Violation], sent: int = 1) -> str:
    counts = Counter(violation.group for violation in found)
    example = {violation.group: violation.text for violation in reversed(found)}
    lines = [f"{len(found)} violation(s) in {sent} request(s):"]
    for group, count in counts.most_common():
        lines.append(f"  {count:5d} × {group}\n          e.g. {example[group]}")
    return "\n".join(lines)


@pytest.mark.parametrize("target", TARGETS)
def test_if_requests_are_generated_then_protected_handlers_run_only_when_granted(
    world: World, target: str
) -> None:
    found: list[Violation] = []
    sent = 0
    with serve(world, target) as served:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # A survey keeps every example and does not shrink.
            phases=[Phase.explicit, Phase.generate] if SURVEY else list(Phase),
        )
        @given(request=requests(world))
        def check(request: Request) -> None:
            nonlocal sent
            sent += 1
            RUNS.clear()
            reply = served.driver(request)
            problems = violations(world, target, request, reply, list(RUNS), served.need)
            RUNS.clear()
            if SURVEY:
                found.extend(problems)
            else:
                assert not problems, _report(problems)

        for explicit in session_examples(world):
            check = example(request=explicit)(check)
        check()
    assert not found, _report(found, sent)
