"""What the gateway tells whom, and what its account view keeps, without sockets
(services/gateway/reports.py, accounts.py, security.FairShares); and its bounded
receive of many-part messages, through real inproc sockets."""

from __future__ import annotations

import zmq

from services.common.bus import Admin, CreateAccount, NewOrder, Record, Reopen
from services.common.frames import recv_bounded, recv_frames
from services.common.wire import (
    Accepted,
    AccountCreated,
    AdminDone,
    Cancelled,
    CancelReason,
    CashAdjusted,
    Executed,
    Fill,
    Rested,
    Side,
    SymbolHalted,
    TradingPause,
)
from services.gateway.accounts import AccountView
from services.gateway.reports import fill_for, route
from services.gateway.security import FairShares

TAKER, MAKER = 7, 9


def fill(trade_id: int, taker: int = TAKER, maker: int = MAKER) -> Fill:
    return Fill(trade_id, "AAPL", Side.BUY, 1_700_000, 10, taker, 501, 5, maker, 301, 20)


def order_record(seq: int, events: list, account: int = TAKER) -> Record:
    cmd = NewOrder(account, f"c{seq}", "AAPL", Side.BUY, 15, 1_700_000)
    return Record(seq, 1, cmd, events)


def test_each_side_of_a_fill_learns_only_its_own_order():
    accepted = Accepted(TAKER, "c1", 501, "AAPL", Side.BUY, 1_700_000, 15)
    done = Executed(TAKER, 501, 10, 17_000_000, 1_700_000)
    told = route(order_record(1, [accepted, fill(1), done]))
    assert set(told) == {TAKER, MAKER}
    taker_fill, maker_fill = told[TAKER][1], told[MAKER][0]
    assert told[TAKER] == [accepted, taker_fill, done] and told[MAKER] == [maker_fill]
    # the taker keeps its own side and the trade; the maker's account, order and open
    # size are 0 in its copy, and the other way round
    assert (taker_fill.taker_account, taker_fill.taker_order, taker_fill.taker_leaves) == (
        TAKER,
        501,
        5,
    )
    assert (taker_fill.maker_account, taker_fill.maker_order, taker_fill.maker_leaves) == (0, 0, 0)
    assert (maker_fill.maker_account, maker_fill.maker_order, maker_fill.maker_leaves) == (
        MAKER,
        301,
        20,
    )
    assert (maker_fill.taker_account, maker_fill.taker_order, maker_fill.taker_leaves) == (0, 0, 0)
    for copy in (taker_fill, maker_fill):
        assert (copy.trade_id, copy.symbol, copy.side, copy.price, copy.qty) == (
            1,
            "AAPL",
            Side.BUY,
            1_700_000,
            10,
        )
    # a self-trade is all one account's: it keeps both sides, once
    own = fill(2, taker=TAKER, maker=TAKER)
    assert route(order_record(2, [own]))[TAKER] == [own]
    assert fill_for(own, TAKER) is own


def test_events_without_an_account_go_to_the_sender_or_nobody():
    pause = TradingPause("AAPL", True, 1_700_000, 1_600_000, 1_800_000)
    cut = Cancelled(
        TAKER, 501, "AAPL", Side.BUY, 1_900_000, 5, CancelReason.VOLATILITY_PAUSE, False
    )
    # the trader whose order started a pause hears of it with its order's events
    told = route(order_record(3, [fill(3), pause, cut]))
    assert told[TAKER][1:] == [pause, cut] and pause not in told[MAKER]
    # the matcher's own reopen names no one: nobody is sent a report, nothing breaks
    reopen = TradingPause("AAPL", False, 1_700_000, 1_615_000, 1_785_000)
    assert route(Record(4, 1, Reopen("AAPL"), [reopen])) == {}
    # an operator sees all its action did; the account it touched, its own events
    ops, alice = 1, 2
    deposit = Admin(ops, "a1", "deposit", target=alice, amount=5_000_000)
    events = [AdminDone(ops, "a1", "deposit"), CashAdjusted(alice, 5_000_000, 15_000_000)]
    told = route(Record(5, 1, deposit, events))
    assert told == {ops: events, alice: [events[1]]}
    halt = Admin(ops, "a2", "halt", "AAPL")
    halted = [AdminDone(ops, "a2", "halt"), SymbolHalted("AAPL", True)]
    assert route(Record(6, 1, halt, halted)) == {ops: halted}


def test_account_view_follows_cash_adjustments_and_pages_open_orders():
    view = AccountView()
    created = [AccountCreated(3, "alice"), CashAdjusted(3, 10_000_000, 10_000_000)]
    view.apply(Record(1, 1, CreateAccount("alice", "hash"), created))
    assert view.names == {"alice": 3} and view.cash[3] == 10_000_000  # the opening balance
    view.apply(
        Record(
            2,
            1,
            Admin(1, "d1", "deposit", target=3, amount=-4_000_000),
            [AdminDone(1, "d1", "deposit"), CashAdjusted(3, -4_000_000, 6_000_000)],
        )
    )
    assert view.cash[3] == 6_000_000  # the balance the engine states, not a sum
    view.apply(Record(3, 1, Reopen("AAPL"), [TradingPause("AAPL", False, 1, 0, 2)]))
    assert view.seq == 3
    for order_id in range(10, 35):
        rested = Rested(3, order_id, "AAPL", Side.BUY, 1_600_000, 1)
        view.apply(order_record(order_id, [rested], account=3))
    assert [o.order_id for o in view.open_orders(3, limit=10)] == list(range(10, 20))
    assert [o.order_id for o in view.open_orders(3, after=29)] == list(range(30, 35))
    assert view.open_orders(3, after=34) == [] and view.open_orders(4) == []
    # a snapshot keeps the adjusted cash: its layout did not change
    restored = AccountView.restore(view.snapshot())
    assert restored.cash == view.cash and restored.open_orders(3) == view.open_orders(3)


def test_hashing_slots_are_shared_fairly():
    shares = FairShares(total=8, per_name=4, per_connection=2)
    for _ in range(2):
        assert shares.room(b"c1", "victim")
        shares.take(b"c1", "victim")
    assert not shares.room(b"c1", "victim") and not shares.room(b"c1", "other")  # per conn
    for ident in (b"c2", b"c3"):
        shares.take(ident, "victim")
    assert not shares.room(b"c4", "victim")  # a quarter of the queue for one name
    assert shares.room(b"c4", "bob")  # everyone else still gets in
    for ident in (b"c4", b"c5", b"c6", b"c7"):
        shares.take(ident, ident.decode())
    assert not shares.room(b"c8", "carol")  # the whole queue
    shares.give_back(b"c1", "victim")
    assert shares.room(b"c8", "carol") and shares.room(b"c1", "x")
    assert shares.by_ident[b"c1"] == 1 and shares.by_name["victim"] == 3
    for ident, name in ((b"c1", "victim"), (b"c2", "victim"), (b"c3", "victim")):
        shares.give_back(ident, name)
    assert "victim" not in shares.by_name and b"c1" not in shares.by_ident


def test_bounded_receive_keeps_two_frames_and_stays_in_step():
    ctx = zmq.Context.instance()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        for sock in (router, dealer):
            sock.setsockopt(zmq.LINGER, 0)
        router.bind("inproc://bounded-receive")
        dealer.connect("inproc://bounded-receive")
        dealer.send_multipart([b"x" * 100] * 1_000)  # one message of many frames
        dealer.send(b"next")
        assert router.poll(5_000)
        frames, parts = recv_bounded(router, 2)
        assert parts == 1_001 and len(frames) == 2 and frames[1] == b"x" * 100
        ident = frames[0]
        assert router.poll(5_000)
        assert recv_bounded(router, 2) == ([ident, b"next"], 2)  # the next message intact
        dealer.send(b"third")
        assert router.poll(5_000)
        assert recv_frames(router) == [ident, b"third"]  # the old helper is unchanged
    finally:
        router.close(0)
        dealer.close(0)
