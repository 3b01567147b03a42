"""Where a key must not be while it is in flight (issue 9, "Frame locals"): the local variables
of the core's frames, which tracebacks with locals (Sentry-style captures, Django's DEBUG page)
print; and the ``repr``/``str`` of everything that holds one.

The rule the frame tests hold the core to: while the store, the rate limiter or the audit hook
runs, no frame of ``skaala_auth`` has a ``str`` or ``bytes`` local (argument, variable or
closure cell) with 12 consecutive characters of the key's secret. What the caller handed over
(its headers mapping, a :class:`~skaala_auth.flow.RequestFacts`) is the caller's and may be
passed down; a copy of the key taken out of it may not. The code before the one-flow core passed it
down as a ``str`` to the store look-up (7 frames when the store raised); today the store sees
none, and only a cache hit still runs the limiter and the audit hook below two frames that hold
it, hence one strict ``xfail``.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import skaala_auth
from skaala_auth import (
    AuditEvent,
    Authenticator,
    AuthError,
    KeyManager,
    MemoryKeyStore,
    Principal,
    generate_key,
    parse_key,
)
from skaala_auth.flow import Endpoint, RequestFacts
from skaala_auth.stores.base import KeyRecord

from ..conftest import Clock

PACKAGE = str(Path(skaala_auth.__file__).parent)


def pieces(key: str) -> set[str]:
    secret = key[8:40]
    return {secret[start : start + 12] for start in range(len(secret) - 11)}


def holders(frame: FrameType | None, key: str, where: str = PACKAGE) -> list[str]:
    """``function.variable`` for every plaintext copy of ``key`` in the frames of the code
    under ``where`` (the core) on the stack, from ``frame`` up."""
    wanted = pieces(key)
    found = []
    while frame is not None:
        if frame.f_code.co_filename.startswith(where):
            for name, value in frame.f_locals.items():
                if isinstance(value, bytes | bytearray | memoryview):
                    value = bytes(value).decode("latin-1")
                if isinstance(value, str) and any(piece in value for piece in wanted):
                    found.append(f"{frame.f_code.co_qualname}.{name}")
        frame = frame.f_back
    return found


def core_text(summary: traceback.StackSummary) -> str:
    """A stack formatted with its locals (as Sentry-style captures do), core frames only."""
    return "".join(
        "".join(summary.format_frame_summary(frame))
        for frame in summary
        if frame.filename.startswith(PACKAGE)
    )


def _frame_holding(given: str, headers: dict[str, str]) -> tuple[FrameType, tuple[object, ...]]:
    """A finished frame with plaintext copies of a key (``given``, ``data``, ``tail``), a cut of
    11 secret characters, a display prefix and a caller's headers mapping (none of them copies)."""
    data = given.encode()
    tail = given[20:]
    cut = given[:19]
    display = given[:12] + "…" + given[-4:]
    return sys._getframe(), (data, tail, cut, display)


class FailingStore(MemoryKeyStore):
    """Raises an unexpected error from ``find_key`` once ``down``, and keeps what a crash
    reporter would have seen: the error, the stack at the raise, the plaintext holders."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.key = ""
        self.raised: BaseException | None = None
        self.stack: traceback.StackSummary | None = None
        self.holders: list[str] = []

    def find_key(self, digest: str) -> KeyRecord | None:
        if not self.down:
            return super().find_key(digest)
        frame = sys._getframe()
        self.holders = holders(frame, self.key)
        self.stack = traceback.StackSummary.extract(
            traceback.walk_stack(frame), capture_locals=True
        )
        self.raised = ConnectionResetError("the database went away")
        raise self.raised


@pytest.fixture
def store() -> FailingStore:
    return FailingStore()


@pytest.fixture
def key(store: FailingStore, manager: KeyManager) -> str:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:calls"])
    store.key = key
    return key


def facts(key: str) -> RequestFacts:
    return RequestFacts("GET", "/teams/team_1/calls", {"Authorization": f"Bearer {key}"})


ENDPOINT = Endpoint(("read:calls",))
Entry = Callable[[Authenticator, str], object]


def _raised(call: Callable[[], object]) -> object:
    try:
        return call()
    except AuthError as error:
        return error


ENTRIES: dict[str, Entry] = {
    "decide": lambda auth, key: auth.decide(facts(key), ENDPOINT),
    "decide_async": lambda auth, key: asyncio.run(auth.decide_async(facts(key), ENDPOINT)),
    "authenticate": lambda auth, key: _raised(lambda: auth.authenticate(facts(key).headers)),
    "verify": lambda auth, key: _raised(lambda: auth.verify(key)),
}


class TestFrames:
    def test_if_frames_hold_plaintext_copies_then_the_rule_finds_them(self) -> None:
        key = generate_key()
        frame, _ = _frame_holding(key, {"authorization": f"Bearer {key}"})
        assert set(holders(frame, key, __file__)) == {
            "_frame_holding.given",
            "_frame_holding.data",
            "_frame_holding.tail",
            # and up the stack, this test's own variable
            "TestFrames.test_if_frames_hold_plaintext_copies_then_the_rule_finds_them.key",
        }
        assert holders(sys._getframe(), key) == []  # no frame of the core on this stack

    @pytest.mark.parametrize("entry", list(ENTRIES))
    def test_if_the_store_raises_during_a_request_then_no_core_frame_holds_the_key(
        self, store: FailingStore, clock: Clock, key: str, entry: str
    ) -> None:
        store.down = True
        with Authenticator(store, clock=clock) as auth:
            outcome = ENTRIES[entry](auth, key)
        assert getattr(outcome, "status_code", None) == 503
        assert store.raised is not None  # the store did raise, during this request
        assert store.holders == []

    @pytest.mark.parametrize("cache", ["cold", "warm"])
    @pytest.mark.parametrize("where", ["rate limiter", "audit hook"])
    def test_if_a_limiter_or_an_audit_hook_raises_then_no_core_frame_holds_the_key(
        self, store: FailingStore, clock: Clock, key: str, where: str, cache: str
    ) -> None:
        seen: list[list[str]] = []
        failing = False

        class Limiter:
            def check(self, principal: Principal, now: float) -> None:
                if failing:
                    seen.append(holders(sys._getframe(), key))
                    raise ConnectionRefusedError("redis is down")

        def hook(event: AuditEvent) -> None:
            if failing:
                seen.append(holders(sys._getframe(), key))
                raise ConnectionRefusedError("the audit sink is down")

        options: dict[str, Any] = (
            {"rate_limiter": Limiter()} if where == "rate limiter" else {"audit": hook}
        )
        with Authenticator(store, clock=clock, **options) as auth:
            if cache == "warm":
                assert isinstance(auth.decide(facts(key), ENDPOINT), Principal)
            failing = True
            try:
                auth.decide(facts(key), ENDPOINT)
            except ConnectionRefusedError:
                pass  # a limiter's fault is the app's 500; the hook's is logged
        assert seen and seen[0] == []

    def test_if_a_traceback_with_locals_is_captured_then_the_core_frames_show_no_key(
        self, store: FailingStore, clock: Clock, key: str
    ) -> None:
        store.down = True
        with Authenticator(store, clock=clock) as auth:
            assert auth.decide(facts(key), ENDPOINT).status_code == 503  # type: ignore[union-attr]
        assert store.raised is not None and store.stack is not None
        caught = traceback.TracebackException.from_exception(store.raised, capture_locals=True)
        text = core_text(caught.stack) + core_text(store.stack)
        assert "    self = " in text  # the core's frames are in the capture, with their locals
        assert [piece for piece in pieces(key) if piece in text] == []


class TestReprs:
    def test_if_objects_hold_a_key_then_their_repr_and_str_do_not_show_it(
        self, store: FailingStore, clock: Clock, manager: KeyManager, key: str
    ) -> None:
        events: list[AuditEvent] = []
        unknown = generate_key()
        with Authenticator(store, clock=clock, audit=events.append) as auth:
            principal = auth.decide(facts(key), ENDPOINT)
            refusals = [
                auth.decide(facts(unknown), ENDPOINT),
                auth.decide(facts(key[:-1] + ("0" if key[-1] != "0" else "1")), ENDPOINT),
                auth.decide(facts(key), Endpoint(("write:calls",))),
                auth.decide(
                    RequestFacts("GET", "/", {"X-API-Key": key, "Authorization": f"Bearer {key}"})
                ),
            ]
            digest = auth.hasher.stored(auth.hasher.new(key.encode()).digest())
            held = [
                auth,
                auth.cache,
                auth.hasher,
                facts(key),
                parse_key(key),
                principal,
                *refusals,
                *events,
                store,
                store.find_key(digest),
                manager,
                manager.list_keys(team_id="team_1"),
            ]
            text = "".join(repr(value) + str(value) for value in held)
        assert isinstance(principal, Principal) and len(refusals) == 4 and len(events) == 5
        for secret in (key, unknown):
            assert [piece for piece in pieces(secret) if piece in text] == []
