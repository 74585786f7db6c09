"""Gunicorn settings; every value can be overridden from the environment."""

import os
import shutil
import tempfile
from pathlib import Path

# Request metrics are shared across workers through files in this folder; it
# must be set before the app is imported, and start empty.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="daemon-health-metrics-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

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
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale_file in _metrics_dir.glob("*.db"):
        stale_file.unlink()
    storage = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    if server.cfg.workers > 1 and storage.startswith("memory://"):
        server.log.warning(
            "RATELIMIT_STORAGE_URI is %s with %d workers: each worker counts on its own. "
            "Use redis://... to share the limit.",
            storage,
            server.cfg.workers,
        )


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _metrics_dir.name.startswith("daemon-health-metrics-"):
        shutil.rmtree(_metrics_dir, ignore_errors=True)
