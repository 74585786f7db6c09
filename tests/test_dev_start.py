"""bin/dev, the local start `make run` ends in: its curl hint works as pasted in a fresh shell."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.processes import free_port, service_env, stop_process, wait_for_port

KEY = "a-key-of-the-operators-own-0123456789"


def test_the_start_up_hint_is_a_curl_line_that_works_as_pasted(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "prometheus").mkdir()
    env = service_env(
        ADMIN_API_KEY=KEY,
        BIND=f"127.0.0.1:{port}",
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),  # emptied at start: not the db's folder
    )
    server = subprocess.Popen(
        [str(ROOT / "bin" / "dev")], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )
    try:
        hint = ""
        for line in server.stdout:
            if line.startswith("Try: "):
                hint = line.removeprefix("Try: ").strip()
                break
        assert re.fullmatch(rf"curl -H 'X-API-Key: {KEY}' http://127\.0\.0\.1:{port}/api/daemon/health", hint)
        wait_for_port(port, deadline_seconds=30, alive=lambda: server.poll() is None)
        # A new shell with none of the service's variables: the line carries what it needs.
        pasted = subprocess.run(
            ["bash", "-c", hint + " --silent --fail-with-body"], env=service_env(), capture_output=True,
            text=True, timeout=30, check=False,
        )
        assert pasted.returncode == 0, (shlex.quote(hint), pasted.stdout, pasted.stderr)
        assert json.loads(pasted.stdout) == {"activeDaemons": [], "stale": [], "totalActive": 0}
    finally:
        stop_process(server)
        server.stdout.close()
