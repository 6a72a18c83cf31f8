"""The scheduler's decisions (services/matcher/schedule.py), walked through whole days.

``Exchange`` below holds what the engine would report (its date, each symbol's
state, the held symbols) and takes the commands as the engine's spec says: a
SetSession moves a symbol, an EndOfDay for the engine's date starts the next one.
"""

from datetime import UTC, date, datetime, timedelta

from services.common.bus import EndOfDay, SetSession
from services.common.config import Schedule
from services.common.metrics import Metrics
from services.common.trading_calendar import (
    CLOSED,
    CONTINUOUS,
    PRE_CLOSE,
    PRE_OPEN,
    Calendar,
    Clock,
)
from services.common.wire import AuctionDone, DayEnded, SessionChanged
from services.matcher.core import MatcherCore
from services.matcher.engine import Engine
from services.matcher.schedule import Scheduler
from tests.fakes import Log
from tests.test_matcher_core import AAPL, published
from tests.test_trading_calendar import NEW_YORK

SYMBOLS = ("AAPL", "MSFT")
AUCTIONS = NEW_YORK  # 08:00 pre-open, 09:30 open, 15:50 pre-close, 16:00 close, 17:00 end


class Exchange:
    """The engine's side of the interface, as the spec defines it."""

    def __init__(self, schedule: Schedule) -> None:
        self.scheduler = Scheduler(Calendar(schedule), Clock(schedule), SYMBOLS)
        self.date = 0
        self.states = dict.fromkeys(SYMBOLS, CONTINUOUS)
        self.held: set[str] = set()
        self.sent: list = []

    def tick(self, at: datetime) -> list:
        commands = self.scheduler.decide(at, self.date, self.states.__getitem__, self.held)
        for cmd in commands:
            if type(cmd) is SetSession:
                self.states[cmd.symbol] = cmd.state
            elif cmd.trading_date == self.date:
                self.date = cmd.next_date
        self.sent += commands
        return commands

    def run(self, start: datetime, end: datetime, step=timedelta(minutes=1)) -> list:
        """Ask every ``step`` from ``start`` up to ``end``: the commands sent."""
        out, at = [], start
        while at < end:
            out += self.tick(at)
            at += step
        return out


def ny(day: date, h: int, m: int = 0, s: int = 0) -> datetime:
    return Calendar(AUCTIONS).instant(day, h * 3600 + m * 60 + s)


def test_the_default_sends_the_first_date_then_only_an_end_of_day_at_midnight_utc():
    ex = Exchange(Schedule())
    start = datetime(2026, 3, 6, 22, 0, tzinfo=UTC)
    assert ex.tick(start) == [EndOfDay(0, 20260306)]
    sent = ex.run(start, start + timedelta(hours=49), timedelta(minutes=7))
    assert sent == [EndOfDay(20260306, 20260307), EndOfDay(20260307, 20260308)]
    assert set(ex.states.values()) == {CONTINUOUS}  # never a call, never closed


def test_a_day_with_auctions_moves_every_symbol_in_order_and_ends_it():
    ex = Exchange(AUCTIONS)
    monday = date(2026, 3, 9)
    assert ex.tick(ny(monday, 6)) == [EndOfDay(0, 20260309)]
    assert ex.tick(ny(monday, 6, 1)) == [SetSession(s, CLOSED) for s in SYMBOLS]
    sent = ex.run(ny(monday, 6, 2), ny(date(2026, 3, 10), 8, 1))
    moves = [(c.state if type(c) is SetSession else "eod") for c in sent]
    assert moves == [
        *[PRE_OPEN] * 2,
        *[CONTINUOUS] * 2,  # from PRE_OPEN: the opening auction
        *[PRE_CLOSE] * 2,
        *[CLOSED] * 2,  # the closing auction
        "eod",
        *[PRE_OPEN] * 2,  # Tuesday's pre-open
    ]
    assert EndOfDay(20260309, 20260310) in sent
    assert ex.date == 20260310


def test_the_weekend_is_skipped_and_a_missed_close_runs_before_the_day_ends():
    ex = Exchange(AUCTIONS)
    friday = date(2026, 3, 6)
    ex.run(ny(friday, 7), ny(friday, 15, 55))
    assert set(ex.states.values()) == {PRE_CLOSE}
    # no primary from 15:55 on Friday until Saturday: the closing auction, then the day ends
    sent = ex.tick(datetime(2026, 3, 7, 18, tzinfo=UTC))
    assert sent == [SetSession(s, CLOSED) for s in SYMBOLS] + [EndOfDay(20260306, 20260309)]
    assert ex.run(datetime(2026, 3, 7, 18, 1, tzinfo=UTC), ny(date(2026, 3, 9), 7, 59)) == []


def test_a_held_symbol_is_left_out_and_moved_once_it_trades_again():
    ex = Exchange(AUCTIONS)
    day = date(2026, 3, 10)
    ex.run(ny(day, 7), ny(day, 8))
    ex.held.add("MSFT")  # halted before the pre-open
    assert ex.tick(ny(day, 8)) == [SetSession("AAPL", PRE_OPEN)]
    assert ex.tick(ny(day, 8, 1)) == []
    ex.held.clear()  # resumed: it catches up with the schedule
    assert ex.tick(ny(day, 8, 2)) == [SetSession("MSFT", PRE_OPEN)]


def test_a_resumed_symbol_reopens_after_its_call():
    ex = Exchange(AUCTIONS)
    day = date(2026, 3, 10)
    ex.run(ny(day, 7), ny(day, 10))
    assert set(ex.states.values()) == {CONTINUOUS}
    ex.states["AAPL"] = PRE_OPEN  # the engine re-opens a resumed symbol through a call
    assert ex.tick(ny(day, 10, 0, 0)) == []
    assert ex.tick(ny(day, 10, 0, 1)) == []
    assert ex.tick(ny(day, 10, 0, 2)) == [SetSession("AAPL", CONTINUOUS)]
    assert ex.tick(ny(day, 10, 0, 3)) == []


def test_an_operators_move_lasts_until_the_schedule_changes_and_a_new_primary_continues():
    ex = Exchange(AUCTIONS)
    day = date(2026, 3, 10)
    ex.run(ny(day, 7), ny(day, 11))
    ex.states["MSFT"] = CLOSED  # `exchange admin session MSFT closed`
    assert ex.run(ny(day, 11), ny(day, 15, 50)) == []
    assert ex.tick(ny(day, 15, 50)) == [SetSession(s, PRE_CLOSE) for s in SYMBOLS]
    # a new primary (a new scheduler, nothing remembered) re-applies the state in force
    ex.scheduler = Scheduler(Calendar(AUCTIONS), Clock(AUCTIONS), SYMBOLS)
    assert ex.tick(ny(day, 15, 51)) == []
    ex.states["AAPL"] = CONTINUOUS
    ex.scheduler = Scheduler(Calendar(AUCTIONS), Clock(AUCTIONS), SYMBOLS)
    assert ex.tick(ny(day, 15, 52)) == [SetSession("AAPL", PRE_CLOSE)]


def test_into_continuous_trading_only_through_a_call():
    ex = Exchange(AUCTIONS)
    day = date(2026, 3, 10)
    ex.date = 20260310
    ex.states = dict.fromkeys(SYMBOLS, CLOSED)  # a primary that starts mid-morning
    assert ex.tick(ny(day, 11)) == [SetSession(s, PRE_OPEN) for s in SYMBOLS]
    assert ex.tick(ny(day, 11, 0, 1)) == []
    assert ex.tick(ny(day, 11, 0, 2)) == [SetSession(s, CONTINUOUS) for s in SYMBOLS]


def test_an_early_end_of_day_waits_for_the_calendar():
    ex = Exchange(AUCTIONS)
    day = date(2026, 3, 10)
    ex.run(ny(day, 7), ny(day, 16, 30))
    ex.date = 20260311  # an operator's `exchange admin end-of-day` at 16:30
    assert ex.run(ny(day, 16, 30), ny(date(2026, 3, 11), 7, 59)) == []
    assert ex.tick(ny(date(2026, 3, 11), 8)) == [SetSession(s, PRE_OPEN) for s in SYMBOLS]


def test_the_accelerated_clock_runs_a_day_in_seconds():
    fast = Schedule(
        pre_open="00:00",
        open="06:00",
        pre_close="16:00",
        close="20:00",
        end_of_day="22:00",
        clock_start="2026-03-09T00:00:00",
        clock_origin=1_000.0,
        clock_speed=3600,
    )
    ex = Exchange(fast)
    clock = ex.scheduler
    states, real = [], 1_000.0
    while real < 1_025.0:  # 25 real seconds: a whole day and the next one's start
        for cmd in ex.tick(clock.now(real)):
            states.append(cmd.state if type(cmd) is SetSession else ("eod", cmd.next_date))
        real += 0.05
    assert states == [
        ("eod", 20260309),
        *[PRE_OPEN] * 2,
        *[CONTINUOUS] * 2,
        *[PRE_CLOSE] * 2,
        *[CLOSED] * 2,
        ("eod", 20260310),
        *[PRE_OPEN] * 2,
    ]


def test_the_primary_journals_what_the_scheduler_decides_and_a_new_one_continues():
    cal = Calendar(AUCTIONS)
    now = [ny(date(2026, 3, 10), 7).timestamp()]

    def matcher(engine):
        scheduler = Scheduler(cal, Clock(AUCTIONS), ["AAPL"])
        c = MatcherCore(engine, Log(), Metrics("matcher-a"), 1_000, 10_000, 5.0,
                        scheduler=scheduler, wall=lambda: now[0])  # fmt: skip
        return c

    first = matcher(Engine({"AAPL": AAPL}))
    assert first.schedule_due() is None  # a standby decides nothing
    first.become_primary(1)
    (start,) = published(first.schedule_due())
    assert start.command == EndOfDay(0, 20260310) and type(start.events[-1]) is DayEnded
    (closed,) = published(first.schedule_due())
    assert closed.events == [SessionChanged("AAPL", CLOSED, 20260310)]
    assert first.schedule_due() is None
    now[0] = ny(date(2026, 3, 10), 8).timestamp()
    (pre_open,) = published(first.schedule_due())
    assert first.engine.session_state("AAPL") == PRE_OPEN
    # a standby that replayed the log takes over at the open: it simply continues
    standby = matcher(Engine({"AAPL": AAPL}))
    standby.apply_committed([start, closed, pre_open])
    standby.become_primary(2)
    now[0] = ny(date(2026, 3, 10), 9, 30).timestamp()
    (opened,) = published(standby.schedule_due())
    assert opened.seq == 4 and opened.epoch == 2
    assert any(type(e) is AuctionDone and e.kind == "open" for e in opened.events)
    assert standby.engine.session_state("AAPL") == CONTINUOUS
