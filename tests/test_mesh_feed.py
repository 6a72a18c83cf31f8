"""Feed subscribers that join late or lose messages end with marketdata's exact book."""

from __future__ import annotations

import random

import zmq

from clients.client import Client, snapshot
from clients.feed import BookSubscriber
from services.common.money import to_units
from services.common.wire import Side
from tests.mesh import wait_for

PASSWORD = "Secret.pw1"


def traders(mesh, *names):
    out = []
    for name in names:
        c = Client(mesh.cfg.endpoints["gateway"])
        c.signup(name, PASSWORD)
        c.login(name, PASSWORD)
        out.append(c)
    return out


def flow(clients, rng: random.Random, count: int) -> None:
    """Random limit orders around $170 on AAPL, acknowledged one by one."""
    for _ in range(count):
        side = rng.choice((Side.BUY, Side.SELL))
        price = to_units("170.00") + rng.randint(-15, 15) * 100
        rng.choice(clients).place("AAPL", side, rng.randint(1, 50), price)


def in_step(mesh, sub: BookSubscriber) -> bool:
    """The subscriber has applied everything marketdata has published, and agrees."""
    sub.poll(50)
    snap = snapshot(mesh.cfg.endpoints["marketdata_snapshot"], "AAPL")
    return (
        sub.seq == snap.seq
        and sub.bids() == [tuple(x) for x in snap.bids[: sub.depth]]
        and sub.asks() == [tuple(x) for x in snap.asks[: sub.depth]]
    )


def test_late_joiner_and_gapped_subscriber_resync(mesh):
    rng = random.Random(3)
    clients = traders(mesh, "mm1", "mm2", "taker")
    ctx = zmq.Context.instance()
    endpoints = mesh.cfg.endpoints["marketdata_pub"], mesh.cfg.endpoints["marketdata_snapshot"]
    early = BookSubscriber(ctx, *endpoints, "AAPL", depth=10)
    gapped = BookSubscriber(ctx, *endpoints, "AAPL", depth=10)
    try:
        early.poll(300)
        gapped.poll(300)
        flow(clients, rng, 60)
        late = BookSubscriber(ctx, *endpoints, "AAPL", depth=10)  # joins with a book built
        late.poll(200)
        gapped.drop_next(5)  # loses five updates in the middle of the next burst
        flow(clients, rng, 60)
        for sub in (early, late, gapped):
            wait_for(lambda s=sub: in_step(mesh, s), timeout=10, what="the subscriber in step")
        assert gapped.resyncs >= 2  # the first sync, then at least one after the gap
        assert early.resyncs == 1  # never lost anything
        assert late.bids() or late.asks()
        late.close()
    finally:
        early.close()
        gapped.close()
        for c in clients:
            c.close()
