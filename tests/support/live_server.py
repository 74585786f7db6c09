"""A WSGI app served on a real 127.0.0.1 port from a thread, for the browser and the agent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

# How long the end of a block waits for connections still being served.
DRAIN_SECONDS = 10.0


class _OpenConnections:
    """Counts the connections a server's threads are handling, so its end can wait for them.

    ``shutdown()`` only stops accepting: a request already read (a page's last poll, a
    keep-alive connection's next request) runs on in its own thread, and may check a
    connection out of a pool the test is about to dispose of.
    """

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_closed(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


def _handler(connections: _OpenConnections) -> type[WSGIRequestHandler]:
    class Handler(WSGIRequestHandler):
        def handle(self) -> None:
            with connections.held():
                super().handle()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # no access-log line per request: pages and agents poll several times a second

    return Handler


@contextmanager
def serving(wsgi_app: Any, port: int = 0) -> Iterator[str]:
    """Serve ``wsgi_app`` on 127.0.0.1 (a free port unless given) until the block ends;
    the block ends once every connection it served is closed (or after ``DRAIN_SECONDS``)."""
    connections = _OpenConnections()
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
        connections.wait_closed(DRAIN_SECONDS)
