"""Gunicorn settings; every value can be overridden from the environment."""

import json
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn import util

_OWN_METRICS_DIR_PREFIX = "daemon-health-metrics-"

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Sync workers: each request is a few milliseconds of database work.
worker_class = "sync"
timeout = 30
# On SIGTERM, finish in-flight requests before exiting.
graceful_timeout = 20
# gunicorn's control socket has one default path per user, which two instances
# on a host would fight over; this service does not use it.
control_socket_disable = True
accesslog = "-"
# No query strings in the access log: nothing secret belongs there, but be safe.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


# The master imports the app before it opens the port, and each worker starts as a
# fork of it. Without this the port accepts connections while the workers are still
# importing the app (seconds on a busy host): in a rolling restart, nginx would send
# requests to an instance that cannot answer them yet instead of to the other one.
# The app opens its database and Redis connections lazily, in each worker. (Workers
# restarted with SIGHUP keep the master's code: deploy new code with a restart.)
preload_app = True

# Request metrics are shared across workers through files in this folder. It is set
# when gunicorn reads this file, before the master imports the app (preload_app).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_OWN_METRICS_DIR_PREFIX)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


def on_starting(server):
    # The folder starts empty: no counts from an earlier run of the service.
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for leftover in metrics_dir.glob("*.db"):
        leftover.unlink()
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    if server.cfg.workers > 1 and storage.startswith("memory://"):
        server.log.warning(
            "RATELIMIT_STORAGE_URI is %s with %d workers: each worker counts on its own. "
            "Use redis://... to share the limit.",
            storage,
            server.cfg.workers,
        )


def post_fork(server, worker):
    # A request gunicorn cannot parse (a bad request line or header, a header or URL
    # over its limits, Content-Length beside Transfer-Encoding) never reaches the app:
    # the worker answers it through util.write_error, with an HTML page. Answer it in
    # the API's {"error": ...} shape instead, with the same status.
    if not callable(getattr(util, "write_error", None)):
        raise RuntimeError("gunicorn.util.write_error is gone: update post_fork in gunicorn.conf.py")
    util.write_error = _write_json_error


def _write_json_error(sock, status_int, reason, mesg):
    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": message}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""))
    if metrics_dir.name.startswith(_OWN_METRICS_DIR_PREFIX):
        shutil.rmtree(metrics_dir, ignore_errors=True)
