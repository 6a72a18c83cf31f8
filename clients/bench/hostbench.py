"""`exchange bench cluster`: the one-host mesh beside three hosts, in one run.

Both get the same open-loop load as `exchange bench sustained` (its measurement,
run for the cluster inside a fourth network namespace, through host a's gateway):
p50/p99 per offered rate and the closed-loop maximum. Then whole-host failover on
the cluster: two SDK traders (one starting on each gateway, moving on 0.3 s of silence)
send orders one at a time while the primary matcher's host loses power (every process
in its namespace SIGKILLed), again and again; each time the host comes back before
the next. The host to power off is the one whose matcher answers a state query as
primary. A power loss's unavailability is the longest silence any trader saw between two
acknowledgements in the seconds after it; then the journals are audited:
every acknowledged order exactly once at its seq (``lost``, ``duplicated``).

Needs root, iproute2 and etcd (`make etcd`), like tests/test_cluster_hosts.py.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clients.bench import sustained
from clients.bench.hosts import CLIENT, LAYOUT, Cluster, audit
from clients.bench.netns import unavailable
from clients.bench.proccpu import ticks_by_host

RATES: tuple[int | None, ...] = (1_000, 5_000, 10_000, None)  # None: max
DURATION_S = 10.0
# the load lifts the per-session and per-account limits and opens with ample cash,
# as `exchange bench sustained` does: it measures capacity, not policy
UNLIMITED = (
    "session_rate = 1000000000\naccount_rate = 1000000000\nmax_in_flight_per_account = 1000000\n"
)
AMPLE = '\n[risk]\nopening_cash = "1000000000000.00"\n'


def _say(progress, text: str) -> None:
    print(text, file=progress, flush=True)


def cluster_rates(cluster: Cluster, rates, duration: float, progress) -> dict:
    cluster.inside(CLIENT, "signup", "1")
    rows = []
    for i, rate in enumerate(rates):
        label = f"{rate:,}/s" if rate else "max"
        _say(progress, f"  cluster, {label} ...")
        homes = {host: cluster.home(host) for host in LAYOUT}
        before = ticks_by_host(homes)
        row = cluster.inside(
            CLIENT, "measure", str(rate or "max"), str(duration), "--run", str(i),
            timeout=duration * 3 + 120,
        )  # fmt: skip
        # what every process of the three hosts took per order sent (etcd and
        # supervisord included), beside the one-host mesh's ``service_cpu_us``
        row["service_cpu_us"] = sustained.service_cpu_us(before, ticks_by_host(homes), row["sent"])
        _say(progress, f"    p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                       f"{row['achieved_per_s']:,}/s, "
                       f"{row['service_cpu_us']['total']} us CPU per order")  # fmt: skip
        rows.append(row)
    return {"max_orders_per_s": max(r["achieved_per_s"] for r in rows), "rates": rows}


def host_failover(cluster: Cluster, kills: int, interval: float, progress) -> dict:
    seconds = kills * (interval + 12) + 10  # a kill's round: power off, elect, boot
    a, b = (f"tcp://{cluster.hosts.address(h)}:5555" for h in ("a", "b"))
    outs = [
        cluster.load("fa", seconds, rate=200, gateways=f"{a},{b}", silence=0.3),
        cluster.load("fb", seconds, rate=200, gateways=f"{b},{a}", silence=0.3),
    ]
    time.sleep(interval)
    kill_times = []
    for k in range(kills):
        # the primary as it answers for itself (a state query only a primary answers),
        # not as a status table last heard it
        state = {}
        while not state.get("instance"):
            state = cluster.state()
        service = f"matcher-{state['instance']}"
        host = next(h for h, services in LAYOUT.items() if service in services)
        _say(progress, f"  host failover {k + 1}/{kills}: power off {host} ({service})")
        kill_times.append(time.monotonic())
        cluster.power_off(host)
        cluster.wait_primary(other_than=service, via="c")
        cluster.start(host)
        time.sleep(interval)
    cluster.wait_loads(timeout=seconds + 120)
    # each power loss's outage: the longest any trader went without an answer in the
    # seconds after it (its processes take a moment to die, so the silence starts a
    # little after the kill, not at it)
    traders = [[a["acked"] for a in json.loads(out.read_text())["acks"]] for out in outs]
    outages = []
    for at in kill_times:
        gaps = [
            b - a
            for acked in traders
            for a, b in zip(acked, acked[1:], strict=False)
            if b > at and a < at + interval
        ]
        if gaps:
            outages.append(round(max(gaps) * 1000, 1))
    checked = audit(cluster, outs)
    return {
        "kills": kills,
        "unavailability_ms": {
            "p50": statistics.median(outages) if outages else None,
            "max": max(outages, default=None),
            "each": outages,
        },
        "lost": checked["lost"],
        "duplicated": checked["duplicated"],
        "acknowledged": checked["acknowledged"],
        "journals_identical": checked["journals_identical"],
        "differ_at": checked["differ_at"],
        "replay_matches": checked["replay_matches"],
    }


def run(
    rates=RATES,
    duration: float = DURATION_S,
    kills: int = 5,
    interval: float = 3.0,
    progress=sys.stderr,
    fsync: bool = True,
) -> dict:
    why = unavailable() or (None if shutil.which("etcd") else "etcd is not installed")
    if why:
        raise RuntimeError(f"cannot run the cluster here: {why}")
    _say(progress, "one host ...")
    single = sustained.run_mesh(fsync, rates, duration, progress=progress, floor=False)
    base = Path(tempfile.mkdtemp(prefix="exc-", dir="/tmp"))
    try:
        _say(progress, "three hosts (network namespaces) ...")
        extra = AMPLE + ("" if fsync else "\n[journal]\nfsync = false\n")
        with Cluster(base, security=UNLIMITED, extra=extra) as cluster:
            result = cluster_rates(cluster, rates, duration, progress)
            failover = host_failover(cluster, kills, interval, progress)
    except BaseException:
        _say(progress, f"kept {base} for a look")
        raise
    if failover["journals_identical"] and failover["replay_matches"]:
        shutil.rmtree(base, ignore_errors=True)
    else:
        _say(progress, f"the journals disagree: kept {base} for a look")
    return {
        "duration_s": duration,
        "fsync": fsync,
        "single": {"max_orders_per_s": single["max_orders_per_s"], "rates": single["rates"]},
        "cluster": result,
        "host_failover": failover,
    }


def render(result: dict) -> str:
    lines = [
        "| offered/s | one host p50 | p99 | CPU µs/order | three hosts p50 | p99 | CPU µs/order |",
        "|---|---|---|---|---|---|---|",
    ]
    for one, three in zip(result["single"]["rates"], result["cluster"]["rates"], strict=True):
        offered = f"{one['offered_per_s']:,}" if one["offered_per_s"] else "max"
        lines.append(
            f"| {offered} | {one['p50_ms']:.2f} ms | {one['p99_ms']:.2f} ms | "
            f"{_cpu(one)} | {three['p50_ms']:.2f} ms | {three['p99_ms']:.2f} ms | "
            f"{_cpu(three)} |"
        )
    f = result["host_failover"]
    u = f["unavailability_ms"]
    lines += [
        "",
        f"max orders/s: one host {result['single']['max_orders_per_s']:,}, "
        f"three hosts {result['cluster']['max_orders_per_s']:,}",
        f"whole-host failover over {f['kills']} kills: unavailability p50 {u['p50']} ms, "
        f"max {u['max']} ms; lost {f['lost']}, duplicated {f['duplicated']} "
        f"of {f['acknowledged']} acknowledged",
    ]
    return "\n".join(lines)


def _cpu(row: dict) -> str:
    total = row.get("service_cpu_us", {}).get("total")
    return "-" if total is None else f"{total:.0f}"
