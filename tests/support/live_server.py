"""A WSGI app served on a real 127.0.0.1 port from a thread, for the browser and the agent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request (pages and agents poll several times a second)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serving(wsgi_app: Any, port: int = 0) -> Iterator[str]:
    """Serve ``wsgi_app`` on 127.0.0.1 (a free port unless given) until the block ends."""
    server = make_server("127.0.0.1", port, wsgi_app, threaded=True, request_handler=_QuietHandler)
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
