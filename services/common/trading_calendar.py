"""The trading calendar: which dates are trading dates, and the session state the
schedule (``[schedule]``, services/common/config.py) puts a symbol in at an instant.

Pure: every answer is a function of the schedule and the instant asked about. The
matcher's scheduler asks it what to do (services/matcher/schedule.py), the gateway
asks it for the next trading date (an operator's end of day). Dates are ``date``
objects here and YYYYMMDD integers on the wire (``date_int``).

A trading date D's day runs from its ``pre_open`` to its ``end_of_day``, local wall
clock times in ``timezone`` (a daylight-saving change moves them in UTC, never on the
wall). From D's ``end_of_day`` on, the calendar's trading date is the next trading
date, and the state is CLOSED until that date's ``pre_open``. In the day: PRE_OPEN
from ``pre_open``, CONTINUOUS from ``open``, PRE_CLOSE from ``pre_close``, CLOSED from
``close``; equal times skip a state (the default: continuous all day).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.wire import Session

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_S = 24 * 3600
CLOSED, PRE_OPEN, CONTINUOUS, PRE_CLOSE = (
    int(Session.CLOSED),
    int(Session.PRE_OPEN),
    int(Session.CONTINUOUS),
    int(Session.PRE_CLOSE),
)
TIME_KEYS = ("pre_open", "open", "pre_close", "close", "end_of_day")


def parse_time(text: str) -> int:
    """ "HH:MM" or "HH:MM:SS" as seconds after midnight; "24:00" is the day's end."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"{text!r} is not HH:MM or HH:MM:SS")
    h, m, s = (int(p) for p in (*parts, "00")[:3])
    if m > 59 or s > 59 or h * 3600 + m * 60 + s > DAY_S:
        raise ValueError(f"{text!r} is not a time of day (00:00 .. 24:00)")
    return h * 3600 + m * 60 + s


def date_int(d: date) -> int:
    """A date as YYYYMMDD, the wire's form."""
    return d.year * 10_000 + d.month * 100 + d.day


def from_int(n: int) -> date:
    """A YYYYMMDD integer as a date (ValueError if it is none)."""
    return date(n // 10_000, n // 100 % 100, n % 100)


def zone(name: str):
    """The time zone ``name``; UTC needs no time zone database (a trader's machine
    loads the configuration too, and may have none)."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not an IANA time zone") from None


def check(schedule) -> None:
    """ValueError naming the key, for a ``[schedule]`` that cannot be used."""
    Calendar(schedule)
    if schedule.clock_speed <= 0:
        raise ValueError("clock_speed must be > 0")
    if (schedule.clock_speed != 1 or schedule.clock_origin) and not schedule.clock_start:
        raise ValueError("clock_speed and clock_origin need clock_start")
    if schedule.clock_start:
        try:
            datetime.fromisoformat(schedule.clock_start)
        except ValueError:
            raise ValueError(
                f"clock_start {schedule.clock_start!r} is not YYYY-MM-DDTHH:MM[:SS]"
            ) from None
        if schedule.clock_origin <= 0:
            raise ValueError("clock_start needs clock_origin: the UNIX time it is read at")
    if schedule.reopen_call_ms < 0:
        raise ValueError("reopen_call_ms must be >= 0")


class Calendar:
    """Trading dates and session states of one ``[schedule]``."""

    def __init__(self, schedule) -> None:
        self.zone = zone(schedule.timezone)
        times = []
        for key in TIME_KEYS:
            try:
                times.append(parse_time(getattr(schedule, key)))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        if times != sorted(times):
            raise ValueError(f"{', '.join(TIME_KEYS)} must be in that order (equal skips a state)")
        self.pre_open, self.open, self.pre_close, self.close, self.end_of_day = times
        unknown = sorted(set(schedule.weekdays) - set(WEEKDAYS))
        if unknown or not schedule.weekdays:
            raise ValueError(f"weekdays: one or more of {', '.join(WEEKDAYS)}")
        self.weekdays = frozenset(WEEKDAYS.index(day) for day in schedule.weekdays)
        try:
            self.holidays = frozenset(date.fromisoformat(day) for day in schedule.holidays)
        except ValueError as exc:
            raise ValueError(f"holidays: {exc} (YYYY-MM-DD)") from None
        # whether a day ends closed: a schedule with a closing call or close before its
        # end of day (the default trades continuously through it)
        self.closes = self.pre_close < self.end_of_day
        self.reopen_call_s = schedule.reopen_call_ms / 1000

    # -- dates ------------------------------------------------------------------------

    def is_trading(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def next_trading_date(self, day: date) -> date:
        """The first trading date after ``day`` (the holidays are finite and at least one
        weekday trades, so there always is one)."""
        day += timedelta(days=1)
        while not self.is_trading(day):
            day += timedelta(days=1)
        return day

    def instant(self, day: date, seconds: int) -> datetime:
        """The UTC instant of the wall-clock time ``seconds`` after ``day``'s local
        midnight (24:00 is the next day's 00:00)."""
        local = datetime.combine(day, time(), tzinfo=self.zone) + timedelta(seconds=seconds)
        return local.astimezone(UTC)

    def trading_date_at(self, at: datetime) -> date:
        """The trading date in force at ``at``: the local date until its end of day when
        it trades, else the next trading date."""
        local = at.astimezone(self.zone).date()
        if self.is_trading(local) and at < self.instant(local, self.end_of_day):
            return local
        return self.next_trading_date(local)

    # -- states -----------------------------------------------------------------------

    def state_at(self, at: datetime) -> int:
        """The session state (a ``Session`` code) the schedule gives every symbol at ``at``."""
        return self.phase_at(at)[1]

    def phase_at(self, at: datetime) -> tuple[date, int]:
        """(the trading date, the session state) at ``at``."""
        day = self.trading_date_at(at)
        if day != at.astimezone(self.zone).date():
            return day, CLOSED  # after a day's end, a weekend, a holiday
        for seconds, state in (
            (self.pre_open, CLOSED),
            (self.open, PRE_OPEN),
            (self.pre_close, CONTINUOUS),
            (self.close, PRE_CLOSE),
        ):
            if at < self.instant(day, seconds):
                return day, state
        return day, CLOSED


class Clock:
    """The exchange's clock from real UNIX time: the real one, or (``clock_start``) one
    that reads ``clock_start`` at ``clock_origin`` and runs ``clock_speed`` times faster,
    so a test or a benchmark lives through days in seconds. Every process computes the
    same reading from the same configuration."""

    def __init__(self, schedule) -> None:
        self.speed = schedule.clock_speed
        self.origin = schedule.clock_origin
        self.start = None
        if schedule.clock_start:
            start = datetime.fromisoformat(schedule.clock_start)
            if start.tzinfo is None:
                start = start.replace(tzinfo=zone(schedule.timezone))
            self.start = start.timestamp()

    def now(self, unix: float) -> datetime:
        """The exchange's time (UTC) at real UNIX time ``unix``."""
        if self.start is None:
            return datetime.fromtimestamp(unix, UTC)
        return datetime.fromtimestamp(self.start + (unix - self.origin) * self.speed, UTC)

    def seconds(self, real_s: float) -> float:
        """Exchange seconds that pass in ``real_s`` real ones."""
        return real_s * (self.speed if self.start is not None else 1.0)
