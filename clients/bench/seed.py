"""`exchange bench seed`: the seed system's Figure 2, on the full mesh with fsync on.

N market-maker client processes (N = 1, 2, 5, 10, 15), each with its own account,
start together and send 20 orders in the seed bot's price pattern (fair value plus
fades of 0.05 to 0.50 and a little noise, sizes around a base, both sides). A
client's time runs from its first send to its twentieth acknowledgement; it sends
all 20 without waiting (as a trading bot would) and then collects the answers. Five
trials per N; the table shows the mean and standard deviation of the per-client
times beside the seed's published figures (docs/performance.md, "The seed system").
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clients.bench.cluster import Mesh
from clients.bench.together import run_together
from clients.client import Client
from services.common.wire import Accepted, PlaceOrder, Rejected, Side

PASSWORD = "Seed.pw1"
SEED_PAPER = {
    1: (0.038, 0.054),
    2: (0.151, 0.044),
    5: (0.376, 0.290),
    10: (2.269, 0.947),
    15: (6.845, 1.271),
}  # N: (average s, std dev s)
FAIR = 1_700_000  # $170.00
TICK = 100


def seed_orders(rng: random.Random, n: int = 20, base: int = 100) -> list[tuple[int, int, int]]:
    """(side, qty, price): the seed bot's pattern, 10 levels a side around fair value."""
    orders = []
    for i in range(n):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        fade = TICK * 5 * (1 + (i // 2) % 10)  # 0.05 .. 0.50
        noise = TICK * rng.randint(0, 2)
        price = FAIR - fade - noise if side == Side.BUY else FAIR + fade + noise
        orders.append((side, max(1, int(rng.gauss(base, base / 5))), price))
    return orders


def _client(endpoint: str, name: str, seed: int, tag: str, start, results) -> None:
    client = Client(endpoint, timeout=30)
    client.login(name, PASSWORD)
    orders = seed_orders(random.Random(seed))
    start.wait()
    t0 = time.perf_counter()
    for i, (side, qty, price) in enumerate(orders):
        client.send(PlaceOrder(f"{tag}-{i}", "AAPL", side, qty, price))
    answered = 0
    while answered < len(orders):
        report = client.next_report()
        answered += sum(isinstance(e, Accepted | Rejected) for e in report.events)
    results.put(time.perf_counter() - t0)
    client.logout()  # 25 runs log each account in: left open, they hit the session limit
    client.close()


def run(ns=(1, 2, 5, 10, 15), trials: int = 5, progress=sys.stderr) -> dict:
    home = Path(tempfile.mkdtemp(prefix="exs-", dir="/tmp"))
    mesh = Mesh(home, standby=True, journal={"fsync": True})  # the mesh `make run` starts
    rows = []
    try:
        mesh.start()
        endpoint = mesh.cfg.endpoints["gateway"]
        for i in range(max(ns)):
            Client(endpoint).signup(f"mm{i}", PASSWORD)
        for n in ns:
            times: list[float] = []
            for trial in range(trials):
                arglists = [
                    (endpoint, f"mm{i}", trial * 100 + i, f"n{n}t{trial}c{i}") for i in range(n)
                ]
                times += run_together(_client, arglists, timeout=60)
            rows.append(
                {
                    "n": n,
                    "avg_s": round(statistics.mean(times), 4),
                    "stdev_s": round(statistics.pstdev(times), 4),
                    "seed_avg_s": SEED_PAPER[n][0],
                    "seed_stdev_s": SEED_PAPER[n][1],
                }
            )
            print(
                f"  N={n}: {rows[-1]['avg_s'] * 1000:.1f} ms per client", file=progress, flush=True
            )
    finally:
        mesh.stop()
        shutil.rmtree(home, ignore_errors=True)  # a journal and a 64 MiB spare
    return {"rows": rows, "orders_per_client": 20, "trials": trials, "fsync": True}


def render(result: dict) -> str:
    lines = [
        "seed experiment (Figure 2): time for each market-maker client's 20 orders",
        f"{'N clients':>10} {'average (s)':>12} {'std dev (s)':>12} "
        f"{'seed avg (s)':>13} {'seed std (s)':>13}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['n']:>10} {r['avg_s']:>12.4f} {r['stdev_s']:>12.4f} "
            f"{r['seed_avg_s']:>13.3f} {r['seed_stdev_s']:>13.3f}"
        )
    return "\n".join(lines)
