"""Gunicorn settings; every value can be overridden from the environment."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Sync workers: each request is a few milliseconds of database work.
worker_class = "sync"
timeout = 30
# On SIGTERM, finish in-flight requests before exiting.
graceful_timeout = 20
accesslog = "-"
# No query strings in the access log: nothing secret belongs there, but be safe.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


def on_starting(server):
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    if server.cfg.workers > 1 and storage.startswith("memory://"):
        server.log.warning(
            "RATELIMIT_STORAGE_URI is %s with %d workers: each worker counts on its own. "
            "Use redis://... to share the limit.",
            storage,
            server.cfg.workers,
        )
