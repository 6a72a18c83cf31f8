"""Exchanges are anonymous: through the real mesh, two accounts trade and neither's
reports, fills or queries carry the other's account id or order id (the journal
keeps both sides)."""

from __future__ import annotations

from services.common.money import to_units
from services.common.wire import Fill, Report, Side
from services.journal import tools as journal_tools
from tests.mesh import trader, wait_for


def own_fills(reports: list[Report]) -> list[Fill]:
    return [e for r in reports for e in r.events if type(e) is Fill]


def numbers_in(reports: list[Report], *replies) -> set[int]:
    """Every integer any event or reply holds in a field naming an account or order."""
    found: set[int] = set()
    for thing in [e for r in reports for e in r.events] + [
        item for reply in replies for item in reply
    ]:
        for name in thing.__struct_fields__:
            if "account" in name or "order" in name:
                found.add(getattr(thing, name))
    return found


def test_neither_side_of_a_trade_learns_the_other(mesh, short_home):
    alice, bob = trader(mesh, "alice"), trader(mesh, "bob")
    observer = trader(mesh, "carol")
    try:
        for _ in range(10):  # order ids from 11 on: none equals an account id (1-3)
            observer.place("TSLA", Side.BUY, 1, to_units("150.00"))
        sold = alice.place("AAPL", Side.SELL, 30, to_units("170.00"))
        sell_id = sold.ack.order_id
        bought = bob.place("AAPL", Side.BUY, 10, to_units("170.00"))  # alice keeps 20 open
        buy_id = bought.ack.order_id
        swept = bob.place("AAPL", Side.BUY, 25, to_units("170.00"))  # takes alice's 20, rests 5
        sweep_id = swept.ack.order_id

        bob_reports = [Report(bought.seq, 1, bought.events), Report(swept.seq, 1, swept.events)]
        bob_reports += bob.drain_reports()
        alice_reports = [Report(sold.seq, 1, sold.events)]
        alice_reports += wait_for(
            lambda: [r for r in alice.drain_reports() if own_fills([r])] or None,
            what="alice's fill reports",
        )
        while len(own_fills(alice_reports)) < 2:
            alice_reports.append(alice.next_report(timeout=5))

        # each side sees the trade and its own order, and 0 where the other was
        assert [
            (f.qty, f.taker_account, f.taker_order, f.taker_leaves) for f in own_fills(bob_reports)
        ] == [
            (10, bob.account, buy_id, 0),
            (20, bob.account, sweep_id, 5),
        ]
        assert [
            (f.maker_account, f.maker_order, f.maker_leaves) for f in own_fills(bob_reports)
        ] == [(0, 0, 0)] * 2
        assert [
            (f.qty, f.maker_account, f.maker_order, f.maker_leaves)
            for f in own_fills(alice_reports)
        ] == [
            (10, alice.account, sell_id, 20),
            (20, alice.account, sell_id, 0),
        ]
        assert [
            (f.taker_account, f.taker_order, f.taker_leaves) for f in own_fills(alice_reports)
        ] == [(0, 0, 0)] * 2
        trades = [(f.trade_id, f.price, f.qty, f.side) for f in own_fills(bob_reports)]
        assert [(f.trade_id, f.price, f.qty, f.side) for f in own_fills(alice_reports)] == trades

        # no trace of the other side anywhere: reports, open orders, own fills
        bob_saw = numbers_in(bob_reports, bob.orders().orders, bob.fills().fills)
        alice_saw = numbers_in(alice_reports, alice.orders().orders, alice.fills().fills)
        assert alice.account not in bob_saw and sell_id not in bob_saw, bob_saw
        assert bob.account not in alice_saw, alice_saw
        assert not {buy_id, sweep_id} & alice_saw, alice_saw
        assert {bob.account, buy_id, sweep_id} <= bob_saw  # the check does look at ids
        assert {alice.account, sell_id} <= alice_saw

        # the journal keeps both sides of each trade
        wait_for(
            lambda: journal_tools.verify(short_home / "journal")["last_seq"] >= swept.seq,
            what="the journal to commit the trades",
        )
        whole = [
            (e.taker_account, e.taker_order, e.maker_account, e.maker_order)
            for r in journal_tools.records(short_home / "journal")
            for e in r.events
            if type(e) is Fill
        ]
        assert whole == [
            (bob.account, buy_id, alice.account, sell_id),
            (bob.account, sweep_id, alice.account, sell_id),
        ]
    finally:
        for client in (alice, bob, observer):
            client.close()


def test_a_client_that_knows_no_account_still_reads_its_fills(mesh):
    """The TUI's line for a fill works from the fill alone (its own side is the one
    with an order id), so it needs no counterparty fields."""
    from clients.tui.model import describe

    maker, taker = trader(mesh, "maker"), trader(mesh, "taker")
    try:
        rest = maker.place("MSFT", Side.SELL, 5, to_units("420.00")).ack.order_id
        took = taker.place("MSFT", Side.BUY, 5, to_units("420.00"))
        fill = next(e for e in took.events if type(e) is Fill)
        assert describe(fill, None).startswith(f"FILL #{took.ack.order_id} BUY 5 MSFT")
        told = wait_for(lambda: own_fills(maker.drain_reports()) or None, what="maker's fill")
        assert describe(told[0], None).startswith(f"FILL #{rest} SELL 5 MSFT")
        assert describe(told[0], maker.account).startswith(f"FILL #{rest} SELL")
    finally:
        maker.close()
        taker.close()
