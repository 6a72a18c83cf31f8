"""The SDK's account view (clients/accountview.py, kept by the market maker and the
TUI) from the reports the gateway sends now: fills naming one side only, and cash
events. Pure, no sockets."""

from __future__ import annotations

from clients.accountview import AccountView
from services.common.bus import NewOrder, Record
from services.common.wire import (
    Accepted,
    CashAdjusted,
    Fill,
    OpenOrder,
    Orders,
    Positions,
    Report,
    Rested,
    Side,
)
from services.gateway.reports import route

TAKER, MAKER = 4, 6


def test_each_side_keeps_its_book_from_its_own_copy_of_a_fill():
    order = NewOrder(TAKER, "t1", "AAPL", Side.BUY, 10, 1_700_000)
    events = [
        Accepted(TAKER, "t1", 21, "AAPL", Side.BUY, 1_700_000, 10),
        Fill(1, "AAPL", Side.BUY, 1_700_000, 10, TAKER, 21, 0, MAKER, 11, 30),
    ]
    told = route(Record(5, 1, order, events))  # what the gateway sends each side
    maker, taker = AccountView(), AccountView()
    maker.load(
        Positions(MAKER, 1_000_000, {}, 4),
        Orders(MAKER, [OpenOrder(11, "AAPL", Side.SELL, 1_700_000, 40)], 4),
    )
    taker.load(Positions(TAKER, 1_000_000, {}, 4), Orders(TAKER, [], 4))
    for view in (maker, taker):
        view.apply_report(Report(5, 1, told[view.account]))
    assert maker.positions == {"AAPL": -10} and maker.cash == 1_000_000 + 17_000_000
    assert maker.orders[11].qty == 30  # its own leaves, from its own copy
    assert taker.positions == {"AAPL": 10} and taker.cash == 1_000_000 - 17_000_000
    assert taker.orders == {} and (maker.fills, taker.fills) == (1, 1)


def test_cash_events_move_only_the_own_accounts_cash():
    view = AccountView(TAKER)
    view.apply(CashAdjusted(TAKER, 500, 1_500))
    assert view.cash == 1_500  # the balance the event states
    view.apply(CashAdjusted(MAKER, 900, 9_900))  # an operator sees others' deposits
    assert view.cash == 1_500
    view.apply(Rested(TAKER, 3, "AAPL", Side.BUY, 1_600_000, 2))
    assert view.open_qty("AAPL", Side.BUY) == 2
