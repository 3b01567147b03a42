"""One traceback per outage, then one line per failure, and one line when it ends."""

from __future__ import annotations

import logging

import pytest

from skaala_auth.outage import Outage

log = logging.getLogger("skaala_auth.test_outage")


def test_if_a_dependency_keeps_failing_then_one_traceback_then_lines_then_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(log, "could not reach the thing", "the thing answers again", logging.INFO)
    with caplog.at_level(logging.INFO, logger=log.name):
        outage.succeeded()  # nothing to say: no outage yet
        for attempt in range(3):
            try:
                raise ConnectionError(f"refused {attempt}")
            except ConnectionError as error:
                outage.failed(error)
        assert outage.failing
        outage.succeeded()
        outage.succeeded()
    records = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records == [
        (logging.WARNING, "could not reach the thing", True),
        (logging.WARNING, "could not reach the thing: refused 1", False),
        (logging.WARNING, "could not reach the thing: refused 2", False),
        (logging.INFO, "the thing answers again", False),
    ]
    assert not outage.failing
