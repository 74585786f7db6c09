"""Rounds of one load on the real service and the ceiling, alternating; the table of them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from cpu import CpuMeter
from tests.support.gunicorn_servers import Gunicorn
from wrk import WRK_THREADS, Load, WrkResult, fmt_ms


@dataclass
class Round:
    wrk: WrkResult
    cpu: dict[str, float]  # ms of CPU per request: worker, postgres, redis


def compare(
    load: Load, servers: list[Gunicorn], rounds: int, duration: float, warmup: float, meter: CpuMeter
) -> bool:
    """Alternate rounds of ``load`` on each server; print the table; True if all 2xx."""
    print(f"\n== {load.label} ==")
    print(
        f"   wrk -t{min(WRK_THREADS, load.connections)} -c{load.connections} -d{duration:g}s --latency, "
        f"{rounds} rounds each, alternating (order flips every round)"
    )
    print("   cpu/req: ms of CPU per request in the gunicorn workers / the Postgres backends / Redis")
    for server in servers:
        load.run(server, warmup)  # warm-up: not counted
    results: dict[str, list[Round]] = {s.name: [] for s in servers}
    print(
        f"{'round':>6}  {'server':<8} {'req/s':>8} {'p50':>8} {'p90':>8} {'p99':>8}  "
        f"{'cpu/req: worker':>15} {'pg':>6} {'redis':>6}  {'non-2xx':>7} {'sock-err':>8}"
    )

    def row(
        label: str,
        name: str,
        rps: float,
        p50: float,
        p90: float,
        p99: float,
        cpu: dict[str, float],
        non_2xx: int,
        sock: int,
    ) -> None:
        print(
            f"{label:>6}  {name:<8} {rps:>8.1f} {fmt_ms(p50):>8} {fmt_ms(p90):>8} {fmt_ms(p99):>8}  "
            f"{cpu['worker']:>15.3f} {cpu['postgres']:>6.3f} {cpu['redis']:>6.3f}  {non_2xx:>7} {sock:>8}"
        )

    for round_no in range(1, rounds + 1):
        order = servers if round_no % 2 else list(reversed(servers))
        for server in order:
            before = meter.snapshot(server)
            r = load.run(server, duration)
            cpu = CpuMeter.per_request_ms(before, meter.snapshot(server), r.requests)
            results[server.name].append(Round(r, cpu))
            row(
                str(round_no),
                server.name,
                r.rps,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                cpu,
                r.non_2xx,
                r.socket_errors,
            )
    medians = {}
    for server in servers:
        rs = results[server.name]
        medians[server.name] = m = {
            "rps": statistics.median(x.wrk.rps for x in rs),
            "p50": statistics.median(x.wrk.p50_ms for x in rs),
            "p90": statistics.median(x.wrk.p90_ms for x in rs),
            "p99": statistics.median(x.wrk.p99_ms for x in rs),
            "cpu": {
                k: statistics.median(x.cpu[k] for x in rs) for k in ("worker", "postgres", "redis")
            },
            "non_2xx": sum(x.wrk.non_2xx for x in rs),
            "sock": sum(x.wrk.socket_errors for x in rs),
            "requests": sum(x.wrk.requests for x in rs),
        }
        row(
            "median",
            server.name,
            m["rps"],
            m["p50"],
            m["p90"],
            m["p99"],
            m["cpu"],
            m["non_2xx"],
            m["sock"],
        )
    print(ratio_line(medians["real"], medians["ceiling"]))
    ok = all(m["non_2xx"] == 0 and m["sock"] == 0 for m in medians.values())
    if not ok:
        print(
            "!! some responses were not 2xx or failed at the socket: the numbers above are not valid"
        )
    return ok


def ratio_line(real: dict, ceiling: dict) -> str:
    if not (real["requests"] and ceiling["requests"]):
        return "ratio real/ceiling: none (a server completed no request: use a longer --duration)"
    real_cpu, ceiling_cpu = sum(real["cpu"].values()), sum(ceiling["cpu"].values())
    return (
        f"ratio real/ceiling of medians: req/s {real['rps'] / ceiling['rps']:.2f}x   "
        f"p50 {real['p50'] / ceiling['p50']:.2f}x   p90 {real['p90'] / ceiling['p90']:.2f}x   "
        f"p99 {real['p99'] / ceiling['p99']:.2f}x   "
        f"CPU/req (worker+pg+redis) {real_cpu:.3f} / {ceiling_cpu:.3f} ms = {real_cpu / ceiling_cpu:.2f}x"
    )
