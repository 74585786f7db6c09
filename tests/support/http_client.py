"""The one HTTP client of the tests and benchmarks: a request, or a kept-alive connection.

Only 127.0.0.1 is contacted, never through a proxy (http.client honours no
proxy variables). The client socket can be bound to another loopback address:
the whole 127.0.0.0/8 range is local on Linux, so a request from 127.0.0.2 is a
second client host as far as the server can tell.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.support.api import API_KEY

REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        assert self.content_type.startswith("application/json"), (
            f"expected JSON, got {self.content_type!r}: {self.body[:300]!r}"
        )
        return json.loads(self.body)


def _headers_and_data(body: Any, raw_body: bytes | None,
                      api_key: str | None) -> tuple[dict[str, str], bytes | None]:
    headers = {}
    if api_key is not None:
        headers["X-API-Key"] = api_key
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return headers, data


def request(
    port: int,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: bytes | None = None,
    api_key: str | None = API_KEY,
    headers: Mapping[str, str] | None = None,
    source: str = "127.0.0.1",
    timeout: float = REQUEST_TIMEOUT_SECONDS,
) -> Reply:
    """One request on a connection of its own, sent from loopback address ``source``.

    ``body`` is sent as JSON (with its Content-Type), ``raw_body`` as it is
    (with only the ``headers`` given).
    """
    sent, data = _headers_and_data(body, raw_body, api_key)
    sent["Connection"] = "close"
    sent.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    started = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        return Reply(response.status, dict(response.headers), payload,
                     time.monotonic() - started)
    finally:
        conn.close()


class KeepAliveClient:
    """A persistent HTTP/1.1 connection (nginx keeps client connections open)."""

    def __init__(self, port: int, *, source: str = "127.0.0.1",
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.port, self.source, self.timeout = port, source, timeout
        self._conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, *, body: Any = None,
             api_key: str | None = API_KEY) -> Reply:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=self.timeout, source_address=(self.source, 0))
        headers, data = _headers_and_data(body, None, api_key)
        started = time.monotonic()
        try:
            self._conn.request(method, path, body=data, headers=headers)
            response = self._conn.getresponse()
            payload = response.read()
            if response.will_close:
                self.close()
        except BaseException:
            self.close()
            raise
        return Reply(response.status, dict(response.headers), payload, time.monotonic() - started)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def concurrently(calls: list[Callable[[], Reply]], *, threads: int) -> list[Reply]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda call: call(), calls))
