"""Signed webhook POSTs, Stripe/GitHub style, with the standard library only.

Signature header: ``X-DaemonHealth-Signature: t=<unix seconds>,v1=<hex>`` where
hex = HMAC-SHA256(secret, "<t>." + raw body). Receivers recompute it and
reject old timestamps, which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "X-DaemonHealth-Signature"
EVENT_ID_HEADER = "X-DaemonHealth-Event-Id"
USER_AGENT = "daemon-health-alerts/1"
# Worth another try: the receiver is busy, overloaded or briefly broken.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (a 3xx failure), not an instruction to re-POST elsewhere."""

    def redirect_request(self, *_args, **_kwargs):
        return None


# No environment proxies either: alerts go exactly where ALERT_WEBHOOK_URLS says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry: bool
    detail: str


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def post(url: str, payload: dict[str, Any], *, secret: str, timeout: float) -> Outcome:
    """POST one alert; never raises. Any 2xx is delivered."""
    body = encode(payload)
    # Wall-clock time, not the service clock: receivers compare it with their own.
    timestamp = int(time.time())
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            EVENT_ID_HEADER: str(payload.get("id", "")),
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Outcome(True, False, f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        exc.close()
        return Outcome(False, exc.code in RETRYABLE_STATUSES, f"HTTP {exc.code}")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Outcome(False, True, f"{type(reason).__name__}: {reason}"[:300])
