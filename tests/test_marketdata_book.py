"""Public books from events: L2 diffs within the top N, trades, BBO, sequence numbers.

The hand-written cases pin each event's meaning; the flow test checks the public book
against the matching engine's own book after every record of a random order flow, and
that a mirror fed only the L2 increments keeps exactly the engine's top N.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.common.bus import CancelOrder, CreateAccount, NewOrder, Record, Reopen, ReplaceOrder
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import (
    TRADES_KEPT,
    Bbo,
    Cancelled,
    CancelReason,
    CashAdjusted,
    Fill,
    L2Update,
    Replaced,
    Rested,
    Side,
    Snapshot,
    Trade,
    TradingPause,
)
from services.marketdata.book import MarketData, diff
from services.matcher.engine import Engine

BUY, SELL = int(Side.BUY), int(Side.SELL)
CMD = NewOrder(1, "c", "AAPL", BUY, 1, 100)


def rec(seq: int, *events) -> Record:
    return Record(seq, 1, CMD, list(events))


def of(messages, kind):
    return [m for m in messages if isinstance(m, kind)]


class Flow:
    """Random-ish commands run through the real engine, kept as journal records.

    Accounts, GTC/IOC/market orders around each symbol's reference price, crossing
    orders, cancels, replaces that keep or lose priority, and every self-trade policy,
    so every event that moves a book shows up."""

    def __init__(
        self,
        specs: dict[str, SymbolSpec],
        risk: RiskLimits | None = None,
        symbols: tuple[str, ...] = ("AAPL", "TSLA", "MSFT"),
        seed: int = 7,
        traders: int = 4,
    ) -> None:
        self.engine = Engine(specs, risk)
        self.specs = specs
        self.symbols = symbols
        self.rng = random.Random(seed)
        self.records: list[Record] = []
        self._cl = 0
        for n in range(traders):
            self.run(CreateAccount(f"trader{n}", "hash"))
        self.accounts = sorted(self.engine.accounts)

    def run(self, cmd) -> Record:
        record = Record(len(self.records) + 1, 1, cmd, self.engine.apply(cmd))
        self.records.append(record)
        return record

    def _cl_ord_id(self) -> str:
        self._cl += 1
        return f"c{self._cl}"

    def step(self) -> Record:
        rng, engine = self.rng, self.engine
        roll = rng.random()
        live = engine.orders
        if roll < 0.6 or len(live) < 4:
            symbol = rng.choice(self.symbols)
            spec = self.specs[symbol]
            side = rng.choice((BUY, SELL))
            offset = rng.randint(-8, 8) + (2 if side == BUY else -2)  # overlap: trades
            price = spec.reference + offset * spec.tick
            kind = rng.random()
            ord_type, tif = (2, 2) if kind < 0.05 else (1, 2) if kind < 0.15 else (1, 1)
            return self.run(
                NewOrder(
                    rng.choice(self.accounts),
                    self._cl_ord_id(),
                    symbol,
                    side,
                    rng.randint(1, 60) * spec.lot,
                    price,
                    ord_type,
                    tif,
                    stp=rng.choice((0, 0, 1, 2, 3)),
                )
            )
        order = live[rng.choice(sorted(live))]
        if roll < 0.8:
            return self.run(CancelOrder(order.account, self._cl_ord_id(), order.order_id))
        spec = self.specs[order.symbol]
        if rng.random() < 0.5:  # a size cut in place keeps priority
            price, qty = order.price, max(spec.lot, order.leaves - spec.lot)
        else:
            price = order.price + rng.randint(-3, 3) * spec.tick
            qty = rng.randint(1, 60) * spec.lot
        return self.run(ReplaceOrder(order.account, self._cl_ord_id(), order.order_id, price, qty))

    def more(self, count: int) -> list[Record]:
        return [self.step() for _ in range(count)]


def specs() -> dict[str, SymbolSpec]:
    return {
        "AAPL": SymbolSpec("AAPL", 100, 1, 1_700_000, 1000),
        "TSLA": SymbolSpec("TSLA", 100, 1, 1_600_000, 1000),
        "MSFT": SymbolSpec("MSFT", 100, 1, 4_200_000, 1000),
    }


def apply_l2(mirror: dict[str, dict[int, int]], update: L2Update) -> None:
    for levels, changes in ((mirror["bids"], update.bids), (mirror["asks"], update.asks)):
        for price, size in changes:
            if size:
                levels[price] = size
            else:
                levels.pop(price, None)


def test_diff_sends_changes_and_removals_only():
    assert diff([(10, 5), (9, 3)], [(10, 5), (9, 4), (8, 1)]) == [(9, 4), (8, 1)]
    assert diff([(10, 5), (9, 3)], [(10, 5)]) == [(9, 0)]
    assert diff([(10, 5), (9, 3)], [(11, 1), (10, 5)]) == [(11, 1), (9, 0)]
    assert diff([(10, 5)], [(10, 5)]) == []
    assert diff([], []) == []


def test_rests_build_levels_and_the_feed_stays_within_depth():
    md = MarketData(["AAPL"], depth=2)
    out = md.apply([rec(1, Rested(1, 1, "AAPL", BUY, 100, 10))])
    assert out == [L2Update("AAPL", 1, [(100, 10)], []), Bbo("AAPL", 1, 100, 10, 0, 0)]
    out = md.apply([rec(2, Rested(1, 2, "AAPL", BUY, 99, 5), Rested(1, 3, "AAPL", BUY, 98, 7))])
    # one record, one update: 98 is below the top 2, so it is not published
    assert out == [L2Update("AAPL", 2, [(99, 5)], [])]
    out = md.apply([rec(3, Rested(1, 4, "AAPL", BUY, 100, 1), Rested(1, 5, "AAPL", SELL, 101, 3))])
    assert out == [
        L2Update("AAPL", 3, [(100, 11)], [(101, 3)]),
        Bbo("AAPL", 2, 100, 11, 101, 3),
    ]
    out = md.apply([rec(4, Rested(1, 6, "AAPL", BUY, 97, 9))])  # deep: nothing to say
    assert out == []
    assert md.snapshot("AAPL").bids == [(100, 11), (99, 5), (98, 7), (97, 9)]  # full depth
    assert md.snapshot("AAPL").seq == 3 and md.journal_seq == 4


def test_a_fill_removes_maker_size_and_makes_one_trade():
    md = MarketData(["AAPL"], depth=2)
    md.apply(
        [
            rec(1, Rested(1, 1, "AAPL", SELL, 101, 10), Rested(1, 2, "AAPL", SELL, 102, 5)),
            rec(2, Rested(1, 3, "AAPL", SELL, 103, 7), Rested(1, 4, "AAPL", BUY, 99, 4)),
        ]
    )
    # a buy takes all of 101 and 2 of 102 (Fill.side is the aggressor's: BUY)
    out = md.apply(
        [
            rec(
                3,
                Fill(8, "AAPL", BUY, 101, 10, 2, 9, 2, 1, 1, 0),
                Fill(9, "AAPL", BUY, 102, 2, 2, 9, 0, 1, 2, 3),
            )
        ]
    )
    assert of(out, Trade) == [
        Trade("AAPL", 1, 8, 101, 10, BUY),
        Trade("AAPL", 2, 9, 102, 2, BUY),
    ]
    (l2,) = of(out, L2Update)
    assert l2.bids == [] and l2.asks == [(102, 3), (103, 7), (101, 0)]  # 103 enters the top 2
    assert of(out, Bbo) == [Bbo("AAPL", 3, 99, 4, 102, 3)]  # two BBOs before
    assert out.index(of(out, Trade)[-1]) < out.index(l2)  # trades first, then the book


def test_cancel_from_book_and_not():
    md = MarketData(["AAPL"])
    md.apply([rec(1, Rested(1, 1, "AAPL", SELL, 101, 10))])
    # an IOC remainder that never rested: nothing changes, nothing is sent
    assert md.apply([rec(2, Cancelled(1, 9, "AAPL", SELL, 101, 4, 2, False))]) == []
    assert md.snapshot("AAPL").asks == [(101, 10)]
    out = md.apply([rec(3, Cancelled(1, 1, "AAPL", SELL, 101, 10, 1, True))])
    assert out == [L2Update("AAPL", 2, [], [(101, 0)]), Bbo("AAPL", 2, 0, 0, 0, 0)]
    assert md.snapshot("AAPL").asks == []


def test_replace_keeping_and_losing_priority():
    md = MarketData(["AAPL"])
    md.apply([rec(1, Rested(1, 1, "AAPL", SELL, 101, 10))])
    out = md.apply([rec(2, Replaced(1, "r", 1, "AAPL", SELL, 101, 10, 101, 6, True))])
    assert of(out, L2Update) == [L2Update("AAPL", 2, [], [(101, 6)])]  # a size cut in place
    out = md.apply(
        [
            rec(
                3,
                Replaced(1, "r2", 1, "AAPL", SELL, 101, 6, 102, 8, False),
                Rested(1, 1, "AAPL", SELL, 102, 8),
            )
        ]
    )
    assert of(out, L2Update) == [L2Update("AAPL", 3, [], [(102, 8), (101, 0)])]
    assert md.snapshot("AAPL").asks == [(102, 8)]
    # losing priority without resting: the order moved and traded away entirely
    md.apply([rec(4, Rested(2, 5, "AAPL", BUY, 100, 3))])
    out = md.apply(
        [
            rec(
                5,
                Replaced(1, "r3", 1, "AAPL", SELL, 102, 8, 100, 3, False),
                Fill(1, "AAPL", SELL, 100, 3, 1, 1, 0, 2, 5, 0),
            )
        ]
    )
    assert of(out, L2Update) == [L2Update("AAPL", 5, [(100, 0)], [(102, 0)])]
    assert md.snapshot("AAPL").bids == [] and md.snapshot("AAPL").asks == []


def test_symbols_and_topics_keep_separate_sequences():
    md = MarketData(["AAPL", "TSLA"])
    md.apply([rec(1, Rested(1, 1, "AAPL", SELL, 101, 10), Rested(1, 2, "TSLA", BUY, 50, 1))])
    out = md.apply([rec(2, Fill(1, "AAPL", BUY, 101, 4, 2, 3, 0, 1, 1, 6))])
    assert [(type(m).__name__, m.symbol, m.seq) for m in out] == [
        ("Trade", "AAPL", 1),
        ("L2Update", "AAPL", 2),
        ("Bbo", "AAPL", 2),
    ]
    assert md.snapshot("TSLA").seq == 1 and md.snapshot("TSLA").journal_seq == 2
    # a symbol with no book has no snapshot and no tape (the service answers an error)
    assert md.snapshot("NOPE") is None and md.recent_trades("NOPE", 5) is None


def test_snapshots_are_capped_and_say_what_they_left_out():
    md = MarketData(["AAPL"], depth=2, max_depth=3)
    md.apply([rec(1, *(Rested(1, n, "AAPL", BUY, 100 - n, n) for n in range(1, 6)))])
    md.apply([rec(2, Rested(1, 9, "AAPL", SELL, 200, 4))])
    whole = md.snapshot("AAPL")  # no depth asked: the cap
    assert whole.bids == [(99, 1), (98, 2), (97, 3)] and whole.asks == [(200, 4)]
    assert (whole.depth, whole.bids_omitted, whole.asks_omitted) == (2, 2, 0)
    two = md.snapshot("AAPL", 2)
    assert two.bids == [(99, 1), (98, 2)] and (two.bids_omitted, two.asks_omitted) == (3, 0)
    assert md.snapshot("AAPL", 10_000).bids == whole.bids  # asking for more gets the cap
    assert md.snapshot("AAPL", -5).bids == whole.bids
    with pytest.raises(ValueError):  # a snapshot must hold every level the feed keeps
        MarketData(["AAPL"], depth=10, max_depth=9)


def test_the_tape_is_capped_whatever_the_limit():
    md = MarketData(["AAPL"])
    md.apply([rec(1, Rested(1, 1, "AAPL", SELL, 101, 10 * TRADES_KEPT))])
    fills = [Fill(n, "AAPL", BUY, 101, 1, 2, 100 + n, 0, 1, 1, 1) for n in range(1, 300)]
    md.apply([rec(2, *fills)])
    assert len(md.recent_trades("AAPL", 10**9).trades) == TRADES_KEPT
    assert md.recent_trades("AAPL", 10**9).trades[-1].trade_id == 299
    assert md.recent_trades("AAPL", 0).trades == [] and md.recent_trades("AAPL", -1).trades == []


def test_a_pause_is_a_bbo_with_paused_set_and_cash_publishes_nothing():
    """A volatility pause moves no level: a bbo says it began and another that it
    ended; what it cancels from the book moves levels like any cancel."""
    md = MarketData(["AAPL"])
    md.apply([rec(1, Rested(1, 1, "AAPL", BUY, 100, 10), Rested(1, 2, "AAPL", BUY, 99, 5))])
    reopen = TradingPause("AAPL", False, 100, 90, 110)
    assert md.apply([Record(2, 1, Reopen("AAPL"), [reopen])]) == []  # not paused: no news
    out = md.apply(
        [
            rec(3, CashAdjusted(1, 500, 1500)),
            rec(4, TradingPause("AAPL", True, 100, 90, 110), CashAdjusted(2, -5, 0)),
            rec(5, Cancelled(1, 3, "AAPL", SELL, 101, 5, CancelReason.VOLATILITY_PAUSE, False)),
        ]
    )
    assert out == [Bbo("AAPL", 2, 100, 10, 0, 0, True)]
    snap = md.snapshot("AAPL")
    assert snap == Snapshot("AAPL", 1, 10, [(100, 10), (99, 5)], [], 5, paused=True)
    out = md.apply(
        [rec(6, Cancelled(1, 2, "AAPL", BUY, 99, 5, CancelReason.VOLATILITY_PAUSE, True))]
    )
    assert out == [L2Update("AAPL", 2, [(99, 0)], [])] and md.anomalies() == 0
    restored = MarketData(["AAPL"]).restore(md.state())  # a restart keeps the pause
    assert restored.snapshot("AAPL").paused
    out = md.apply([Record(7, 1, Reopen("AAPL"), [reopen])])
    assert out == [Bbo("AAPL", 3, 100, 10, 0, 0, False)] and not md.snapshot("AAPL").paused


def test_sequences_do_not_depend_on_batching():
    """A restarted marketdata replays the journal in other batches than it published
    them: it must still continue the same numbering."""
    flow = Flow(specs())
    flow.more(400)
    one = MarketData(flow.specs, depth=3)
    for record in flow.records:
        one.apply([record])
    batched = MarketData(flow.specs, depth=3)
    batched.apply(flow.records)
    for sym in flow.symbols:
        a, b = one.books[sym], batched.books[sym]
        assert (a.l2_seq, a.trade_seq, a.bbo_seq) == (b.l2_seq, b.trade_seq, b.bbo_seq)
        assert a.l2_seq > 10 and a.trade_seq > 10


def test_random_flow_matches_the_engine_after_every_record():
    depth = 4
    flow = Flow(specs())
    md = MarketData(flow.specs, depth=depth)
    mirrors = {s: {"bids": {}, "asks": {}} for s in flow.symbols}
    seqs = Counter()
    trades: list[Trade] = []
    fills: list[Fill] = []
    kinds = Counter()
    for _ in range(1_500):
        record = flow.step()
        for event in record.events:
            kinds[(type(event).__name__, getattr(event, "from_book", None))] += 1
            kinds[("kept", getattr(event, "kept_priority", None))] += 1
        fills += [e for e in record.events if isinstance(e, Fill)]
        for message in md.apply([record]):
            key = (type(message).__name__, message.symbol)
            seqs[key] += 1
            assert message.seq == seqs[key]  # every topic counts 1, 2, 3, ...
            if isinstance(message, L2Update):
                assert len(message.bids) <= 2 * depth and len(message.asks) <= 2 * depth
                apply_l2(mirrors[message.symbol], message)
            elif isinstance(message, Trade):
                trades.append(message)
        for sym in flow.symbols:
            book = flow.engine.books[sym]
            mine = md.books[sym]
            assert mine.top() == (book.bids.depth(), book.asks.depth())
            mirror = mirrors[sym]
            assert sorted(mirror["bids"].items(), reverse=True) == book.bids.depth(depth)
            assert sorted(mirror["asks"].items()) == book.asks.depth(depth)
            assert mine.bbo() == (
                *(book.bids.depth(1) or [(0, 0)])[0],
                *(book.asks.depth(1) or [(0, 0)])[0],
            )
    # the flow did exercise every way a book changes
    for kind in [
        ("Fill", None),
        ("Cancelled", True),
        ("Cancelled", False),
        ("kept", True),
        ("kept", False),
    ]:
        assert kinds[kind] > 5, kind
    assert [(t.trade_id, t.price, t.qty, t.side) for t in trades] == [
        (f.trade_id, f.price, f.qty, f.side) for f in fills
    ]
    assert md.anomalies() == 0
