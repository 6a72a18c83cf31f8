"""The trading calendar ([schedule]): trading dates, the state at an instant, the clock."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.common import config
from services.common.config import ConfigError, Schedule
from services.common.trading_calendar import (
    CLOSED,
    CONTINUOUS,
    PRE_CLOSE,
    PRE_OPEN,
    Calendar,
    Clock,
    date_int,
    from_int,
)

NEW_YORK = Schedule(
    timezone="America/New_York",
    pre_open="08:00",
    open="09:30",
    pre_close="15:50",
    close="16:00",
    end_of_day="17:00",
    weekdays=("mon", "tue", "wed", "thu", "fri"),
    holidays=("2026-07-03", "2026-12-25"),
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_default_trades_continuously_every_day_and_rolls_at_midnight_utc():
    cal = Calendar(Schedule())
    start = utc(2026, 3, 7, 0, 0)  # a Saturday
    for minutes in range(0, 3 * 24 * 60, 37):
        at = start + timedelta(minutes=minutes)
        assert cal.phase_at(at) == (at.date(), CONTINUOUS), at
    assert cal.trading_date_at(utc(2026, 3, 7, 23, 59, 59)) == date(2026, 3, 7)
    assert cal.trading_date_at(utc(2026, 3, 8, 0, 0)) == date(2026, 3, 8)
    assert not cal.closes


def test_a_day_with_auctions_goes_through_every_state_in_order():
    cal = Calendar(NEW_YORK)
    day = date(2026, 6, 2)  # a Tuesday, EDT (UTC-4)
    expect = [
        ((7, 59), date(2026, 6, 2), CLOSED),
        ((8, 0), date(2026, 6, 2), PRE_OPEN),
        ((9, 29), date(2026, 6, 2), PRE_OPEN),
        ((9, 30), date(2026, 6, 2), CONTINUOUS),
        ((15, 50), date(2026, 6, 2), PRE_CLOSE),
        ((16, 0), date(2026, 6, 2), CLOSED),
        ((16, 59), date(2026, 6, 2), CLOSED),
        ((17, 0), date(2026, 6, 3), CLOSED),  # the day ended: the next trading date
        ((23, 59), date(2026, 6, 3), CLOSED),
    ]
    for (h, m), trading, state in expect:
        at = cal.instant(day, h * 3600 + m * 60)
        assert cal.phase_at(at) == (trading, state), (h, m)
    assert cal.instant(day, 9 * 3600 + 30 * 60) == utc(2026, 6, 2, 13, 30)
    assert cal.closes


def test_weekends_and_holidays_are_not_trading_dates():
    cal = Calendar(NEW_YORK)
    friday = date(2026, 3, 6)
    assert cal.next_trading_date(friday) == date(2026, 3, 9)
    # Friday after its end of day, the weekend: closed, Monday's date in force
    for at in (cal.instant(friday, 17 * 3600), utc(2026, 3, 7, 15), utc(2026, 3, 8, 15)):
        assert cal.phase_at(at) == (date(2026, 3, 9), CLOSED)
    # Friday 3 July 2026 is a holiday: Thursday's next trading date is Monday 6 July
    assert cal.next_trading_date(date(2026, 7, 2)) == date(2026, 7, 6)
    assert cal.phase_at(utc(2026, 7, 3, 15)) == (date(2026, 7, 6), CLOSED)
    assert not cal.is_trading(date(2026, 12, 25))
    assert cal.next_trading_date(date(2026, 12, 24)) == date(2026, 12, 28)


def test_daylight_saving_moves_the_times_in_utc_not_on_the_wall():
    cal = Calendar(NEW_YORK)
    # the US clocks went forward on Sunday 8 March 2026
    assert cal.instant(date(2026, 3, 6), 9 * 3600 + 1800) == utc(2026, 3, 6, 14, 30)  # EST
    assert cal.instant(date(2026, 3, 9), 9 * 3600 + 1800) == utc(2026, 3, 9, 13, 30)  # EDT
    assert cal.state_at(utc(2026, 3, 6, 13, 45)) == PRE_OPEN  # 08:45 EST
    assert cal.state_at(utc(2026, 3, 9, 13, 45)) == CONTINUOUS  # 09:45 EDT
    # and back on Sunday 1 November 2026: Monday's open is 14:30 UTC again
    assert cal.instant(date(2026, 11, 2), 9 * 3600 + 1800) == utc(2026, 11, 2, 14, 30)
    # a 24:00 end of day on a DST day is the next local midnight
    london = Calendar(Schedule(timezone="Europe/London"))
    assert london.instant(date(2026, 3, 29), 24 * 3600) == utc(2026, 3, 29, 23, 0)
    assert london.trading_date_at(utc(2026, 3, 29, 23, 30)) == date(2026, 3, 30)


def test_dates_as_integers():
    assert date_int(date(2026, 3, 9)) == 20260309
    assert from_int(20260309) == date(2026, 3, 9)
    with pytest.raises(ValueError):
        from_int(20261340)


def test_the_accelerated_clock_every_process_reads_the_same():
    schedule = Schedule(clock_start="2026-03-09T07:59:00", clock_origin=1_000.0, clock_speed=3600)
    clock = Clock(schedule)
    assert clock.now(1_000.0) == utc(2026, 3, 9, 7, 59)
    assert clock.now(1_001.0) == utc(2026, 3, 9, 8, 59)  # an hour a second
    assert clock.seconds(0.5) == 1800
    real = Clock(Schedule())
    assert real.now(0.0) == utc(1970, 1, 1)
    assert real.seconds(2.0) == 2.0


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"open": "9:30"}, "open"),
        ({"close": "24:01"}, "close"),
        ({"pre_open": "10:00", "open": "09:30"}, "order"),
        ({"weekdays": ["mon", "fri", "funday"]}, "weekdays"),
        ({"weekdays": []}, "weekdays"),
        ({"holidays": ["2026-02-30"]}, "holidays"),
        ({"clock_speed": 10.0}, "clock_start"),
        ({"clock_start": "2026-03-09T08:00"}, "clock_origin"),
        ({"clock_start": "tomorrow", "clock_origin": 1.0}, "clock_start"),
        ({"reopen_call_ms": -1}, "reopen_call_ms"),
        ({"lunch": "12:00"}, "lunch"),
    ],
)
def test_a_schedule_that_cannot_be_used_is_refused_naming_the_key(keys, words):
    raw = {"symbols": {"A": {"tick": "0.01", "reference": "1.00"}}, "schedule": keys}
    with pytest.raises(ConfigError, match=r"\[schedule\]") as refused:
        config.parse(raw)
    assert words in str(refused.value)


def test_the_production_example_schedule_loads():
    cfg = config.load(config.DEFAULT_CONFIG.parent / "production.example.toml")
    cal = Calendar(cfg.schedule)
    assert cal.closes and cal.open > cal.pre_open
