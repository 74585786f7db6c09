"""Hostile HTTP against the real servers: gunicorn alone, and the shipped nginx in front of it.

- Bodies are capped at MAX_CONTENT_LENGTH however they are framed (Content-Length,
  chunked in one piece or many, with chunk extensions and trailers), with no
  nginx in front to do it.
- A request gunicorn or nginx cannot parse (a huge header, a NUL in a header,
  Content-Length beside Transfer-Encoding, a very long URL, ...) gets an answer
  in the API's JSON shape, from whichever of them answers; so does every request
  in a seeded batch of hostile bytes spliced into valid requests.

Requests go out as raw bytes over sockets to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

from tests.support.api import padded_registration
from tests.support.deployment import start_nginx
from tests.support.gunicorn_servers import Gunicorn, spawn_gunicorn, wait_until_serving
from tests.support.processes import free_port, service_env

ADMIN_KEY = "malformed-admin-key-0123456789"
REGISTER = "/api/daemon/register"
LIMIT = 65536  # the service's MAX_CONTENT_LENGTH default
EXCHANGE_TIMEOUT = 5.0


# ------------------------------------------------------------------ the servers


@dataclass
class Servers:
    gunicorn: Gunicorn
    nginx_port: int
    database_url: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory, migrated_postgres_url) -> Iterator[Servers]:
    """One gunicorn (two sync workers) and the shipped nginx config in front of it."""
    workdir = tmp_path_factory.mktemp("malformed")
    env = service_env(WEB_CONCURRENCY="2", ADMIN_API_KEY=ADMIN_KEY,
                      DATABASE_URL=migrated_postgres_url, ADMIN_RATE_LIMIT="1000000 per minute")
    gunicorn = None
    for attempt in range(3):  # the free port can be taken between probe and bind
        gunicorn = spawn_gunicorn(workdir / f"gunicorn-{attempt}", env, port=free_port())
        try:
            wait_until_serving(gunicorn, workers=2)
            break
        except RuntimeError:
            gunicorn.stop()
            if attempt == 2 or "Address already in use" not in gunicorn.stderr():
                raise
    try:
        # Client timeouts shortened from the shipped 10 s: a request nginx waits on
        # is cut off sooner. Everything else is deploy/nginx.conf as shipped.
        nginx = start_nginx(workdir / "nginx", upstream_ports=[gunicorn.port],
                            directives={"client_body_timeout": "2s",
                                        "client_header_timeout": "2s"})
    except BaseException:
        gunicorn.stop()
        raise
    try:
        yield Servers(gunicorn, nginx.port, migrated_postgres_url)
    finally:
        nginx.stop()
        gunicorn.stop()


def port_of(servers: Servers, target: str) -> int:
    return servers.gunicorn.port if target == "gunicorn" else servers.nginx_port


# ---------------------------------------------------------------- raw exchanges


@dataclass(frozen=True)
class Answer:
    raw: bytes
    status: int | None  # None: no status line (nothing came back, or an HTTP/0.9 answer)
    headers: dict[str, str]
    body: bytes

    def assert_json(self, context: object) -> None:
        """The answer is the API's shape: JSON, with an "error" string on a failure."""
        if self.status is not None:
            content_type = self.headers.get("content-type", "")
            assert content_type.startswith("application/json"), (context, self.raw[:400])
        try:
            document = json.loads(self.body)
        except ValueError:
            pytest.fail(f"{context}: the answer's body is not JSON: {self.raw[:400]!r}")
        if self.status is None or self.status >= 400:
            assert isinstance(document, dict), (context, self.raw[:400])
            assert isinstance(document.get("error"), str), (context, self.raw[:400])


def exchange(port: int, payload: bytes, *, timeout: float = EXCHANGE_TIMEOUT) -> Answer:
    """Send ``payload`` as is and read one answer (bounded: EOF, its length, or ``timeout``)."""
    received = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything
        while time.monotonic() < deadline and not _complete(received):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    return _parse(received)


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator or not received.startswith(b"HTTP/"):
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _parse(received: bytes) -> Answer:
    if not received.startswith(b"HTTP/"):
        return Answer(received, None, {}, received)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(received, status, headers, body)


def request_bytes(method: str, path: str, headers: list[str], body: bytes = b"",
                  *, version: str = "HTTP/1.1") -> bytes:
    head = "\r\n".join([f"{method} {path} {version}", "Host: 127.0.0.1", *headers])
    return head.encode("latin-1") + b"\r\n\r\n" + body


def chunked(body: bytes, size: int, *, extension: str = "", trailer: str = "") -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    encoded = b"".join(f"{len(p):x}{extension}\r\n".encode() + p + b"\r\n" for p in pieces)
    return encoded + b"0\r\n" + (f"{trailer}\r\n" if trailer else "").encode() + b"\r\n"


# ------------------------------------------------------------- 5. body limits


FRAMINGS = {
    "content-length": lambda body: (["Content-Length: " + str(len(body))], body),
    "one chunk": lambda body: (["Transfer-Encoding: chunked"], chunked(body, len(body))),
    "8 KiB chunks": lambda body: (["Transfer-Encoding: chunked"], chunked(body, 8192)),
    "100-byte chunks with extensions and a trailer": lambda body: (
        ["Transfer-Encoding: chunked", "Trailer: X-Checksum"],
        chunked(body, 100, extension=";note=x", trailer="X-Checksum: 0")),
}


def _stored(database_url: str, daemon_id: str) -> bool:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM daemons WHERE daemon_id = :d"),
                                {"d": daemon_id}).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_bodies_are_capped_however_they_are_framed_without_nginx(servers, framing):
    run = uuid.uuid4().hex[:8]
    frame = FRAMINGS[framing]
    base = [f"X-API-Key: {ADMIN_KEY}", "Content-Type: application/json", "Connection: close"]

    at_limit_id = f"cap-{run}-at"
    headers, payload = frame(padded_registration(at_limit_id, LIMIT))
    at_limit = exchange(servers.gunicorn.port, request_bytes("POST", REGISTER, base + headers,
                                                             payload))
    assert at_limit.status == 201, at_limit.raw[:400]
    assert _stored(servers.database_url, at_limit_id)

    # Over the limit, with a first LIMIT bytes that are a complete registration on
    # their own (JSON allows trailing whitespace): a body cut at the limit would pass.
    for extra in (1, 4096, 10 * LIMIT):
        over_id = f"cap-{run}-over-{extra}"
        headers, payload = frame(padded_registration(over_id, LIMIT) + b" " * extra)
        over = exchange(servers.gunicorn.port, request_bytes("POST", REGISTER, base + headers,
                                                             payload))
        assert over.status == 413, (extra, over.raw[:400])
        over.assert_json((framing, extra))
        assert json.loads(over.body)["error"] == (
            f"Request body is too large: the limit is {LIMIT} bytes")
        assert not _stored(servers.database_url, over_id), (framing, extra)


# ------------------------------------------------------ 6. malformed requests

KEY = f"X-API-Key: {ADMIN_KEY}"
CLOSE = "Connection: close"
MALFORMED = {
    "header of 20 KiB": request_bytes("GET", "/api/daemon/health", [KEY, CLOSE, "X-Big: " + "a" * 20000]),
    "120 headers": request_bytes("GET", "/api/daemon/health",
                                 [KEY, CLOSE, *(f"X-Header-{n}: v" for n in range(120))]),
    "NUL in a header": request_bytes("GET", "/api/daemon/health", [KEY, CLOSE, "X-Bad: a\x00b"]),
    "Content-Length and Transfer-Encoding": request_bytes(
        "POST", "/api/daemon/heartbeat",
        [KEY, CLOSE, "Content-Type: application/json", "Content-Length: 5",
         "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    "two Content-Lengths": request_bytes("POST", "/api/daemon/heartbeat",
                                         [KEY, CLOSE, "Content-Length: 2", "Content-Length: 3"],
                                         b"{}"),
    "URL of 6,000 bytes": request_bytes("GET", "/api/daemon/" + "a" * 6000, [KEY, CLOSE]),
    "URL of 20,000 bytes": request_bytes("GET", "/api/daemon/" + "a" * 20000, [KEY, CLOSE]),
    "not a request line": b"GARBAGE\r\n\r\n",
    "invalid method": request_bytes("G@T", "/api/daemon/health", [KEY, CLOSE]),
    "HTTP/9.9": request_bytes("GET", "/api/daemon/health", [KEY, CLOSE], version="HTTP/9.9"),
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "HTTP/0.9 POST": b"POST /api/daemon/register\r\n",
    "Transfer-Encoding: gzip": request_bytes("POST", "/api/daemon/heartbeat",
                                             [KEY, CLOSE, "Transfer-Encoding: gzip"], b"x"),
    "invalid chunk size": request_bytes(
        "POST", "/api/daemon/heartbeat",
        [KEY, CLOSE, "Content-Type: application/json", "Transfer-Encoding: chunked"],
        b"zz\r\nabc\r\n0\r\n\r\n"),
    "folded header": request_bytes("GET", "/api/daemon/health", [KEY, CLOSE, "X-A: b", " c"]),
    "space before a colon": request_bytes("GET", "/api/daemon/health", [KEY, CLOSE, "X-A : b"]),
    "no Host": f"GET /api/daemon/health HTTP/1.1\r\n{KEY}\r\n{CLOSE}\r\n\r\n".encode(),
    "bare LF line ends": f"GET /api/daemon/health HTTP/1.1\nHost: x\n{CLOSE}\n\n".encode(),
    "TRACE": request_bytes("TRACE", "/api/daemon/health", [KEY, CLOSE]),
    "Expect: 200-ok": request_bytes("POST", "/api/daemon/heartbeat",
                                    [KEY, CLOSE, "Expect: 200-ok", "Content-Length: 0"]),
}


@pytest.mark.parametrize("target", ["gunicorn", "nginx"])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_requests_are_answered_with_json(servers, target, case):
    answer = exchange(port_of(servers, target), MALFORMED[case])
    assert answer.raw, f"{case}: no answer from {target}"
    answer.assert_json((target, case))
    # A refusal that names the problem, from the server or the proxy: not a crash.
    assert answer.status is None or answer.status < 500 or answer.status in (501, 505), (
        target, case, answer.raw[:400])


HOSTILE = [b"\x00", b"\x01", b"\x7f", b"\xff", b" ", b"\t", b":", b"\r", b"\n", b"\r\n",
           b"\x0b", b"(", b"@", b"\"", b"\\", b"%", b"a" * 9000]


def _mutations(seed: int, count: int) -> list[bytes]:
    """Valid requests with hostile bytes spliced in somewhere before their body."""
    rng = random.Random(seed)
    beat = json.dumps({"daemonId": "fuzz", "status": "healthy", "tasksProcessed": 1,
                       "lastHeartbeat": "2026-01-25T12:00:00Z"}).encode()
    bases = [
        request_bytes("POST", "/api/daemon/heartbeat",
                      [KEY, "Content-Type: application/json", f"Content-Length: {len(beat)}",
                       CLOSE], beat),
        request_bytes("GET", "/api/daemon/health?x=1", [KEY, "Accept: */*", CLOSE]),
    ]
    mutated = []
    for _ in range(count):
        base = rng.choice(bases)
        head_end = base.index(b"\r\n\r\n")
        at = rng.randrange(head_end)
        mutated.append(base[:at] + rng.choice(HOSTILE) + base[at:])
    return mutated


@pytest.mark.parametrize("target", ["gunicorn", "nginx"])
def test_every_answer_to_hostile_bytes_is_json(servers, target):
    port = port_of(servers, target)
    payloads = _mutations(seed=12, count=150)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda payload: exchange(port, payload), payloads))
    statuses = Counter(a.status if a.raw else "no answer" for a in answers)
    for payload, answer in zip(payloads, answers, strict=True):
        if answer.raw:
            answer.assert_json((target, payload[:120]))
            assert answer.status != 500, (target, payload[:200], answer.raw[:400])
    # The batch does reach the servers' refusals, not only the app.
    assert sum(n for status, n in statuses.items() if status in (400, 414, 431)) >= 20, statuses
    print(f"\n{target}: {len(answers)} hostile requests -> {dict(statuses)}")
