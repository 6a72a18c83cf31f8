"""Property tests of the auction's uncross, through the engine (hypothesis).

A random book is entered in a call period (limit and market orders of several
accounts, in random order, at random prices around a random reference), then the
call ends. Against a brute force over every price on tick in the static band:

* the volume executed is the most any one price could execute, and the price is the
  one the documented rule picks (most volume, then least imbalance, then nearest the
  reference, then the lower price);
* every execution is at that one price, flagged ``auction``;
* no executable order is left on both sides at the auction price;
* price-time priority: on each side the orders that could trade are filled in
  priority order (best price, market orders first at a price, then time), so at most
  one order per side is filled in part and every order before it in full;
* cash and shares are conserved, and what market orders leave is cancelled (AUCTION).

``auction.clearing`` alone is also checked against the brute force on arbitrary
levels (off-band and uncrossed inputs included)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.bus import CreateAccount, EndOfDay, NewOrder, SetSession
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import (
    AuctionDone,
    Cancelled,
    CancelReason,
    Executed,
    Fill,
    Rested,
    Session,
    Side,
    Tif,
)
from services.matcher import auction
from services.matcher.engine import Engine
from tests.engine_state import check_ledger

TICK = 100
RISK = RiskLimits(max_position=10**6, short_limit=10**6)
SETTINGS = settings(max_examples=300, deadline=None)

orders = st.lists(
    st.tuples(
        st.integers(1, 4),  # account
        st.sampled_from((Side.BUY, Side.SELL)),
        st.booleans() | st.just(False),  # market (less often)
        st.integers(-8, 8),  # ticks from the reference
        st.integers(1, 30),  # size
    ),
    min_size=0,
    max_size=30,
)


def brute(
    buys: list[tuple[int, int]], sells: list[tuple[int, int]], lo: int, hi: int, reference: int
):
    """(price, volume, imbalance) by the documented rule, over every price on tick in
    lo .. hi: most volume, then least imbalance, then nearest the reference, then lower."""
    best = None
    for price in range(lo, hi + 1, TICK):
        buy = sum(q for p, q in buys if p >= price)
        sell = sum(q for p, q in sells if p <= price)
        volume = min(buy, sell)
        if not volume:
            continue
        key = (volume, -abs(buy - sell), -abs(price - reference), -price)
        if best is None or key > best[0]:
            best = (key, price, volume, abs(buy - sell))
    return (0, 0, 0) if best is None else best[1:]


def _engine(reference: int) -> Engine:
    engine = Engine({"AAA": SymbolSpec("AAA", TICK, 1, reference, 1000)}, RISK)
    for i in range(4):
        engine.apply(CreateAccount(f"acct{i}", "h", 0))  # stp 0: the default
    engine.apply(EndOfDay(0, 20260105))
    return engine


@SETTINGS
@given(
    orders=orders,
    reference=st.integers(9_000, 11_000).map(lambda r: r * TICK),
    closing=st.booleans(),
)
def test_the_uncross_executes_the_most_at_one_fair_price_in_priority(orders, reference, closing):
    engine = _engine(reference)
    book = engine.books["AAA"]
    call = Session.PRE_CLOSE if closing else Session.PRE_OPEN
    engine.apply(SetSession("AAA", call))
    resting = {}  # order id -> (account, side, price, size, market)
    for n, (account, side, market, ticks, qty) in enumerate(orders):
        price = 0 if market else reference + ticks * TICK
        events = engine.apply(
            NewOrder(account, f"o{n}", "AAA", side, qty, price, 2 if market else 1, Tif.DAY)
        )
        for e in events:
            if type(e) is Rested:
                resting[e.order_id] = (e.account, e.side, e.price, e.qty, market)
    cash = {a: engine.accounts[a].cash for a in engine.accounts}
    buys = [(p, q) for _, s, p, q, _ in resting.values() if s == Side.BUY]
    sells = [(p, q) for _, s, p, q, _ in resting.values() if s == Side.SELL]
    lo, hi = book.collar(Side.SELL), book.collar(Side.BUY)

    check_ledger(engine)
    events = engine.apply(SetSession("AAA", Session.CLOSED if closing else Session.CONTINUOUS))
    check_ledger(engine)

    done = [e for e in events if type(e) is AuctionDone]
    assert len(done) == 1 and events[0] is done[0]
    assert done[0].kind == ("close" if closing else "open")
    price, volume, imbalance = brute(buys, sells, lo, hi, reference)
    assert (done[0].price, done[0].matched, done[0].imbalance) == (price, volume, imbalance)
    fills = [e for e in events if type(e) is Fill]
    assert sum(f.qty for f in fills) == volume
    assert all(f.price == price and f.auction for f in fills)  # one price for every execution
    # price-time priority on each side: a prefix filled in full, at most one in part
    filled: dict[int, int] = {}
    for f in fills:
        for order in (f.taker_order, f.maker_order):
            filled[order] = filled.get(order, 0) + f.qty
        later = max(f.taker_order, f.maker_order)  # the aggressor side is the later order's
        assert f.taker_order == later and f.side == resting[later][1]
    for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
        eligible = sorted(
            (oid for oid, o in resting.items() if o[1] == side and sign * (o[2] - price) <= 0),
            key=lambda oid: (sign * resting[oid][2], not resting[oid][4], oid),
        )
        amounts = [filled.get(oid, 0) for oid in eligible]
        sizes = [resting[oid][3] for oid in eligible]
        partial = next(
            (i for i, (a, s) in enumerate(zip(amounts, sizes, strict=True)) if a < s), None
        )
        if partial is not None:
            assert all(a == 0 for a in amounts[partial + 1 :]), (amounts, sizes)
        assert set(filled) <= set(resting)
    # no executable order left on both sides at the auction price (market orders' too,
    # before their cancel)
    left = {oid: o[3] - filled.get(oid, 0) for oid, o in resting.items()}
    if price:
        buy_left = sum(q for oid, q in left.items() if resting[oid][1] == Side.BUY
                       and resting[oid][2] >= price)  # fmt: skip
        sell_left = sum(q for oid, q in left.items() if resting[oid][1] == Side.SELL
                        and resting[oid][2] <= price)  # fmt: skip
        assert not (buy_left and sell_left)
    assert {oid: o.leaves for oid, o in engine.orders.items()} == {
        oid: q for oid, q in left.items() if q and not resting[oid][4]
    }
    # each order that executed has its summary, at the auction price
    summaries = {e.order_id: e for e in events if type(e) is Executed}
    assert set(summaries) == set(filled)
    assert all(s.cum_qty == filled[s.order_id] and s.avg_px == price for s in summaries.values())
    # cash and shares conserved; market orders' leftovers cancelled (AUCTION)
    assert sum(engine.accounts[a].cash for a in cash) == sum(cash.values())
    assert sum(engine.position(a, "AAA") for a in cash) == 0
    auction_cancels = {e.order_id for e in events if type(e) is Cancelled}
    assert all(e.reason == CancelReason.AUCTION for e in events if type(e) is Cancelled)
    expected_cancels = {oid for oid, o in resting.items() if o[4] and left.get(oid)}
    assert auction_cancels == expected_cancels
    assert not any(o.market for o in engine.orders.values())
    if price:
        assert book.last_price == price
    # the book is no longer crossed: continuous matching may start
    if book.bids.best_key is not None and book.asks.best_key is not None:
        assert -book.bids.best_key < book.asks.best_key


levels = st.lists(st.tuples(st.integers(1, 40), st.integers(1, 50)), max_size=12)


@SETTINGS
@given(bids=levels, asks=levels, reference=st.integers(1, 4_000))
def test_clearing_agrees_with_the_brute_force(bids, asks, reference):
    """Any levels (crossed or not) and a reference that may be off tick."""
    bids = [(p * TICK, q) for p, q in bids]
    asks = [(p * TICK, q) for p, q in asks]
    price, volume, imbalance, side = auction.clearing(bids, asks, TICK, reference)
    assert (price, volume, imbalance) == brute(bids, asks, TICK, 40 * TICK, reference)
    if volume:
        buy = sum(q for p, q in bids if p >= price)
        sell = sum(q for p, q in asks if p <= price)
        assert side == (1 if buy > sell else 2 if sell > buy else 0)
    else:
        assert (price, side) == (0, 0)


def test_the_tie_breaks_as_documented():
    """Equal volume and imbalance over a range: the price nearest the reference; off
    tick and halfway between two ticks: the lower; equal volume: less imbalance."""
    # 10 bid at 105, 10 offered at 100: every price 100..105 executes 10, no imbalance
    assert auction.clearing([(105, 10)], [(100, 10)], 1, 103) == (103, 10, 0, 0)
    assert auction.clearing([(105, 10)], [(100, 10)], 1, 90) == (100, 10, 0, 0)
    assert auction.clearing([(105, 10)], [(100, 10)], 1, 200) == (105, 10, 0, 0)
    assert auction.clearing([(110, 10)], [(100, 10)], 10, 105) == (100, 10, 0, 0)
    # 10 executes at 100 and at 101; the imbalance is smaller at 100 (0 against 5) ...
    assert auction.clearing([(101, 10)], [(100, 10), (101, 5)], 1, 101) == (100, 10, 0, 0)
    # ... and here at 101 (5 bought too many against 10), though 100 is the reference
    assert auction.clearing([(101, 15), (100, 5)], [(100, 10)], 1, 100) == (101, 10, 5, 1)
