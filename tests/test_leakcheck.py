"""The leak check of the whole suite (``tests/leakcheck.py``) catches what it is meant to: each
sink, a whole key and a 12-character piece, a key made in another process; and its opt-out is
narrow (one sink, one display)."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from skaala_auth import Authenticator, KeyManager, MemoryKeyStore, generate_key, parse_key
from skaala_auth.flow import RequestFacts
from skaala_auth.keys import ALPHABET, KEY_PATTERN, display_prefix

from . import leakcheck
from .leakcheck import REGISTRY, WATCH, Finding, Registry, Watch

pytest_plugins = ["pytester"]

try:  # imported before the first test: the check patches the clients imported by then
    from starlette.testclient import TestClient
except ImportError:  # pragma: no cover - Starlette is in the dev extras
    TestClient = None

ZEROS = "sk_live_" + "0" * 32  # a hand-made key head: no piece of it is worth looking for


def watching(*keys: str) -> Watch:
    registry = Registry()
    for key in keys:
        registry.issued(key)
    return Watch(registry)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("app", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def found(watch: Watch, *allowed: str) -> list[tuple[str, bool]]:
    return [(finding.sink, finding.whole) for finding in watch.findings(allowed)]


class TestSearch:
    def test_if_a_key_is_logged_whole_then_found(self) -> None:
        key = generate_key()
        watch = watching(key)
        watch.records.append(record("key=%s", key))
        assert found(watch) == [("log", True)]

    @pytest.mark.parametrize("start", [8, 20, 28])
    def test_if_12_characters_of_the_secret_are_logged_then_found(self, start: int) -> None:
        key = generate_key()
        watch = watching(key)
        watch.records.append(record(f"cut short: …{key[start : start + 12]}…"))
        assert found(watch) == [("log", False)]

    def test_if_11_characters_or_the_display_prefix_then_not_a_leak(self) -> None:
        key = generate_key()
        watch = watching(key)
        watch.records.append(record(f"{key[8:19]}-{key[19:30]}"))
        watch.records.append(record("prefix=%s", display_prefix(key)))
        assert found(watch) == []

    def test_if_a_key_is_in_a_traceback_or_an_extra_then_found(self) -> None:
        key = generate_key()
        watch = watching(key)
        try:
            raise RuntimeError(f"the store choked on {key[8:30]}")
        except RuntimeError:
            with_traceback = record("the store failed")
            with_traceback.exc_info = sys.exc_info()
        watch.records.append(with_traceback)
        watch.records.append(record("request", request={"authorization": f"Bearer {key}"}))
        assert found(watch) == [("log", False), ("log", True)]

    def test_if_a_well_formed_key_was_made_elsewhere_then_found_all_the_same(self) -> None:
        key = generate_key()  # registered here, not in this watch's registry
        watch = watching()
        watch.outputs.append(("subprocess stdout", f"API key: {key}\n"))
        lookalike = "sk_live_" + "".join(secrets.choice(ALPHABET) for _ in range(38))
        watch.outputs.append(("subprocess stdout", f"no checksum, not a key: {lookalike}\n"))
        assert found(watch) == [("output", True)]
        assert key in watch.registry  # and looked for from then on

    def test_if_a_credential_is_presented_then_it_is_looked_for_whole(self) -> None:
        watch = watching()
        watch.registry.presented("opaque-token-0123456789")
        watch.registry.presented("short")
        watch.registry.presented('Bearer realm="api"')  # a constant of ours, fed by hypothesis
        watch.registry.presented("application/json")
        watch.responses.append(("echo", "you sent opaque-token-0123456789, and short"))
        watch.responses.append(("401", 'www-authenticate: Bearer realm="api"'))
        watch.responses.append(("401", "content-type: application/json"))
        assert found(watch) == [("response", False)]
        watch.registry.end_test()  # presented credentials are forgotten after the test
        assert found(watch) == []

    def test_if_a_hand_made_key_has_no_random_piece_then_nothing_is_looked_for(self) -> None:
        key = ZEROS + "AAAAAA"
        watch = watching(key)
        watch.records.append(record("0" * 40))
        assert found(watch) == []

    def test_if_a_key_is_percent_encoded_then_found(self) -> None:
        key = generate_key()
        watch = watching(key)
        watch.records.append(record(key.replace("sk_", "%73k%5F", 1)))
        assert found(watch) == [("log", False)]

    def test_if_the_client_put_the_key_in_the_url_then_echoes_of_the_url_are_not_ours(
        self,
    ) -> None:
        key = generate_key()
        watch = watching(key)
        watch.registry.in_url(f"/api/v1/bookings?api_key={key.replace('_', '%5F')}")
        watch.records.append(record("Bad Request: %s", f"/api/v1/bookings?api_key={key}"))
        watch.responses.append(("redirect", f"location: /api/v1/bookings/?api_key={key}"))
        watch.outputs.append(("stderr", f"printed: {key}"))
        assert found(watch) == [("output", True)]  # only the URL's echoes are the client's


class TestOptOut:
    def test_if_a_key_is_shown_once_in_an_allowed_sink_then_no_finding(self) -> None:
        key = generate_key()
        watch = watching(key)
        watch.outputs.append(("stdout", f"API key (shown once):\n  {key}\nexport K={key}\n"))
        assert found(watch, "output") == []

    def test_if_a_key_is_shown_in_two_texts_then_the_second_is_a_leak(self) -> None:
        key = generate_key()
        watch = watching(key)
        watch.outputs.append(("stdout", f"API key: {key}\n"))
        watch.outputs.append(("stderr", f"error: {key} is not an id\n"))
        findings = watch.findings({"output"})
        assert [(f.sink, f.whole) for f in findings] == [("output", True)]
        assert "shown before in stdout" in findings[0].label

    def test_if_an_allowed_sink_has_a_piece_or_another_sink_the_key_then_leaks(self) -> None:
        key = generate_key()
        watch = watching(key)
        watch.outputs.append(("stdout", f"API key: {key}\nprefix: {key[:20]}\n"))
        watch.records.append(record("created %s", key))
        assert found(watch, "output") == [("log", True), ("output", False)]


@pytest.mark.skipif(not leakcheck.ENABLED, reason="SKAALA_LEAK_CHECK=0: no hooks installed")
class TestHooks:
    """The process-wide hooks the check installs (see ``leakcheck.install``)."""

    def test_if_keys_are_issued_anywhere_then_registered(self, manager: KeyManager) -> None:
        assert generate_key() in REGISTRY
        assert leakcheck.skaala_auth.keys.generate_key("test") in REGISTRY
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
        assert key in REGISTRY

    def test_if_a_request_presents_a_key_then_registered(self) -> None:
        presented = "sk_live_" + "".join(secrets.choice(ALPHABET) for _ in range(38))
        with Authenticator(MemoryKeyStore()) as auth:
            assert isinstance(
                auth.decide(RequestFacts("GET", "/", {"X-API-Key": presented})), Exception
            )
        assert presented in REGISTRY

    def test_if_anything_logs_then_the_record_is_watched(self) -> None:
        logger = logging.getLogger("tests.leakcheck.self-test")
        logger.setLevel(logging.DEBUG)
        try:
            logger.debug("hello %s", "world")
        finally:
            logger.setLevel(logging.NOTSET)
        assert WATCH.records[-1].getMessage() == "hello world"

    def test_if_pytest_raises_catches_then_the_exception_is_watched(self) -> None:
        with pytest.raises(ValueError, match="malformed") as caught:
            parse_key("sk_live_nope")
        assert WATCH.exceptions[-1] is caught.value

    def test_if_output_is_read_then_it_is_watched(self, capsys: pytest.CaptureFixture[str]) -> None:
        print("hello")
        assert capsys.readouterr().out == "hello\n"
        assert WATCH.outputs[-1] == ("captured stdout", "hello\n")
        subprocess.run([sys.executable, "-c", "print('there')"], capture_output=True, check=True)
        assert WATCH.outputs[-1] == ("subprocess stdout", "there\n")

    @pytest.mark.skipif(TestClient is None, reason="needs Starlette")
    def test_if_a_client_gets_a_response_then_it_is_watched(self) -> None:
        from starlette.applications import Starlette

        assert TestClient is not None
        with TestClient(Starlette()) as client:
            response = client.get("/nowhere")
        assert WATCH.responses[-1][1] is response

    def test_if_a_test_logs_a_key_then_the_check_reports_it_without_the_key(self) -> None:
        key = generate_key()
        logging.getLogger("tests.leakcheck.self-test").warning("oops: %s", key)
        findings = WATCH.findings()
        WATCH.records.clear()  # the leak was made on purpose: the teardown check sees none
        label = "tests.leakcheck.self-test WARNING"
        assert findings == [
            Finding("log", label, display_prefix(key), True, "…oops: [46 characters]…")
        ]


# -- the check as the suite runs it: a throwaway project with the check as its conftest ------

PROJECT = """
import logging

import pytest

from skaala_auth import generate_key

log = logging.getLogger("app")


def test_logs_a_key():
    log.warning("key %s", generate_key())


def test_logs_a_piece_at_debug():
    log.setLevel(logging.DEBUG)
    log.debug("piece %s", generate_key()[10:22])


def test_prints_a_key():
    print(generate_key())


def test_raises_with_a_key():
    with pytest.raises(ValueError):
        raise ValueError(generate_key())


@pytest.mark.shows_key("output")
def test_shows_a_key_once():
    key = generate_key()
    print(f"API key (shown once): {key}  export KEY={key}")


@pytest.mark.shows_key("output")
def test_shows_a_key_twice(capsys):
    key = generate_key()
    print(key)
    capsys.readouterr()
    print(f"again: {key}")


@pytest.mark.shows_key("output")
def test_shows_a_key_and_logs_it():
    key = generate_key()
    print(key)
    log.error("created %s", key)


def test_clean():
    key = generate_key()
    log.warning("created %s…%s", key[:12], key[-4:])
"""


def test_if_tests_leak_keys_then_each_errors_at_teardown_and_the_report_has_no_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(Path(leakcheck.__file__).read_text(encoding="utf-8"))
    pytester.makepyfile(test_project=PROJECT)
    monkeypatch.setenv("SKAALA_LEAK_CHECK", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--show-capture=no", "-rA")
    result.assert_outcomes(passed=8, errors=6)
    errors = {
        line.split("::")[1].split(" ")[0]
        for line in result.outlines
        if line.startswith("ERROR test_project.py::")
    }
    assert errors == {
        "test_logs_a_key",
        "test_logs_a_piece_at_debug",
        "test_prints_a_key",
        "test_raises_with_a_key",
        "test_shows_a_key_twice",
        "test_shows_a_key_and_logs_it",
    }
    assert KEY_PATTERN.search(result.stdout.str()) is None  # the report names no key
    assert "a piece of the key sk_live_" in result.stdout.str()
