"""Per-account statements from committed records: no socket, no clock, no file but the spool.

The ledger carries each account's cash and positions from day to day and tallies the
current day's trades and cash movements; the trades and movements themselves, which a
day can hold without bound, go to the spool it is given (``spool.py``: a file, not
memory). At each ``day_ended`` event it closes the day into one statement per account
(positions, cash, P&L marked at the official close the event carries; the lines are
read back from the day's spool when the files are written) and starts the next day.
What it carries between days (``Carry``) is small (accounts x symbols) and is what the
service persists with its journal position at each day's end, so a restart replays at
most one day of records.

The day's opening figures are the closing ones less the day's flows, so the ledger
never copies the state at a day's start. Marks: a symbol's previous close is the last
official close the journal gave, else (before its first close) the configured
reference price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from services.common.bus import Record
from services.common.wire import AccountCreated, CashAdjusted, DayEnded, Fill, Side

if TYPE_CHECKING:
    from services.statements.spool import Spool


class Holding(msgspec.Struct, array_like=True):
    name: str
    cash: int = 0  # price units
    positions: dict[str, int] = {}  # symbol -> shares (negative: short)


class Carry(msgspec.Struct, array_like=True):
    """What passes from one day to the next, valid after record ``seq``."""

    seq: int = 0
    trading_date: int = 0  # the day under way (0: before the first)
    day_first_seq: int = 1  # the first record of the day under way
    accounts: dict[int, Holding] = {}
    closes: dict[str, int] = {}  # symbol -> the last official close (price units)
    last_written: int = 0  # the last trading date a statement set was made for


carry_decoder = msgspec.msgpack.Decoder(Carry)


class Trade(msgspec.Struct, array_like=True):
    seq: int
    trade_id: int
    symbol: str
    side: int  # this account's side
    price: int
    qty: int
    order_id: int  # this account's order
    maker: bool  # this account's order was resting
    auction: bool


class Movement(msgspec.Struct, array_like=True):
    """Cash in (> 0) or out other than by a trade: an opening balance, a deposit."""

    seq: int
    amount: int
    cash: int  # the balance after it


@dataclass(slots=True)
class Flows:
    """One account's day so far: totals only (its lines are in the spool)."""

    trades: int = 0
    moved: int = 0  # cash movements' sum
    # symbol -> [shares, value] bought / sold today
    bought: dict[str, list[int]] = field(default_factory=dict)
    sold: dict[str, list[int]] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class PositionLine:
    symbol: str
    opening: int
    bought: int
    sold: int
    closing: int
    bought_value: int
    sold_value: int
    prev_close: int
    close: int

    @property
    def opening_value(self) -> int:
        return self.opening * self.prev_close

    @property
    def closing_value(self) -> int:
        return self.closing * self.close

    @property
    def pnl(self) -> int:
        """Marked to market: the change in the position's value plus what trading it
        brought in (sales less purchases)."""
        return self.closing_value - self.opening_value + self.sold_value - self.bought_value


@dataclass(slots=True, frozen=True)
class Statement:
    account: int
    name: str
    trading_date: int
    trades: int  # how many (the trades themselves are in the day's spool)
    moved: int  # cash in less out other than by trades
    positions: list[PositionLine]
    opening_cash: int
    closing_cash: int

    @property
    def bought_value(self) -> int:
        return sum(p.bought_value for p in self.positions)

    @property
    def sold_value(self) -> int:
        return sum(p.sold_value for p in self.positions)

    @property
    def opening_equity(self) -> int:
        return self.opening_cash + sum(p.opening_value for p in self.positions)

    @property
    def closing_equity(self) -> int:
        return self.closing_cash + sum(p.closing_value for p in self.positions)

    @property
    def pnl(self) -> int:
        return sum(p.pnl for p in self.positions)


@dataclass(slots=True, frozen=True)
class DayStatements:
    """Everything one day's end produces: a statement for every account."""

    trading_date: int
    next_date: int
    first_seq: int
    last_seq: int  # the record that ended the day
    closes: dict[str, int]
    prev_closes: dict[str, int]
    statements: list[Statement]
    lines: Path | None = field(compare=False)  # the day's spool: trades, cash movements


class Ledger:
    def __init__(self, references: dict[str, int], spool: Spool, carry: Carry | None = None):
        self.references = references  # symbol -> configured reference price
        self.carry = carry or Carry()
        self.flows: dict[int, Flows] = {}
        self.spool = spool
        spool.begin(self.carry.day_first_seq)
        self.ended = False  # whether the last record applied ended a day (or began the first)

    @property
    def seq(self) -> int:
        return self.carry.seq

    def snapshot(self) -> bytes:
        """The carry, encoded: valid only right after a day ended (no flows yet)."""
        return msgspec.msgpack.encode(self.carry)

    def _flows(self, account: int) -> Flows:
        flows = self.flows.get(account)
        if flows is None:
            flows = self.flows[account] = Flows()
        return flows

    def apply(self, record: Record) -> DayStatements | None:
        """Take one committed record; a day's statements when it ended one."""
        carry = self.carry
        done = None
        self.ended = False
        for event in record.events:
            kind = type(event)
            if kind is Fill:
                self._fill(record.seq, event)
            elif kind is CashAdjusted:
                holding = carry.accounts.get(event.account)
                if holding is None:  # an account the journal created before it
                    holding = carry.accounts[event.account] = Holding(f"#{event.account}")
                holding.cash = event.cash
                self._flows(event.account).moved += event.amount
                self.spool.add(event.account, Movement(record.seq, event.amount, event.cash))
            elif kind is AccountCreated:
                carry.accounts[event.account] = Holding(event.name, 0, {})
            elif kind is DayEnded:
                carry.seq = record.seq
                done = self._end_day(event)
                self.ended = True
        carry.seq = record.seq
        return done

    def _fill(self, seq: int, fill: Fill) -> None:
        accounts = self.carry.accounts
        value = fill.price * fill.qty
        taker_side = fill.side
        maker_side = Side.SELL if taker_side == Side.BUY else Side.BUY
        for account, side, order, maker in (
            (fill.taker_account, taker_side, fill.taker_order, False),
            (fill.maker_account, maker_side, fill.maker_order, True),
        ):
            holding = accounts.get(account)
            if holding is None:
                holding = accounts[account] = Holding(f"#{account}")
            flows = self._flows(account)
            flows.trades += 1
            self.spool.add(
                account,
                Trade(seq, fill.trade_id, fill.symbol, side, fill.price, fill.qty, order, maker,
                      fill.auction),
            )  # fmt: skip
            symbol = fill.symbol
            if side == Side.BUY:
                holding.positions[symbol] = holding.positions.get(symbol, 0) + fill.qty
                holding.cash -= value
                tally = flows.bought.setdefault(symbol, [0, 0])
            else:
                holding.positions[symbol] = holding.positions.get(symbol, 0) - fill.qty
                holding.cash += value
                tally = flows.sold.setdefault(symbol, [0, 0])
            tally[0] += fill.qty
            tally[1] += value

    def _end_day(self, event: DayEnded) -> DayStatements | None:
        carry = self.carry
        closes = {c.symbol: c.price for c in event.closes}
        result = None
        if event.trading_date:
            prev = {s: carry.closes.get(s) or ref for s, ref in self.references.items()}
            for symbol, price in carry.closes.items():
                prev.setdefault(symbol, price)
            marks = {s: closes.get(s) or prev.get(s, 0) for s in prev.keys() | closes.keys()}
            statements = [
                self._statement(account, holding, event.trading_date, prev, marks)
                for account, holding in sorted(carry.accounts.items())
            ]
            result = DayStatements(
                event.trading_date,
                event.next_date,
                carry.day_first_seq,
                carry.seq,
                marks,
                {s: prev.get(s, 0) for s in marks},
                statements,
                self.spool.end(keep=True),
            )
            carry.last_written = event.trading_date
        else:
            self.spool.end(keep=False)
        for symbol, price in closes.items():
            if price:
                carry.closes[symbol] = price
        carry.trading_date = event.next_date
        carry.day_first_seq = carry.seq + 1
        self.spool.begin(carry.day_first_seq)
        self.flows = {}
        for holding in carry.accounts.values():  # flat positions need no line tomorrow
            holding.positions = {s: q for s, q in holding.positions.items() if q}
        return result

    def _statement(
        self,
        account: int,
        holding: Holding,
        date: int,
        prev: dict[str, int],
        marks: dict[str, int],
    ) -> Statement:
        flows = self.flows.get(account) or Flows()
        symbols = sorted(
            {s for s, q in holding.positions.items() if q} | flows.bought.keys() | flows.sold.keys()
        )
        lines = []
        for symbol in symbols:
            bought, bought_value = flows.bought.get(symbol, (0, 0))
            sold, sold_value = flows.sold.get(symbol, (0, 0))
            closing = holding.positions.get(symbol, 0)
            lines.append(
                PositionLine(
                    symbol,
                    closing - bought + sold,
                    bought,
                    sold,
                    closing,
                    bought_value,
                    sold_value,
                    prev.get(symbol, 0),
                    marks.get(symbol, 0),
                )
            )
        traded = sum(line.sold_value - line.bought_value for line in lines)
        return Statement(
            account,
            holding.name,
            date,
            flows.trades,
            flows.moved,
            lines,
            holding.cash - flows.moved - traded,
            holding.cash,
        )
