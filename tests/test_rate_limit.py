"""One limit shared by the keyed endpoints, per client, before auth (Flask-Limiter)."""

from __future__ import annotations

import logging

import pytest
from flask_limiter import _extension as flask_limiter_extension
from flask_limiter import _limits as flask_limiter_limits
from limits.errors import StorageError
from limits.storage import MemoryStorage

from app.http.limiter import ParsedOnceLimit, _bucket_key
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration


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


# ------------------------------------------------------- the limit, parsed once


def test_each_buckets_limit_string_is_parsed_once_not_per_request(app, make_app, monkeypatch):
    parsed = []
    parse_many = flask_limiter_limits.parse_many
    monkeypatch.setattr(
        flask_limiter_limits, "parse_many", lambda limit: parsed.append(limit) or parse_many(limit)
    )
    client = make_app(
        daemon_api_keys=("test-daemon-key-parsed-once",),
        read_api_keys=("test-read-key-parsed-once",),
        admin_rate_limit="30 per minute",
        daemon_rate_limit="20 per minute",
        read_rate_limit="40 per minute",
    ).test_client()
    keys = (API_KEY, "test-daemon-key-parsed-once", "test-read-key-parsed-once", "wrong-key-0000000")
    for _ in range(5):
        for key in keys:  # a daemon key here is refused (403) but counted in its own bucket
            client.get("/api/daemons", headers={"X-API-Key": key})
    assert sorted(parsed) == ["20 per minute", "30 per minute", "40 per minute"]


def test_the_parsed_once_limit_builds_what_shared_limit_builds(app):
    limiter = next(iter(app.extensions["limiter"]))
    current = {"limit": "5 per minute"}

    def scope(_endpoint):
        return "admin"

    ours = ParsedOnceLimit(limit_provider=lambda: current["limit"], limiter=limiter,
                           key_function=_bucket_key, shared=True, scope=scope, override_defaults=True)
    theirs = limiter.shared_limit(lambda: current["limit"], scope, key_func=_bucket_key)
    for limit in ["5 per minute", "7 per second", "5 per minute"]:
        current["limit"] = limit
        assert list(ours) == list(theirs), limit


# ------------------------------------------------- shared storage down and back


class FlakyStorage(MemoryStorage):
    """Memory storage that can be switched off, raising what a dead Redis raises."""

    STORAGE_SCHEME = ["flaky"]
    down = False
    checks = 0

    def incr(self, key, expiry, amount=1):
        if FlakyStorage.down:
            raise StorageError(ConnectionError("Connection refused"))
        return super().incr(key, expiry, amount)

    def check(self) -> bool:
        FlakyStorage.checks += 1
        return not FlakyStorage.down


class WallClock:
    """Stands in for the ``time`` module Flask-Limiter reads its retry schedule from."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def flaky(app, make_app, monkeypatch):
    wall = WallClock()
    monkeypatch.setattr(flask_limiter_extension, "time", wall)
    monkeypatch.setattr(FlakyStorage, "down", False)
    monkeypatch.setattr(FlakyStorage, "checks", 0)
    client = make_app(admin_rate_limit="3 per minute", ratelimit_storage_uri="flaky://").test_client()
    return client, wall


def _served(client, address):
    return _health(client, environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_unreachable_storage_falls_back_to_per_process_counting_and_says_so(flaky, caplog):
    client, _ = flaky
    assert _served(client, "10.0.0.1")
    FlakyStorage.down = True
    with caplog.at_level(logging.INFO, logger="flask-limiter"):
        # The request that found the storage dead is counted too, on the fallback.
        assert [_served(client, "10.0.0.1") for _ in range(4)] == [True, True, True, False]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("Rate limit storage unreachable")
    refused = _health(client, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61


def test_storage_is_asked_again_after_a_growing_pause_and_used_when_back(flaky, caplog):
    client, wall = flaky
    FlakyStorage.down = True
    _served(client, "10.0.0.1")
    _served(client, "10.0.0.1")
    assert FlakyStorage.checks == 0  # no second look within the first second
    waits = []
    for _ in range(4):
        asked = FlakyStorage.checks
        pause = 0.0
        while FlakyStorage.checks == asked:
            wall.now += 0.5
            pause += 0.5
            _served(client, "10.0.0.2")
        waits.append(pause)
    assert waits == [1.5, 2.5, 4.5, 8.5]  # Flask-Limiter's: more than 1, 2, 4, 8 ... seconds
    FlakyStorage.down = False
    wall.now += 17
    with caplog.at_level(logging.INFO, logger="flask-limiter"):
        assert _served(client, "10.0.0.3")
    assert caplog.records[-1].getMessage() == "Rate limit storage recovered"
    # Counted in the shared storage again: the limit of three applies there.
    assert [_served(client, "10.0.0.3") for _ in range(3)] == [True, True, False]


def test_storage_down_at_start_is_used_once_back_and_no_request_fails(flaky, caplog):
    client, wall = flaky
    FlakyStorage.down = True
    with caplog.at_level(logging.INFO, logger="flask-limiter"):
        assert _served(client, "10.0.0.1")
        FlakyStorage.down = False
        wall.now += 2
        assert _served(client, "10.0.0.1")
    assert [r.getMessage() for r in caplog.records] == [
        "Rate limit storage unreachable - falling back to in-memory storage",
        "Rate limit storage recovered",
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
