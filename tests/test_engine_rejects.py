"""Every reject path of the pure engine, and the cancel / STP / replace / IOC / FOK paths.

A rejected command must change nothing. Rejects of account commands and of unknown
accounts leave ``state_hash`` exactly as it was. A rejected order command is remembered
for exactly-once entry (a repeat of its client order id is answered with a Duplicate),
so for those the whole state except that record must be unchanged, and the repeat
must leave ``state_hash`` unchanged.
"""

from __future__ import annotations

import dataclasses

import pytest

from services.common.bus import CancelOrder, CreateAccount, NewOrder, ReplaceOrder
from services.common.config import Config
from services.common.money import to_units
from services.common.wire import (
    Accepted,
    AccountCreated,
    Cancelled,
    CancelReason,
    Duplicate,
    Executed,
    Fill,
    OrdType,
    Reject,
    Rejected,
    Replaced,
    Rested,
    Side,
    Stp,
    Tif,
)
from services.matcher.engine import Engine
from tests.engine_state import core_state

D = to_units  # dollars -> price units
BUY, SELL = Side.BUY, Side.SELL
MARKET = OrdType.MARKET
ALICE, BOB, CAROL = 1, 2, 3


def make_engine(cfg: Config, **risk) -> Engine:
    engine = Engine(cfg.symbols, dataclasses.replace(cfg.risk, **risk))
    for n, name in enumerate(("alice", "bob", "carol"), 1):
        assert engine.apply(CreateAccount(name, "hash"))[0] == AccountCreated(n, name)
    return engine


@pytest.fixture
def engine(cfg):
    return make_engine(cfg)


def order(account, cl, side, qty, price, symbol="AAPL", **kw) -> NewOrder:
    return NewOrder(account, cl, symbol, side, qty, price, **kw)


def apply_ok(engine: Engine, cmd) -> list:
    events = engine.apply(cmd)
    assert not any(isinstance(e, Rejected | Duplicate) for e in events), events
    return events


def rest(engine: Engine, account, cl, side, qty, price, symbol="AAPL") -> int:
    """Rest a GTC limit order that does not trade; return its order id."""
    events = apply_ok(engine, order(account, cl, side, qty, price, symbol))
    assert isinstance(events[-1], Rested), events
    return events[0].order_id


def queue(engine: Engine, side: int, symbol="AAPL") -> list[tuple[int, int, int]]:
    """The side's live orders in priority order, as (order_id, price, leaves)."""
    return [(o.order_id, o.price, o.leaves) for o in engine.books[symbol].side(side).live_orders()]


def assert_rejected(engine: Engine, cmd, code: Reject, order_id: int = 0) -> None:
    """``cmd`` is rejected with ``code`` and changes nothing; a repeat is a Duplicate of
    that reject and leaves the state hash exactly as it was."""
    core = core_state(engine)
    events = engine.apply(cmd)
    assert events == [Rejected(cmd.account, cmd.cl_ord_id, code, order_id)]
    assert core_state(engine) == core
    # the only change is the remembered answer for this client order id
    recorded = engine.state_hash()
    assert engine.apply(cmd) == [Duplicate(cmd.account, cmd.cl_ord_id, events[0])]
    assert engine.state_hash() == recorded


def assert_rejected_stateless(engine: Engine, cmd, code: Reject) -> None:
    """Rejects that nothing remembers: the state hash is exactly unchanged."""
    before = engine.state_hash()
    if isinstance(cmd, CreateAccount):
        expected = [Rejected(0, cmd.name, code)]
    else:
        expected = [Rejected(cmd.account, cmd.cl_ord_id, code)]
    assert engine.apply(cmd) == expected
    assert engine.state_hash() == before


# ---------------------------------------------------------------------------
# New-order rejects
# ---------------------------------------------------------------------------


def test_unknown_symbol(engine):
    assert_rejected(
        engine, order(ALICE, "c1", BUY, 10, D(170), symbol="NOPE"), Reject.UNKNOWN_SYMBOL
    )


def test_off_tick_price(engine):
    assert_rejected(engine, order(ALICE, "c1", BUY, 10, D("170.005")), Reject.BAD_PRICE)


@pytest.mark.parametrize("price", [0, -D("0.01"), -D(170)])
def test_zero_or_negative_price(engine, price):
    assert_rejected(engine, order(ALICE, "c1", BUY, 10, price), Reject.BAD_PRICE)


@pytest.mark.parametrize("qty", [0, -1, -100])
def test_zero_or_negative_size(engine, qty):
    assert_rejected(engine, order(ALICE, "c1", SELL, qty, D(170)), Reject.BAD_QTY)


@pytest.mark.parametrize("qty", [1, 50, 150, 1_001])
def test_off_lot_size(engine, qty):
    # PENNY trades in lots of 100 shares
    assert_rejected(engine, order(ALICE, "c1", BUY, qty, D("0.50"), "PENNY"), Reject.BAD_QTY)
    # a whole number of lots is fine
    apply_ok(engine, order(ALICE, "c2", BUY, 200, D("0.50"), "PENNY"))


def test_size_over_max_order_qty(engine, cfg):
    limit = cfg.risk.max_order_qty
    assert_rejected(engine, order(ALICE, "c1", BUY, limit + 1, D(170)), Reject.MAX_ORDER_SIZE)
    assert_rejected(
        engine, order(ALICE, "c2", BUY, limit + 1, 0, ord_type=MARKET, tif=Tif.IOC),
        Reject.MAX_ORDER_SIZE,
    )  # fmt: skip
    apply_ok(engine, order(ALICE, "c3", BUY, limit, D(170)))


@pytest.mark.parametrize(
    ("price", "ok"),
    [
        (D("187.01"), False),  # AAPL reference 170.00, band 10%: 153.00 .. 187.00
        (D("152.99"), False),
        (D(250), False),
        (D("187.00"), True),
        (D("153.00"), True),
    ],
)
def test_price_band(engine, price, ok):
    cmd = order(ALICE, "c1", BUY, 10, price)
    if ok:
        apply_ok(engine, cmd)
    else:
        assert_rejected(engine, cmd, Reject.PRICE_BAND)


def test_price_band_stays_on_the_reference(engine):
    rest(engine, BOB, "s1", SELL, 10, D(178))
    apply_ok(engine, order(ALICE, "b1", BUY, 10, D(178)))  # a trade does not move the band
    assert (engine.books["AAPL"].band_lo, engine.books["AAPL"].band_hi) == (D(153), D(187))
    assert_rejected(engine, order(ALICE, "b2", BUY, 10, D("187.01")), Reject.PRICE_BAND)
    apply_ok(engine, order(ALICE, "b3", BUY, 10, D(153)))


def test_position_limit(cfg):
    engine = make_engine(cfg, max_position=100)
    rest(engine, ALICE, "b1", BUY, 60, D(169))
    # open buys count as if they filled: 60 + 41 > 100
    assert_rejected(engine, order(ALICE, "b2", BUY, 41, D(168)), Reject.POSITION_LIMIT)
    assert_rejected(
        engine, order(ALICE, "b3", BUY, 41, 0, ord_type=MARKET, tif=Tif.IOC),
        Reject.POSITION_LIMIT,
    )  # fmt: skip
    rest(engine, ALICE, "b4", BUY, 40, D(168))  # exactly at the limit
    assert_rejected(engine, order(ALICE, "s1", SELL, 101, D(171)), Reject.POSITION_LIMIT)
    rest(engine, ALICE, "s2", SELL, 100, D(171))
    # another account is not affected
    rest(engine, BOB, "b1", BUY, 100, D(168))


def test_max_open_orders(cfg):
    engine = make_engine(cfg, max_open_orders=2)
    rest(engine, ALICE, "b1", BUY, 1, D(169))
    rest(engine, ALICE, "b2", BUY, 1, D(168))
    assert_rejected(engine, order(ALICE, "b3", BUY, 1, D(167)), Reject.MAX_OPEN_ORDERS)
    # orders that never rest do not need a slot
    events = apply_ok(engine, order(ALICE, "b4", BUY, 1, D(167), tif=Tif.IOC))
    assert events[-1].reason == CancelReason.IOC
    # nor does a replace of a resting order
    apply_ok(engine, ReplaceOrder(ALICE, "r1", 1, D(166), 5))
    # another account is not affected
    rest(engine, BOB, "b1", BUY, 1, D(167))


def test_post_only_that_would_trade(engine):
    rest(engine, BOB, "s1", SELL, 10, D(171))
    rest(engine, BOB, "b1", BUY, 10, D(169))
    assert_rejected(
        engine, order(ALICE, "c1", BUY, 5, D(171), post_only=True), Reject.POST_ONLY_WOULD_TRADE
    )
    assert_rejected(
        engine, order(ALICE, "c2", SELL, 5, D(168), post_only=True), Reject.POST_ONLY_WOULD_TRADE
    )
    # one tick inside the spread is fine
    events = apply_ok(engine, order(ALICE, "c3", BUY, 5, D("170.99"), post_only=True))
    assert isinstance(events[-1], Rested)


@pytest.mark.parametrize(
    "kw",
    [
        dict(ord_type=MARKET, tif=Tif.GTC),
        dict(ord_type=MARKET, tif=Tif.IOC, post_only=True),
        dict(tif=Tif.IOC, post_only=True),
        dict(tif=Tif.FOK, post_only=True),
    ],
)
def test_bad_tif(engine, kw):
    assert_rejected(engine, order(ALICE, "c1", BUY, 10, D(170), **kw), Reject.BAD_TIF)


@pytest.mark.parametrize("kind", ["new", "cancel", "replace"])
def test_unknown_account(engine, kind):
    rest(engine, ALICE, "b1", BUY, 10, D(169))
    cmd = {
        "new": order(99, "c1", BUY, 10, D(170)),
        "cancel": CancelOrder(99, "c1", 1),
        "replace": ReplaceOrder(99, "c1", 1, D(169), 5),
    }[kind]
    assert_rejected_stateless(engine, cmd, Reject.UNKNOWN_ACCOUNT)
    # not remembered: the same id is rejected again, not a Duplicate
    assert_rejected_stateless(engine, cmd, Reject.UNKNOWN_ACCOUNT)


def test_duplicate_account_name(engine):
    assert_rejected_stateless(engine, CreateAccount("alice", "other"), Reject.NAME_TAKEN)


@pytest.mark.parametrize("name", ["", "has space", "x" * 33, "semi;colon", "émile", "a/b"])
def test_bad_account_name(engine, name):
    assert_rejected_stateless(engine, CreateAccount(name, "hash"), Reject.BAD_NAME)


def test_good_account_names(engine):
    assert engine.apply(CreateAccount("A-b_c.9", "h"))[0] == AccountCreated(4, "A-b_c.9")
    assert engine.apply(CreateAccount("x" * 32, "h"))[0] == AccountCreated(5, "x" * 32)


# ---------------------------------------------------------------------------
# Cancel and replace rejects
# ---------------------------------------------------------------------------


def test_cancel_unknown_order(engine):
    assert_rejected(engine, CancelOrder(ALICE, "x1", 999), Reject.UNKNOWN_ORDER, order_id=999)


def test_cancel_another_users_order(engine):
    oid = rest(engine, ALICE, "b1", BUY, 10, D(169))
    assert_rejected(engine, CancelOrder(BOB, "x1", oid), Reject.UNKNOWN_ORDER, order_id=oid)
    assert queue(engine, BUY) == [(oid, D(169), 10)]


def test_cancel_of_a_finished_order(engine):
    oid = rest(engine, ALICE, "b1", BUY, 10, D(169))
    apply_ok(engine, order(BOB, "s1", SELL, 10, D(169)))  # fills it completely
    assert_rejected(engine, CancelOrder(ALICE, "x1", oid), Reject.UNKNOWN_ORDER, order_id=oid)
    oid2 = rest(engine, ALICE, "b2", BUY, 10, D(169))
    apply_ok(engine, CancelOrder(ALICE, "x2", oid2))
    assert_rejected(engine, CancelOrder(ALICE, "x3", oid2), Reject.UNKNOWN_ORDER, order_id=oid2)


def test_replace_another_users_order(engine):
    oid = rest(engine, ALICE, "b1", BUY, 10, D(169))
    assert_rejected(
        engine, ReplaceOrder(BOB, "r1", oid, D(169), 5), Reject.UNKNOWN_ORDER, order_id=oid
    )
    assert_rejected(
        engine, ReplaceOrder(ALICE, "r2", 999, D(169), 5), Reject.UNKNOWN_ORDER, order_id=999
    )


@pytest.mark.parametrize(
    ("price", "qty", "code"),
    [
        (D("169.005"), 10, Reject.BAD_PRICE),
        (0, 10, Reject.BAD_PRICE),
        (-D(169), 10, Reject.BAD_PRICE),
        (D(190), 10, Reject.PRICE_BAND),
        (D(150), 10, Reject.PRICE_BAND),
        (D(169), 0, Reject.BAD_QTY),
        (D(169), -5, Reject.BAD_QTY),
        (D(169), 100_001, Reject.MAX_ORDER_SIZE),
    ],
)
def test_replace_to_bad_price_or_size(engine, price, qty, code):
    oid = rest(engine, ALICE, "b1", BUY, 10, D(169))
    assert_rejected(engine, ReplaceOrder(ALICE, "r1", oid, price, qty), code, order_id=oid)
    assert queue(engine, BUY) == [(oid, D(169), 10)]


def test_replace_off_lot(engine):
    oid = rest(engine, ALICE, "b1", BUY, 200, D("0.50"), "PENNY")
    assert_rejected(
        engine, ReplaceOrder(ALICE, "r1", oid, D("0.50"), 150), Reject.BAD_QTY, order_id=oid
    )


def test_replace_past_position_limit(cfg):
    engine = make_engine(cfg, max_position=100)
    oid = rest(engine, ALICE, "b1", BUY, 60, D(169))
    rest(engine, ALICE, "b2", BUY, 30, D(168))
    # the replaced order's own open size is given back: 30 + 71 > 100, 30 + 70 is fine
    assert_rejected(
        engine, ReplaceOrder(ALICE, "r1", oid, D(169), 71), Reject.POSITION_LIMIT, order_id=oid
    )
    apply_ok(engine, ReplaceOrder(ALICE, "r2", oid, D(169), 70))


# ---------------------------------------------------------------------------
# Self-trade prevention
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["order", "account"])
def test_stp_cancel_resting(cfg, where):
    engine = make_engine(cfg)
    if where == "account":  # the account's default applies when the order says DEFAULT
        engine.apply(CreateAccount("dave", "h", Stp.CANCEL_RESTING))
        who, stp = 4, Stp.DEFAULT
    else:
        who, stp = ALICE, Stp.CANCEL_RESTING
    resting = rest(engine, who, "s1", SELL, 10, D(170))
    events = engine.apply(order(who, "b1", BUY, 10, D(170), stp=stp))
    incoming = events[0].order_id
    assert events[1:] == [
        Cancelled(who, resting, "AAPL", SELL, D(170), 10, CancelReason.SELF_TRADE, True),
        Rested(who, incoming, "AAPL", BUY, D(170), 10),
    ]
    assert queue(engine, SELL) == []
    assert queue(engine, BUY) == [(incoming, D(170), 10)]
    assert incoming in engine.orders and resting not in engine.orders


def test_stp_cancel_incoming(engine):
    resting = rest(engine, ALICE, "s1", SELL, 10, D(170))
    events = engine.apply(order(ALICE, "b1", BUY, 10, D(170), stp=Stp.CANCEL_INCOMING))
    incoming = events[0].order_id
    assert events[1:] == [
        Cancelled(ALICE, incoming, "AAPL", BUY, D(170), 10, CancelReason.SELF_TRADE, False),
    ]
    assert queue(engine, SELL) == [(resting, D(170), 10)]
    assert queue(engine, BUY) == []


def test_stp_cancel_both(engine):
    resting = rest(engine, ALICE, "s1", SELL, 10, D(170))
    events = engine.apply(order(ALICE, "b1", BUY, 4, D(170), stp=Stp.CANCEL_BOTH))
    incoming = events[0].order_id
    assert events[1:] == [
        Cancelled(ALICE, resting, "AAPL", SELL, D(170), 10, CancelReason.SELF_TRADE, True),
        Cancelled(ALICE, incoming, "AAPL", BUY, D(170), 4, CancelReason.SELF_TRADE, False),
    ]
    assert queue(engine, SELL) == queue(engine, BUY) == []
    assert engine.orders == {}


def test_stp_after_trading_with_others(engine):
    bob = rest(engine, BOB, "s1", SELL, 5, D(170))
    mine = rest(engine, ALICE, "s1", SELL, 10, D(170))
    carol = rest(engine, CAROL, "s1", SELL, 5, D(170))
    events = engine.apply(order(ALICE, "b1", BUY, 20, D(170), stp=Stp.CANCEL_INCOMING))
    incoming = events[0].order_id
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.maker_order, f.qty) for f in fills] == [(bob, 5)]
    assert events[-1] == Cancelled(
        ALICE, incoming, "AAPL", BUY, D(170), 15, CancelReason.SELF_TRADE, False
    )
    assert queue(engine, SELL) == [(mine, D(170), 10), (carol, D(170), 5)]
    # cancel resting: skips (cancels) its own order and trades on with the next one
    events = engine.apply(order(ALICE, "b2", BUY, 5, D(170), stp=Stp.CANCEL_RESTING))
    assert [type(e) for e in events] == [Accepted, Cancelled, Fill, Executed]
    assert events[1].order_id == mine and events[2].maker_order == carol
    assert events[1].reason == CancelReason.SELF_TRADE and events[1].from_book


# ---------------------------------------------------------------------------
# Replace and priority
# ---------------------------------------------------------------------------


def test_replace_cutting_size_keeps_priority(engine):
    first = rest(engine, ALICE, "s1", SELL, 10, D(171))
    second = rest(engine, BOB, "s1", SELL, 10, D(171))
    events = engine.apply(ReplaceOrder(ALICE, "r1", first, D(171), 4))
    assert events == [
        Replaced(ALICE, "r1", first, "AAPL", SELL, D(171), 10, D(171), 4, True),
    ]
    assert queue(engine, SELL) == [(first, D(171), 4), (second, D(171), 10)]
    assert engine.books["AAPL"].asks.depth() == [(D(171), 14)]
    events = apply_ok(engine, order(CAROL, "b1", BUY, 4, D(171)))
    (fill,) = [e for e in events if isinstance(e, Fill)]
    assert (fill.maker_order, fill.qty, fill.maker_leaves) == (first, 4, 0)


def test_replace_same_price_and_size_keeps_priority(engine):
    first = rest(engine, ALICE, "s1", SELL, 10, D(171))
    second = rest(engine, BOB, "s1", SELL, 10, D(171))
    (replaced,) = engine.apply(ReplaceOrder(ALICE, "r1", first, D(171), 10))
    assert replaced.kept_priority
    assert queue(engine, SELL) == [(first, D(171), 10), (second, D(171), 10)]


def test_replace_increasing_size_loses_priority(engine):
    first = rest(engine, ALICE, "s1", SELL, 10, D(171))
    second = rest(engine, BOB, "s1", SELL, 10, D(171))
    events = engine.apply(ReplaceOrder(ALICE, "r1", first, D(171), 12))
    assert events == [
        Replaced(ALICE, "r1", first, "AAPL", SELL, D(171), 10, D(171), 12, False),
        Rested(ALICE, first, "AAPL", SELL, D(171), 12),
    ]
    assert queue(engine, SELL) == [(second, D(171), 10), (first, D(171), 12)]
    events = apply_ok(engine, order(CAROL, "b1", BUY, 10, D(171)))
    assert [e.maker_order for e in events if isinstance(e, Fill)] == [second]


def test_replace_changing_price_loses_priority(engine):
    first = rest(engine, ALICE, "s1", SELL, 10, D(171))
    second = rest(engine, BOB, "s1", SELL, 10, D(171))
    (replaced, rested) = engine.apply(ReplaceOrder(ALICE, "r1", first, D(172), 10))
    assert not replaced.kept_priority
    assert rested == Rested(ALICE, first, "AAPL", SELL, D(172), 10)
    (replaced, rested) = engine.apply(ReplaceOrder(ALICE, "r2", first, D(171), 10))
    assert not replaced.kept_priority
    assert queue(engine, SELL) == [(second, D(171), 10), (first, D(171), 10)]


def test_replace_to_a_crossing_price_trades(engine):
    bid = rest(engine, BOB, "b1", BUY, 5, D(169))
    ask = rest(engine, ALICE, "s1", SELL, 10, D(171))
    events = engine.apply(ReplaceOrder(ALICE, "r1", ask, D(169), 10))
    assert [type(e) for e in events] == [Replaced, Fill, Executed, Rested]
    fill = events[1]
    assert (fill.price, fill.qty, fill.maker_order, fill.taker_order) == (D(169), 5, bid, ask)
    assert events[-1] == Rested(ALICE, ask, "AAPL", SELL, D(169), 5)
    assert queue(engine, SELL) == [(ask, D(169), 5)]


# ---------------------------------------------------------------------------
# IOC, FOK, market, cancel
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("side", "edge"), [(BUY, D(187)), (SELL, D(153))])
def test_market_order_on_empty_book_is_cancelled_ioc(engine, side, edge):
    events = engine.apply(order(ALICE, "m1", side, 10, 0, ord_type=MARKET, tif=Tif.IOC))
    assert events == [
        Accepted(ALICE, "m1", 1, "AAPL", side, 0, 10),
        Cancelled(ALICE, 1, "AAPL", side, edge, 10, CancelReason.IOC, False),
    ]
    assert engine.orders == {}


def test_market_order_trades_then_cancels_rest(engine):
    rest(engine, BOB, "s1", SELL, 4, D(171))
    rest(engine, BOB, "s2", SELL, 4, D(172))
    events = engine.apply(order(ALICE, "m1", BUY, 10, 0, ord_type=MARKET, tif=Tif.IOC))
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.price, f.qty) for f in fills] == [(D(171), 4), (D(172), 4)]
    assert events[-1].reason == CancelReason.IOC and events[-1].qty == 2
    assert not any(isinstance(e, Rested) for e in events)
    assert queue(engine, BUY) == queue(engine, SELL) == []


def test_fok_that_cannot_fill_is_cancelled(engine):
    ask = rest(engine, BOB, "s1", SELL, 5, D(170))
    rest(engine, BOB, "s2", SELL, 5, D(171))  # beyond the FOK's limit
    before = core_state(engine)
    events = engine.apply(order(ALICE, "f1", BUY, 10, D(170), tif=Tif.FOK))
    oid = events[0].order_id
    assert events[1:] == [Cancelled(ALICE, oid, "AAPL", BUY, D(170), 10, CancelReason.FOK, False)]
    assert queue(engine, SELL)[0] == (ask, D(170), 5)
    assert core_state(engine)[:3] == before[:3]  # books, accounts and orders untouched
    # a market FOK on an empty side as well
    events = engine.apply(order(ALICE, "f2", SELL, 1, 0, ord_type=MARKET, tif=Tif.FOK))
    assert events[-1].reason == CancelReason.FOK and not any(isinstance(e, Fill) for e in events)


def test_fok_blocked_by_own_order(engine):
    rest(engine, ALICE, "s1", SELL, 5, D(170))
    rest(engine, BOB, "s1", SELL, 10, D(170))
    # cancel-incoming: the own order stops the FOK before it can fill: killed, nothing cancelled
    events = engine.apply(order(ALICE, "f1", BUY, 10, D(170), tif=Tif.FOK))
    assert [type(e) for e in events] == [Accepted, Cancelled]
    assert events[1].reason == CancelReason.FOK
    # cancel-resting: the own order is removed and the FOK fills from bob
    events = engine.apply(order(ALICE, "f2", BUY, 10, D(170), tif=Tif.FOK, stp=Stp.CANCEL_RESTING))
    assert [type(e) for e in events] == [Accepted, Cancelled, Fill, Executed]
    assert events[1].reason == CancelReason.SELF_TRADE and events[2].qty == 10


def test_fok_that_can_fill_fills_completely(engine):
    rest(engine, BOB, "s1", SELL, 5, D(170))
    rest(engine, CAROL, "s1", SELL, 5, D("170.01"))
    events = engine.apply(order(ALICE, "f1", BUY, 10, D("170.01"), tif=Tif.FOK))
    assert sum(e.qty for e in events if isinstance(e, Fill)) == 10
    assert events[-1] == Executed(ALICE, 3, 10, D(170) * 5 + D("170.01") * 5, D("170.005"))


def test_limit_ioc_never_rests(engine):
    rest(engine, BOB, "s1", SELL, 3, D(170))
    events = engine.apply(order(ALICE, "i1", BUY, 10, D(170), tif=Tif.IOC))
    oid = events[0].order_id
    assert events[-1] == Cancelled(ALICE, oid, "AAPL", BUY, D(170), 7, CancelReason.IOC, False)
    assert oid not in engine.orders and queue(engine, BUY) == []


def test_cancel_emits_cancelled_from_book(engine):
    oid = rest(engine, ALICE, "b1", BUY, 10, D(169))
    rest(engine, ALICE, "b2", BUY, 5, D(169))
    assert engine.books["AAPL"].bids.depth() == [(D(169), 15)]
    events = engine.apply(CancelOrder(ALICE, "x1", oid))
    assert events == [Cancelled(ALICE, oid, "AAPL", BUY, D(169), 10, CancelReason.USER, True, "x1")]
    assert engine.books["AAPL"].bids.depth() == [(D(169), 5)]
    assert oid not in engine.orders
    assert engine.accounts[ALICE].open_orders == 1
    # a repeat of the cancel's client id is a Duplicate of the first answer
    assert engine.apply(CancelOrder(ALICE, "x1", oid)) == [Duplicate(ALICE, "x1", events[0])]


def test_duplicate_new_order_returns_first_answer(engine):
    first = engine.apply(order(ALICE, "c1", BUY, 10, D(169)))
    before = engine.state_hash()
    again = engine.apply(order(ALICE, "c1", SELL, 99, D(175)))  # contents do not matter
    assert again == [Duplicate(ALICE, "c1", first[0])]
    assert engine.state_hash() == before
    # the same client id from another account is a different order
    apply_ok(engine, order(BOB, "c1", BUY, 10, D(169)))


def test_replace_of_a_post_only_order_never_takes_liquidity(engine):
    post = apply_ok(engine, order(ALICE, "p1", SELL, 10, D(172), post_only=True))[0].order_id
    rest(engine, BOB, "b1", BUY, 10, D(170))
    assert_rejected(
        engine, ReplaceOrder(ALICE, "r1", post, D(170), 10), Reject.POST_ONLY_WOULD_TRADE, post
    )
    events = apply_ok(engine, ReplaceOrder(ALICE, "r2", post, D(171), 10))
    assert isinstance(events[-1], Rested) and events[-1].price == D(171)
    assert engine.orders[post].post_only  # still post-only after the move


def test_size_cut_allowed_outside_a_moved_band(engine):
    low = rest(engine, ALICE, "a1", BUY, 10, D(154))
    engine.books["AAPL"].set_band(D(186))  # as an operator's new reference does
    assert engine.books["AAPL"].band_lo > D(154)
    events = apply_ok(engine, ReplaceOrder(ALICE, "r1", low, D(154), 5))
    assert events[0].kept_priority and engine.orders[low].leaves == 5
    assert_rejected(engine, ReplaceOrder(ALICE, "r2", low, D(154), 8), Reject.PRICE_BAND, low)
