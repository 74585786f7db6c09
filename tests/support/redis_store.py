"""The local Redis the rate limiter shares: reachable or not, and removing what a run left."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.unavailable import Unavailable, skip_or_fail_when_unavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


def _client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def redis_server_pid(url: str = REDIS_URL) -> int:
    """The pid of the Redis server at ``url``; Unavailable when it does not answer."""
    import redis

    try:
        with _client(url) as client:
            return int(client.info("server")["process_id"])
    except redis.RedisError as exc:
        raise Unavailable(f"Redis not reachable at {url}: {exc}") from exc


def delete_redis_keys(url: str, marker: str) -> None:
    """Remove the keys a run created (their names contain its unique ``marker``)."""
    with _client(url) as client:
        keys = list(client.scan_iter(match=f"*{marker}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def redis_url() -> str:
    """The local Redis (skip locally / fail under CI when it is not there)."""
    with skip_or_fail_when_unavailable():
        redis_server_pid(REDIS_URL)
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A RATELIMIT_KEY_PREFIX no other run shares; its Redis keys are removed after."""
    prefix = f"mw-test-{uuid.uuid4().hex}"
    yield prefix
    delete_redis_keys(redis_url, prefix)
