"""Instructions per heartbeat, counted by valgrind: a measure a busy machine cannot move.

    .venv/bin/python bench/heartbeat_instructions.py [--requests 1000]

Why: on a shared machine req/s (bench/run.py) and even CPU time
(bench/heartbeat_cpu.py) moved by 5-10 % between runs of the same code, more
than the changes being judged. valgrind's callgrind counts the instructions a
process runs, which depends only on the code and its input. Each layer (the
ceiling, the real app with its rate limit unhooked, the real app) runs its
heartbeats through Flask's test client twice under callgrind, once with
``--requests`` more than the other; the difference, divided by ``--requests``,
is what one heartbeat costs, start-up and warm-up cancelled out. Needs Debian's
valgrind. Instructions are not time (a cache miss costs more than an add), so
this ranks changes; bench/run.py still gives the figure that counts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from seed import insert_daemons, libpq_url  # noqa: E402

from heartbeat_cpu import bench_app, body, heartbeat_requests  # noqa: E402
from tests.support.postgres import migrate_with_alembic, scratch_database  # noqa: E402
from tests.support.redis_store import REDIS_URL, delete_redis_keys  # noqa: E402

DAEMONS = 1_000
WARM_UP = 300
KEY = "bench-instructions-key-0000000000"
LAYERS = {
    "ceiling": "ceiling_app (Flask, psycopg_pool, one UPDATE)",
    "unhooked": "real app, rate limit unhooked",
    "real": "real app (Flask-Limiter on Redis through the claims)",
}


class TickingClock:
    """A millisecond later at every reading: the app reads its clock once per request.

    With the system clock, the outage-grace probe's database work (once a
    second) would be counted once per second of valgrind's slow run, so the
    count would move with the machine's speed. At a millisecond per request
    the probe runs once in 1,000 heartbeats, as in a worker serving 1,000 a second.
    """

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        self._now += timedelta(milliseconds=1)
        return self._now


def child(layer: str, requests: int, sa_url: str, prefix: str) -> None:
    """Serve WARM_UP + ``requests`` heartbeats through ``layer`` (run under callgrind)."""
    if layer == "ceiling":
        import ceiling_app

        app = ceiling_app.app
    else:
        app = bench_app(
            sa_url, KEY, storage=REDIS_URL, prefix=prefix, limiter=layer == "real", clock=TickingClock()
        )
    call = heartbeat_requests(app, KEY, [body(i) for i in range(DAEMONS)])
    for i in range(WARM_UP + requests):
        call(i)


def count(layer: str, requests: int, sa_url: str, prefix: str, scratch: Path) -> int:
    """Instructions callgrind counted in a whole run of ``child``."""
    out = scratch / f"{layer}-{requests}.callgrind"
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",  # the same dict layouts in both runs
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=scratch),
        "CEILING_DATABASE_URL": libpq_url(sa_url),
        "CEILING_TTL_SECONDS": "86400",
    }
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         __file__, "--child", layer, str(requests), sa_url, prefix],
        env=env, capture_output=True, text=True, check=False,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or not found:
        raise RuntimeError(f"{layer}: valgrind failed\n{run.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed. On Debian/Ubuntu: apt-get install -y valgrind")
        return 2
    prefix = f"bench-instructions-{os.getpid()}"
    with ExitStack() as stack:
        stack.callback(delete_redis_keys, REDIS_URL, prefix)
        sa_url = stack.enter_context(scratch_database("bench"))
        scratch = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        migrate_with_alembic(sa_url)
        insert_daemons(libpq_url(sa_url), DAEMONS)
        runs = [(layer, n) for layer in LAYERS for n in (0, args.requests)]
        print(f"callgrind, {len(runs)} runs ({WARM_UP} warm-up heartbeats, then 0 or "
              f"{args.requests}); a few minutes ...", flush=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            totals = dict(zip(runs, pool.map(lambda r: count(*r, sa_url, prefix, scratch), runs)))
    per = {layer: (totals[layer, args.requests] - totals[layer, 0]) / args.requests for layer in LAYERS}
    print(f"\n  {'layer':<56} {'instructions/heartbeat':>22} {'vs ceiling':>10}")
    for layer, label in LAYERS.items():
        print(f"  {label:<56} {per[layer]:>22,.0f} {per[layer] / per['ceiling']:>9.2f}x")
    print(f"\n  rate limit (real - unhooked): {per['real'] - per['unhooked']:,.0f}; "
          f"the rest over the ceiling (unhooked - ceiling): {per['unhooked'] - per['ceiling']:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
