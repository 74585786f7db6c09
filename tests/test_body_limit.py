"""MAX_CONTENT_LENGTH holds for a body without Content-Length (chunked), as for one with it.

The environ is what gunicorn hands over for ``Transfer-Encoding: chunked``: the
decoded body as ``wsgi.input``, no CONTENT_LENGTH, ``wsgi.input_terminated`` set.
tests/test_malformed_http.py sends the same through real gunicorn.
"""

from __future__ import annotations

import io

import pytest

from tests.support.api import HEADERS, padded_registration

REGISTER = "/api/daemon/register"
LIMIT = 64 * 1024  # the default MAX_CONTENT_LENGTH


def post_unframed(client, data: bytes):
    """POST ``data`` as a server passes on a chunked body (decoded, framed by the server)."""
    return client.post(
        REGISTER,
        input_stream=io.BytesIO(data),
        headers={**HEADERS, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize("extra", [1, 100, LIMIT])
def test_chunked_body_over_the_limit_is_413_though_its_first_bytes_are_a_valid_body(client, extra):
    # JSON allows trailing whitespace: read only up to the limit, this would be a
    # complete, valid registration (and was stored as one).
    data = padded_registration("chunked_over", LIMIT) + b" " * extra
    response = post_unframed(client, data)
    assert response.status_code == 413, response.get_data()
    assert response.get_json() == {"error": f"Request body is too large: the limit is {LIMIT} bytes"}
    assert client.get("/api/daemon/chunked_over", headers=HEADERS).status_code == 404


@pytest.mark.parametrize("size", [200, LIMIT])
def test_chunked_body_up_to_the_limit_is_read_whole(client, size):
    response = post_unframed(client, padded_registration("chunked_ok", size))
    assert response.status_code == 201, response.get_json()
    assert client.get("/api/daemon/chunked_ok", headers=HEADERS).status_code == 200
