"""Request bodies are capped at MAX_CONTENT_LENGTH however they are framed.

werkzeug enforces the cap through ``Content-Length``. A chunked body has none,
and for it werkzeug's stream stops reading at the cap without an error: the app
would take the body's first MAX_CONTENT_LENGTH bytes for all of it (and store
them when they happen to be valid JSON). So a chunked body is read here, at most
one byte past the cap, and handed on with the length it has: one byte over makes
the app answer 413 exactly as it does for a declared length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from io import BytesIO
from typing import IO, Any

WSGIApp = Callable[[dict, Any], Iterable[bytes]]


class BodyLimit:
    """WSGI middleware: a chunked body is read (up to ``limit + 1`` bytes) and passed on
    with a ``Content-Length``."""

    def __init__(self, app: WSGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        # The usual request costs one dictionary lookup. A chunked body is read here
        # whatever Content-Length says: werkzeug, like HTTP, ignores that one then.
        framing = environ.get("HTTP_TRANSFER_ENCODING")
        if framing is not None and "chunked" in framing.lower():
            body = _read_up_to(environ["wsgi.input"], self.limit + 1)
            environ["wsgi.input"] = BytesIO(body)
            # Over the cap this says limit + 1, which is all werkzeug needs for its
            # 413; the rest is never read (gunicorn's sync worker then closes the
            # connection). The app now sees a length-framed body, not a chunked one.
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]
        return self.app(environ, start_response)


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    # A WSGI stream may return less than asked before its end.
    parts: list[bytes] = []
    while size > 0 and (part := stream.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)
