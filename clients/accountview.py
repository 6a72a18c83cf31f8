"""One account's open orders, positions and cash, kept from its execution reports.

Pure (no sockets): ``load`` takes a ``positions`` and an ``orders`` answer, ``apply``
takes every event of every report the account receives, in order. The market maker
and the terminal UI both keep one, so neither needs a round trip per fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from services.common.wire import (
    Accepted,
    Cancelled,
    CashAdjusted,
    Fill,
    Orders,
    Positions,
    Replaced,
    Rested,
    Side,
)


@dataclass(slots=True)
class Working:
    """One of the account's orders that is (or is about to be) on the book."""

    order_id: int
    symbol: str
    side: Side
    price: int
    qty: int  # open size


class AccountView:
    def __init__(self, account: int | None = None) -> None:
        self.account = account
        self.orders: dict[int, Working] = {}
        self.positions: dict[str, int] = {}
        self.cash = 0  # price units
        self.seq = 0  # the last record applied (or loaded)
        self.fills = 0

    def load(self, positions: Positions | None = None, orders: Orders | None = None) -> None:
        """Start again from the gateway's view (after a login, a resync or a failover)."""
        if positions is not None:
            self.account = positions.account
            self.positions = {s: q for s, q in positions.positions.items() if q}
            self.cash = positions.cash
            self.seq = max(self.seq, positions.seq)
        if orders is not None:
            self.account = orders.account
            self.orders = {
                o.order_id: Working(o.order_id, o.symbol, Side(o.side), o.price, o.qty)
                for o in orders.orders
            }
            self.seq = max(self.seq, orders.seq)

    def apply(self, event, seq: int = 0) -> None:
        """One event of a report addressed to this account."""
        if seq:
            self.seq = max(self.seq, seq)
        kind = type(event)
        if kind is Accepted:
            self.orders[event.order_id] = Working(
                event.order_id, event.symbol, Side(event.side), event.price, 0
            )
        elif kind is Rested:
            self.orders[event.order_id] = Working(
                event.order_id, event.symbol, Side(event.side), event.price, event.qty
            )
        elif kind is Fill:
            self._fill(event)
        elif kind is Cancelled:
            self.orders.pop(event.order_id, None)
        elif kind is CashAdjusted and event.account == self.account:
            self.cash = event.cash  # a deposit or withdrawal (an operator sees others')
        elif kind is Replaced:
            working = self.orders.get(event.order_id)
            if working is None:
                working = self.orders[event.order_id] = Working(
                    event.order_id, event.symbol, Side(event.side), event.price, 0
                )
            working.price = event.price
            # kept priority: it rests with qty; otherwise later events place it again
            working.qty = event.qty if event.kept_priority else 0

    def _fill(self, fill: Fill) -> None:
        """A fill names only this account's side (the other's fields are 0), or both
        for a self-trade."""
        notional = fill.price * fill.qty
        sign = 1 if fill.side == Side.BUY else -1  # the aggressor's direction
        for account, order_id, leaves, direction in (
            (fill.taker_account, fill.taker_order, fill.taker_leaves, sign),
            (fill.maker_account, fill.maker_order, fill.maker_leaves, -sign),
        ):
            if account != self.account:
                continue
            self.fills += 1
            position = self.positions.get(fill.symbol, 0) + direction * fill.qty
            if position:
                self.positions[fill.symbol] = position
            else:
                self.positions.pop(fill.symbol, None)
            self.cash -= direction * notional
            working = self.orders.get(order_id)
            if working is not None:
                if leaves:
                    working.qty = leaves
                else:
                    del self.orders[order_id]

    def tidy(self) -> None:
        """Forget orders that were accepted but neither rested nor cancelled (a taker
        that traded in full gets no ``cancelled``): call after a whole report."""
        for order_id in [o for o, w in self.orders.items() if w.qty == 0]:
            del self.orders[order_id]

    def apply_report(self, report) -> None:
        for event in report.events:
            self.apply(event, report.seq)
        self.tidy()

    def open_qty(self, symbol: str, side: Side) -> int:
        return sum(w.qty for w in self.orders.values() if w.symbol == symbol and w.side == side)

    def pnl(self, marks: dict[str, int]) -> int:
        """Mark-to-market value in price units: cash plus every position at its mark."""
        return self.cash + sum(q * marks.get(s, 0) for s, q in self.positions.items())


def average_prices(fills) -> dict[str, tuple[int, Fraction]]:
    """(position, average entry price in price units) per symbol from an account's own
    fills, oldest first (``OwnFill``s): buys and sells in the same direction as the
    position average in, the others close at that average (a flip opens at the fill's
    price). Exact fractions; round only to show them."""
    held: dict[str, tuple[int, Fraction]] = {}
    for f in fills:
        pos, avg = held.get(f.symbol, (0, Fraction(0)))
        d = f.qty if f.side == Side.BUY else -f.qty
        if pos == 0 or (pos > 0) == (d > 0):
            avg = (avg * abs(pos) + f.price * abs(d)) / (abs(pos) + abs(d))
        elif abs(d) > abs(pos):
            avg = Fraction(f.price)  # closed and flipped: the rest opens here
        pos += d
        held[f.symbol] = (pos, avg if pos else Fraction(0))
    return held
