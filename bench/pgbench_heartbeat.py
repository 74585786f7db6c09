"""The heartbeat's UPDATE alone under pgbench: what one Postgres primary can take.

    .venv/bin/python bench/pgbench_heartbeat.py [--daemons 10000] [--clients 8] [--seconds 20]

Makes a scratch database on the Postgres named by TEST_POSTGRES_URL (``alembic
upgrade head``), seeds ``--daemons`` live daemons with plain SQL, and runs
``pgbench`` with a custom script: the service's own prebuilt heartbeat UPDATE
(app/registry/service.py, compiled for Postgres), each run as its own
transaction, against a random daemon, over ``-M prepared`` (psycopg also
prepares a statement it runs often). Its bound parameters become SQL values or
pgbench variables. Prints pgbench's report: transactions per second are
heartbeats per second for the database alone (no HTTP, no Python). Needs
``pgbench`` (Debian's postgresql-client) on PATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seed import insert_daemons, libpq_url  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402

from app.registry import service  # noqa: E402
from tests.support.postgres import migrate, scratch_database  # noqa: E402

# What each bound parameter of the heartbeat UPDATE becomes in the pgbench script: a
# healthy daemon's steady beat (its status unchanged, so the single-UPDATE path), by an
# admin key (no owner check), with growing counters. :n and :tasks are pgbench variables.
PARAMETERS = {
    "beat_daemon_id": "'daemon_' || lpad(:n::text, 5, '0')",
    "now": "now()",
    "new_expires_at": "now() + interval '60 seconds'",
    "new_reported_heartbeat_at": "now()",
    "new_status": "'healthy'",
    "new_tasks_processed": ":tasks",
    "new_current_task": "'evt_123'",
    "new_tasks_failed": "0",
    "new_task_time_ms": "0.0",
    "any_owner": "true",
    "beat_owner": "NULL",
}


def pgbench_script(daemons: int) -> str:
    """The service's heartbeat UPDATE as a pgbench script over ``daemons`` daemons."""
    sql = str(service._BEAT_SAME_STATUS.statement.compile(dialect=postgresql.dialect(paramstyle="named")))
    unknown = set(re.findall(r":(\w+)", sql)) - PARAMETERS.keys()
    if unknown:
        raise SystemExit(f"the heartbeat UPDATE has parameters this script does not fill: {sorted(unknown)}")
    update = re.sub(r":(\w+)", lambda m: PARAMETERS[m.group(1)], sql)
    return (
        f"\\set n random(0, {daemons - 1})\n"
        "\\set tasks random(0, 1000000)\n"
        f"{update};\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.daemons <= 99_999:
        raise SystemExit("--daemons must be from 1 to 99999 (ids daemon_00000 ...)")
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("pgbench is not on PATH (apt-get install -y postgresql-client)")
    with scratch_database("bench_pgbench_heartbeat") as url, tempfile.TemporaryDirectory() as work:
        migrate(url)
        insert_daemons(url, args.daemons)
        script = Path(work) / "heartbeat.sql"
        script.write_text(pgbench_script(args.daemons))
        command = [pgbench, "-n", "-M", "prepared", "-c", str(args.clients), "-j", str(args.threads),
                   "-T", str(args.seconds), "-P", "5", "-f", str(script), libpq_url(url)]
        print(" ".join(command[:-1]), "<scratch database>", flush=True)
        print(script.read_text(), flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120)
        print(result.stdout)
        print(result.stderr, file=sys.stderr)
        if result.returncode != 0:
            raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
