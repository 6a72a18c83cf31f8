"""`exchange bench failover`: kill the primary matcher under load, again and again.

A whole exchange runs in a temp home with a hot standby; one client sends orders one
after another and notes when each is acknowledged. Every ``interval`` seconds the
primary is SIGKILLed and restarted (it rejoins as a standby). Unavailability is the
longest silence between two acknowledgements around a kill (from the last one before
the outage to the first one after it). Then the
journal is read: every acknowledged order must be in it exactly once (``lost`` and
``duplicated`` count the exceptions).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from clients.bench.cluster import Mesh, wait_for
from clients.client import Client, NoAnswer
from services.common.wire import Accepted, Side
from services.journal import tools as journal_tools

PASSWORD = "Bench.pw1"


class Load(threading.Thread):
    """Orders one at a time, as fast as they are acknowledged."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(endpoint, timeout=10)
        self.client.signup("bench", PASSWORD)
        self.client.login("bench", PASSWORD)
        self.acks: list[tuple[float, str, int]] = []  # (monotonic time, cl_ord_id, order id)
        self.cancels: list[float] = []  # when each cancel was acknowledged
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        """A limit order, then its cancel: the book stays small however long it runs."""
        n = 0
        while not self.stop.is_set():
            n += 1
            price = 1_690_000 + (n % 20) * 100
            try:
                placed = self.client.place("AAPL", Side.BUY, 1, price, cl_ord_id=f"f{n}")
                self.acks.append((time.monotonic(), f"f{n}", placed.ack.order_id))
                self.client.cancel(placed.ack.order_id, cl_ord_id=f"x{n}")
                self.cancels.append(time.monotonic())
            except NoAnswer:
                self.errors += 1


def primary(mesh: Mesh) -> str | None:
    status = mesh.status()
    if status is None:
        return None
    names = [
        s.service
        for s in status.services
        if s.role == "primary" and s.alive and s.epoch == status.epoch
    ]
    return names[0] if names else None


def run(failovers: int = 5, interval: float = 1.5, progress=sys.stderr) -> dict:
    home = Path(tempfile.mkdtemp(prefix="exf-", dir="/tmp"))
    mesh = Mesh(home, standby=True)
    kills: list[float] = []
    try:
        mesh.start()
        load = Load(mesh.cfg.endpoints["gateway"])
        load.start()
        for k in range(1, failovers + 1):
            time.sleep(interval)
            victim = wait_for(lambda: primary(mesh), timeout=10, what="a primary")
            kills.append(time.monotonic())
            mesh[victim].kill()
            wait_for(
                lambda v=victim: primary(mesh) not in (None, v),
                timeout=10,
                what="the standby's promotion",
            )
            mesh[victim].start()  # rejoins as a standby and replays the journal
            wait_for(
                lambda v=victim: any(
                    s.service == v and s.role == "standby" and s.alive
                    for s in mesh.status().services
                ),
                timeout=20,
                what="the old primary back as standby",
            )
            print(
                f"  failover {k}/{failovers}: {victim} killed, {primary(mesh)} primary, "
                f"{len(load.acks)} orders acknowledged",
                file=progress,
                flush=True,
            )
        time.sleep(interval)
        load.stop.set()
        load.join(15)
        load.client.close()
        wait_for(
            lambda: (
                mesh.status()
                and all(s.seq == s.committed for s in mesh.status().services if s.role == "primary")
            ),
            timeout=10,
            what="everything committed",
        )
        accepted = Counter(
            (e.account, e.cl_ord_id)
            for r in journal_tools.records(home / "journal")
            for e in r.events
            if isinstance(e, Accepted)
        )
    finally:
        mesh.stop()
        shutil.rmtree(home, ignore_errors=True)  # a journal and a 64 MiB spare
    account = load.client.account
    gaps = []
    times = sorted([t for t, _, _ in load.acks] + load.cancels)
    for kill in kills:
        # the outage: the longest silence between answers around the kill (answers
        # already in the pipeline at the kill still arrive, so "first after" would
        # understate it)
        around = [t for t in times if kill - 1.0 <= t <= kill + 10.0]
        if len(around) > 1:
            gap = max(b - a for a, b in zip(around, around[1:], strict=False))
            gaps.append(gap * 1000)
    acked = {cl for _, cl, _ in load.acks}
    return {
        "failovers": len(kills),
        "orders": len(load.acks),
        "unavailability_ms": {
            "p50": round(statistics.median(gaps), 1) if gaps else None,
            "max": round(max(gaps), 1) if gaps else None,
            "all": [round(g, 1) for g in gaps],
        },
        "lost": sum(1 for cl in acked if accepted[(account, cl)] == 0),
        "duplicated": sum(1 for cl in acked if accepted[(account, cl)] > 1)
        + len(load.acks)
        - len(acked),
        "timeouts": load.errors,
    }


def render(result: dict) -> str:
    u = result["unavailability_ms"]
    return "\n".join(
        [
            "failover benchmark (SIGKILL the primary matcher under load, hot standby takes over)",
            f"  failovers        {result['failovers']:>8}",
            f"  orders acked     {result['orders']:>8}",
            f"  unavailability   p50 {u['p50']} ms, max {u['max']} ms  (all: {u['all']})",
            f"  lost             {result['lost']:>8}",
            f"  duplicated       {result['duplicated']:>8}",
        ]
    )
