"""The rate limiters (:mod:`skaala_auth.ratelimit`): in memory and shared through Redis.

Real ``limits`` storages throughout (its memory storage, a real Redis): nothing of the
component under test is mocked. The limiters count on the wall clock, so the window tests
sleep through a one-second window (the only timing the suite asserts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from skaala_auth import (
    Authenticator,
    KeyManager,
    MemoryKeyStore,
    Principal,
    RateLimit,
    RateLimitedError,
    RateLimiterUnavailableError,
    RateLimitState,
    SQLiteKeyStore,
)
from skaala_auth.flow import Endpoint, RequestFacts

from ..conftest import Clock

pytest.importorskip("limits")

from skaala_auth.ratelimit import MemoryRateLimiter, RedisRateLimiter

ROOT = Path(__file__).resolve().parents[2]


def principal(key_id: str = "key_1", team_id: str = "team_1", **fields: object) -> Principal:
    return Principal(key_id, team_id, "user_1", frozenset({"read:bookings"}), **fields)  # type: ignore[arg-type]


def facts(key: str) -> RequestFacts:
    return RequestFacts("GET", "/", [(b"authorization", f"Bearer {key}".encode())])


class TestRateLimitValues:
    @pytest.mark.parametrize(
        ("text", "limit", "window"),
        [
            pytest.param("100/minute", 100, 60, id="per-minute"),
            pytest.param("100 per minute", 100, 60, id="per-words"),
            pytest.param("5000/hour", 5000, 3600, id="per-hour"),
            pytest.param("10/30s", 10, 30, id="seconds"),
            pytest.param("10/30", 10, 30, id="bare-seconds"),
            pytest.param("3/2minutes", 3, 120, id="multiple-minutes"),
            pytest.param("7/day", 7, 86400, id="per-day"),
        ],
    )
    def test_if_a_written_limit_is_parsed_then_it_counts_per_its_window(
        self, text: str, limit: int, window: int
    ) -> None:
        parsed = RateLimit.parse(text)
        assert (parsed.limit, parsed.window) == (limit, window)
        assert RateLimit.parse(str(parsed)) == parsed

    @pytest.mark.parametrize("text", ["", "ten/minute", "10/fortnight", "0/minute", "10/0"])
    def test_if_a_limit_is_malformed_then_value_error(self, text: str) -> None:
        with pytest.raises(ValueError):
            RateLimit.parse(text)

    def test_if_a_state_is_rendered_then_reset_is_whole_seconds_rounded_up(self) -> None:
        assert dict(RateLimitState(10, 3, 4.2).headers()) == {
            "x-ratelimit-limit": "10",
            "x-ratelimit-remaining": "3",
            "x-ratelimit-reset": "5",
        }


class TestMemoryRateLimiter:
    def test_if_requests_come_then_remaining_counts_down_and_the_next_is_429(self) -> None:
        limiter = MemoryRateLimiter(limit=3, window=60)
        states = [limiter.check(principal(), 0.0) for _ in range(3)]
        assert [state.remaining for state in states] == [2, 1, 0]
        assert all(state.limit == 3 and 0 < state.reset <= 60 for state in states)
        with pytest.raises(RateLimitedError) as refused:
            limiter.check(principal(), 0.0)
        assert refused.value.limit == 3 and refused.value.remaining == 0
        assert 0 < refused.value.reset <= 60

    def test_if_two_keys_are_used_then_each_has_its_own_budget(self) -> None:
        limiter = MemoryRateLimiter(limit=1, window=60)
        limiter.check(principal("key_1"), 0.0)
        assert limiter.check(principal("key_2"), 0.0).remaining == 0
        with pytest.raises(RateLimitedError):
            limiter.check(principal("key_1"), 0.0)

    def test_if_per_team_then_the_keys_of_a_team_share_one_budget(self) -> None:
        limiter = MemoryRateLimiter(limit=2, window=60, per="team")
        limiter.check(principal("key_1"), 0.0)
        limiter.check(principal("key_2"), 0.0)
        with pytest.raises(RateLimitedError):
            limiter.check(principal("key_3"), 0.0)
        assert limiter.check(principal("key_4", team_id="team_2"), 0.0).remaining == 1

    def test_if_a_key_has_its_own_limit_then_it_wins_over_the_default_and_the_team(self) -> None:
        limiter = MemoryRateLimiter(limit=100, window=60, team_limits={"team_1": "50/minute"})
        own = principal("key_1", rate_limit=RateLimit(2, 60))
        assert limiter.check(own, 0.0).limit == 2
        assert limiter.check(principal("key_2"), 0.0).limit == 50
        assert limiter.check(principal("key_3", team_id="team_2"), 0.0).limit == 100

    def test_if_the_window_passes_then_the_key_is_admitted_again(self) -> None:
        limiter = MemoryRateLimiter(limit=2, window=1)
        limiter.check(principal(), 0.0)
        limiter.check(principal(), 0.0)
        with pytest.raises(RateLimitedError):
            limiter.check(principal(), 0.0)
        time.sleep(1.05)
        assert limiter.check(principal(), 0.0).remaining == 1

    def test_if_threads_race_then_exactly_the_limit_is_admitted(self) -> None:
        limiter = MemoryRateLimiter(limit=50, window=60)
        admitted: list[int] = []

        def hammer() -> None:
            for _ in range(40):
                try:
                    limiter.check(principal(), 0.0)
                except RateLimitedError:
                    continue
                admitted.append(1)

        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(admitted) == 50


class TestThroughTheAuthenticator:
    def test_if_a_key_is_granted_then_its_principal_carries_the_state(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        auth = Authenticator(store, clock=clock, rate_limiter=MemoryRateLimiter(limit=2))
        first = auth.verify(key)
        second = auth.verify(key)
        assert first.rate_limit_state is not None and second.rate_limit_state is not None
        assert (first.rate_limit_state.remaining, second.rate_limit_state.remaining) == (1, 0)
        with pytest.raises(RateLimitedError):
            auth.verify(key)
        auth.close()

    def test_if_a_key_was_created_with_its_own_limit_then_the_limiter_applies_it(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, record = manager.create_key(
            team_id="team_1", user_id="user_1", scopes=["read:bookings"], rate_limit="1/minute"
        )
        assert record.rate_limit == RateLimit(1, 60)
        auth = Authenticator(store, clock=clock, rate_limiter=MemoryRateLimiter(limit=100))
        assert auth.verify(key).rate_limit_state == RateLimitState(1, 0, pytest.approx(60, abs=1))
        with pytest.raises(RateLimitedError):
            auth.verify(key)
        auth.close()

    def test_if_no_limiter_is_configured_then_the_cached_principal_is_handed_out(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        auth = Authenticator(store, clock=clock)
        first = auth.decide(facts(key), Endpoint(("read:bookings",), None))
        assert isinstance(first, Principal) and first.rate_limit_state is None
        assert auth.decide(facts(key), Endpoint(("read:bookings",), None)) is first
        auth.close()


class _Waiting:
    """A blocking limiter whose ``check`` waits until the event loop has run another task."""

    blocking = True

    def __init__(self) -> None:
        self.loop_ran = threading.Event()
        self.thread: int | None = None

    def check(self, principal: Principal, now: float) -> RateLimitState:
        self.thread = threading.get_ident()
        self.loop_ran.wait(5)
        return RateLimitState(10, 9, 60)


def test_if_the_limiter_blocks_then_the_async_driver_never_waits_on_the_event_loop(
    store: MemoryKeyStore, manager: KeyManager, clock: Clock
) -> None:
    key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
    limiter = _Waiting()
    auth = Authenticator(store, clock=clock, rate_limiter=limiter)
    auth.verify(key)  # load it (the sync driver calls a blocking limiter in its own thread)
    limiter.loop_ran.clear()

    async def main() -> tuple[object, int]:
        async def meanwhile() -> None:
            await asyncio.sleep(0.01)
            limiter.loop_ran.set()

        outcome, _ = await asyncio.gather(
            auth.decide_async(facts(key), Endpoint(("read:bookings",), None)), meanwhile()
        )
        return outcome, threading.get_ident()

    started = time.monotonic()
    outcome, loop_thread = asyncio.run(main())
    assert isinstance(outcome, Principal)
    assert outcome.rate_limit_state == RateLimitState(10, 9, 60)
    assert limiter.thread != loop_thread
    assert time.monotonic() - started < 4  # it did not wait out the 5 s: the loop ran
    auth.close()


class TestRedisRateLimiter:
    def test_if_requests_come_then_remaining_counts_down_and_the_next_is_429(
        self, redis_url: str, redis_prefix: str
    ) -> None:
        limiter = RedisRateLimiter(redis_url, limit=3, window=60, prefix=redis_prefix)
        assert [limiter.check(principal(), 0.0).remaining for _ in range(3)] == [2, 1, 0]  # type: ignore[union-attr]
        with pytest.raises(RateLimitedError):
            limiter.check(principal(), 0.0)

    def test_if_given_a_client_then_it_shares_its_pool(
        self, redis_url: str, redis_prefix: str
    ) -> None:
        import redis

        client = redis.Redis.from_url(redis_url)
        limiter = RedisRateLimiter(client=client, limit=1, window=60, prefix=redis_prefix)
        assert limiter.check(principal(), 0.0) == RateLimitState(1, 0, pytest.approx(60, abs=1))
        assert any(client.scan_iter(f"{redis_prefix}*"))
        client.close()

    def test_if_redis_is_down_then_requests_go_through_uncounted_and_it_is_logged(
        self,
        store: MemoryKeyStore,
        manager: KeyManager,
        clock: Clock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        down = RedisRateLimiter("redis://127.0.0.1:1/0", limit=1, socket_timeout=0.2)
        auth = Authenticator(store, clock=clock, rate_limiter=down)
        with caplog.at_level(logging.WARNING, logger="skaala_auth"):
            for _ in range(3):  # over the limit of 1: not counted, not refused
                granted = auth.verify(key)
                assert granted.rate_limit_state is None
        failures = [r for r in caplog.records if "rate limiter failed" in r.getMessage()]
        assert len(failures) == 3 and failures[0].exc_info is not None
        assert not any(key in r.getMessage() for r in caplog.records)
        auth.close()

    def test_if_redis_is_down_and_fail_open_is_off_then_503(
        self, store: MemoryKeyStore, manager: KeyManager, clock: Clock
    ) -> None:
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        down = RedisRateLimiter(
            "redis://127.0.0.1:1/0", limit=1, socket_timeout=0.2, fail_open=False
        )
        auth = Authenticator(store, clock=clock, rate_limiter=down)
        with pytest.raises(RateLimiterUnavailableError):
            auth.verify(key)

        async def decide() -> object:
            return await auth.decide_async(facts(key), Endpoint(("read:bookings",), None))

        assert isinstance(asyncio.run(decide()), RateLimiterUnavailableError)
        auth.close()

    def test_if_two_processes_share_redis_under_load_then_exactly_the_limit_is_admitted(
        self, redis_url: str, redis_prefix: str, tmp_path: Path
    ) -> None:
        store = SQLiteKeyStore(tmp_path / "keys.db")
        manager = KeyManager(store)
        manager.add_member(team_id="team_1", user_id="user_1", role="owner")
        key, _ = manager.create_key(team_id="team_1", user_id="user_1", scopes=["read:bookings"])
        store.close()
        limit, threads, calls = 60, 4, 30  # 2 processes x 4 threads x 30 calls = 4x the limit
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env["SKAALA_CASE"] = json.dumps(
            {
                "db": str(tmp_path / "keys.db"),
                "key": key,
                "url": redis_url,
                "prefix": redis_prefix,
                "limit": limit,
                "threads": threads,
                "calls": calls,
            }
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER], env=env, stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
        assert all(worker.returncode == 0 for worker in workers)
        admitted = sum(result["admitted"] for result in results)
        refused = sum(result["refused"] for result in results)
        assert admitted == limit
        assert refused == 2 * threads * calls - limit
        assert sum(result["other"] for result in results) == 0
        # Every admitted answer said how many were left; the last of them said 0.
        remaining = sorted(r for result in results for r in result["remaining"])
        assert len(remaining) == limit and remaining[0] == 0 and max(remaining) < limit


#: One process of the two-process test: threads hammering one key through an authenticator
#: on the shared SQLite file, counting in the shared Redis.
_WORKER = """
import json, os, threading
from skaala_auth import Authenticator, RateLimitedError, SQLiteKeyStore
from skaala_auth.ratelimit import RedisRateLimiter

case = json.loads(os.environ["SKAALA_CASE"])
limiter = RedisRateLimiter(case["url"], limit=case["limit"], window=600, prefix=case["prefix"])
auth = Authenticator(SQLiteKeyStore(case["db"]), rate_limiter=limiter, track_last_used=False)
auth.verify.__self__  # noqa
counts = {"admitted": 0, "refused": 0, "other": 0, "remaining": []}
lock = threading.Lock()
start = threading.Barrier(case["threads"])

def hammer():
    start.wait()
    for _ in range(case["calls"]):
        try:
            state = auth.verify(case["key"]).rate_limit_state
        except RateLimitedError:
            with lock:
                counts["refused"] += 1
            continue
        except Exception:
            with lock:
                counts["other"] += 1
            continue
        with lock:
            counts["admitted"] += 1
            counts["remaining"].append(state.remaining)

threads = [threading.Thread(target=hammer) for _ in range(case["threads"])]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
auth.close()
print(json.dumps(counts))
"""
