"""Fixed windows counted a claim at a time: exact near the limit, never over it."""

from __future__ import annotations

import secrets
import time

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.store.rate_leases import (
    LEASE_SECONDS,
    MAX_CLAIM,
    REDIS_OPTIONS,
    ClaimingRedisStorage,
    LeasedWindows,
)

from tests.support.clocks import Ticker
from tests.support.redis_store import delete_redis_keys

KEY = "k"


class WindowStorage:
    """A fixed-window store on the test's clock, recording every claim it is asked for."""

    def __init__(self, clock: Ticker) -> None:
        self.clock = clock
        self.counts: dict[str, int] = {}
        self.ends: dict[str, float] = {}
        self.claims: list[int] = []
        self.expiry_asks = 0

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        if key in self.ends and self.clock.now >= self.ends[key]:
            del self.counts[key], self.ends[key]
        self.claims.append(amount)
        self.counts[key] = self.counts.get(key, 0) + amount
        if self.counts[key] == amount:
            self.ends[key] = self.clock.now + expiry
        return self.counts[key]

    def get_expiry(self, key: str) -> float:
        # Like limits' Redis storage: a wall-clock time, from Redis' TTL (whole seconds, rounded).
        self.expiry_asks += 1
        return time.time() + int(self.ends[key] - self.clock.now + 0.5)


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def storage(ticker: Ticker) -> WindowStorage:
    return WindowStorage(ticker)


def served(counter: LeasedWindows, limit, times: int) -> int:
    return sum(counter.hit(limit, KEY) is None for _ in range(times))


def test_a_limit_under_200_per_window_is_counted_one_request_at_a_time(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("150 per minute")
    assert served(counter, limit, 200) == 150
    assert storage.claims == [1] * 200  # each request, refused ones too, counted in storage
    assert storage.counts[KEY] == 200


def test_a_client_seen_less_than_once_a_second_is_counted_one_request_at_a_time(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("1000000 per minute")
    for _ in range(25):
        assert counter.hit(limit, KEY) is None
        ticker.now += LEASE_SECONDS + 0.1
    assert storage.claims == [1] * 25


def test_a_busy_client_gets_doubling_claims_of_at_most_1_percent_of_what_is_left(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("10000 per minute")
    assert served(counter, limit, 12_000) == 10_000
    assert storage.claims[:8] == [1, 2, 4, 8, 16, 32, MAX_CLAIM, MAX_CLAIM]
    counted = 0
    for claim in storage.claims:
        assert claim <= max(1, (10_000 - counted) // 100)
        counted += claim
    # One at a time in the window's last 200, and for every refused request.
    assert storage.claims[-2100:] == [1] * 2100
    assert len(storage.claims) - 2000 < 700  # round trips for 10,000 served


def test_a_big_limit_claims_at_most_max_claim(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    assert served(counter, parse("1000000 per minute"), 1000) == 1000
    assert storage.claims[:7] == [1, 2, 4, 8, 16, 32, MAX_CLAIM]
    assert set(storage.claims[6:]) == {MAX_CLAIM}
    assert len(storage.claims) == 6 + 19  # 63, then the other 937 in claims of 50


def test_processes_sharing_a_window_never_serve_more_than_the_limit(storage, ticker):
    processes = [LeasedWindows(storage, monotonic=ticker) for _ in range(4)]
    limit = parse("5000 per minute")
    total = sum(served(processes[n % 4], limit, 1) for n in range(8000))
    # Spread over four processes: claimed-but-unspent requests refuse a few early, never late.
    assert 5000 - 4 * 50 <= total <= 5000
    assert storage.counts[KEY] >= total


def test_unspent_claims_lapse_after_a_second(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("1000000 per minute")
    served(counter, limit, 4)  # claims 1, 2 and 4: three left to spend
    assert storage.claims == [1, 2, 4]
    ticker.now += LEASE_SECONDS - 0.01
    served(counter, limit, 1)
    assert storage.claims == [1, 2, 4]
    ticker.now += 0.02
    served(counter, limit, 1)  # the last two lapsed; no longer busy: claims one
    assert storage.claims == [1, 2, 4, 1]


def test_claims_are_never_spent_after_their_window_ends(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("1000000 per minute")
    served(counter, limit, 1)
    ticker.now += 59.5
    served(counter, limit, 4)  # claims 1, 2 and 4 with half a second of the window left
    assert storage.claims == [1, 1, 2, 4]
    ticker.now += 0.6  # a new window, within the lease's second
    served(counter, limit, 1)
    # The old window's tokens were not spent: the new window counts this request.
    assert storage.claims[-1] == 1 and storage.counts[KEY] == 1


def test_a_refusal_says_when_the_window_ends(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("2 per minute")
    served(counter, limit, 2)
    ticker.now += 20
    wait = counter.hit(limit, KEY)
    assert wait == pytest.approx(40)


def test_a_refusal_in_a_window_opened_elsewhere_asks_storage_when_it_ends(storage, ticker):
    other, counter = LeasedWindows(storage, monotonic=ticker), LeasedWindows(storage, monotonic=ticker)
    limit = parse("2 per minute")
    served(other, limit, 2)
    ticker.now += 15.6  # 44.4 s left, which Redis reports as 44
    # Never too early: the TTL's rounding is taken against the client.
    assert 44.4 <= counter.hit(limit, KEY) <= 46
    assert storage.expiry_asks == 1


def test_claims_in_a_window_opened_elsewhere_are_not_spent_past_its_end(storage, ticker):
    opener, busy = LeasedWindows(storage, monotonic=ticker), LeasedWindows(storage, monotonic=ticker)
    limit = parse("1000000 per minute")
    served(opener, limit, 1)
    ticker.now += 59.45  # 0.55 s left, which Redis reports as 1 s
    assert served(busy, limit, 8) == 8  # busy: claims more than one, so it asks when the window ends
    assert storage.expiry_asks >= 1
    ticker.now += 0.6  # past the window's real end, within the claim's second
    served(busy, limit, 1)
    # Not served from the old window's tokens: counted in the new window.
    assert storage.claims[-1] == 1 and storage.counts[KEY] == 1


def test_windows_that_ended_are_forgotten(storage, ticker):
    counter = LeasedWindows(storage, monotonic=ticker)
    limit = parse("1000 per minute")
    for n in range(500):
        counter.hit(limit, f"address-{n}")
    ticker.now += 61
    counter.hit(limit, "one-more")
    assert list(counter._leases) == ["one-more"]


def test_redis_is_shared_and_exact_near_the_limit(redis_url):
    marker = f"leases-{secrets.token_hex(4)}"
    processes = [
        LeasedWindows(storage_from_string(redis_url, wrap_exceptions=True, **REDIS_OPTIONS))
        for _ in range(2)
    ]
    limit = parse("3000 per minute")
    try:
        total = sum(processes[n % 2].hit(limit, marker) is None for n in range(4000))
        assert 3000 - 2 * 30 <= total <= 3000
        # Every request is in Redis (served or refused), plus what was claimed and not spent.
        assert 4000 <= int(processes[0].storage.get(marker)) <= 4000 + 2 * 30
    finally:
        delete_redis_keys(redis_url, marker)


def test_flask_limiters_strategy_counts_exactly_through_the_claims_storage(redis_url):  # noqa: F811
    storage = storage_from_string("claims+" + redis_url)
    assert isinstance(storage, ClaimingRedisStorage)
    strategy = FixedWindowRateLimiter(storage)
    limit = parse("5 per minute")
    marker = f"claims-{secrets.token_hex(4)}"
    try:
        assert [strategy.hit(limit, marker, "10.0.0.1") for _ in range(7)] == [True] * 5 + [False] * 2
        key = limit.key_for(marker, "10.0.0.1")
        assert storage.get(key) == 7  # under 200 per window: every request went to Redis
        assert 0 < storage.get_expiry(key) - time.time() <= 60.5
    finally:
        delete_redis_keys(redis_url, marker)


def test_a_malformed_claims_url_stops_the_boot():
    with pytest.raises(ValueError):
        storage_from_string("claims+redis://127.0.0.1:notaport/0")
