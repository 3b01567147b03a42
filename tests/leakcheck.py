"""The leak check: after every test, no API key, nor any 12-character piece of its secret,
appears where a key must never appear.

Loaded by ``tests/conftest.py`` for the whole suite (and copied into a throwaway project by
``tests/test_leakcheck.py``, which proves it catches leaks). Only the standard library, pytest
and skaala_auth are imported here: ``tests/core`` runs with no web framework installed.

**What is a key.** Every key the process issues (:func:`skaala_auth.keys.generate_key` is
wrapped, wherever it was imported), every credential a request presents to the core
(:func:`skaala_auth.credentials.extract_key` is wrapped), and any well-formed key (prefix,
charset, length and CRC32 all right) found in a scanned text even if it was made elsewhere (in
a subprocess). A key is found whole, or by any 12 consecutive characters of its 32-character
secret (a key cut short by a log line still gives most of it away); the display prefix
(``sk_live_AbCd…wxyz``: four secret characters) is not a leak.

**Where it must not appear** (the *sinks*):

- ``log``: every log record created in the process (any logger, any level that was enabled,
  any thread, whatever its propagation or handlers): the formatted message, the arguments'
  ``repr`` in extra fields, the ``exc_info`` traceback and ``stack_info``. Records are
  captured by wrapping the log record factory; they are read at teardown.
- ``output``: what the test's code wrote on stdout/stderr (the captured sections, and what the
  test read with ``capsys``/``capfd``), and the output of ``subprocess.run``.
- ``response``: every HTTP response a client received in the test (httpx and Starlette's
  ``TestClient``, werkzeug's and Flask's test client, Django's ``Client``/``AsyncClient``,
  :mod:`http.client`): status line, headers and body.
- ``exception``: the ``str`` and ``repr`` of every exception caught by ``pytest.raises``
  (and of its causes).

A test that calls an app without a client (the hardening drivers) hands its responses over with
:func:`seen_response`. A key the client itself put in the URL (a key in the query string, which
the contract refuses) is in every access log by the client's doing: a log record or a response
(a redirect's ``Location``) that repeats that URL is not counted; output and exceptions are.

**Cost.** Wrapping costs a function call per key issued, per credential read and per log
record. At teardown each text is searched once for runs of 12 or more base62 characters (a C
regex), and only those runs are looked up, 12 characters at a time, in a dict of pieces: a test
that logs nothing and receives small responses pays a few microseconds. The whole suite's
teardowns scan about 51,000 texts (11.6 million characters) in about 1.3 s.
``SKAALA_LEAK_CHECK=0`` turns the check off; ``SKAALA_LEAK_CHECK=stats`` prints those numbers.

**Opting out.** A test that shows a key on purpose says where, and only there:
``@pytest.mark.shows_key("output")`` (the CLI's one-time display), ``shows_key("response")``
(a create endpoint's answer). Even there, a key may be shown in one text only (one display),
and a 12-character piece of a key outside a whole key is still a leak. The other sinks stay
checked.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import pytest

import skaala_auth.credentials
import skaala_auth.keys
from skaala_auth.keys import is_well_formed

__all__ = [
    "SINKS",
    "Finding",
    "Registry",
    "Watch",
    "describe",
    "record_texts",
    "seen_response",
]

SINKS: Final = ("log", "output", "response", "exception")
PIECE: Final = 12
_SECRET: Final = 32  # the random part of a key, after the 8-character prefix
_TAIL: Final = 38  # secret + checksum: what follows sk_live_ / sk_test_
_RUN: Final = re.compile(r"[0-9A-Za-z]{12,}")  # PIECE
_KEYISH: Final = re.compile(r"sk_(?:live|test)_([0-9A-Za-z]{12,})")  # PIECE
_PREFIXES: Final = ("sk_live_", "sk_test_")
#: A presented credential that is not key-shaped is looked for whole only when it looks like an
#: opaque token (no space, letters and digits): hypothesis feeds the library's own string
#: constants as header values (``Bearer realm="api"``), which the responses rightly contain.
_OPAQUE: Final = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])\S+", re.DOTALL)
#: Keys issued by earlier tests that are still looked for (a module-scoped fixture's keys, a
#: server started once): the most recent ones, so that memory stays bounded.
RECENT: Final = 4096
#: Presented credentials that are not key-shaped, looked for whole, per test (fuzz tests present
#: thousands; the first ones are enough to catch an echo).
MAX_VALUES: Final = 256
MIN_VALUE: Final = 16
MAX_URLS: Final = 1024

#: ``SKAALA_LEAK_CHECK=0`` turns the check off (to measure what it costs, or to bisect).
ENABLED: Final = os.environ.get("SKAALA_LEAK_CHECK", "1") != "0"
#: ``SKAALA_LEAK_CHECK=stats``: also print what the check looked at and how long it took.
STATS: Final = os.environ.get("SKAALA_LEAK_CHECK") == "stats"
_stats = {"tests": 0, "texts": 0, "characters": 0, "seconds": 0.0}


def _pieces(secret: str) -> Iterator[str]:
    """The 12-character windows of a secret worth looking for: a run of repeated characters in
    a hand-made key (``sk_live_000…``) would match unrelated text."""
    for start in range(len(secret) - PIECE + 1):
        piece = secret[start : start + PIECE]
        if len(set(piece)) >= 6:  # a random base62 piece has ~11 distinct characters
            yield piece


@dataclass(frozen=True, slots=True)
class Finding:
    """A key (``display``: its display prefix) seen in a sink, whole or by a piece."""

    sink: str
    label: str
    display: str
    whole: bool
    snippet: str


class Registry:
    """The keys to look for, and the search.

    Issued keys are kept for the current test and, bounded by :data:`RECENT`, for later tests;
    presented credentials only for the test that presented them.
    """

    def __init__(self, recent: int = RECENT) -> None:
        self.recent = recent
        self._pieces: dict[str, str] = {}  # piece -> tail
        self._tails: dict[str, str] = {}  # tail (38 characters) -> display prefix
        self._older: OrderedDict[str, None] = OrderedDict()  # issued by earlier tests
        self._current: dict[str, None] = {}  # issued during this test
        self._presented: set[str] = set()  # key-shaped tails presented during this test
        self._values: set[str] = set()  # other presented credentials, looked for whole
        self._urls: dict[str, None] = {}  # URLs that carried a credential, percent-decoded

    def __len__(self) -> int:
        return len(self._tails)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key[len(_PREFIXES[0]) :] in self._tails

    def issued(self, key: str) -> None:
        """A key this process made: looked for in this test and the next ones."""
        if len(key) < len(_PREFIXES[0]) + PIECE:
            return
        tail = key[len(_PREFIXES[0]) :]
        self._remember(tail, key)
        self._current[tail] = None
        self._presented.discard(tail)

    def presented(self, value: str) -> None:
        """A credential a request carried: looked for during this test."""
        shaped = False
        for match in _KEYISH.finditer(value):
            shaped = True
            tail = match.group(1)
            if tail not in self._tails:
                self._remember(tail, match.group(0))
                self._presented.add(tail)
        if (
            not shaped
            and len(value) >= MIN_VALUE
            and len(self._values) < MAX_VALUES
            and _OPAQUE.fullmatch(value)
        ):
            self._values.add(value)

    def in_url(self, url: str) -> None:
        """A URL (path and query string) a request was sent to. A key in it was disclosed by
        the client: it is in every access log (which is why such a request is refused), so a
        log record that repeats the URL, or a response that sends it back to the client (a
        redirect's ``Location``), is not a leak of ours. Output and exceptions are checked all
        the same."""
        if len(self._urls) >= MAX_URLS:
            return
        decoded = unquote(unquote(url))
        if "sk_" in decoded.lower() or any(value in decoded for value in self._values):
            self._urls[decoded] = None
            for match in _KEYISH.finditer(decoded):
                self.presented(match.group(0))

    def disclosed(self, text: str) -> bool:
        """Whether ``text`` (a key, or a piece of one) is in a URL the client sent."""
        return any(text in url for url in self._urls)

    def _remember(self, tail: str, key: str) -> None:
        self._tails[tail] = f"{key[:12]}…{key[-4:]}"
        for piece in _pieces(tail[:_SECRET]):
            self._pieces[piece] = tail

    def _forget(self, tail: str) -> None:
        self._tails.pop(tail, None)
        for piece in _pieces(tail[:_SECRET]):
            if self._pieces.get(piece) == tail:
                del self._pieces[piece]

    def end_test(self) -> None:
        """Forget what only this test presented; keep the issued keys among the recent ones."""
        for tail in self._presented:
            if tail not in self._current and tail not in self._older:
                self._forget(tail)
        self._presented.clear()
        self._values.clear()
        self._urls.clear()
        for tail in self._current:
            self._older[tail] = None
            self._older.move_to_end(tail)
        self._current.clear()
        while len(self._older) > self.recent:
            tail, _ = self._older.popitem(last=False)
            self._forget(tail)

    def search(self, text: str) -> Iterator[tuple[str, bool, int, int]]:
        """Every key seen in ``text``: ``(display prefix, whole, start, end)``. ``whole`` means
        the whole key (``sk_live_`` + 38 characters, as shown once at creation), else a piece.
        A well-formed key that is not registered yet is registered, and found."""
        for match in _RUN.finditer(text):
            run = match.group()
            start = match.start()
            prefixed = text[start - 8 : start] in _PREFIXES
            if prefixed and len(run) == _TAIL:
                display = self._tails.get(run)
                if display is None and is_well_formed(text[start - 8 : match.end()]):
                    self.issued(text[start - 8 : match.end()])  # made elsewhere: a key all the same
                    display = self._tails[run]
                if display is not None:
                    yield display, True, start - 8, match.end()
                    continue
            pieces = self._pieces
            for offset in range(len(run) - PIECE + 1):
                tail = pieces.get(run[offset : offset + PIECE])
                if tail is not None:
                    yield self._tails[tail], False, start, match.end()
                    break
        for value in self._values:
            at = text.find(value)
            if at >= 0:
                yield f"{value[:4]}… (a presented credential)", False, at, at + len(value)


def describe(text: str, start: int, end: int) -> str:
    """Where a finding is, without the secret: a little context, the match masked."""
    before = text[max(0, start - 40) : start].replace("\n", "⏎")
    after = text[end : end + 40].replace("\n", "⏎")
    return f"…{before}[{end - start} characters]{after}…"


_STANDARD_RECORD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    """Everything a handler could write of a log record."""
    try:
        yield record.getMessage()
    except Exception:  # a broken format string: the parts as they are
        yield f"{record.msg!r} {record.args!r}"
    exc_info = record.exc_info
    if exc_info and exc_info[1] is not None:
        yield "".join(traceback.format_exception(exc_info[1]))
    for text in (record.exc_text, record.stack_info):
        if text:
            yield text
    for name, value in vars(record).items():
        if name not in _STANDARD_RECORD:
            yield repr(value)


def _response_texts(response: Any) -> Iterator[str]:
    """Status, headers and (buffered) body of an httpx, werkzeug or Django response."""
    module = type(response).__module__.split(".")[0]
    if isinstance(response, str):
        yield response
    elif module == "httpx":
        yield f"{response.status_code} {response.headers.raw!r}"
        try:
            yield response.content.decode("latin-1")
        except Exception:  # a stream nobody read: not received, not scanned  # noqa: S110
            pass
    elif module in ("werkzeug", "flask"):
        yield f"{response.status} {list(response.headers.items())!r}"
        if response.is_sequence:
            yield response.get_data().decode("latin-1")
    elif module == "django" or hasattr(response, "serialize_headers"):
        yield f"{response.status_code} {response.serialize_headers().decode('latin-1')}"
        if not getattr(response, "streaming", False):
            yield response.content.decode("latin-1")
    else:
        yield repr(response)


def _exception_texts(error: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from getattr(current, "__notes__", ())
        current = current.__cause__ or current.__context__


class Watch:
    """What one test left in the sinks, gathered cheaply while it runs and read at teardown."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.records: list[logging.LogRecord] = []
        self.outputs: list[tuple[str, str]] = []  # (label, text)
        self.responses: list[tuple[str, Any]] = []  # (label, response object)
        self.exceptions: list[BaseException] = []

    def texts(self, extra_output: Iterable[tuple[str, str]] = ()) -> Iterator[tuple[str, str, str]]:
        """``(sink, label, text)`` for everything gathered."""
        for record in list(self.records):
            label = f"{record.name} {record.levelname}"
            for text in record_texts(record):
                yield "log", label, text
        for label, text in [*self.outputs, *extra_output]:
            yield "output", label, text
        for label, response in list(self.responses):
            for text in _response_texts(response):
                yield "response", label, text
        for error in list(self.exceptions):
            for text in _exception_texts(error):
                yield "exception", type(error).__name__, text

    def findings(
        self, allowed: Iterable[str] = (), extra_output: Iterable[tuple[str, str]] = ()
    ) -> list[Finding]:
        """The leaks: every key seen outside an allowed sink, and in an allowed sink a piece
        outside a whole key, or a key shown in more than one text."""
        allowed = frozenset(allowed)
        found: list[Finding] = []
        shown: dict[str, str] = {}  # display prefix -> the label of the text that showed it
        for sink, label, text in self.texts(extra_output):
            if not text:
                continue
            if STATS:
                _stats["texts"] += 1
                _stats["characters"] += len(text)
            in_text: set[str] = set()
            for display, whole, start, end in self.registry.search(text):
                if sink in ("log", "response") and self.registry.disclosed(text[start:end]):
                    continue
                if sink in allowed and whole:
                    if display in in_text:
                        continue
                    in_text.add(display)
                    if display not in shown:
                        shown[display] = label
                        continue
                    label = f"{label} (shown before in {shown[display]})"
                found.append(Finding(sink, label, display, whole, describe(text, start, end)))
        return found

    def clear(self) -> None:
        self.records.clear()
        self.outputs.clear()
        self.responses.clear()
        self.exceptions.clear()
        self.registry.end_test()


# -- the hooks ---------------------------------------------------------------------------------

REGISTRY: Final = Registry()
WATCH: Final = Watch(REGISTRY)
_undo: list[Callable[[], None]] = []
_pending: dict[tuple[str, str, str], Callable[[Any], Any]] = {}


def _rebind(module: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    """Replace ``module.name`` with ``wrap(original)`` everywhere it was imported by name (in
    skaala_auth and in the tests), so that the wrapper sees every call."""
    original = getattr(module, name)
    wrapper = functools.wraps(original)(wrap(original))
    changed: list[tuple[Any, str]] = []
    for loaded in list(sys.modules.values()):
        loaded_name = getattr(loaded, "__name__", None)
        if not isinstance(loaded_name, str) or not (
            loaded_name.split(".")[0] in ("skaala_auth", "tests", "conftest")
            or loaded_name.startswith("test_")
        ):
            continue
        for attribute, value in list(vars(loaded).items()):
            if value is original:
                setattr(loaded, attribute, wrapper)
                changed.append((loaded, attribute))

    def undo() -> None:
        for loaded, attribute in changed:
            if getattr(loaded, attribute, None) is wrapper:
                setattr(loaded, attribute, original)

    _undo.append(undo)


def _wrap_generate_key(original: Callable[..., str]) -> Callable[..., str]:
    def generate_key(*args: Any, **kwargs: Any) -> str:
        key = original(*args, **kwargs)
        REGISTRY.issued(key)
        return key

    return generate_key


def _wrap_extract_key(original: Callable[..., str | None]) -> Callable[..., str | None]:
    def extract_key(headers: Any, *args: Any, **kwargs: Any) -> str | None:
        query = args[0] if args else kwargs.get("query_string")
        if query:
            REGISTRY.in_url(query.decode("latin-1") if isinstance(query, bytes) else query)
        try:
            found = original(headers, *args, **kwargs)
        except Exception:
            # Refused (two credentials, a repeated header): what was sent is presented all the
            # same. (A generator of pairs is spent by now: nothing to read again.)
            pairs = headers.items() if hasattr(headers, "items") else headers
            if hasattr(headers, "items") or isinstance(headers, list | tuple):
                for value in _credential_values(pairs):
                    REGISTRY.presented(value)
            raise
        if found is not None:
            REGISTRY.presented(found)
        return found

    return extract_key


def _credential_values(pairs: Iterable[tuple[Any, Any]]) -> Iterator[str]:
    for name, value in pairs:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(name, str) and name.lower() in ("authorization", "x-api-key"):
            yield value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _record_factory(original: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    records = WATCH.records

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        records.append(record)
        return record

    return factory


def _saw(label: str, response: Any) -> None:
    WATCH.responses.append((label, response))
    url = _url_of(response)
    if url:
        REGISTRY.in_url(url)


def _url_of(response: Any) -> str | None:
    """The path and query string of the request a client's response answers."""
    request = getattr(response, "request", None)
    url = getattr(request, "url", None)  # httpx
    if url is not None:
        return str(url)
    environ = getattr(request, "environ", None)  # werkzeug
    if isinstance(environ, dict):
        return f"{environ.get('PATH_INFO', '')}?{environ.get('QUERY_STRING', '')}"
    django_request = getattr(response, "wsgi_request", None) or getattr(
        response, "asgi_request", None
    )
    full_path = getattr(django_request, "get_full_path", None)
    return full_path() if callable(full_path) else None


def _sync_response(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = method(self, *args, **kwargs)
        _saw(f"{type(self).__name__} response", response)
        return response

    return wrapper


def _async_response(method: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = await method(self, *args, **kwargs)
        _saw(f"{type(self).__name__} response", response)
        return response

    return wrapper


def _http_client_read(method: Callable[..., bytes]) -> Callable[..., bytes]:
    def read(self: Any, *args: Any, **kwargs: Any) -> bytes:
        data = method(self, *args, **kwargs)
        if not getattr(self, "_leakcheck_seen", False):  # the status line and headers, once
            self._leakcheck_seen = True
            WATCH.responses.append(("http.client response", f"{self.status} {self.msg}"))
        if data:
            WATCH.responses.append(("http.client response", data.decode("latin-1")))
        return data

    return read


def _subprocess_run(original: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        for stream in ("stdout", "stderr"):
            data = getattr(result, stream, None)
            if isinstance(data, bytes):
                data = data.decode("latin-1")
            if isinstance(data, str) and data:
                WATCH.outputs.append((f"subprocess {stream}", data))
        return result

    return run


def _readouterr(original: Callable[..., Any]) -> Callable[..., Any]:
    def readouterr(self: Any) -> Any:
        result = original(self)
        for label, data in (("captured stdout", result.out), ("captured stderr", result.err)):
            if isinstance(data, bytes):
                data = data.decode("latin-1")
            if data:
                WATCH.outputs.append((label, data))
        return result

    return readouterr


def _fill_unfilled(original: Callable[..., Any]) -> Callable[..., Any]:
    def fill_unfilled(self: Any, exc_info: Any) -> Any:
        WATCH.exceptions.append(exc_info[1])
        return original(self, exc_info)

    return fill_unfilled


#: Client methods that return a response, patched once their module is imported (importing
#: them here would import every framework; tests/core runs with none installed).
_CLIENTS: Final = {
    ("httpx", "Client", "send"): _sync_response,
    ("httpx", "AsyncClient", "send"): _async_response,
    ("werkzeug.test", "Client", "open"): _sync_response,
    ("django.test.client", "Client", "request"): _sync_response,
    ("django.test.client", "AsyncClient", "request"): _async_response,
}


def _patch_method(owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    original = owner.__dict__[name]
    setattr(owner, name, functools.wraps(original)(wrap(original)))
    _undo.append(lambda: setattr(owner, name, original))


def _patch_clients() -> None:
    """Patch the clients whose modules are imported by now (cheap: a few dict look-ups)."""
    for target in list(_pending):
        module = sys.modules.get(target[0])
        if module is None:
            continue
        wrap = _pending.pop(target)
        owner = getattr(module, target[1], None)
        if owner is not None and target[2] in vars(owner):
            _patch_method(owner, target[2], wrap)


def install() -> None:
    """Start watching (once per process)."""
    if _undo:
        return
    _rebind(skaala_auth.keys, "generate_key", _wrap_generate_key)
    _rebind(skaala_auth.credentials, "extract_key", _wrap_extract_key)
    original_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_record_factory(original_factory))
    _undo.append(lambda: logging.setLogRecordFactory(original_factory))
    original_run = subprocess.run
    subprocess.run = _subprocess_run(original_run)
    _undo.append(lambda: setattr(subprocess, "run", original_run))
    import http.client

    _patch_method(http.client.HTTPResponse, "read", _http_client_read)
    _patch_method(pytest.CaptureFixture, "readouterr", _readouterr)
    if "fill_unfilled" in vars(pytest.ExceptionInfo):
        _patch_method(pytest.ExceptionInfo, "fill_unfilled", _fill_unfilled)
    _pending.update(_CLIENTS)


def uninstall() -> None:
    while _undo:
        _undo.pop()()
    _pending.clear()


def seen_response(label: str, response: object, url: str | None = None) -> None:
    """For a test that calls an app without a client (an ASGI or WSGI driver of its own): scan
    ``response`` (its ``repr``, unless it is an httpx, werkzeug or Django response) as one;
    ``url`` is the request's target, path and query string (a key the client put there may be
    echoed back to it: see :meth:`Registry.in_url`)."""
    if ENABLED:
        WATCH.responses.append((label, response))
        if url:
            REGISTRY.in_url(url)


# -- the pytest side ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "shows_key(*sinks): this test shows a key on purpose, once, in these sinks only "
        f"(of {', '.join(SINKS)}); see tests/leakcheck.py",
    )
    if ENABLED:
        install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STATS:
        terminalreporter.write_line(
            "leak check: {tests} tests, {texts} texts, {characters} characters scanned "
            "in {seconds:.2f} s".format(**_stats)
        )


def _allowed(item: pytest.Item) -> set[str]:
    allowed: set[str] = set()
    for marker in item.iter_markers("shows_key"):
        if not marker.args or marker.kwargs:
            raise pytest.UsageError(
                f"{item.nodeid}: shows_key needs the sinks the key is shown in, of {SINKS}"
            )
        unknown = set(marker.args) - set(SINKS)
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: shows_key: unknown sinks {sorted(unknown)}")
        allowed.update(marker.args)
    return allowed


def _captured(item: pytest.Item) -> list[tuple[str, str]]:
    """What the test's code printed and nobody read (the setup and call phases' sections)."""
    sections = getattr(item, "_report_sections", [])
    return [(f"{when} {key}", text) for when, key, text in sections if key in ("stdout", "stderr")]


@pytest.fixture(autouse=True)
def _leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test (at teardown) when a key was seen in a sink (see the module docstring)."""
    if not ENABLED:
        yield
        return
    _patch_clients()
    allowed = _allowed(request.node)
    yield
    started = time.perf_counter()
    try:
        findings = WATCH.findings(allowed, _captured(request.node))
    finally:
        WATCH.clear()
        _stats["tests"] += 1
        _stats["seconds"] += time.perf_counter() - started
    if findings:
        lines = [
            f"  {f.sink} ({f.label}): {'the key' if f.whole else 'a piece of the key'} "
            f"{f.display}: {f.snippet}"
            for f in findings[:10]
        ]
        more = f"\n  … and {len(findings) - 10} more" if len(findings) > 10 else ""
        pytest.fail(
            f"{len(findings)} key leak(s) (see tests/leakcheck.py; a test that shows a key on "
            "purpose is marked @pytest.mark.shows_key(<sink>)):\n" + "\n".join(lines) + more,
            pytrace=False,
        )
