"""The trading day on the public feed: session states, indicative auctions, an
uncross's result and its auction trades, the snapshot's session fields, and the
books kept right when an auction executes resting orders on both sides."""

from __future__ import annotations

from collections import Counter

from services.common.bus import EndOfDay, NewOrder, Record, SetSession
from services.common.wire import (
    AuctionDone,
    AuctionInfo,
    Bbo,
    Cancelled,
    CancelReason,
    ClosePrice,
    DayEnded,
    Fill,
    Indicative,
    L2Update,
    Rested,
    Session,
    SessionChanged,
    SessionState,
    Side,
    Tif,
    Trade,
)
from services.marketdata.book import MarketData
from services.marketdata.core import topic_of
from tests.test_marketdata_book import Flow, specs

BUY, SELL = int(Side.BUY), int(Side.SELL)
OPEN, CALL, CLOSED = int(Session.CONTINUOUS), int(Session.PRE_OPEN), int(Session.CLOSED)
CMD = SetSession("AAPL", OPEN)


def rec(seq: int, *events) -> Record:
    return Record(seq, 1, CMD, list(events))


def of(messages, kind):
    return [m for m in messages if isinstance(m, kind)]


def test_session_changes_and_day_ends_are_published_with_the_journal_seq():
    md = MarketData(["AAPL", "MSFT"])
    out = md.apply([rec(5, SessionChanged("AAPL", CALL, 20260309))])
    assert out == [SessionState("AAPL", 5, CALL, 20260309)]
    assert topic_of(out[0]) == b"S.AAPL"
    snap = md.snapshot("AAPL")
    assert (snap.state, snap.trading_date) == (CALL, 20260309)
    # a day's end tells every symbol its new date, in the state it is in
    out = md.apply([rec(6, DayEnded(20260309, 20260310, [ClosePrice("AAPL", 100)]))])
    assert out == [
        SessionState("AAPL", 6, CALL, 20260310),
        SessionState("MSFT", 6, OPEN, 20260310),
    ]
    assert md.snapshot("MSFT").trading_date == 20260310


def test_indicatives_are_conflated_per_batch_and_the_snapshot_holds_the_last():
    md = MarketData(["AAPL", "MSFT"])
    md.apply([rec(1, SessionChanged("AAPL", CALL, 1)), rec(2, SessionChanged("MSFT", CALL, 1))])
    out = md.apply(
        [
            rec(3, Rested(1, 1, "AAPL", BUY, 101, 10), Indicative("AAPL", 101, 0, 10, BUY)),
            rec(4, Rested(1, 2, "MSFT", BUY, 50, 1), Indicative("MSFT", 50, 0, 1, BUY)),
            rec(5, Rested(2, 3, "AAPL", SELL, 100, 4), Indicative("AAPL", 100, 4, 6, BUY)),
        ]
    )
    infos = of(out, AuctionInfo)
    assert infos == [AuctionInfo("MSFT", 4, 50, 0, 1, BUY), AuctionInfo("AAPL", 5, 100, 4, 6, BUY)]
    assert topic_of(infos[0]) == b"A.MSFT"
    assert md.snapshot("AAPL").indicative == (100, 4, 6, BUY)
    # one at a time, each is sent
    assert len(of(md.apply([rec(6, Indicative("AAPL", 100, 4, 6, BUY))]), AuctionInfo)) == 1


def test_an_uncross_takes_both_sides_where_they_rest_and_flags_its_trades():
    md = MarketData(["AAPL"], depth=5)
    md.apply([rec(1, SessionChanged("AAPL", CALL, 1))])
    md.apply(
        [
            rec(2, Rested(1, 1, "AAPL", BUY, 103, 10)),
            rec(3, Rested(2, 2, "AAPL", SELL, 99, 6)),
            rec(4, Rested(2, 3, "AAPL", SELL, 101, 8)),
            rec(5, Rested(1, 4, "AAPL", BUY, 98, 5)),
        ]
    )
    assert md.snapshot("AAPL").bids == [(103, 10), (98, 5)]  # a call's book may cross
    out = md.apply(
        [
            rec(
                6,
                SessionChanged("AAPL", OPEN, 1),
                AuctionDone("AAPL", "open", 101, 10, 4, SELL),
                # the later order is the taker; both sides rested before the uncross
                Fill(1, "AAPL", SELL, 101, 6, 2, 2, 0, 1, 1, 4, True),
                Fill(2, "AAPL", SELL, 101, 4, 2, 3, 4, 1, 1, 0, True),
            )
        ]
    )
    assert of(out, SessionState) == [SessionState("AAPL", 6, OPEN, 1)]
    assert of(out, AuctionInfo) == [AuctionInfo("AAPL", 6, 101, 10, 4, SELL, True)]
    assert of(out, Trade) == [
        Trade("AAPL", 1, 1, 101, 6, SELL, True),
        Trade("AAPL", 2, 2, 101, 4, SELL, True),
    ]
    snap = md.snapshot("AAPL")
    assert snap.bids == [(98, 5)] and snap.asks == [(101, 4)]
    assert snap.indicative == (0, 0, 0, 0) and snap.state == OPEN
    (l2,) = of(out, L2Update)
    assert l2.bids == [(103, 0)] and l2.asks == [(101, 4), (99, 0)]
    assert of(out, Bbo)[-1] == Bbo("AAPL", 3, 98, 5, 101, 4)
    assert md.anomalies() == 0


def test_a_continuous_fill_still_takes_the_maker_at_the_fill_price_and_forgets_it():
    md = MarketData(["AAPL"])
    md.apply([rec(1, Rested(1, 1, "AAPL", SELL, 101, 10))])
    md.apply([rec(2, Fill(1, "AAPL", BUY, 101, 10, 2, 9, 0, 1, 1, 0))])
    assert md.snapshot("AAPL").asks == [] and md.books["AAPL"].orders == {}
    md.apply([rec(3, Rested(1, 2, "AAPL", SELL, 102, 5))])
    md.apply([rec(4, Cancelled(1, 2, "AAPL", SELL, 102, 5, 8, True))])
    assert md.books["AAPL"].orders == {}


def test_the_day_survives_a_snapshot_of_the_service():
    md = MarketData(["AAPL"])
    md.apply(
        [
            rec(1, SessionChanged("AAPL", CALL, 20260309)),
            rec(2, Rested(1, 7, "AAPL", BUY, 103, 10), Indicative("AAPL", 103, 0, 10, BUY)),
        ]
    )
    again = MarketData(["AAPL"]).restore(md.state())
    snap = again.snapshot("AAPL")
    assert (snap.state, snap.trading_date, snap.indicative) == (CALL, 20260309, (103, 0, 10, BUY))
    assert again.books["AAPL"].orders == {7: (BUY, 103)}


class DayFlow(Flow):
    """The random flow of test_marketdata_book, with DAY, GTD, market and on-close
    orders beside it, run through the real engine while the symbols go through days."""

    def step(self) -> Record:
        rng = self.rng
        if rng.random() < 0.2:
            symbol = rng.choice(self.symbols)
            spec = self.specs[symbol]
            side = rng.choice((BUY, SELL))
            market = rng.random() < 0.5
            price = 0 if market else spec.reference + rng.randint(-6, 6) * spec.tick
            tif = rng.choice((int(Tif.DAY), int(Tif.CLOSE), int(Tif.GTD)))
            return self.run(
                NewOrder(
                    rng.choice(self.accounts),
                    self._cl_ord_id(),
                    symbol,
                    side,
                    rng.randint(1, 40) * spec.lot,
                    price,
                    2 if market else 1,
                    tif,
                    expire_date=DATE + 1 if tif == Tif.GTD else 0,
                )  # fmt: skip
            )
        return super().step()


DATE = 20260309
CYCLE = (int(Session.PRE_OPEN), OPEN, int(Session.PRE_CLOSE), CLOSED)


def test_a_random_flow_through_days_keeps_the_public_book_the_engines():
    flow = DayFlow(specs(), seed=11)
    md = MarketData(flow.specs, depth=4)
    md.apply(flow.records)
    date = DATE
    md.apply([flow.run(EndOfDay(0, date))])
    kinds = Counter()
    for turn in range(1_600):
        if turn % 100 == 0:  # every symbol to the next state of the day, in turn
            state = CYCLE[turn // 100 % 4]
            records = [flow.run(SetSession(s, state)) for s in flow.symbols]
            if state == CLOSED:
                records.append(flow.run(EndOfDay(date, date + 1)))
                date += 1
        else:
            records = [flow.step()]
        for record in records:
            for event in record.events:
                kinds[type(event).__name__, getattr(event, "auction", None)] += 1
                kinds[type(event).__name__, getattr(event, "reason", None)] += 1
            fills = [e.auction for e in record.events if type(e) is Fill]
            assert [t.auction for t in of(md.apply([record]), Trade)] == fills
        for symbol in flow.symbols:  # the engine as it is after the records made
            book = flow.engine.books[symbol]
            assert md.books[symbol].top() == (book.bids.depth(), book.asks.depth()), turn
            snap = md.snapshot(symbol)
            assert snap.state == flow.engine.session_state(symbol)
            assert snap.trading_date == flow.engine.trading_date
    assert md.anomalies() == 0
    # the flow did run auctions, expire orders and cancel auction-only leftovers
    assert kinds["Fill", True] > 20 and kinds["Fill", False] > 20
    assert kinds["Cancelled", CancelReason.EXPIRED] > 5
    assert kinds["Cancelled", CancelReason.AUCTION] > 5
    assert kinds["Indicative", None] > 20 and kinds["AuctionDone", None] >= 24
