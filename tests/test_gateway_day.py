"""The gateway's part of the trading day: an operator's session moves and end of day
become journaled Admin commands, the end of day with the next trading date from the
calendar (the one in force, or the engine's, the later)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from services.common.bus import Admin, EndOfDay, Record
from services.common.config import Schedule
from services.common.wire import AdminRequest, DayEnded, Reject, Session
from services.gateway.core import GatewayCore
from tests.test_gateway_core import Gateway

WEEKDAYS_ONLY = Schedule(weekdays=("mon", "tue", "wed", "thu", "fri"), holidays=("2026-03-09",))


def operator_gateway() -> tuple[Gateway, int]:
    gw = Gateway(security={"operators": ("op",)})
    return gw, gw.account(b"op", "op")


def with_schedule(gw: Gateway, schedule: Schedule, at: datetime) -> GatewayCore:
    core = gw.core
    core.cfg = dataclasses.replace(core.cfg, schedule=schedule)
    core.calendar = type(core.calendar)(schedule)
    core.wall = lambda: at.timestamp()
    return core


def test_a_session_move_goes_to_the_matcher_as_an_admin_command():
    gw, op = operator_gateway()
    gw.send(b"op", AdminRequest("s1", "session", "AAPL", state=Session.PRE_OPEN))
    assert gw.turn() == [Admin(op, "s1", "session", "AAPL", state=Session.PRE_OPEN)]
    gw.send(b"op", AdminRequest("s2", "session", "AAPL", state=9))
    gw.send(b"op", AdminRequest("s3", "session", "NOPE", state=Session.CLOSED))
    assert gw.turn() == []
    bad_state, bad_symbol = gw.taken(b"op")
    assert bad_state.code == Reject.MALFORMED and "pre-open" in bad_state.text
    assert bad_symbol.code == Reject.UNKNOWN_SYMBOL


def test_only_operators_move_sessions_or_end_the_day():
    gw = Gateway()
    gw.account(b"ann", "ann")
    gw.send(b"ann", AdminRequest("e1", "end_of_day"))
    gw.send(b"ann", AdminRequest("s1", "session", "AAPL", state=Session.CLOSED))
    assert gw.turn() == []
    assert [r.code for r in gw.taken(b"ann")] == [Reject.NOT_AUTHORIZED] * 2


def test_the_end_of_day_names_the_next_trading_date_from_the_calendar():
    gw, op = operator_gateway()
    friday = datetime(2026, 3, 6, 18, tzinfo=UTC)
    with_schedule(gw, WEEKDAYS_ONLY, friday)
    gw.send(b"op", AdminRequest("e1", "end_of_day", "IGNORED"))
    # the weekend and Monday's holiday are skipped
    assert gw.turn() == [Admin(op, "e1", "end_of_day", "", date=20260310)]


def test_the_end_of_day_starts_from_the_engines_date_when_it_is_ahead():
    gw, op = operator_gateway()
    core = with_schedule(gw, WEEKDAYS_ONLY, datetime(2026, 3, 6, 18, tzinfo=UTC))
    core.committed([])  # nothing yet: the calendar's date
    assert core.next_trading_date() == 20260310
    # the engine already moved to Tuesday (an earlier end of day): the one after it
    core.committed([Record(1, 1, EndOfDay(20260306, 20260310), [DayEnded(20260306, 20260310, [])])])
    assert core.trading_date == 20260310
    assert core.next_trading_date() == 20260311
