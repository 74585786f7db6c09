"""gunicorn.conf.py's defaults that the README promises."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import ROOT
from tests.support.processes import service_env

READ_SETTINGS = (
    "import json, runpy; s = runpy.run_path('gunicorn.conf.py'); "
    "print(json.dumps({'bind': s['bind'], 'preload_app': s['preload_app']}))"
)


def test_default_bind_is_loopback_and_the_app_is_loaded_before_the_port_opens(tmp_path):
    # In a process of its own: reading the file sets PROMETHEUS_MULTIPROC_DIR.
    result = subprocess.run(
        [sys.executable, "-c", READ_SETTINGS], cwd=ROOT, capture_output=True, text=True,
        env=service_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics")), timeout=30,
    )
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    # Without nginx in front gunicorn does not defend against slow clients: it listens
    # on loopback unless BIND says otherwise.
    assert settings["bind"] == "127.0.0.1:8000"
    assert settings["preload_app"] is True
