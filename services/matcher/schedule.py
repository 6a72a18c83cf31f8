"""The scheduler's decisions: from the exchange's clock, the calendar and the engine's
state, the commands that move symbols through the trading day and end it.

The engine has no clock (it stays a pure function of the journal), so the primary
matcher asks ``Scheduler.decide`` on a timer and sequences what it returns as
journaled records, as it does ``Reopen`` for volatility pauses (``core.py``). Every
command it sends is harmless to send again: a ``SetSession`` into the state a symbol
is in changes nothing, an ``EndOfDay`` for a date that is not the engine's is ignored.
A new primary starts with no memory and simply continues from the engine's state.

What it decides, each time it is asked:

- the engine has no date yet (a new exchange): ``EndOfDay(0, today)``;
- the calendar's trading date is past the engine's: the day ended (on time, or while
  no primary ran). Symbols in the closing call run their closing auction (CLOSED),
  and with a schedule that ends its days closed every other open symbol closes too;
  then ``EndOfDay(engine's date, calendar's date)``;
- the calendar's date is before the engine's (an operator ended the day early):
  nothing until the calendar catches up;
- the schedule's state changed since the last decision (or this is the first one):
  every symbol not in it is moved there. A symbol in a volatility pause or halted is
  left out and moved once it trades again. Into continuous trading only from
  PRE_OPEN (so the opening auction uncrosses a book that may be crossed): from any
  other state the symbol goes to PRE_OPEN, and the next rule opens it;
- between changes, in continuous trading: a symbol in PRE_OPEN (a halted symbol the
  engine re-opens through a call when resumed, or an operator's pre-open) moves to
  CONTINUOUS once it has been there ``reopen_call_ms``, on the exchange's clock.

So an operator's `exchange admin session` lasts until the schedule's next change (or
a failover, whose new primary re-applies the state in force), except a by-hand
pre-open during continuous trading, which re-opens after ``reopen_call_ms``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from datetime import datetime, timedelta

from services.common.bus import EndOfDay, SetSession
from services.common.trading_calendar import (
    CLOSED,
    CONTINUOUS,
    PRE_CLOSE,
    PRE_OPEN,
    Calendar,
    Clock,
    date_int,
)

Command = SetSession | EndOfDay


class Scheduler:
    def __init__(self, calendar: Calendar, clock: Clock, symbols: Iterable[str]) -> None:
        self.calendar = calendar
        self.clock = clock
        self.symbols = sorted(symbols)
        self.reopen_call = timedelta(seconds=calendar.reopen_call_s)
        self.applied: tuple[int, int] | None = None  # (date, state) last moved to
        self.behind: set[str] = set()  # symbols left out of that move (halted, paused)
        self.call_since: dict[str, datetime] = {}  # symbol -> when seen in a re-opening call

    def now(self, unix: float) -> datetime:
        return self.clock.now(unix)

    def decide(
        self,
        at: datetime,
        trading_date: int,
        state_of: Callable[[str], int],
        held: Container[str] = (),
    ) -> list[Command]:
        """The commands to send now (in order), given the engine's ``trading_date``,
        each symbol's state (``state_of``) and the symbols ``held`` (halted or paused:
        no session moves for them until they trade again)."""
        day, state = self.calendar.phase_at(at)
        today = date_int(day)
        if trading_date == 0:
            return [EndOfDay(0, today)]
        if trading_date > today:
            return []
        if trading_date < today:
            return self._end_day(trading_date, today, state_of, held)
        out: list[Command] = []
        if (today, state) != self.applied:
            self.applied = (today, state)
            self.behind = set()
            for symbol in self.symbols:
                if symbol in held:
                    self.behind.add(symbol)
                else:
                    out.extend(self._move(at, symbol, state_of(symbol), state))
            return out
        for symbol in sorted(self.behind):
            if symbol not in held:
                self.behind.discard(symbol)
                out.extend(self._move(at, symbol, state_of(symbol), state))
        if state == CONTINUOUS:
            out.extend(self._reopen(at, state_of, held))
        return out

    def _end_day(
        self, trading_date: int, today: int, state_of: Callable[[str], int], held: Container[str]
    ) -> list[Command]:
        """Finish the engine's day as the schedule finishes one, then start ``today``."""
        out: list[Command] = []
        for symbol in self.symbols:
            current = state_of(symbol)
            if symbol in held or current == CLOSED:
                continue
            if current == PRE_CLOSE or self.calendar.closes:
                out.append(SetSession(symbol, CLOSED))
        out.append(EndOfDay(trading_date, today))
        self.applied = None  # the new day's state is moved to at the next decision
        self.call_since.clear()
        return out

    def _move(self, at: datetime, symbol: str, current: int, target: int) -> list[Command]:
        if current == target:
            return []
        if target == CONTINUOUS and current != PRE_OPEN:
            target = PRE_OPEN  # through a call: the re-opening rule finishes the move
            self.call_since[symbol] = at
        return [SetSession(symbol, target)]

    def _reopen(
        self, at: datetime, state_of: Callable[[str], int], held: Container[str]
    ) -> list[Command]:
        out: list[Command] = []
        calls = self.call_since
        for symbol in self.symbols:
            if symbol in held or state_of(symbol) != PRE_OPEN:
                calls.pop(symbol, None)
                continue
            since = calls.setdefault(symbol, at)
            if at - since >= self.reopen_call:
                del calls[symbol]
                out.append(SetSession(symbol, CONTINUOUS))
        return out
