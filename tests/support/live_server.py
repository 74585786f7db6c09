"""A WSGI app served on a real 127.0.0.1 port from a thread, for the browser and the agent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

# The longest wait for work in flight: a block's end for its connections, a pause for requests.
DRAIN_SECONDS = 10.0


class InFlight:
    """Counts work in progress (a server's connections, an app's requests): one can wait
    until none is left, or pause, holding new work back once what is inside has finished."""

    def __init__(self) -> None:
        self._count = 0
        self._paused = False
        self._changed = threading.Condition()

    @contextmanager
    def entered(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._paused, DRAIN_SECONDS)
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float = DRAIN_SECONDS) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._changed:
            self._paused = True
            self._changed.wait_for(lambda: self._count == 0, DRAIN_SECONDS)
        try:
            yield
        finally:
            with self._changed:
                self._paused = False
                self._changed.notify_all()


def _handler(connections: InFlight) -> type[WSGIRequestHandler]:
    class Handler(WSGIRequestHandler):
        def handle(self) -> None:
            # shutdown() only stops accepting: a request already read (a page's last poll,
            # a keep-alive connection's next one) runs on in this thread, and may check a
            # connection out of a pool the test is about to dispose of.
            with connections.entered():
                super().handle()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # no access-log line per request: pages and agents poll several times a second

    return Handler


@contextmanager
def serving(wsgi_app: Any, port: int = 0) -> Iterator[str]:
    """Serve ``wsgi_app`` on 127.0.0.1 (a free port unless given) until the block ends;
    the block ends once every connection it served is closed (or after ``DRAIN_SECONDS``)."""
    connections = InFlight()
    server = make_server(
        "127.0.0.1", port, wsgi_app, threaded=True, request_handler=_handler(connections)
    )
    # Polling for shutdown every 50 ms (not 500) keeps each test's teardown short.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        connections.wait_idle()
