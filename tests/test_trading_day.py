"""The engine's trading day: session states, call periods and their uncross, the
DAY/GTD/on-close times in force, and the end of day (docs/architecture.md, "The
trading day"; docs/protocol.md for the codes). Each rule through the real engine;
then a day's journal replayed to the same state hash, and snapshots taken in the
middle of a day (and in the old format) restored."""

from __future__ import annotations

import msgspec
import pytest

from services.common.bus import (
    Admin,
    CancelOrder,
    CreateAccount,
    EndOfDay,
    NewOrder,
    ReplaceOrder,
    SetSession,
)
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import (
    Accepted,
    AdminDone,
    AuctionDone,
    Cancelled,
    CancelReason,
    ClosePrice,
    DayEnded,
    Duplicate,
    Fill,
    Indicative,
    Reject,
    Rejected,
    Rested,
    Session,
    SessionChanged,
    Side,
    Tif,
)
from services.matcher import snapshot
from services.matcher.engine import Engine
from tests.engine_state import check_ledger

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = 1, 2
REF = 1_000_000
SYMBOLS = {
    "AAA": SymbolSpec("AAA", 100, 1, REF, 1000),
    "BBB": SymbolSpec("BBB", 100, 1, REF, 1000),
}
RISK = RiskLimits()
DAY1, DAY2, DAY3 = 20260105, 20260106, 20260107
ADMIN, ALICE, BOB = 1, 2, 3


class Day:
    """An engine and the commands applied to it, in order (a journal to replay)."""

    def __init__(self, date: int = DAY1) -> None:
        self.engine = Engine(SYMBOLS, RISK)
        self.journal: list = []
        self.n = 0
        for name in ("ops", "alice", "bob"):
            self(CreateAccount(name, "h"))
        if date:
            assert self(EndOfDay(0, date)) == [DayEnded(0, date, [])]

    def __call__(self, cmd) -> list:
        self.journal.append(cmd)
        events = self.engine.apply(cmd)
        check_ledger(self.engine)
        return events

    def order(self, account, side, qty, price=0, tif=Tif.DAY, ord_type=LIMIT, cl=None, **kw):
        self.n += 1
        cmd = NewOrder(account, cl or f"o{self.n}", "AAA", side, qty, price, ord_type, tif, **kw)
        return self(cmd)

    def session(self, state, symbol="AAA") -> list:
        return self(SetSession(symbol, state))

    def book(self):
        return self.engine.books["AAA"]


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def only(events, kind):
    found = [e for e in events if type(e) is kind]
    assert len(found) == 1, events
    return found[0]


# -- session states ---------------------------------------------------------------------


def test_every_symbol_trades_continuously_until_moved():
    day = Day(date=0)
    assert day.engine.trading_date == 0
    assert day.engine.session_state("AAA") == Session.CONTINUOUS
    day.order(ALICE, SELL, 10, REF)
    assert Fill in map(type, day.order(BOB, BUY, 10, REF, tif=Tif.GTC))


def test_closed_refuses_new_orders_but_takes_cancels_and_replaces():
    day = Day()
    resting = only(day.order(ALICE, BUY, 10, REF - 100), Rested).order_id
    assert kinds(day.session(Session.CLOSED)) == ["SessionChanged"]
    assert day.session(Session.CLOSED) == []  # again: nothing changes
    no = day.order(BOB, SELL, 10, REF, cl="late")
    assert no == [Rejected(BOB, "late", Reject.MARKET_CLOSED)]
    again = day.order(BOB, SELL, 10, REF, cl="late")  # the id was used
    assert again == [Duplicate(BOB, "late", no[0])]
    on_close = day.order(BOB, SELL, 10, 0, Tif.CLOSE, MARKET)
    assert only(on_close, Rejected).code == Reject.TIF_NOT_NOW
    moved = day(ReplaceOrder(ALICE, "r1", resting, REF + 200, 5))
    assert kinds(moved) == ["Replaced", "Rested"]  # a replace rests: nothing trades
    gone = day(CancelOrder(ALICE, "c1", resting))
    assert only(gone, Cancelled).reason == CancelReason.USER


def test_a_call_period_collects_orders_without_matching_and_publishes_the_indicative():
    day = Day()
    day.session(Session.PRE_OPEN)
    first = day.order(ALICE, BUY, 10, REF + 200)
    assert kinds(first) == ["Accepted", "Rested"]  # nothing to cross: no indicative yet
    crossing = day.order(BOB, SELL, 4, REF - 200)
    assert kinds(crossing) == ["Accepted", "Rested", "Indicative"]  # rests, crossed
    assert only(crossing, Indicative) == Indicative("AAA", REF, 4, 6, BUY)
    # a change that leaves the result as it was publishes nothing
    assert kinds(day.order(ALICE, BUY, 10, REF - 300)) == ["Accepted", "Rested"]
    for tif in (Tif.IOC, Tif.FOK):
        assert only(day.order(BOB, SELL, 1, REF, tif), Rejected).code == Reject.TIF_NOT_NOW
    # a market order waits at its collar; a GTC or GTD market order is refused anywhere
    market = day.order(BOB, SELL, 6, 0, Tif.DAY, MARKET)
    assert only(market, Rested).price == day.book().collar(SELL)
    assert only(market, Indicative) == Indicative("AAA", REF, 10, 0, 0)
    for tif in (Tif.GTC, Tif.GTD):
        assert only(day.order(BOB, SELL, 1, 0, tif, MARKET), Rejected).code == Reject.BAD_TIF


def test_the_opening_uncross_executes_at_one_price_then_continuous_trading_starts():
    day = Day()
    day.session(Session.PRE_OPEN)
    buy = only(day.order(ALICE, BUY, 10, REF + 200), Rested).order_id
    sell = only(day.order(BOB, SELL, 4, REF - 200), Rested).order_id
    mkt = only(day.order(BOB, SELL, 20, 0, Tif.DAY, MARKET), Rested).order_id
    events = day.session(Session.CONTINUOUS)
    assert kinds(events) == [
        "AuctionDone", "Fill", "Executed", "Executed", "Cancelled", "SessionChanged",
    ]  # fmt: skip
    # 10 execute anywhere from the collar to REF + 200; the imbalance is least (20
    # offered against 10) below the limit sell, and REF - 300 is the nearest the
    # reference there
    assert events[0] == AuctionDone("AAA", "open", REF - 300, 10, 10, SELL)
    fill = only(events, Fill)
    # the later order is the aggressor; the fill is at the auction's price
    assert (fill.maker_order, fill.taker_order, fill.qty) == (buy, mkt, 10)
    assert fill.auction and fill.price == REF - 300 and fill.side == SELL
    cancelled = only(events, Cancelled)
    assert (cancelled.order_id, cancelled.qty) == (mkt, 10)
    assert cancelled.reason == CancelReason.AUCTION
    assert events[-1] == SessionChanged("AAA", Session.CONTINUOUS, DAY1)
    assert day.book().last_price == REF - 300  # the dynamic band follows the auction
    assert sell in day.engine.orders  # the limit sell was not reached: it rests
    # continuous trading matches at once again
    assert Fill in map(type, day.order(ALICE, BUY, 4, REF - 200))


def test_a_halt_ends_in_a_re_opening_auction():
    day = Day()
    day(Admin(ADMIN, "h1", "halt", "AAA"))
    resumed = day(Admin(ADMIN, "h2", "resume", "AAA"))
    assert SessionChanged("AAA", Session.PRE_OPEN, DAY1) in resumed
    assert day.engine.session_state("AAA") == Session.PRE_OPEN
    day.order(ALICE, BUY, 5, REF)
    day.order(BOB, SELL, 5, REF)
    events = day.session(Session.CONTINUOUS)
    assert events[0] == AuctionDone("AAA", "reopen", REF, 5, 0, 0)
    # before the first trading day (an old journal) a resume trades at once, as it did
    old = Day(date=0)
    old(Admin(ADMIN, "h1", "halt", "AAA"))
    assert kinds(old(Admin(ADMIN, "h2", "resume", "AAA"))) == ["AdminDone", "SymbolHalted"]


def test_a_halted_symbol_leaves_its_call_without_an_uncross():
    day = Day()
    day.session(Session.PRE_OPEN)
    day.order(ALICE, BUY, 5, REF)
    mkt = only(day.order(BOB, SELL, 5, 0, Tif.DAY, MARKET), Rested).order_id
    day(Admin(ADMIN, "h1", "halt", "AAA"))
    events = day.session(Session.CONTINUOUS)
    assert not [e for e in events if type(e) in (AuctionDone, Fill)]
    assert only(events, Cancelled).order_id == mkt


def test_operators_move_sessions_and_end_the_day_as_journaled_admin_actions():
    day = Day()
    moved = day(Admin(ADMIN, "s1", "session", "AAA", state=Session.PRE_OPEN))
    assert moved == [
        AdminDone(ADMIN, "s1", "session"),
        SessionChanged("AAA", Session.PRE_OPEN, DAY1),
    ]
    bad = day(Admin(ADMIN, "s2", "session", "AAA", state=9))
    assert only(bad, Rejected).code == Reject.MALFORMED
    assert only(day(Admin(ADMIN, "s3", "session", "NOPE", state=1)), Rejected).code == (
        Reject.UNKNOWN_SYMBOL
    )
    ended = day(Admin(ADMIN, "e1", "end_of_day", date=DAY2))
    assert ended[0] == AdminDone(ADMIN, "e1", "end_of_day") and type(ended[-1]) is DayEnded
    assert day.engine.trading_date == DAY2
    # its answer is the new day's: a resend is a duplicate, not a second end of day
    assert day(Admin(ADMIN, "e1", "end_of_day", date=DAY2)) == [Duplicate(ADMIN, "e1", ended[0])]
    backwards = day(Admin(ADMIN, "e2", "end_of_day", date=DAY1))
    assert only(backwards, Rejected).code == Reject.MALFORMED
    assert day(SetSession("NOPE", 1)) == [Rejected(0, "", Reject.UNKNOWN_SYMBOL)]


# -- times in force -----------------------------------------------------------------------


def test_a_market_day_order_in_continuous_trading_executes_what_it_can_at_once():
    day = Day()
    day.order(ALICE, SELL, 3, REF)
    events = day.order(BOB, BUY, 5, 0, Tif.DAY, MARKET)
    assert only(events, Fill).qty == 3
    assert only(events, Cancelled).reason == CancelReason.IOC
    assert not [o for o in day.engine.orders.values() if o.account == BOB]


def test_gtd_needs_a_date_from_today_on_and_only_gtd_names_one():
    day = Day()
    code = lambda events: events[0].code if type(events[0]) is Rejected else 0  # noqa: E731
    assert code(day.order(ALICE, BUY, 1, REF, Tif.GTD)) == Reject.BAD_EXPIRE_DATE
    assert code(day.order(ALICE, BUY, 1, REF, Tif.GTD, expire_date=DAY1 - 1)) == (
        Reject.BAD_EXPIRE_DATE
    )
    assert code(day.order(ALICE, BUY, 1, REF, Tif.GTD, expire_date=20261301)) == (
        Reject.BAD_EXPIRE_DATE
    )
    # another order's date is the gateway's to refuse; the engine ignores it
    ignored = day.order(ALICE, BUY, 1, REF, Tif.DAY, expire_date=DAY2)
    assert day.engine.orders[ignored[0].order_id].expire_date == 0
    assert code(day.order(ALICE, BUY, 1, REF, Tif.GTD, expire_date=DAY1)) == 0
    # before the first trading day any date is taken
    assert code(Day(date=0).order(ALICE, BUY, 1, REF, Tif.GTD, expire_date=19991231)) == 0


def test_post_only_rests_with_any_resting_time_in_force():
    day = Day()
    for tif in (Tif.GTC, Tif.DAY):
        assert kinds(day.order(ALICE, BUY, 1, REF, tif, post_only=True)) == ["Accepted", "Rested"]
    assert only(day.order(ALICE, BUY, 1, REF, Tif.IOC, post_only=True), Rejected).code == (
        Reject.BAD_TIF
    )


def test_on_close_orders_wait_for_the_pre_close_and_execute_only_in_the_closing_auction():
    day = Day()
    day.session(Session.PRE_OPEN)
    early = day.order(ALICE, BUY, 10, 0, Tif.CLOSE, MARKET)
    assert kinds(early) == ["Accepted"]  # held aside: not in the book
    early_id = early[0].order_id
    day.session(Session.CONTINUOUS)
    loc = day.order(ALICE, BUY, 5, REF - 100, Tif.CLOSE)
    assert kinds(loc) == ["Accepted"]
    loc_id = loc[0].order_id
    # a continuous sell does not meet them
    sell = day.order(BOB, SELL, 8, REF - 100, Tif.GTC)
    assert kinds(sell) == ["Accepted", "Rested"]
    assert day(ReplaceOrder(ALICE, "r1", loc_id, REF, 6))[0].kept_priority  # keeps its place
    gone = day.order(ALICE, BUY, 1, 0, Tif.CLOSE, MARKET)[0].order_id
    cancelled = day(CancelOrder(ALICE, "c1", gone))
    assert only(cancelled, Cancelled).from_book is False
    joined = day.session(Session.PRE_CLOSE)
    assert kinds(joined) == ["SessionChanged", "Rested", "Rested", "Indicative"]
    assert [e.order_id for e in joined if type(e) is Rested] == [early_id, loc_id]
    events = day.session(Session.CLOSED)
    done = events[0]
    # 16 bid (10 at market first) against 8 offered: the least imbalance above REF
    assert done == AuctionDone("AAA", "close", REF + 100, 8, 2, BUY)
    fill = only(events, Fill)
    # the market order first on its side; the later order (the sell) is the aggressor
    assert (fill.maker_order, fill.taker_order, fill.qty) == (early_id, sell[0].order_id, 8)
    leftovers = [(e.order_id, e.reason, e.qty) for e in events if type(e) is Cancelled]
    assert leftovers == [
        (early_id, CancelReason.AUCTION, 2),
        (loc_id, CancelReason.AUCTION, 6),
    ]
    assert only(day.order(ALICE, BUY, 1, 0, Tif.CLOSE, MARKET), Rejected).code == (
        Reject.TIF_NOT_NOW
    )
    # the closing price is the official close
    closes = day(EndOfDay(DAY1, DAY2))[-1].closes
    assert ClosePrice("AAA", done.price) in closes


# -- end of day ---------------------------------------------------------------------------


def test_end_of_day_expires_day_and_gtd_orders_and_keeps_gtc():
    day = Day()
    ids = {}
    for name, tif, expire in (
        ("day", Tif.DAY, 0),
        ("gtc", Tif.GTC, 0),
        ("gtd_today", Tif.GTD, DAY1),
        ("gtd_later", Tif.GTD, DAY2),
    ):
        ids[name] = only(day.order(ALICE, BUY, 1, REF, tif, expire_date=expire), Rested).order_id
    waiting = day.order(BOB, SELL, 1, 0, Tif.CLOSE, MARKET)[0].order_id
    events = day(EndOfDay(DAY1, DAY2))
    cancels = [e for e in events if type(e) is Cancelled]
    assert [(c.order_id, c.reason) for c in cancels] == [
        (ids["day"], CancelReason.EXPIRED),
        (ids["gtd_today"], CancelReason.EXPIRED),
        (waiting, CancelReason.AUCTION),
    ]
    assert events[-1] == DayEnded(DAY1, DAY2, [ClosePrice("AAA", 0), ClosePrice("BBB", 0)])
    assert set(day.engine.orders) == {ids["gtc"], ids["gtd_later"]}
    # the GTD order lasts until its own day ends
    day(EndOfDay(DAY2, DAY3))
    assert set(day.engine.orders) == {ids["gtc"]}


def test_client_order_ids_are_unique_per_trading_day():
    day = Day()
    first = day.order(ALICE, BUY, 1, REF - 100, cl="same")
    assert type(first[0]) is Accepted
    assert day.order(ALICE, BUY, 1, REF - 100, cl="same") == [Duplicate(ALICE, "same", first[0])]
    assert day(EndOfDay(DAY1 + 5, DAY2)) == []  # not today's date: a harmless resend
    day(EndOfDay(DAY1, DAY2))
    assert all(not a.seen.items() for a in day.engine.accounts.values())
    assert all(not any(shard) for a in day.engine.accounts.values() for shard in a.seen.shards)
    again = day.order(ALICE, BUY, 1, REF - 100, cl="same")
    assert type(again[0]) is Accepted and again[0].order_id != first[0].order_id
    assert day(EndOfDay(DAY1, DAY2)) == []  # a resend of the day already ended


def test_the_close_is_the_last_trade_else_the_previous_close():
    day = Day()
    day.order(ALICE, SELL, 1, REF + 300)
    day.order(BOB, BUY, 1, REF + 300)
    assert only(day(EndOfDay(DAY1, DAY2)), DayEnded).closes[0] == ClosePrice("AAA", REF + 300)
    assert only(day(EndOfDay(DAY2, DAY3)), DayEnded).closes[0] == ClosePrice("AAA", REF + 300)


# -- replay and snapshots -----------------------------------------------------------------


def a_whole_day() -> Day:
    day = Day()
    day.session(Session.PRE_OPEN)
    day.order(ALICE, BUY, 10, REF + 100, Tif.GTC)
    day.order(BOB, SELL, 6, REF - 100)
    day.order(BOB, SELL, 5, 0, Tif.DAY, MARKET)
    day.order(ALICE, SELL, 3, 0, Tif.CLOSE, MARKET)
    day.order(BOB, BUY, 2, REF - 500, Tif.GTD, expire_date=DAY2)
    day.session(Session.CONTINUOUS)
    day.order(ALICE, BUY, 4, REF, Tif.DAY)
    day.order(BOB, BUY, 4, REF - 200, Tif.CLOSE)
    day.session(Session.PRE_CLOSE)
    day.order(BOB, SELL, 2, REF - 200)
    return day


def test_a_journal_of_a_day_replays_to_the_same_events_and_state_hash():
    day = a_whole_day()
    day.session(Session.CLOSED)
    day(EndOfDay(DAY1, DAY2))
    day.session(Session.PRE_OPEN)
    day.order(ALICE, BUY, 1, REF, cl="o1")  # yesterday's id, today new
    again = Engine(SYMBOLS, RISK)
    live = Engine(SYMBOLS, RISK)
    for cmd in day.journal:
        assert again.apply(cmd) == live.apply(cmd)
    assert again.state_hash() == day.engine.state_hash()


@pytest.mark.parametrize("close", [False, True])
def test_a_snapshot_in_the_middle_of_a_day_restores_it(close):
    day = a_whole_day()  # in the pre-close: on-close orders in the book, an indicative
    if close:
        day.session(Session.CLOSED)
        day(EndOfDay(DAY1, DAY2))
        day.order(ALICE, BUY, 1, REF, Tif.CLOSE)  # held aside again
    engine = day.engine
    data = msgspec.msgpack.encode(snapshot.capture(engine, 99, 1))
    restored, seq, _ = snapshot.loads(data, SYMBOLS, RISK)
    assert seq == 99 and restored.state_hash() == engine.state_hash()
    assert restored.trading_date == engine.trading_date and restored.closes == engine.closes
    # and it goes on exactly as the original does
    for cmd in (
        SetSession("AAA", Session.CLOSED),
        SetSession("AAA", Session.PRE_CLOSE),
        EndOfDay(engine.trading_date, DAY3),
    ):
        assert restored.apply(cmd) == engine.apply(cmd)
    assert restored.state_hash() == engine.state_hash()


def test_a_snapshot_from_before_trading_days_still_loads():
    """The format before this issue: no session fields anywhere (trailing defaults)."""
    day = Day(date=0)
    day.order(ALICE, BUY, 3, REF - 100, Tif.GTC)
    day.order(BOB, SELL, 2, REF + 100, Tif.GTC)
    new = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot.capture(day.engine, 5, 1)))
    old = new[:9]  # the snapshot's fields up to ``halted``
    old[7] = [book[:8] for book in old[7]]  # each book's up to ``paused``
    for book in old[7]:
        book[4] = [order[:7] for order in book[4]]  # each order's up to ``post_only``
    restored, _, _ = snapshot.loads(msgspec.msgpack.encode(old), SYMBOLS, RISK)
    assert restored.state_hash() == day.engine.state_hash()
    assert restored.session_state("AAA") == Session.CONTINUOUS and restored.trading_date == 0


def test_replaced_held_on_close_orders_and_auction_cancels_keep_the_books_consistent():
    day = a_whole_day()
    events = day.session(Session.CLOSED)
    assert events[0].kind == "close"
    for order in day.engine.orders.values():
        assert order.tif != Tif.CLOSE and not order.market
    # nothing crossed is left after the close
    book = day.book()
    if book.bids.best_key is not None and book.asks.best_key is not None:
        assert -book.bids.best_key < book.asks.best_key


# -- the gateway's side -------------------------------------------------------------------


def test_the_gateway_view_and_reports_follow_a_day():
    """Open orders as the gateway shows them (with their time in force) match the
    engine's at every record; an auction's public events reach no trader's report, an
    expiry and an auction's leftovers reach their owner, fills carry the auction flag."""
    from services.common.bus import Record
    from services.gateway.accounts import AccountView
    from services.gateway.reports import route

    day = a_whole_day()
    day.order(ALICE, BUY, 1, REF - 900)  # a DAY order the close leaves
    day.session(Session.CLOSED)
    day(EndOfDay(DAY1, DAY2))
    day.order(BOB, SELL, 1, REF, Tif.CLOSE)
    view = AccountView()
    replay = Engine(SYMBOLS, RISK)
    told: dict[int, list] = {}
    auctions: set[int] = set()  # the trade ids the uncrosses made
    for seq, cmd in enumerate(day.journal, 1):
        record = Record(seq, 1, cmd, replay.apply(cmd))
        if type(cmd) is SetSession:
            auctions |= {e.trade_id for e in record.events if type(e) is Fill}
        view.apply(record)
        for account, events in route(record).items():
            told.setdefault(account, []).extend(events)
        for account in (ALICE, BOB):
            shown = {o.order_id: (o.price, o.qty, o.tif) for o in view.open_orders(account)}
            held = replay.books["AAA"].held  # a market order held aside shows no price
            live = {
                o.order_id: (0 if o.market and o.order_id in held else o.price, o.leaves, o.tif)
                for o in replay.orders.values()
                if o.account == account
            }
            assert shown == live, (seq, cmd)
    for account in (ALICE, BOB):
        assert not [e for e in told[account] if type(e) in (Indicative, AuctionDone, DayEnded)]
    reasons = {e.reason for e in told[ALICE] + told[BOB] if type(e) is Cancelled}
    assert {CancelReason.EXPIRED, CancelReason.AUCTION} <= reasons
    fills = [e for e in told[ALICE] + told[BOB] if type(e) is Fill]
    assert auctions and {f.trade_id for f in fills if f.auction} == auctions


def test_a_deep_call_book_s_indicative_is_amortised_and_its_uncross_exact():
    """An adversary filling a call with crossed levels must not make every order cost a
    walk of the whole book: past INDICATIVE_LEVELS levels the indicative is computed
    again only once the commands since have paid for the book's depth."""
    from services.matcher.engine import INDICATIVE_LEVELS

    day = Day()
    day.session(Session.PRE_OPEN)
    depth = 3 * INDICATIVE_LEVELS  # levels per side, every one crossed
    indicated = 0
    for k in range(1, depth + 1):
        for side, price in ((BUY, REF + k * 100), (SELL, REF - k * 100)):
            events = day.order(ALICE if side == BUY else BOB, side, 1, price)
            indicated += sum(type(e) is Indicative for e in events)
    commands = 2 * depth
    assert indicated < commands / 2, "computed at every command of a deep book"
    assert indicated >= 3  # but computed again as the book grew
    # snapshots carry the work paid for, so a restored engine emits exactly the same
    data = msgspec.msgpack.encode(snapshot.capture(day.engine, 7, 1))
    restored, _, _ = snapshot.loads(data, SYMBOLS, RISK)
    for k in range(INDICATIVE_LEVELS):
        cmd = NewOrder(ALICE, f"x{k}", "AAA", BUY, 1, REF + 100)
        assert restored.apply(cmd) == day(cmd)
    # the uncross reads the whole book: everything crossed executes
    done = only(day.session(Session.CONTINUOUS), AuctionDone)
    assert done.matched == depth


def test_a_cancelled_auction_only_order_is_forgotten_at_once():
    """Market orders sent and cancelled in a long call must not pile up until it ends."""
    day = Day()
    day.session(Session.PRE_OPEN)
    for _ in range(5):
        order_id = only(day.order(ALICE, BUY, 10, ord_type=MARKET), Rested).order_id
        assert order_id in day.book().auction_only
        day(CancelOrder(ALICE, f"c{order_id}", order_id))
        assert order_id not in day.book().auction_only


def test_long_commands_report_progress_and_do_the_same_with_or_without_it():
    """An uncross, an end of day and a kill work through every order they touch in one
    command: the engine calls ``progress`` every PROGRESS_EVERY orders (the matcher
    beats from it, so a primary busy with a deep book is not taken for dead), and what
    the commands do does not depend on whether anyone listens."""
    from services.matcher.engine import PROGRESS_EVERY

    DAY = Tif.DAY

    def run(engine: Engine) -> list:
        out = [engine.apply(EndOfDay(0, DAY1))]
        for name in ("ops", "alice", "bob"):
            out.append(engine.apply(CreateAccount(name, "h")))
        n = 2 * PROGRESS_EVERY + 10
        out.append(engine.apply(SetSession("AAA", Session.PRE_OPEN)))
        for k in range(n):  # crossed one-share pairs: the opening uncross fills them all
            out.append(engine.apply(NewOrder(ALICE, f"b{k}", "AAA", BUY, 1, REF + 100)))
            out.append(engine.apply(NewOrder(BOB, f"s{k}", "AAA", SELL, 1, REF - 100)))
        out.append(engine.apply(SetSession("AAA", Session.CONTINUOUS)))
        for k in range(n):  # resting DAY orders on both sides for the end of day
            away = 100 * (1 + k % 900)
            out.append(engine.apply(NewOrder(ALICE, f"d{k}", "BBB", BUY, 1, REF - away, tif=DAY)))
            out.append(engine.apply(NewOrder(BOB, f"e{k}", "BBB", SELL, 1, REF + away, tif=DAY)))
        for k in range(n):  # one-share asks, then one order sweeping them all
            out.append(engine.apply(NewOrder(BOB, f"a{k}", "AAA", SELL, 1, REF + 100)))
        out.append(engine.apply(NewOrder(ALICE, "sweep", "AAA", BUY, n, REF + 100)))
        out.append(engine.apply(Admin(ADMIN, "k1", "kill", target=BOB)))
        out.append(engine.apply(EndOfDay(DAY1, DAY2)))
        return out

    calls = []
    heard = Engine(SYMBOLS, RISK)
    heard.progress = lambda: calls.append(len(heard.orders))
    assert run(heard) == run(Engine(SYMBOLS, RISK))
    assert not heard.orders
    # the uncross (n fills), the sweep (n fills), the kill (bob's n orders) and the end
    # of day (alice's n) each called it every PROGRESS_EVERY orders at least
    assert len(calls) >= 2 + 2 + 3 + 3, calls
    before = len(calls)
    heard.apply(NewOrder(ALICE, "one", "AAA", BUY, 1, REF))  # an ordinary command: never
    assert len(calls) == before
    heard.state_hash()  # reading out the whole state (a standby's check) reports too
    assert len(calls) > before


def test_a_sweep_of_a_deep_book_reports_progress():
    """One order trading against thousands of one-share orders is one command too."""
    from services.matcher.engine import PROGRESS_EVERY

    engine = Engine(SYMBOLS, RISK)
    engine.apply(EndOfDay(0, DAY1))
    for name in ("ops", "alice", "bob"):
        engine.apply(CreateAccount(name, "h"))
    n = 2 * PROGRESS_EVERY + 10
    for k in range(n):
        engine.apply(NewOrder(BOB, f"a{k}", "AAA", SELL, 1, REF + 100))
    calls = []
    engine.progress = lambda: calls.append(1)
    events = engine.apply(NewOrder(ALICE, "sweep", "AAA", BUY, n, REF + 100))
    assert sum(type(e) is Fill for e in events) == n
    assert len(calls) == n // PROGRESS_EVERY
