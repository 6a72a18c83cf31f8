"""`exchange bench abuse`: an honest trader's latency beside hostile traders.

One run starts the mesh (with its hot standby, as `make run` does), measures an honest
trader's order-to-acknowledgement latency alone (the baseline), then again while
attackers that use only valid requests and free accounts run beside it: order floods
that never read their answers, fill-or-kill scans over a deep book of one-share
orders, wash trades walking a price, log-in floods against the honest trader's name,
market-data subscribers that never read, and snapshot-request floods. It reports the
honest trader's p50/p99 in both phases and their ratio, what the attackers were told
(reject codes), whether the honest trader could still log in, and whether any service
restarted. Both phases run on the same host minutes apart, so the ratio holds on a
noisy host where absolute figures do not.

The attackers run at nice 19: on a real exchange they sit on other machines, and the
question is what the exchange lets them do to others, not how much CPU their own client
processes take from a 2-core test host.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from clients.bench.cluster import Mesh

PASSWORD = "Secret.pw1"
HONEST_RATE = 100  # honest orders (and their cancels) per second
# How fast the flooders send: ten times an account's allowed rate, and far past what any
# client needs. A flooder on a 2-core host beside the exchange takes CPU from it by its
# own sending; a remote one cannot, and these rates keep that cost near a remote one's.
FLOOD_PER_S = 20_000  # order frames from one session
SNAPSHOT_FLOOD_PER_S = 5_000  # snapshot requests from one connection
LOGIN_FLOOD_PER_S = 2_000  # wrong-password log-ins over 20 connections
ATTACKERS = ("flood", "fok_scan", "wash", "login_flood", "slow_subscribers", "snapshot_flood")


def _client(cfg, name: str, create: bool = True):
    from clients.client import Client

    client = Client(cfg.endpoints["gateway"], timeout=20)
    client.open_account(name, PASSWORD, create=create)
    return client


# -- attackers: each runs in its own process until ``until`` (wall clock) -----------


class _Pace:
    """``rate`` steps a second, slept in 1 ms slices (bursts of up to 1 ms of steps)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    def wait(self) -> None:
        self.next += self.interval
        ahead = self.next - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)
        elif ahead < -0.1:  # fell behind (a stall): do not burst to catch up
            self.next = time.monotonic()


def _flood(cfg, until: float, counts: Counter) -> None:
    """Valid IOC orders as fast as the gateway lets one account send, never reading."""
    import zmq

    from services.common.codec import encode
    from services.common.wire import PlaceOrder, Side, Tif

    client = _client(cfg, "abuse-flood")
    sock = client.socket
    sock.setsockopt(zmq.SNDHWM, 1000)
    n = 0
    pace = _Pace(FLOOD_PER_S)
    while time.time() < until:
        n += 1
        order = PlaceOrder(f"f{n}", "TSLA", Side.BUY, 1, 1_500_000, tif=Tif.IOC)
        try:
            sock.send(encode(order), zmq.NOBLOCK)
            counts["sent"] += 1
        except zmq.Again:
            counts["blocked"] += 1
        pace.wait()
    counts["unread_replies"] = 1  # it never read one


def _fok_scan(cfg, until: float, counts: Counter) -> None:
    """A deep book of one-share asks, then large fill-or-kill buys that scan it."""
    from clients.client import ExchangeError
    from services.common.wire import Side, Tif

    maker = _client(cfg, "abuse-fok-maker")
    for i in range(2_000):
        if time.time() >= until:
            return
        try:
            maker.place("GOOG", Side.SELL, 1, 1_760_000 + 100 * (i % 50))
        except ExchangeError as exc:
            counts[f"maker_reject_{exc.code}"] += 1
    taker = _client(cfg, "abuse-fok-taker")
    while time.time() < until:
        try:
            taker.place("GOOG", Side.BUY, 100_000, 1_800_000, tif=Tif.FOK)
            counts["fok"] += 1
        except ExchangeError as exc:
            counts[f"reject_{exc.code}"] += 1


def _wash(cfg, until: float, counts: Counter) -> None:
    """Two accounts trading with each other, 4% up a step, to walk the price."""
    from clients.client import ExchangeError
    from services.common.wire import Side

    seller, buyer = _client(cfg, "abuse-wash-s"), _client(cfg, "abuse-wash-b")
    price = 1_700_000
    while time.time() < until:
        price = price * 104 // 100 // 100 * 100
        try:
            seller.place("AAPL", Side.SELL, 10, price)
            buyer.place("AAPL", Side.BUY, 10, price)
            counts["trades"] += 1
        except ExchangeError as exc:
            counts[f"reject_{exc.code}"] += 1
            price = 1_700_000 if exc.code != 30 else price // 104 * 100  # 30: paused
            time.sleep(0.01)


def _sockets(kind: int, endpoint: str, count: int, **options) -> list:
    """``count`` sockets of ``kind`` connected to ``endpoint`` (options by zmq name)."""
    import zmq

    socks = []
    for _ in range(count):
        sock = zmq.Context.instance().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        sock.connect(endpoint)
        socks.append(sock)
    return socks


def _login_flood(cfg, until: float, counts: Counter) -> None:
    """Wrong passwords for the honest trader's name, from many connections."""
    import zmq

    from services.common.codec import encode, reply_decoder
    from services.common.wire import Login, RequestRejected

    socks = _sockets(zmq.DEALER, cfg.endpoints["gateway"], 20)
    n = 0
    pace = _Pace(LOGIN_FLOOD_PER_S / len(socks))
    while time.time() < until:
        for sock in socks:
            n += 1
            sock.send(encode(Login("honest", f"Wrong.pw{n}")))
        pace.wait()
        for sock in socks:
            while sock.poll(0):
                reply = reply_decoder.decode(sock.recv())
                code = reply.code if isinstance(reply, RequestRejected) else 0
                counts[f"reply_{code}"] += 1
    for sock in socks:
        sock.close(0)


def _slow_subscribers(cfg, until: float, counts: Counter) -> None:
    """Subscribers to every feed that never read."""
    import zmq

    socks = _sockets(
        zmq.SUB, cfg.endpoints["marketdata_pub"], 5, RCVHWM=10, RCVBUF=4096, SUBSCRIBE=b""
    )
    counts["subscribers"] = len(socks)
    while time.time() < until:
        time.sleep(0.1)
    for sock in socks:
        sock.close(0)


def _snapshot_flood(cfg, until: float, counts: Counter) -> None:
    """Snapshot requests from one connection at SNAPSHOT_FLOOD_PER_S."""
    import zmq

    from services.common.codec import encode
    from services.common.wire import SnapshotRequest

    (sock,) = _sockets(zmq.DEALER, cfg.endpoints["marketdata_snapshot"], 1)
    pace = _Pace(SNAPSHOT_FLOOD_PER_S)
    while time.time() < until:
        try:
            sock.send(encode(SnapshotRequest("GOOG")), zmq.NOBLOCK)
            counts["sent"] += 1
        except zmq.Again:
            counts["blocked"] += 1
        pace.wait()
        while sock.poll(0):
            sock.recv()
            counts["answers"] += 1
    sock.close(0)


def _attacker(kind: str, config_path: str, home: str, until: float, results) -> None:
    os.nice(19)
    from services.common import config

    counts: Counter = Counter()
    try:
        cfg = config.load(config_path, home=Path(home))
        globals()[f"_{kind}"](cfg, until, counts)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal to the run
        counts[f"error: {type(exc).__name__}: {exc}"[:200]] += 1
    results.put((kind, dict(counts)))


# -- the honest trader ---------------------------------------------------------------


def _honest(client, seconds: float, rate: float = HONEST_RATE) -> list[float]:
    """Buy 1 MSFT well below the market and cancel it, ``rate`` orders a second;
    each request's time to its acknowledgement, in ms."""
    from services.common.wire import Side

    latencies: list[float] = []
    interval = 1.0 / rate
    next_at = time.monotonic()
    end = next_at + seconds
    n = 0
    while next_at < end:
        n += 1
        start = time.perf_counter()
        ack = client.place("MSFT", Side.BUY, 1, 4_000_000 - 100 * (n % 100)).ack
        latencies.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        client.cancel(ack.order_id)
        latencies.append((time.perf_counter() - start) * 1000)
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return latencies


def _owner_login_ms(cfg, within: float = 30.0) -> float | None:
    """How long the owner of the flooded name takes to log in with the right password
    (retrying as told while the log-in guard says wait), or None if it cannot."""
    from clients.client import ExchangeError

    start = time.perf_counter()
    while time.perf_counter() - start < within:
        try:
            _client(cfg, "honest", create=False).close()
            return round((time.perf_counter() - start) * 1000, 1)
        except ExchangeError:
            time.sleep(0.5)
    return None


def process_cpu_s(pid: int) -> float:
    """A process's CPU seconds so far (all its threads), from /proc; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(mesh: Mesh) -> dict[str, float]:
    return {name: process_cpu_s(service.pid) for name, service in mesh.services.items()}


def _pcts(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    if not ordered:
        return {"requests": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_ms": round(ordered[-1], 3),
    }


def run(
    duration: float = 600.0,
    baseline: float | None = None,
    progress=print,
    attackers: tuple[str, ...] = ATTACKERS,
) -> dict:
    """``duration`` seconds of attack; the baseline runs for ``baseline`` seconds first
    (by default a fifth of the attack, at least 5 s). ``attackers``: which kinds."""
    unknown = set(attackers) - set(ATTACKERS)
    if unknown:
        raise ValueError(f"unknown attackers {sorted(unknown)}; known: {', '.join(ATTACKERS)}")
    baseline = baseline or max(5.0, duration / 5)
    with tempfile.TemporaryDirectory(prefix="ex-abuse-", dir="/tmp") as tmp:
        mesh = Mesh(Path(tmp), standby=True)
        try:
            mesh.start()
            return _run(mesh, duration, baseline, progress, attackers)
        finally:
            mesh.stop()


def _run(mesh: Mesh, duration: float, baseline: float, progress, kinds: tuple) -> dict:
    pids = {name: service.pid for name, service in mesh.services.items()}
    honest = _client(mesh.cfg, "honest")
    _honest(honest, 1.0)  # warm up
    progress(f"baseline: the honest trader alone for {baseline:.0f} s")
    cpu0 = _cpu(mesh)
    alone = _honest(honest, baseline)
    cpu1 = _cpu(mesh)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    until = time.time() + duration + 3  # the attackers' start-up is not measured
    procs = [
        ctx.Process(
            target=_attacker,
            args=(kind, str(mesh.config_path), str(mesh.home), until, results),
            daemon=True,
        )
        for kind in kinds
    ]
    for proc in procs:
        proc.start()
    time.sleep(3)
    progress(f"attack: {', '.join(kinds)} beside the honest trader for {duration:.0f} s")
    attacked: list[float] = []
    cpu2 = _cpu(mesh)
    started = time.monotonic()
    while time.monotonic() - started < duration:
        attacked += _honest(honest, min(10.0, duration - (time.monotonic() - started)))
        done = time.monotonic() - started
        progress(f"  {done:.0f}/{duration:.0f} s, honest p99 so far {_pcts(attacked)['p99_ms']} ms")
    cpu3 = _cpu(mesh)
    attackers = {}
    for _ in procs:
        try:
            kind, counts = results.get(timeout=30)
            attackers[kind] = counts
        except Exception:  # noqa: BLE001 - an attacker that never reported
            break
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    login_ms = _owner_login_ms(mesh.cfg)
    honest.close()
    alive = {name: service.proc.poll() is None for name, service in mesh.services.items()}
    restarted = sorted(name for name, service in mesh.services.items() if service.pid != pids[name])
    base, hit = _pcts(alone), _pcts(attacked)
    ratio = round(hit["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None
    return {
        "duration_s": duration,
        "baseline_s": baseline,
        "honest_rate_per_s": HONEST_RATE,
        "baseline": base,
        "attack": hit,
        "p99_ratio": ratio,
        "p99_ratio_limit": 3.0,
        "honest_login_ms": login_ms,
        # each service's share of one CPU in each phase, to see where an attack lands
        "service_cpu_share": {
            name: {
                "baseline": round((cpu1[name] - cpu0[name]) / baseline, 3),
                "attack": round((cpu3[name] - cpu2[name]) / duration, 3),
            }
            for name in cpu0
        },
        "attackers": attackers,
        "services_alive": alive,
        "restarted": restarted,
        "ok": bool(
            ratio is not None
            and ratio <= 3.0
            and login_ms is not None
            and all(alive.values())
            and not restarted
        ),
    }


def render(result: dict) -> str:
    base, hit = result["baseline"], result["attack"]
    lines = [
        f"honest trader, {result['honest_rate_per_s']} orders/s + their cancels",
        f"  alone:          p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms "
        f"({base['requests']} requests)",
        f"  under attack:   p50 {hit['p50_ms']} ms, p99 {hit['p99_ms']} ms "
        f"({hit['requests']} requests)",
        f"  p99 ratio:      {result['p99_ratio']} (limit {result['p99_ratio_limit']})",
        f"  log-in after the log-in flood: {result['honest_login_ms']} ms",
        f"services alive: {all(result['services_alive'].values())}, "
        f"restarted: {', '.join(result['restarted']) or 'none'}",
        "services' CPU share (baseline -> attack): "
        + ", ".join(
            f"{n} {v['baseline']:.2f}->{v['attack']:.2f}"
            for n, v in result["service_cpu_share"].items()
        ),
        "attackers:",
    ]
    for kind, counts in sorted(result["attackers"].items()):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"  {kind}: {shown}")
    lines.append("OK" if result["ok"] else "FAILED")
    return "\n".join(lines)
