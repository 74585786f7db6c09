"""A real HTTP receiver on 127.0.0.1 for alert tests: records requests, answers as told."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    # Each request pops the next (status, delay) answer; the last one repeats.
    answers: deque = field(default_factory=lambda: deque([(200, 0.0)]))
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, *answers: tuple[int, float]) -> None:
        self.answers = deque(answers)

    def _next_answer(self) -> tuple[int, float]:
        return self.answers.popleft() if len(self.answers) > 1 else self.answers[0]


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, delay = receiver._next_answer()
            # Header names are case-insensitive; urllib sends "X-daemonhealth-signature".
            headers = {name.lower(): value for name, value in self.headers.items()}
            receiver.received.append(Received(self.path, headers, body, time.monotonic()))
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting: that is the point of a slow receiver

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


def verify_signature(secret: str, received: Received, *, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the HMAC and check the timestamp is fresh."""
    parts = dict(item.split("=", 1) for item in received.headers["x-daemonhealth-signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    return abs(time.time() - timestamp) <= tolerance and hmac.compare_digest(expected, parts["v1"])
