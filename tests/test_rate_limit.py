"""One limit shared by the admin endpoints, per client, before auth."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis
from limits import parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage

from app.limiter import AdminRateLimit

from tests.support.api import HEADERS, heartbeat_body, registration
from tests.support.clocks import Ticker


@pytest.fixture
def limited(app, make_app):
    # `app` empties the tables; this one carries the small limit under test.
    return make_app(admin_rate_limit="3 per minute").test_client()


def _health(client, **kwargs):
    return client.get("/api/daemon/health", headers=kwargs.pop("headers", HEADERS), **kwargs)


def test_over_the_limit_is_429_json_with_retry_after(limited):
    assert [_health(limited).status_code for _ in range(3)] == [200, 200, 200]
    response = _health(limited)
    assert response.status_code == 429
    assert response.get_json() == {"error": "Rate limit exceeded (3 per 1 minute); retry later"}
    # Whole seconds, rounded up: never tells a client to come back too early.
    assert 1 <= int(response.headers["Retry-After"]) <= 61


def test_successful_responses_carry_no_retry_after(limited):
    assert "Retry-After" not in _health(limited).headers


def test_limit_is_shared_by_all_admin_endpoints(limited):
    limited.post("/api/daemon/register", json=registration(), headers=HEADERS)
    limited.post("/api/daemon/heartbeat", json=heartbeat_body(), headers=HEADERS)
    assert _health(limited).status_code == 200
    assert _health(limited).status_code == 429
    heartbeat = limited.post("/api/daemon/heartbeat", json=heartbeat_body(), headers=HEADERS)
    assert heartbeat.status_code == 429


def test_limit_counts_before_authentication(limited):
    wrong = {"X-API-Key": "guess-guess-guess"}
    assert [_health(limited, headers=wrong).status_code for _ in range(3)] == [401, 401, 401]
    # Key guessing is throttled, and it spends the same budget as everything else.
    assert _health(limited, headers=wrong).status_code == 429
    assert _health(limited).status_code == 429


def test_limit_is_per_client_address(limited):
    for _ in range(3):
        _health(limited, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert _health(limited, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert _health(limited, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_forwarded_for_is_ignored_without_trusted_proxies(limited):
    for n in range(3):
        _health(limited, headers={**HEADERS, "X-Forwarded-For": f"203.0.113.{n}"})
    forged = _health(limited, headers={**HEADERS, "X-Forwarded-For": "203.0.113.99"})
    assert forged.status_code == 429


def test_trusted_proxy_hop_gives_the_client_address(app, make_app):
    client = make_app(admin_rate_limit="3 per minute", trusted_proxy_hops=1).test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for _ in range(3):
        _health(client, headers={**HEADERS, "X-Forwarded-For": "198.51.100.7"}, environ_base=proxy)
    limited = _health(client, headers={**HEADERS, "X-Forwarded-For": "198.51.100.7"}, environ_base=proxy)
    assert limited.status_code == 429
    other = _health(client, headers={**HEADERS, "X-Forwarded-For": "198.51.100.8"}, environ_base=proxy)
    assert other.status_code == 200


def test_forged_hop_before_the_proxy_does_not_change_bucket(app, make_app):
    # nginx appends the real peer: "forged, real". With one trusted hop only
    # the last entry counts, so the client cannot pick its own bucket.
    client = make_app(admin_rate_limit="3 per minute", trusted_proxy_hops=1).test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for n in range(3):
        xff = f"203.0.113.{n}, 198.51.100.7"
        _health(client, headers={**HEADERS, "X-Forwarded-For": xff}, environ_base=proxy)
    xff = "203.0.113.50, 198.51.100.7"
    assert _health(client, headers={**HEADERS, "X-Forwarded-For": xff}, environ_base=proxy).status_code == 429


# ------------------------------------------------- shared storage down and back


class FlakyStorage(MemoryStorage):
    """Memory storage that can be switched off, raising what a dead Redis raises."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.checks = 0

    def incr(self, key, expiry, amount=1):
        if self.down:
            raise StorageError(ConnectionError("Connection refused"))
        return super().incr(key, expiry, amount)

    def check(self) -> bool:
        self.checks += 1
        return not self.down


@pytest.fixture
def flaky():
    storage, ticker = FlakyStorage(), Ticker()
    rate_limit = AdminRateLimit(
        parse_many("3 per minute"), lambda: storage, key_prefix="t", monotonic=ticker
    )
    return rate_limit, storage, ticker


def test_unreachable_storage_falls_back_to_per_process_counting_and_says_so(flaky, caplog):
    rate_limit, storage, _ = flaky
    assert rate_limit.breached("10.0.0.1") is None
    storage.down = True
    with caplog.at_level(logging.WARNING, logger="app.limiter"):
        # The request that found the storage dead is counted too, on the fallback.
        assert [rate_limit.breached("10.0.0.1") is None for _ in range(4)] == [True, True, True, False]
    assert rate_limit.on_fallback
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("Rate limit storage unreachable")
    limit, retry_after = rate_limit.breached("10.0.0.1")
    assert str(limit) == "3 per 1 minute" and 1 <= retry_after <= 60


def test_storage_is_asked_again_after_a_growing_pause_and_used_when_back(flaky, caplog):
    rate_limit, storage, ticker = flaky
    storage.down = True
    rate_limit.breached("10.0.0.1")
    assert storage.checks == 0
    rate_limit.breached("10.0.0.1")
    assert storage.checks == 0  # no second look within the first second
    waits = []
    for _ in range(5):
        asked = storage.checks
        pause = 0.0
        while storage.checks == asked:
            ticker.now += 0.5
            pause += 0.5
            rate_limit.breached("10.0.0.2")
        waits.append(pause)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    storage.down = False
    ticker.now += 8
    with caplog.at_level(logging.WARNING, logger="app.limiter"):
        assert rate_limit.breached("10.0.0.3") is None
    assert not rate_limit.on_fallback
    assert "reachable again" in caplog.records[-1].getMessage()
    # Counted in the shared storage again: the limit of three applies there.
    assert [rate_limit.breached("10.0.0.3") is None for _ in range(3)] == [True, True, False]


def test_only_one_thread_asks_a_dead_storage_the_others_stay_on_the_fallback(flaky):
    rate_limit, storage, ticker = flaky
    storage.down = True
    rate_limit.breached("10.0.0.1")
    ticker.now += 1
    asking = threading.Event()
    slow_check = storage.check

    def check():  # a blackholed Redis: the answer takes a while
        asking.set()
        time.sleep(0.3)
        return slow_check()

    storage.check = check
    first = threading.Thread(target=rate_limit.breached, args=("10.0.0.1",))
    first.start()
    assert asking.wait(5)
    started = time.monotonic()
    others = [rate_limit.breached("10.0.0.2") for _ in range(5)]
    assert time.monotonic() - started < 0.2  # not queued behind the first thread's check
    first.join(5)
    assert storage.checks == 1  # one look at the dead storage, not six
    assert [o is None for o in others] == [True, True, True, False, False]  # on the fallback


def test_storage_down_at_start_is_connected_to_later_and_no_request_fails(caplog):
    storage, ticker, attempts = FlakyStorage(), Ticker(), []

    def connect():
        attempts.append(ticker.now)
        if len(attempts) == 1:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return storage

    rate_limit = AdminRateLimit(parse_many("3 per minute"), connect, key_prefix="t", monotonic=ticker)
    assert attempts == []  # nothing is dialled until a request comes
    with caplog.at_level(logging.WARNING, logger="app.limiter"):
        assert rate_limit.breached("10.0.0.1") is None
        assert rate_limit.on_fallback
        ticker.now += 1
        assert rate_limit.breached("10.0.0.1") is None
    assert not rate_limit.on_fallback and attempts == [1000.0, 1001.0]
    assert [r.getMessage().split(" (")[0].split(":")[0] for r in caplog.records] == [
        "Rate limit storage unreachable",
        "Rate limit storage is reachable again",
    ]


def test_a_malformed_storage_url_stops_the_boot(make_app):
    with pytest.raises(ValueError):
        make_app(ratelimit_storage_uri="redis://127.0.0.1:notaport/0")


def test_redis_over_a_unix_socket_gets_the_same_fallback(tmp_path, make_app):
    client = make_app(
        admin_rate_limit="2 per minute", ratelimit_storage_uri=f"redis+unix://{tmp_path}/none.sock"
    ).test_client()
    # No socket there: served, counted per process, never a 500.
    assert [_health(client).status_code for _ in range(3)] == [200, 200, 429]
