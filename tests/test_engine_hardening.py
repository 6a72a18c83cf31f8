"""Hostile but valid order flow against the pure engine: buying power, short sales, the
static and dynamic price bands, volatility pauses, deposits, bounded FOK checks, and
quantities that never leave int64 however the limits are pushed (then replayed)."""

from __future__ import annotations

import dataclasses

import msgpack
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.bus import (
    Admin,
    CancelOrder,
    CreateAccount,
    NewOrder,
    Record,
    Reopen,
    ReplaceOrder,
)
from services.common.config import RiskLimits, SymbolSpec
from services.common.money import to_units
from services.common.wire import (
    CancelReason,
    CashAdjusted,
    Fill,
    OrdType,
    Reject,
    Rejected,
    Side,
    Tif,
    TradingPause,
)
from services.matcher import snapshot
from services.matcher.book import Book
from services.matcher.engine import Engine

D = to_units
BUY, SELL = Side.BUY, Side.SELL
INT64 = 2**63 - 1
AAPL = SymbolSpec("AAPL", tick=100, lot=1, reference=D(100), band_bps=1000, dynamic_band_bps=500)


def make(risk: RiskLimits | None = None, accounts: int = 3, **symbols) -> Engine:
    engine = Engine(symbols or {"AAPL": AAPL}, risk or RiskLimits())
    for n in range(1, accounts + 1):
        engine.apply(CreateAccount(f"u{n}", "hash"))
    return engine


class Ids:
    n = 0

    @classmethod
    def next(cls) -> str:
        cls.n += 1
        return f"c{cls.n}"


def order(engine, account, side, qty, price, **kw) -> list:
    return engine.apply(NewOrder(account, Ids.next(), "AAPL", side, qty, price, **kw))


def code(events) -> int:
    return events[0].code if isinstance(events[0], Rejected) else 0


def ints(value):
    """Every integer inside an event or command, however deep."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from ints(item)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from ints(getattr(value, name))


# -- the poisoning attack, on the engine ---------------------------------------


def test_wash_trades_cannot_walk_the_price_past_the_static_band():
    engine = make(accounts=2)
    book = engine.books["AAPL"]
    static = (book.band_lo, book.band_hi)
    price, walked, paused = D(100), 0, 0
    for _ in range(200):  # each step tries to trade 4% above the last trade
        price = price * 104 // 100 // 100 * 100
        if code(order(engine, 1, SELL, 10, price)):
            break
        events = order(engine, 2, BUY, 10, price)
        if code(events) == Reject.TRADING_PAUSED:
            paused += 1
            engine.apply(Reopen("AAPL"))
            order(engine, 2, BUY, 10, price)
        walked += any(isinstance(e, Fill) for e in events)
    assert (book.band_lo, book.band_hi) == static  # no trade moved the static band
    assert book.last_price <= static[1]
    assert code(order(engine, 1, SELL, 10, static[1] + 100)) == Reject.PRICE_BAND
    assert walked >= 2  # it did trade, inside the band


def test_an_order_that_would_trade_past_the_dynamic_band_pauses_the_symbol():
    engine = make()
    order(engine, 1, SELL, 10, D(103))
    order(engine, 1, SELL, 10, D(108))  # beyond 105 (5% above the reference)
    events = order(engine, 2, BUY, 30, D(109))
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.price, f.qty) for f in fills] == [(D(103), 10)]  # only inside the band
    cancelled, pause = events[-2], events[-1]
    assert cancelled.reason == CancelReason.VOLATILITY_PAUSE and cancelled.qty == 20
    # it reopens around the price that hit the band (108), inside the static band
    assert pause == TradingPause("AAPL", True, D(103), D("102.60"), D(110))
    # during the pause: no new order and no repricing; cancels and size cuts go through
    assert code(order(engine, 3, BUY, 1, D(100))) == Reject.TRADING_PAUSED
    resting = 2
    assert code(engine.apply(ReplaceOrder(1, Ids.next(), resting, D(107), 10))) == (
        Reject.TRADING_PAUSED
    )
    assert not code(engine.apply(ReplaceOrder(1, Ids.next(), resting, D(108), 5)))
    (reopen,) = engine.apply(Reopen("AAPL"))
    assert reopen == TradingPause("AAPL", False, D(103), D("102.60"), D(110))
    events = order(engine, 3, BUY, 5, D(108))  # inside the re-anchored band now
    assert [e.price for e in events if isinstance(e, Fill)] == [D(108)]


def test_the_band_holds_on_both_sides_of_the_book():
    """A sell into a bid resting above the dynamic band (or a buy into an ask below
    it) must not trade there: that would jump the price in one trade."""
    engine = make()
    order(engine, 1, BUY, 10, D(109))  # rests: no asks
    events = order(engine, 2, SELL, 10, D(91))
    assert not [e for e in events if isinstance(e, Fill)]
    assert events[-1].paused and engine.books["AAPL"].paused
    engine.apply(Reopen("AAPL"))  # around 109 now: 109 may trade
    events = order(engine, 2, SELL, 10, D(109))
    assert [e.price for e in events if isinstance(e, Fill)] == [D(109)]


def test_ones_own_resting_order_cannot_pause_the_symbol():
    engine = make()
    order(engine, 1, SELL, 10, D(106))  # past the dynamic band (105)
    events = order(engine, 1, BUY, 10, D(106), tif=Tif.IOC)  # meets only its own order
    assert not engine.books["AAPL"].paused
    assert all(not isinstance(e, TradingPause) for e in events)


def test_a_new_reference_cancels_orders_outside_its_static_band():
    engine = make()
    order(engine, 1, BUY, 10, D(104))
    low = order(engine, 1, BUY, 10, D(93))[0].order_id
    events = engine.apply(Admin(3, Ids.next(), "reference", "AAPL", price=D(90)))
    cancelled = [e for e in events if type(e).__name__ == "Cancelled"]
    assert [(e.price, e.reason) for e in cancelled] == [(D(104), CancelReason.OUTSIDE_BAND)]
    book = engine.books["AAPL"]
    assert (book.band_lo, book.band_hi) == (D(81), D(99)) and low in engine.orders
    assert engine.accounts[1].open_buy_value == D(93) * 10
    events = order(engine, 2, SELL, 10, D(93))  # trades at 93, inside the new bands
    assert [e.price for e in events if isinstance(e, Fill)] == [D(93)]


def test_a_kill_cancels_in_order_id_order_after_a_snapshot_restore_too():
    engine = make()
    order(engine, 1, BUY, 1, D(100))
    order(engine, 1, BUY, 1, D(101))
    data = msgspec.msgpack.encode(snapshot.capture(engine, 2, 1))
    restored, _, _ = snapshot.loads(data, {"AAPL": AAPL}, RiskLimits())
    kill = Admin(3, "k1", "kill", target=1)
    assert engine.apply(kill) == restored.apply(kill)


def test_a_deposit_cannot_set_up_cash_past_the_ceiling():
    engine = make(RiskLimits(max_cash=D(10**6), opening_cash=0, max_price=D(1_000)))
    assert not code(order(engine, 1, SELL, 900, D(100)))  # at max_price: $900,000
    big = engine.apply(Admin(3, Ids.next(), "deposit", target=1, amount=D(200_000)))
    assert code(big) == Reject.BAD_AMOUNT
    assert not code(engine.apply(Admin(3, Ids.next(), "deposit", target=1, amount=D(100_000))))


def test_fok_check_stops_at_the_order_size_and_kills_past_the_band():
    engine = make()
    for _ in range(2_000):
        order(engine, 1, SELL, 1, D(101))
    book = engine.books["AAPL"]
    # the check stops once the size is reached: it counts 5 shares, not the 2,000 on offer
    assert engine._fillable(book, 2, BUY, D(101), 5, 2) == 5
    # and a size the book cannot fill is seen from the one level's size, no order walk
    assert engine._fillable(book, 2, BUY, D(101), 100_000, 2) == 2_000
    events = order(engine, 2, BUY, 5, D(101), ord_type=OrdType.LIMIT, tif=Tif.FOK)
    assert sum(e.qty for e in events if isinstance(e, Fill)) == 5
    order(engine, 1, SELL, 10, D(107))  # past the dynamic band: a FOK that needs it is killed
    events = order(engine, 2, BUY, 2_000, D(107), tif=Tif.FOK)
    assert events[-1].reason == CancelReason.FOK and not book.paused


def test_market_orders_name_no_price():
    engine = make()
    for price in (-1, 1, 2**64 - 1):
        events = order(engine, 1, BUY, 1, price, ord_type=OrdType.MARKET, tif=Tif.IOC)
        assert code(events) == Reject.BAD_PRICE


# -- buying power and short sales -----------------------------------------------

PROD = RiskLimits(opening_cash=0, short_limit=0)


def test_buys_need_cash_and_open_buys_count():
    engine = make(PROD)
    assert code(order(engine, 1, BUY, 1, D(100))) == Reject.INSUFFICIENT_FUNDS
    operator = 3
    done = engine.apply(Admin(operator, Ids.next(), "deposit", target=1, amount=D(1_000)))
    assert done[-1] == CashAdjusted(1, D(1_000), D(1_000))
    assert not code(order(engine, 1, BUY, 6, D(100)))  # 600 of 1,000 reserved
    assert code(order(engine, 1, BUY, 5, D(100))) == Reject.INSUFFICIENT_FUNDS
    assert not code(order(engine, 1, BUY, 4, D(100)))  # exactly the rest
    # a withdrawal may not take what the open buys need
    out = engine.apply(Admin(operator, Ids.next(), "deposit", target=1, amount=-D(1)))
    assert code(out) == Reject.INSUFFICIENT_FUNDS
    engine.apply(CancelOrder(1, Ids.next(), 1 + 0))  # frees 600
    assert engine.accounts[1].open_buy_value == D(400)
    assert not code(order(engine, 1, BUY, 6, D(100)))
    assert code(engine.apply(Admin(operator, Ids.next(), "deposit", target=1, amount=0))) == (
        Reject.BAD_AMOUNT
    )


def test_sells_need_shares_when_short_sales_are_off():
    engine = make(PROD)
    engine.apply(Admin(3, Ids.next(), "deposit", target=1, amount=D(10_000)))
    assert code(order(engine, 2, SELL, 1, D(100))) == Reject.INSUFFICIENT_SHARES
    # with a short limit of 10, account 2 may sell 10 it does not hold, and no more
    risk = dataclasses.replace(PROD, short_limit=10)
    engine = make(risk)
    engine.apply(Admin(3, Ids.next(), "deposit", target=1, amount=D(10_000)))
    assert not code(order(engine, 2, SELL, 10, D(100)))  # short up to its limit
    assert code(order(engine, 2, SELL, 1, D(100))) == Reject.INSUFFICIENT_SHARES
    order(engine, 1, BUY, 10, D(100))
    assert engine.position(1, "AAPL") == 10 and engine.position(2, "AAPL") == -10
    assert not code(order(engine, 1, SELL, 10, D(100)))  # holds 10: may sell them
    assert not code(order(engine, 1, SELL, 10, D(100)))  # and 10 more short
    assert code(order(engine, 1, SELL, 1, D(100))) == Reject.INSUFFICIENT_SHARES


def test_huge_trades_are_refused_before_anything_overflows():
    engine = make(RiskLimits(max_cash=D(10**6), opening_cash=D(10**6)))
    assert code(order(engine, 1, BUY, 100_000, D(100))) == Reject.INSUFFICIENT_FUNDS
    # proceeds that could pass max_cash: at max_price per share, 1,000 shares is 1e9
    assert code(order(engine, 1, SELL, 1_000, D(100))) == Reject.VALUE_LIMIT
    assert code(engine.apply(Admin(3, Ids.next(), "deposit", target=1, amount=D(1)))) == (
        Reject.BAD_AMOUNT  # past max_cash
    )
    assert code(engine.apply(Admin(3, Ids.next(), "reference", "AAPL", price=D(10**7)))) == (
        Reject.VALUE_LIMIT
    )


# -- properties: limits pushed to the edge, every value in int64, replay equal ----

EDGE = RiskLimits(
    max_order_qty=100_000,
    max_position=1_000_000,
    max_price=D(1_000_000),
    max_cash=D(10**13),
    opening_cash=D(10**12),
    credit_limit=D(10**9),
    short_limit=500_000,
)
DEAR = SymbolSpec("DEAR", tick=D(1), lot=1, reference=D(900_000), band_bps=1000)


@st.composite
def hostile_streams(draw):
    commands = []
    for _ in range(draw(st.integers(5, 60))):
        account = draw(st.integers(1, 3))
        kind = draw(st.sampled_from(["new"] * 8 + ["cancel", "replace", "deposit", "reopen"]))
        edge = draw(st.sampled_from([D(810_000), D(990_000), D(1_000_000), D(900_000)]))
        price = edge + draw(st.integers(-5, 5)) * D(1)
        qty = draw(st.sampled_from([1, 7, 99_999, 100_000, 100_001, 1_000_000]))
        cl = f"x{len(commands)}"
        if kind == "new":
            market = draw(st.booleans()) and draw(st.booleans())
            commands.append(
                NewOrder(
                    account,
                    cl,
                    "DEAR",
                    draw(st.sampled_from([BUY, SELL])),
                    qty,
                    0 if market else price,
                    OrdType.MARKET if market else OrdType.LIMIT,
                    Tif.IOC if market else draw(st.sampled_from([Tif.GTC, Tif.IOC, Tif.FOK])),
                )  # fmt: skip
            )
        elif kind == "cancel":
            commands.append(CancelOrder(account, cl, draw(st.integers(1, 40))))
        elif kind == "replace":
            commands.append(ReplaceOrder(account, cl, draw(st.integers(1, 40)), price, qty))
        elif kind == "deposit":
            amount = draw(st.sampled_from([D(10**12), -D(10**12), D(10**13), 1, -1]))
            commands.append(Admin(3, cl, "deposit", target=account, amount=amount))
        else:
            commands.append(Reopen("DEAR"))
    return commands


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=hostile_streams())
def test_limits_keep_every_value_in_int64_and_the_journal_replays(commands):
    engine = make(EDGE, DEAR=DEAR)
    records = []
    deposits = 0
    for seq, cmd in enumerate(commands, 1):
        events = engine.apply(cmd)
        assert events, cmd  # every command answers something
        for value in ints(events):
            assert -INT64 <= value <= INT64, (cmd, events)
        deposits += sum(e.amount for e in events if isinstance(e, CashAdjusted))
        records.append(msgspec.msgpack.encode(Record(seq, 1, cmd, events)))
        for acct in engine.accounts.values():
            assert acct.cash + EDGE.credit_limit >= acct.open_buy_value >= 0, acct.account
            assert abs(acct.cash) <= EDGE.max_cash
            assert acct.open_sell_qty >= 0
            for holding in acct.holdings.values():
                assert holding.position - holding.open[SELL] >= -EDGE.short_limit
                assert holding.position + holding.open[BUY] <= EDGE.max_position
    opening = EDGE.opening_cash * len(engine.accounts)
    assert sum(a.cash for a in engine.accounts.values()) == opening + deposits
    # a plain MessagePack library reads every record (int64 / uint64 only)
    for raw in records:
        msgpack.unpackb(raw)
    # the journal replays to the same events and state; a snapshot restores it too
    replayed = make(EDGE, DEAR=DEAR)
    decoder = msgspec.msgpack.Decoder(Record)
    for raw in records:
        record = decoder.decode(raw)
        assert replayed.apply(record.command) == record.events
    assert replayed.state_hash() == engine.state_hash()
    data = msgspec.msgpack.encode(snapshot.capture(engine, len(records), 1))
    restored, _, _ = snapshot.loads(data, {"DEAR": DEAR}, EDGE)
    assert restored.state_hash() == engine.state_hash()
    for a, b in zip(restored.accounts.values(), engine.accounts.values(), strict=True):
        assert (a.open_buy_value, a.open_sell_qty) == (b.open_buy_value, b.open_sell_qty)


@settings(max_examples=300, deadline=None)
@given(
    reference=st.integers(1, 2 * 10**18),
    band_bps=st.integers(1, 9_999),
    dynamic_bps=st.integers(0, 9_999),
    price=st.integers(1, 4 * 10**18),
)
def test_the_dynamic_band_is_bps_around_the_price_up_to_the_largest_prices(
    reference, band_bps, dynamic_bps, price
):
    """Book.set_dynamic takes the band's half-width without the product price * bps,
    which would pass int64 (the compiled build's integers) at prices a config allows:
    the band is still the one the formula gives, on both builds."""
    spec = SymbolSpec(
        "X", tick=1, reference=reference, band_bps=band_bps,
        dynamic_band_bps=min(dynamic_bps, band_bps),
    )  # fmt: skip
    book = Book(spec, max_price=4 * 10**18)
    book.set_dynamic(price)
    at = min(max(price, book.band_lo), book.band_hi)
    bps = spec.dynamic_bps
    assert book.dyn_lo == max(book.band_lo, -(-at * (10_000 - bps) // 10_000))
    assert book.dyn_hi == min(book.band_hi, at * (10_000 + bps) // 10_000)
