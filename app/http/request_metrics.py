"""Request counts and latencies, labelled by route (never by raw path).

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py before the
app is imported) makes every worker write its samples to files there, and a
scrape adds them up, whichever worker answers it.
"""

from __future__ import annotations

import time
from functools import lru_cache

from flask import Flask, Response
from prometheus_client import Counter, Histogram

from app.http.context import request_globals, this_request

REQUESTS = Counter(
    "daemon_health_http_requests",
    "HTTP requests answered, by route, method and status code.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "daemon_health_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and method.",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


# Methods outside this set share one label: a client inventing methods must
# not be able to create new time series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@lru_cache(maxsize=None)  # bounded: routes x known methods x status codes
def _series(endpoint: str, method: str, status: int) -> tuple[Counter, Histogram]:
    # Looked up once per combination: labels() validates and locks on every call.
    return REQUESTS.labels(endpoint, method, str(status)), LATENCY.labels(endpoint, method)


def _start_timer() -> None:
    request_globals().metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = request_globals().pop("metrics_started", None)
    req = this_request()
    rule, method = req.url_rule, req.method
    # The route template ("/api/daemon/<daemon_id:daemon_id>"), so ids never become labels.
    endpoint = rule.rule if rule is not None else "unmatched"
    method = method if method in KNOWN_METHODS else "other"
    requests, latency = _series(endpoint, method, response.status_code)
    requests.inc()
    if started is not None:
        latency.observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    # First before_request, last after_request: the timer spans the limiter and auth too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe)
