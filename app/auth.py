"""X-API-Key authentication for the admin endpoints."""

from __future__ import annotations

import hmac

from flask import Response, current_app, request

from app.http.errors import error_response

API_KEY_HEADER = "X-API-Key"


def key_matches(supplied: str, keys: tuple[str, ...]) -> bool:
    """Constant-time check of ``supplied`` against every configured key.

    All keys are compared, with no early exit, so timing reveals neither
    which key matched nor how long a matching prefix was.
    """
    supplied_bytes = supplied.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied_bytes, key.encode())
    return matched


def require_api_key() -> Response | None:
    """Blueprint guard: answer 401 unless the request carries a configured key."""
    supplied = request.headers.get(API_KEY_HEADER, "")
    if not supplied:
        return error_response(401, f"Missing API key: send it in the {API_KEY_HEADER} header")
    if not key_matches(supplied, current_app.config["ADMIN_API_KEYS"]):
        return error_response(401, "Invalid API key")
    return None
