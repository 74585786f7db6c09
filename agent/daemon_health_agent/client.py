"""The service's HTTP API, spoken with urllib only.

Every failure becomes one of three errors, because the heartbeater reacts to
exactly three situations: the service forgot us (register again), the service
is not answering properly right now (back off, honour Retry-After), or it
rejects what we send (no point hurrying: the same request will be rejected
again).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

VERSION = "0.1.0"
DEFAULT_TIMEOUT = 5.0


class AgentError(Exception):
    """A call to the service failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotRegistered(AgentError):
    """404: the service does not know the daemon.

    ``reason`` is what the service says beside the 404 of a heartbeat:
    ``deregistered`` (an operator stopped it on purpose), ``expired`` or
    ``unknown``; None from a service too old to say, or from another endpoint.
    """

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message, status)
        self.reason = reason


class ServiceUnavailable(AgentError):
    """Worth retrying later: connection error, timeout, 408, 429 or 5xx.

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


class LeaseHeld(AgentError):
    """409: another daemon's session holds the lease; ``holder`` names it."""

    def __init__(self, message: str, status: int | None = None, holder: str | None = None):
        super().__init__(message, status)
        self.holder = holder


class RequestRejected(AgentError):
    """Any other answer (400, 401, 413, 415, a redirect...): retrying soon will not help."""


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with a ``Z``, as the service asks (``2026-01-25T12:00:00.123Z``)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would carry X-API-Key to wherever it points (and urllib turns a
    # redirected POST into a GET): treat it as an answer, not something to follow.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None


class Client:
    """One method per endpoint the agent needs. Thread-safe: it keeps no connection state."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        # A malformed URL is a configuration error, said once here rather than
        # as a traceback on every retry.
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be http(s)://host[:port], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        # No proxies from the environment (the key should go straight to the
        # service, and a daemon's http_proxy is usually meant for the internet),
        # and no redirects (see above).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)

    def __repr__(self) -> str:  # never show the key, even in a debugger or a traceback
        return f"Client({self.base_url!r})"

    def register(
        self, daemon_id: str, version: str, capabilities: list[str], poll_interval_ms: int
    ) -> dict[str, Any]:
        body = {
            "daemonId": daemon_id,
            "version": version,
            "capabilities": list(capabilities),
            "pollInterval": poll_interval_ms,
            "registeredAt": utc_timestamp(),
        }
        return self._call("POST", "/api/daemon/register", body)

    def heartbeat(
        self,
        daemon_id: str,
        status: str,
        tasks_processed: int,
        current_task: str | None,
        counters: Mapping[str, int | float] | None = None,
    ) -> dict[str, Any]:
        """``counters``: optional ``tasksFailed`` and ``taskTimeMs``, sent only when given."""
        body = {
            "daemonId": daemon_id,
            "status": status,
            "tasksProcessed": tasks_processed,
            "currentTask": current_task,
            "lastHeartbeat": utc_timestamp(),
            **(counters or {}),
        }
        return self._call("POST", "/api/daemon/heartbeat", body)

    def deregister(self, daemon_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/daemon/{urllib.parse.quote(daemon_id, safe='')}")

    def acquire_lease(self, name: str, daemon_id: str) -> dict[str, Any]:
        """The lease for ``daemon_id``'s current session: ``{"name", "holder", "token", ...}``."""
        return self._call("POST", _lease_path(name), {"daemonId": daemon_id})

    def release_lease(self, name: str, daemon_id: str) -> None:
        query = urllib.parse.urlencode({"daemonId": daemon_id})
        self._call("DELETE", f"{_lease_path(name)}?{query}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {
            "X-API-Key": self._api_key,
            "Accept": "application/json",
            "User-Agent": f"daemon-health-agent/{VERSION}",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        where = f"{method} {path}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _json(response.read())
        except urllib.error.HTTPError as exc:
            with exc:  # an unclosed error response leaks its socket
                try:
                    raw = exc.read()
                except (http.client.HTTPException, OSError):
                    raw = b""  # the status says enough
                raise _http_error(where, exc.code, exc.headers, raw) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # Refused, reset, DNS, TLS, timeout (TimeoutError is an OSError): all "not now".
            reason = getattr(exc, "reason", exc)
            raise ServiceUnavailable(f"{where}: {type(reason).__name__}: {reason}") from None


def _lease_path(name: str) -> str:
    return f"/api/leases/{urllib.parse.quote(name, safe='')}"


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _http_error(where: str, status: int, headers: Any, raw: bytes) -> AgentError:
    body = _json(raw)
    message = f"{where}: HTTP {status}: {body.get('error', '')}".rstrip(": ")
    if status == 404:
        reason = body.get("reason")
        return NotRegistered(message, status, reason if isinstance(reason, str) else None)
    if status == 409:
        return LeaseHeld(message, status, body.get("holder"))
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
        return ServiceUnavailable(message, status, retry_after)
    return RequestRejected(message, status)
