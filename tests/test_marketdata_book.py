"""Public books from events: L2 diffs within the top N, trades, BBO, sequence numbers."""

from __future__ import annotations

from services.common.protocol import (
    Bbo,
    Cancelled,
    Fill,
    L2Update,
    NewOrder,
    Record,
    Replaced,
    Rested,
    Side,
    Trade,
)
from services.marketdata.book import MarketData, diff

BUY, SELL = int(Side.BUY), int(Side.SELL)
CMD = NewOrder(1, "c", "AAPL", BUY, 1, 100)


def rec(seq: int, *events) -> Record:
    return Record(seq, 1, CMD, list(events))


def of(messages, kind):
    return [m for m in messages if isinstance(m, kind)]


def test_diff_sends_changes_and_removals_only():
    assert diff([(10, 5), (9, 3)], [(10, 5), (9, 4), (8, 1)]) == [(9, 4), (8, 1)]
    assert diff([(10, 5), (9, 3)], [(10, 5)]) == [(9, 0)]
    assert diff([], []) == []


def test_levels_trades_bbo_and_sequences():
    md = MarketData(["AAPL"], depth=2)
    out = md.apply(
        [
            rec(1, Rested(1, 1, "AAPL", BUY, 100, 10)),
            rec(2, Rested(1, 2, "AAPL", BUY, 99, 5), Rested(1, 3, "AAPL", BUY, 98, 7)),
        ]
    )
    (l2,) = of(out, L2Update)
    assert l2.seq == 1 and l2.bids == [(100, 10), (99, 5)] and l2.asks == []  # top 2 only
    assert of(out, Bbo) == [Bbo("AAPL", 1, 100, 10, 0, 0)]
    # a fill removes maker size; a trade message with its own sequence number
    out = md.apply([rec(3, Fill(1, "AAPL", SELL, 100, 10, 2, 9, 0, 1, 1, 0))])
    assert of(out, Trade) == [Trade("AAPL", 1, 1, 100, 10, SELL)]
    (l2,) = of(out, L2Update)
    assert l2.seq == 2 and sorted(l2.bids) == [(98, 7), (100, 0)]  # 98 enters the top 2
    assert of(out, Bbo)[0].bid_px == 99
    assert md.snapshot("AAPL").bids == [(99, 5), (98, 7)]
    assert md.snapshot("AAPL").seq == 2 and md.snapshot("AAPL").journal_seq == 3


def test_cancel_and_replace():
    md = MarketData(["AAPL"])
    md.apply([rec(1, Rested(1, 1, "AAPL", SELL, 101, 10))])
    out = md.apply([rec(2, Cancelled(1, 9, "AAPL", SELL, 101, 4, 2, False))])
    assert out == []  # never on the book: nothing changes, nothing is sent
    md.apply([rec(3, Replaced(1, "r", 1, "AAPL", SELL, 101, 10, 101, 6, True))])
    assert md.snapshot("AAPL").asks == [(101, 6)]  # a size cut in place
    md.apply(
        [
            rec(
                4,
                Replaced(1, "r2", 1, "AAPL", SELL, 101, 6, 102, 6, False),
                Rested(1, 1, "AAPL", SELL, 102, 6),
            )
        ]
    )
    assert md.snapshot("AAPL").asks == [(102, 6)]
    md.apply([rec(5, Cancelled(1, 1, "AAPL", SELL, 102, 6, 1, True))])
    assert md.snapshot("AAPL").asks == []
