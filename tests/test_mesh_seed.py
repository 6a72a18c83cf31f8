"""The seed's matching scenario driven through the real gateway by three clients."""

from __future__ import annotations

import zmq

from clients.client import Client, snapshot
from clients.feed import BookSubscriber
from services.common.money import to_units
from services.common.wire import Executed, Fill, Side
from tests.mesh import wait_for
from tests.test_seed_scenario import SCENARIO

PASSWORD = "Secret.pw1"


def book_after(mesh, symbol: str, seq: int) -> tuple[dict, dict]:
    """The marketdata book once it has applied record ``seq``."""
    endpoint = mesh.cfg.endpoints["marketdata_snapshot"]
    snap = wait_for(
        lambda: (s := snapshot(endpoint, symbol)).journal_seq >= seq and s,
        what=f"marketdata to reach seq {seq}",
    )
    as_dollars = lambda levels: {p / to_units(1): q for p, q in levels}  # noqa: E731
    return as_dollars(snap.bids), as_dollars(snap.asks)


def test_seed_scenario_through_the_gateway(mesh):
    gateway = mesh.cfg.endpoints["gateway"]
    feed = BookSubscriber(
        zmq.Context.instance(),
        mesh.cfg.endpoints["marketdata_pub"],
        mesh.cfg.endpoints["marketdata_snapshot"],
        "AAPL",
    )
    feed.poll(200)
    clients = {}
    for name in ("user1", "user2", "user3"):
        client = Client(gateway)
        client.signup(name, PASSWORD)
        client.login(name, PASSWORD)
        clients[name] = client
    try:
        for n, (who, side, symbol, size, price, books) in enumerate(SCENARIO, 1):
            result = clients[who].place(symbol, Side[side], size, to_units(price))
            assert result.ack.order_id == n
            for sym, expected in books.items():
                assert book_after(mesh, sym, result.seq) == expected, f"after order {n}"
        fills = [e for e in result.events if isinstance(e, Fill)]
        assert [(f.price, f.qty) for f in fills] == [(to_units(171), 84), (to_units(170), 28)]
        (summary,) = [e for e in result.events if isinstance(e, Executed)]
        assert (summary.cum_qty, summary.avg_px) == (112, to_units("170.75"))
        # the makers hear of their fills too, from the committed stream
        maker_fills = wait_for(
            lambda: (
                [
                    e
                    for r in clients["user2"].drain_reports()
                    if r.seq == result.seq
                    for e in r.events
                    if isinstance(e, Fill)
                ]
                or None
            ),
            what="user2's fill report",
        )
        assert maker_fills[0].maker_order == 8 and maker_fills[0].qty == 84
        positions = {name: c.positions() for name, c in clients.items()}
        assert sum(p.positions.get("AAPL", 0) for p in positions.values()) == 0
        # trades only move cash between them: each still holds its opening balance
        assert sum(p.cash for p in positions.values()) == 3 * mesh.cfg.risk.opening_cash
        assert positions["user3"].positions["AAPL"] == -(142 + 112)
        # the public feed agrees: the subscriber's book is the final book of the table
        wait_for(
            lambda: feed.poll(50) == 0 and feed.asks() == [(to_units(169), 188)],
            what="the feed to show the final book",
        )
        assert feed.bids() == [] and feed.resyncs == 1
    finally:
        feed.close()
        for client in clients.values():
            client.close()
