"""The loader: one flight table, store_timeout for sync and async callers alike, and no
plaintext key in the frames that wait on the store."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import pytest

from skaala_auth import (
    Authenticator,
    InvalidKeyError,
    KeyManager,
    MemoryKeyStore,
    StoreUnavailableError,
    generate_key,
)
from skaala_auth.flow import Endpoint, RequestFacts
from skaala_auth.models import KeyRecord

from ..conftest import Clock


class BlockingStore(MemoryKeyStore):
    """A real memory store whose look-ups wait until ``release`` is set (a store that hangs),
    or raise while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.release.set()
        self.finds = 0
        self.failing = False

    block_polls = False

    def poll_changes(self) -> None:
        if self.block_polls:
            self.release.wait(10)
        super().poll_changes()

    def find_key(self, digest: str) -> KeyRecord | None:
        self.finds += 1
        self.release.wait(10)
        if self.failing:
            raise ConnectionError("the store is down")
        return super().find_key(digest)


@pytest.fixture
def store() -> BlockingStore:
    return BlockingStore()


def issue(store: MemoryKeyStore, clock: Clock) -> str:
    manager = KeyManager(store, clock=clock)
    manager.add_member(team_id="team_1", user_id="user_1", role="owner")
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestStoreTimeout:
    def test_if_the_store_hangs_then_503_while_it_still_hangs(
        self, store: BlockingStore, make_auth: Any, clock: Clock
    ) -> None:
        key = issue(store, clock)
        auth = make_auth(store, clock=clock, store_timeout=0.05)
        store.release.clear()
        try:
            with pytest.raises(StoreUnavailableError) as caught:
                auth.authenticate(bearer(key))
            assert caught.value.status_code == 503
            assert not store.release.is_set()  # answered while the look-up was still waiting
        finally:
            store.release.set()

    def test_if_polls_hang_too_then_the_poll_and_the_look_up_share_one_timeout(
        self, store: BlockingStore, make_auth: Any, clock: Clock
    ) -> None:
        # The store answers 1.5 timeouts after the request: a request whose poll and look-up
        # each waited a whole timeout would get the store's answer (200); sharing one, it is
        # answered 503 while the store still hangs.
        key = issue(store, clock)
        auth = make_auth(store, clock=clock, store_timeout=0.3)
        store.block_polls = True
        store.release.clear()
        letting_go = threading.Timer(0.45, store.release.set)
        letting_go.start()
        try:
            with pytest.raises(StoreUnavailableError):
                auth.authenticate(bearer(key))
            assert not store.release.is_set()
        finally:
            letting_go.cancel()
            store.release.set()

    def test_if_a_waiter_gave_up_then_the_load_still_reaches_the_cache(
        self, store: BlockingStore, make_auth: Any, clock: Clock
    ) -> None:
        key = issue(store, clock)
        auth = make_auth(store, clock=clock, store_timeout=0.05)
        store.release.clear()
        with pytest.raises(StoreUnavailableError):
            auth.authenticate(bearer(key))
        store.release.set()
        for _ in range(2000):  # the abandoned load lands in its worker thread
            if len(auth.cache) and not auth._loader.in_flight():
                break
            threading.Event().wait(0.01)
        assert auth.authenticate(bearer(key)).team_id == "team_1"
        assert store.finds == 1

    def test_if_callers_wait_for_one_digest_then_one_look_up(
        self, store: BlockingStore, clock: Clock
    ) -> None:
        key = issue(store, clock)
        with Authenticator(store, clock=clock) as auth:
            store.release.clear()
            results: list[Any] = []
            threads = [
                threading.Thread(target=lambda: results.append(auth.verify(key).team_id))
                for _ in range(6)
            ]
            for thread in threads:
                thread.start()
            while auth._loader.in_flight() == 0:
                threading.Event().wait(0.005)
            store.release.set()
            for thread in threads:
                thread.join()
        assert results == ["team_1"] * 6
        assert store.finds == 1

    def test_if_unknown_then_remembered_and_not_asked_again(
        self, store: BlockingStore, make_auth: Any, clock: Clock
    ) -> None:
        auth = make_auth(store, clock=clock)
        unknown = generate_key()
        for _ in range(3):
            with pytest.raises(InvalidKeyError):
                auth.authenticate(bearer(unknown))
        assert store.finds == 1


class TestNoPlaintextInFrames:
    """A traceback captured with its locals (what Sentry-style reporters send) while the store
    fails shows no part of the key: the plaintext stops in the flow, and the frames that wait
    on the store hold digests and the display prefix only."""

    @staticmethod
    def pieces(key: str) -> list[str]:
        secret = key[8:]
        return [key] + [secret[i : i + 12] for i in range(0, len(secret) - 11)]

    def rendered(self, error: BaseException | None) -> str:
        """The library's frames of ``error`` and its causes, with their locals (the test's own
        frame, which holds the key it sent, is not the library's)."""
        text = ""
        while error is not None:
            frames = [
                (frame, line)
                for frame, line in traceback.walk_tb(error.__traceback__)
                if "/skaala_auth/" in frame.f_code.co_filename
            ]
            stack = traceback.StackSummary.extract(iter(frames), capture_locals=True)
            text += "".join(stack.format()) + f"{type(error).__name__}: {error}\n"
            error = error.__cause__ or error.__context__
        return text

    def test_if_the_store_raises_then_no_frame_shows_the_key(
        self, store: BlockingStore, make_auth: Any, clock: Clock
    ) -> None:
        key = issue(store, clock)
        auth = make_auth(store, clock=clock)
        store.failing = True
        shown = []
        with pytest.raises(StoreUnavailableError) as caught:
            auth.authenticate(bearer(key))
        shown.append(self.rendered(caught.value))
        with pytest.raises(StoreUnavailableError) as caught:
            auth.verify(key)
        shown.append(self.rendered(caught.value))
        outcome = auth.decide(RequestFacts("GET", "/", bearer(key)), Endpoint())
        assert isinstance(outcome, StoreUnavailableError)
        shown.append(self.rendered(outcome))
        for text in shown:
            assert "ConnectionError: the store is down" in text  # the cause is kept
            assert "need = Load('sk_live_" in text  # the frames were captured with locals
            assert not [piece for piece in self.pieces(key) if piece in text]


def test_if_a_flood_of_bad_checksums_then_no_store_call_and_no_memory(
    store: BlockingStore, make_auth: Any, clock: Clock
) -> None:
    """The checksum is public, but junk that fails it never reaches the negative cache or the
    store, though it is now checked after the positive-cache probe."""
    auth = make_auth(store, clock=clock)
    for _ in range(2000):
        key = generate_key()
        junk = key[:-1] + ("A" if key[-1] != "A" else "B")
        with pytest.raises(InvalidKeyError):
            auth.authenticate(bearer(junk))
    assert store.finds == 0
    assert len(auth.cache) == 0 and not auth.cache._negative
