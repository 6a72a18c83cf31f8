"""The seed system's matching scenario (docs/architecture.md, "The seed system"), as a
table, on the pure engine."""

from __future__ import annotations

import pytest

from services.common.bus import CreateAccount, NewOrder
from services.common.money import to_units
from services.common.wire import Executed, Fill, Side
from services.matcher.engine import Engine

D = to_units  # dollars -> price units

# (who, side, symbol, size, price, {symbol: (bids, asks)} afterwards; levels as price: size)
SCENARIO = [
    ("user1", "BUY", "AAPL", 100, 170, {"AAPL": ({170: 100}, {})}),
    ("user2", "SELL", "AAPL", 50, 175, {"AAPL": ({170: 100}, {175: 50})}),
    ("user1", "BUY", "AAPL", 120, 176, {"AAPL": ({170: 100, 176: 70}, {})}),
    ("user1", "BUY", "TSLA", 100, 160, {"TSLA": ({160: 100}, {})}),
    ("user2", "SELL", "AAPL", 200, 168, {"AAPL": ({}, {168: 30})}),
    ("user3", "SELL", "AAPL", 142, 168, {"AAPL": ({}, {168: 172})}),
    ("user1", "BUY", "AAPL", 200, 170, {"AAPL": ({170: 28}, {})}),
    ("user2", "BUY", "AAPL", 84, 171, {"AAPL": ({170: 28, 171: 84}, {})}),
    ("user3", "SELL", "AAPL", 300, 169, {"AAPL": ({}, {169: 188})}),
]


def book_levels(engine: Engine, symbol: str) -> tuple[dict, dict]:
    book = engine.books[symbol]
    as_dollars = lambda side: {p / D(1): q for p, q in side.depth()}  # noqa: E731
    return as_dollars(book.bids), as_dollars(book.asks)


@pytest.fixture
def seeded(cfg):
    engine = Engine(cfg.symbols, cfg.risk)
    ids = {}
    for name in ("user1", "user2", "user3"):
        created = engine.apply(CreateAccount(name, "hash"))[0]
        ids[name] = created.account
    return engine, ids


def test_seed_scenario_books_after_each_order(seeded):
    engine, ids = seeded
    for n, (who, side, symbol, size, price, books) in enumerate(SCENARIO, 1):
        events = engine.apply(NewOrder(ids[who], f"c{n}", symbol, Side[side], size, D(price)))
        assert events[0].order_id == n, events
        for sym, (bids, asks) in books.items():
            assert book_levels(engine, sym) == (bids, asks), f"after order {n}"


def test_seed_scenario_messages(seeded):
    engine, ids = seeded
    for n, (who, side, symbol, size, price, _) in enumerate(SCENARIO, 1):
        events = engine.apply(NewOrder(ids[who], f"c{n}", symbol, Side[side], size, D(price)))
    # the last order: user3 sells 300 @ 169 into bids 171 x 84 then 170 x 28
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.price, f.qty) for f in fills] == [(D(171), 84), (D(170), 28)]
    (summary,) = [e for e in events if isinstance(e, Executed)]
    assert summary.account == ids["user3"]
    assert summary.cum_qty == 112
    assert summary.avg_px == D("170.75")
    assert summary.notional == D(171) * 84 + D(170) * 28
    # positions: shares sum to zero per symbol; trades only move the opening cash around
    for symbol in ("AAPL", "TSLA"):
        assert sum(engine.position(a, symbol) for a in ids.values()) == 0
    assert sum(a.cash for a in engine.accounts.values()) == 3 * engine.risk.opening_cash
    assert engine.position(ids["user3"], "AAPL") == -(142 + 112)


def test_taker_gets_one_execution_per_fill_at_resting_price(seeded):
    engine, ids = seeded
    engine.apply(NewOrder(ids["user1"], "a", "AAPL", Side.SELL, 50, D("170.35")))
    events = engine.apply(NewOrder(ids["user2"], "b", "AAPL", Side.BUY, 50, D("170.50")))
    (fill,) = [e for e in events if isinstance(e, Fill)]
    assert fill.price == D("170.35")  # order protection: the buyer pays the resting price
