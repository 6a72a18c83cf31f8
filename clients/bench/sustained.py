"""`exchange bench sustained`: open-loop offered load against the full mesh.

K load processes each offer rate/K orders a second for a fixed time, on a fixed
schedule that does not wait for answers (open loop), so a slow exchange cannot slow
the load down and hide its own queueing. An order's latency runs from the earlier of
its scheduled and actual send time to its acknowledgement (Accepted or Rejected in
an execution report): a sender that falls behind is charged for it, which is the
correction for coordinated omission. Latencies go into HDR histograms (3
significant digits), merged across processes.

The flow keeps books and positions bounded for any duration: each process trades
with itself across two accounts, in cycles of four orders on one symbol at its
reference price (A buys, B sells into it, B buys, A sells into it), rotating over
the symbols. Every second order fills, so the run exercises matching, fills and
both sides' reports, not just resting. The two sessions are two connections, so the
gateway may take a cycle's orders out of order; A's sell can then meet A's own bid,
and with the default self-trade prevention (cancel the incoming order) the bid it
spared would rest for good: 10 s at 20,000/s piled up 5,000 such orders and hit the
open-order limit. The flow's orders cancel the resting order instead, so whatever
the order of arrival every sell takes a bid away and the books stay shallow.

"max" is closed loop instead: each process keeps ``window`` orders outstanding and
sends the next as soon as one is answered; its achieved rate is the ceiling. By
Little's law the window must cover the ceiling times the latency at it (about 40 ms
here with fsync on), or the window, not the exchange, sets the ceiling: 500 capped
it near 21,000/s where 1,000 reaches 23,000/s.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import zmq
from hdrh.histogram import HdrHistogram

from clients.bench.cluster import Mesh, free_port
from clients.bench.engine import loop_ns
from clients.bench.relay import Relay
from clients.bench.together import run_together
from clients.client import Client
from services.common.codec import encode, reply_decoder
from services.common.frames import NOBLOCK, recv_frames, send_frame
from services.common.runtime import batch_io_threads
from services.common.wire import (
    Accepted,
    PlaceOrder,
    Reject,
    Rejected,
    Report,
    Reports,
    RequestRejected,
    Side,
    Stp,
)

PASSWORD = "Load.pw1"
DEFAULT_RATES: tuple[int | None, ...] = (1_000, 5_000, 10_000, 20_000, None)  # None: max
LATENCY_MAX_US = 60_000_000
EARLY_S = 0.001  # an order may leave up to 1 ms before its slot (timed from its send)
ANSWERS = (Accepted, Rejected)
DRAIN_S = 10.0  # how long to wait for the last answers after the last send
# seconds per rate: at 1,000 orders/s a 4 s run left p99.9 to its 4 slowest orders, and
# one stall of the disk's cache flush (up to 0.2 s on this VM) to set a run's p99
DURATION_S = 10.0
# the host's speed just before each rate (ns per empty Python loop, as `bench engine`
# prints): steal shows the CPU the hypervisor took, this how fast what is left runs;
# on this project's VM it went from 9 to 45 ns within a day, and latency with it
HOST_PROBE_LOOPS = 1_000_000
# what each of a rate's repeated runs keeps beside the median run's figures
REPEAT_KEYS = (
    "achieved_per_s",
    "rejected",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "steal_pct",
    "loop_ns",
    "load_cpu_us",
    "service_cpu_us",
)
# what each of a rate's relay runs keeps beside its median's figures
FLOOR_REPEAT_KEYS = ("achieved_per_s", "p50_ms", "p99_ms", "steal_pct", "loop_ns")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, 3)


def _cycle(symbols: list[tuple[str, int, int]], i: int) -> tuple[int, int, int, int, int]:
    """(session index, side, symbol index, qty, price) of order ``i`` in the flow."""
    step = i % 4
    s = (i // 4) % len(symbols)
    _, price, lot = symbols[s]
    session = (0, 1, 1, 0)[step]
    side = Side.BUY if step in (0, 2) else Side.SELL
    return session, side, s, lot, price


def _load(
    endpoint: str,
    names: tuple[str, str],
    symbols: list[tuple[str, int, int]],
    rate: float | None,
    count: int,
    window: int,
    tag: str,
    login: bool,
    start,
    results,
) -> None:
    """One load process: send ``count`` orders, report a histogram and counters
    (``login``: as the names' sessions; without, on bare connections, for the relay).

    Its ZeroMQ I/O thread runs as SCHED_BATCH, as the services' do: otherwise every
    send woke it ahead of this loop, and at 10,000 orders/s the load took 21-23 us of
    CPU per order from the cores the exchange runs on (17-18 us batched). Latency
    still runs from the send call, so whatever the I/O thread holds back is charged."""
    batch_io_threads(zmq.Context.instance())
    if login:
        clients = [Client(endpoint, timeout=30) for _ in names]
        for client, name in zip(clients, names, strict=True):
            client.login(name, PASSWORD)
        socks = [c.socket for c in clients]
    else:
        clients = []
        socks = [zmq.Context.instance().socket(zmq.DEALER) for _ in names]
        for sock in socks:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    prefix = f"{tag}-"
    orders = []
    for i in range(count):
        session, side, s, qty, price = _cycle(symbols, i)
        orders.append(
            (
                session,
                encode(
                    PlaceOrder(
                        f"{prefix}{i}", symbols[s][0], side, qty, price, stp=Stp.CANCEL_RESTING
                    )
                ),
            )
        )
    started = [0.0] * count
    hist = new_histogram()
    accepted = answered = sent = 0
    rejects: dict[int, int] = {}  # reject code -> count
    start.wait()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    interval = 1.0 / rate if rate else 0.0
    first_send = t0
    last_answer = t0
    deadline = None
    while answered < count:
        now = time.perf_counter()
        if sent < count:
            if rate:
                horizon = now + EARLY_S
                while sent < count and t0 + sent * interval <= horizon:
                    session, frame = orders[sent]
                    send_frame(socks[session], frame)
                    started[sent] = min(t0 + sent * interval, time.perf_counter())
                    sent += 1
            else:
                while sent < count and sent - answered < window:
                    session, frame = orders[sent]
                    send_frame(socks[session], frame)
                    started[sent] = time.perf_counter()
                    sent += 1
            if sent == count:
                deadline = time.perf_counter() + DRAIN_S
        elif deadline is not None and now > deadline:
            break
        for sock, _ in poller.poll(1):
            while True:
                try:
                    (frame,) = recv_frames(sock, NOBLOCK)
                except zmq.Again:
                    break
                at = time.perf_counter()
                reply = reply_decoder.decode(frame)
                kind = type(reply)
                if kind is Report or kind is Reports:
                    answers = [
                        (e.cl_ord_id, 0 if type(e) is Accepted else e.code)
                        for report in (reply.reports if kind is Reports else (reply,))
                        for e in report.events
                        if type(e) in ANSWERS and e.cl_ord_id.startswith(prefix)
                    ]
                elif isinstance(reply, RequestRejected) and reply.ref.startswith(prefix):
                    answers = [(reply.ref, reply.code)]
                else:
                    continue
                for cl_ord_id, code in answers:
                    i = int(cl_ord_id[len(prefix) :])
                    hist.record_value(max(1, int((at - started[i]) * 1e6)))
                    answered += 1
                    last_answer = at
                    if code:
                        rejects[code] = rejects.get(code, 0) + 1
                    else:
                        accepted += 1
    cpu = _cpu_s() - cpu0
    for client in clients:
        client.logout()
        client.close()
    if not login:
        for sock in socks:
            sock.close(0)
    results.put(
        {
            "cpu_s": cpu,
            "hist": hist.encode(),
            "sent": sent,
            "accepted": accepted,
            "rejects": rejects,
            "unanswered": count - answered,
            "first_send": first_send,
            "last_answer": last_answer,
        }
    )


def _cpu_s() -> float:
    """This process's CPU seconds so far, every thread's (ZeroMQ's I/O thread too)."""
    t = os.times()
    return t.user + t.system


def cpu_ticks() -> tuple[int, int] | None:
    """(all CPU ticks, ticks stolen by the hypervisor) from /proc/stat; None off Linux.

    On a virtual machine the host can run something else on our CPUs (``steal``), and
    a latency figure is only comparable with another taken at a like steal."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(f) for f in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(fields), fields[7] if len(fields) == 8 else 0


def service_ticks(mesh: Mesh) -> dict[str, int]:
    """Each running service's CPU so far, in clock ticks: utime + stime from
    /proc/<pid>/stat (every thread's); a service that has exited is left out."""
    ticks = {}
    for name, service in mesh.services.items():
        try:
            with open(f"/proc/{service.pid}/stat") as fh:
                # the fields after the command name (which may hold spaces), from state
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError, AssertionError):
            continue
        ticks[name] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def service_cpu_us(before: dict[str, int], after: dict[str, int], orders: int) -> dict:
    """CPU microseconds each service took per order over a rate (``total``: their sum)."""
    per_tick = 1e6 / os.sysconf("SC_CLK_TCK") / max(1, orders)
    cpu = {n: round((after[n] - before[n]) * per_tick, 1) for n in before if n in after}
    cpu["total"] = round(sum(cpu.values()), 1)
    return cpu


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round(100 * (after[1] - before[1]) / (after[0] - before[0]), 2)


def _symbols(cfg) -> list[tuple[str, int, int]]:
    return [(name, spec.reference, spec.lot) for name, spec in cfg.symbols.items()]


def measure(
    mesh: Mesh,
    rate: int | None,
    duration: float,
    processes: int,
    run: int,
    window: int = 1_000,
    max_count: int = 60_000,
    relay: Relay | None = None,
) -> dict:
    """One offered rate (None: as fast as possible) for ``duration`` seconds, against
    the mesh or, given ``relay``, against the relay with the same load."""
    endpoint = relay.front if relay else mesh.cfg.endpoints["gateway"]
    symbols = _symbols(mesh.cfg)
    per_process = int(rate * duration / processes) if rate else max_count // processes
    arglists = [
        (
            endpoint,
            (f"load{p}a", f"load{p}b"),
            symbols,
            rate / processes if rate else None,
            per_process,
            window,
            f"{'f' if relay else 'r'}{run}p{p}",
            relay is None,
        )
        for p in range(processes)
    ]
    speed = loop_ns(HOST_PROBE_LOOPS)
    ticks = cpu_ticks()
    services = None if relay else service_ticks(mesh)
    parts = run_together(_load, arglists, timeout=duration * 3 + 60)
    services_after = None if relay else service_ticks(mesh)
    steal = steal_pct(ticks, cpu_ticks())
    hist = new_histogram()
    for part in parts:
        hist.decode_and_add(part["hist"])
    accepted = sum(p["accepted"] for p in parts)
    elapsed = max(p["last_answer"] for p in parts) - min(p["first_send"] for p in parts)
    rejects: dict[str, int] = {}
    for part in parts:
        for code, n in part["rejects"].items():
            name = Reject(code).name
            rejects[name] = rejects.get(name, 0) + n
    sent = sum(p["sent"] for p in parts)
    row = {
        "offered_per_s": rate,
        "achieved_per_s": round(accepted / elapsed) if elapsed > 0 else 0,
        "sent": sent,
        "accepted": accepted,
        "rejected": sum(rejects.values()),
        "rejects": rejects,
        "unanswered": sum(p["unanswered"] for p in parts),
        "p50_ms": hist.get_value_at_percentile(50) / 1000,
        "p99_ms": hist.get_value_at_percentile(99) / 1000,
        "p999_ms": hist.get_value_at_percentile(99.9) / 1000,
        "max_ms": hist.get_max_value() / 1000,
        "steal_pct": steal,
        "loop_ns": speed,
        # what the load itself took from the same two cores, per order sent
        "load_cpu_us": round(1e6 * sum(p["cpu_s"] for p in parts) / max(1, sent), 1),
    }
    if services is not None and services_after is not None:
        # what the exchange's own processes took per order sent, each and in total
        row["service_cpu_us"] = service_cpu_us(services, services_after, sent)
    return row


def median_run(runs: list[dict]) -> dict:
    """The run whose p99 is the median (the upper one of an even count), with every
    run's figures beside it under ``repeats``: one stall of the host can set a 10 s
    run's p99 (340 ms at 10,000/s in one run, 42 ms at 20,000/s in the next), so with
    ``repeat`` > 1 the headline is the middle run, never the best, and all are kept."""
    row = dict(sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2])
    row["repeats"] = [{k: r[k] for k in REPEAT_KEYS if k in r} for r in runs]
    return row


def with_floor(row: dict, floor_runs: list[dict]) -> dict:
    """The mesh's ``row`` with the relay's figures at the same rate beside it (its
    median run, chosen as the mesh's is) and the mesh's as multiples of them."""
    f = median_run(floor_runs) if len(floor_runs) > 1 else floor_runs[0]
    row.update(
        floor_achieved_per_s=f["achieved_per_s"],
        floor_p50_ms=f["p50_ms"],
        floor_p99_ms=f["p99_ms"],
        floor_p999_ms=f["p999_ms"],
        floor_unanswered=f["unanswered"],
        p50_vs_floor=round(row["p50_ms"] / f["p50_ms"], 2) if f["p50_ms"] else None,
        p99_vs_floor=round(row["p99_ms"] / f["p99_ms"], 2) if f["p99_ms"] else None,
        achieved_vs_floor=round(row["achieved_per_s"] / max(1, f["achieved_per_s"]), 3),
        floor_repeats=[{k: r[k] for k in FLOOR_REPEAT_KEYS} for r in floor_runs],
    )
    return row


def _say_run(row: dict, what: str, progress) -> None:
    print(
        f"    {what}achieved {row['achieved_per_s']:,}/s, p50 {row['p50_ms']:.2f} ms, "
        f"p99 {row['p99_ms']:.2f} ms, p99.9 {row['p999_ms']:.2f} ms, "
        f"host steal {_pct(row['steal_pct'])}, loop {row['loop_ns']:.1f} ns",
        file=progress,
        flush=True,
    )


def run_mesh(
    fsync: bool,
    rates=DEFAULT_RATES,
    duration: float = DURATION_S,
    processes: int = 1,
    progress=sys.stderr,
    repeat: int = 1,
    floor: bool = True,
    root: Path | None = None,
) -> dict:
    """Every rate, ``repeat`` times each, against one fresh mesh with the journal's
    fsync on or off; with ``floor``, each run followed by one against the relay
    (clients/bench/relay.py) with the same fsync and sync pacing, so the two alternate
    under the same host conditions. ``root``: another checkout's services instead."""
    home = Path(tempfile.mkdtemp(prefix="exs-", dir="/tmp"))
    # the load's two sessions offer up to the exchange's ceiling: the per-session and
    # per-account rate limits (a policy, [security]) are lifted to measure capacity
    unlimited = {
        "session_rate": 10**9,
        "account_rate": 10**9,
        "max_in_flight_per_account": 10**6,
    }
    # the hot standby runs, as under `make run`: it applies every commit, so it takes
    # its share of the cores (about 10 us of CPU per order here) from the order path
    # and the load accounts open with ample cash: a run of many rates on one mesh
    # drifts their cash, and buying-power rejects are not what this measures
    ample = {"opening_cash": "1000000000000.00"}
    where = {"root": root} if root else {}
    mesh = Mesh(
        home, standby=True, journal={"fsync": fsync}, security=unlimited, risk=ample, **where
    )
    relay = None
    rows = []
    try:
        mesh.start()
        if floor:
            relay = Relay(
                home / "relay",
                f"tcp://127.0.0.1:{free_port()}",
                fsync,
                mesh.cfg.journal.min_sync_interval_us,
            ).start()
        endpoint = mesh.cfg.endpoints["gateway"]
        with Client(endpoint, timeout=30) as client:
            for p in range(processes):
                client.signup(f"load{p}a", PASSWORD)
                client.signup(f"load{p}b", PASSWORD)
        for i, rate in enumerate(rates):
            label = f"{rate:,}/s" if rate else "max"
            runs, floor_runs = [], []
            for k in range(repeat):
                of = f" (run {k + 1}/{repeat})" if repeat > 1 else ""
                print(
                    f"  fsync {'on' if fsync else 'off'}, {label}{of} ...",
                    file=progress,
                    flush=True,
                )
                n = i * repeat + k
                row = measure(mesh, rate, duration, processes, n)
                runs.append(row)
                _say_run(row, "", progress)
                if relay is not None:
                    floor_row = measure(mesh, rate, duration, processes, n, relay=relay)
                    floor_runs.append(floor_row)
                    _say_run(floor_row, "floor: ", progress)
            row = median_run(runs) if repeat > 1 else runs[0]
            rows.append(with_floor(row, floor_runs) if floor_runs else row)
    finally:
        if relay is not None:
            relay.stop()
        mesh.stop()
        shutil.rmtree(home, ignore_errors=True)  # a journal and a 64 MiB spare
    result = {
        "fsync": fsync,
        "max_orders_per_s": max(r["achieved_per_s"] for r in rows),
        "rates": rows,
    }
    if floor:
        result["floor_max_orders_per_s"] = max(r["floor_achieved_per_s"] for r in rows)
    return result


def run(
    rates=DEFAULT_RATES,
    duration: float = DURATION_S,
    processes: int = 1,
    fsync_off: bool = True,
    progress=sys.stderr,
    repeat: int = 1,
    floor: bool = True,
) -> dict:
    """fsync on (the headline) and, unless told not to, fsync off beside it; each
    rate ``repeat`` times, reported by its median run (see ``median_run``), and with
    ``floor`` the relay's figures and the ratios to them (see ``with_floor``)."""
    on = run_mesh(True, rates, duration, processes, progress, repeat, floor)
    result = {
        "max_orders_per_s": on["max_orders_per_s"],
        "rates": on["rates"],
        "duration_s": duration,
        "processes": processes,
        "repeat": repeat,
        "runs": [on],
    }
    if fsync_off:
        result["runs"].append(run_mesh(False, rates, duration, processes, progress, repeat, floor))
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{one_decimal(value)}%"


def one_decimal(value: float | None) -> str:
    """A host reading for a table: "n/a" where there is none."""
    return "n/a" if value is None else f"{value:.1f}"


def p99_of_runs(row: dict) -> str:
    """Every run's p99 of a repeated rate, in running order ("" for a single run)."""
    return ", ".join(f"{r['p99_ms']:.2f}" for r in row.get("repeats", ()))


def render(result: dict) -> str:
    repeat = result.get("repeat", 1)
    of = f", each rate {repeat} times: the median run's figures" if repeat > 1 else ""
    lines = [
        f"sustained load: {result['processes']} load processes, "
        f"{result['duration_s']:g} s per rate{of}, latency = order to acknowledgement",
        f"{'fsync':>6} {'offered/s':>10} {'achieved/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'p99.9 ms':>9} {'max ms':>8} {'rejected':>9} {'unanswered':>11} {'steal':>6} "
        f"{'loop ns':>8} {'load us':>8} {'svc us':>7} {'floor p50':>10} {'floor p99':>10} "
        f"{'p50/floor':>10} {'p99/floor':>10}" + ("  p99 of each run" if repeat > 1 else ""),
    ]
    for run in result["runs"]:
        for r in run["rates"]:
            offered = f"{r['offered_per_s']:,}" if r["offered_per_s"] else "max"
            lines.append(
                f"{'on' if run['fsync'] else 'off':>6} {offered:>10} {r['achieved_per_s']:>11,} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['p999_ms']:>9.2f} "
                f"{r['max_ms']:>8.2f} {r['rejected']:>9} {r['unanswered']:>11} "
                f"{_pct(r.get('steal_pct')):>6} {one_decimal(r.get('loop_ns')):>8} "
                f"{one_decimal(r.get('load_cpu_us')):>8} "
                f"{one_decimal(r.get('service_cpu_us', {}).get('total')):>7} "
                f"{floor_cells(r, '>10')}  "
                f"{p99_of_runs(r)}"
            )
    lines.append(f"max_orders_per_s (fsync on): {result['max_orders_per_s']:,}")
    if "floor_max_orders_per_s" in result["runs"][0]:
        lines.append(
            f"floor: the same load through a bare relay (clients/bench/relay.py), "
            f"max {result['runs'][0]['floor_max_orders_per_s']:,}/s with fsync on"
        )
    return "\n".join(lines)


def floor_cells(row: dict, spec: str = "") -> str:
    """The relay's p50 and p99 and the mesh's as multiples of them ("-" without)."""
    if "floor_p50_ms" not in row:
        return " ".join(format("-", spec) for _ in range(4))
    return " ".join(
        format(cell, spec)
        for cell in (
            f"{row['floor_p50_ms']:.2f}",
            f"{row['floor_p99_ms']:.2f}",
            f"{row['p50_vs_floor']:.1f}x",
            f"{row['p99_vs_floor']:.1f}x",
        )
    )
