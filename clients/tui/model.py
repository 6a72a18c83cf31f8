"""What the terminal UI shows, as plain data: no screen, no sockets, testable alone.

The app feeds it execution reports, notices, rejects and public trades; the widgets
ask it for rows of text. Money stays integer price units until a row is formatted.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from clients.accountview import AccountView
from clients.settings import SymbolSpec
from clients.trading import reject_detail, state_name
from services.common.money import to_dollars, to_units
from services.common.wire import (
    REJECT_TEXT,
    Accepted,
    Cancelled,
    CancelReason,
    Duplicate,
    Executed,
    Fill,
    Notice,
    Rejected,
    Replaced,
    RequestRejected,
    Rested,
    Session,
    Side,
    Trade,
)

DEPTH = 10
TAPE = 200
LOG = 500
SENT = 1_000  # orders whose symbol is remembered for their reject's figures


@dataclass(frozen=True, slots=True)
class OrderTicket:
    symbol: str
    side: Side
    qty: int
    price: int


def parse_ticket(
    symbols: dict[str, SymbolSpec], symbol: str, side: str, qty: str, price: str
) -> OrderTicket:
    """The order entry's four fields, checked as the gateway will check them; raises
    ValueError with a message for the log."""
    symbol = symbol.strip().upper()
    spec = symbols.get(symbol)
    if spec is None:
        raise ValueError(f"unknown symbol {symbol or '(none)'}")
    side_text = side.strip().lower()
    if side_text in ("b", "buy"):
        order_side = Side.BUY
    elif side_text in ("s", "sell"):
        order_side = Side.SELL
    else:
        raise ValueError("side is buy or sell")
    try:
        size = int(qty.strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"size {qty.strip() or '(none)'} is not a whole number") from None
    if size <= 0 or size % spec.lot:
        raise ValueError(f"size must be a positive multiple of {spec.lot}")
    try:
        units = to_units(price.strip().lstrip("$"))
    except ValueError:
        raise ValueError(f"price {price.strip() or '(none)'} is not a price") from None
    if units <= 0 or units % spec.tick:
        raise ValueError(f"price must be a positive multiple of {to_dollars(spec.tick)}")
    return OrderTicket(symbol, order_side, size, units)


SIDE_WORDS = {"b": "buy", "buy": "buy", "s": "sell", "sell": "sell"}


def is_line(text: str) -> bool:
    """Whether a field holds a whole order line (``buy 300 170.30``), not one field."""
    return any(c.isspace() or c == "@" or c.isalpha() for c in text.strip())


def parse_line(
    text: str, symbols: dict[str, SymbolSpec], symbol: str, side: str
) -> tuple[str, str, str, str]:
    """An order line as a trader types it, into the entry's four fields: ``[buy|sell|b|s]
    [SYMBOL] SIZE [@] PRICE``, e.g. ``buy 300 170.30``, ``b 300 @ 170.30``, ``sell TSLA
    10 160``; what it leaves out comes from the fields (``symbol``, ``side``). Raises
    ValueError with what was expected."""
    words = text.replace("@", " @ ").split()
    if words and words[0].lower() in SIDE_WORDS:
        side = SIDE_WORDS[words.pop(0).lower()]
    if words and words[0].upper() in symbols:
        symbol = words.pop(0).upper()
    words = [w for w in words if w != "@"]
    if len(words) != 2:
        raise ValueError("type: buy|sell [SYMBOL] SIZE [@] PRICE, e.g. buy 300 170.30")
    return symbol, side, words[0], words[1]


def describe(event, account: int | None) -> str | None:
    """One line for the notification log, or None for events not worth a line."""
    kind = type(event)
    if kind is Duplicate:
        return f"duplicate of {event.cl_ord_id}: nothing done again"
    if kind is Accepted:
        return (
            f"accepted #{event.order_id} {Side(event.side).name} {event.qty:,} "
            f"{event.symbol} @ {to_dollars(event.price)}"
        )
    if kind is Rejected:
        text = REJECT_TEXT.get(event.code, "rejected")
        ref = f" #{event.order_id}" if event.order_id else ""
        return f"REJECTED{ref}: {text}"
    if kind is Fill:
        # a fill names only our own side (the other's fields are 0), or both for a
        # self-trade: we took if the taker's order is there and is ours
        took = event.taker_order != 0 and account in (None, event.taker_account)
        mine = event.taker_order if took else event.maker_order
        side = Side(event.side)
        if not took:  # we were the maker: our side is the other
            side = Side.SELL if side == Side.BUY else Side.BUY
        return (
            f"FILL #{mine} {side.name} {event.qty:,} {event.symbol} @ "
            f"{to_dollars(event.price)} (trade {event.trade_id})"
        )
    if kind is Executed:
        return (
            f"executed #{event.order_id}: {event.cum_qty:,} at an average of "
            f"{to_dollars(event.avg_px)}"
        )
    if kind is Rested:
        return f"resting #{event.order_id} {event.qty:,} @ {to_dollars(event.price)}"
    if kind is Cancelled:
        return (
            f"cancelled #{event.order_id} {event.qty:,} {event.symbol} "
            f"({CancelReason(event.reason).name.lower()})"
        )
    if kind is Replaced:
        return (
            f"replaced #{event.order_id}: {event.old_qty:,} @ {to_dollars(event.old_price)}"
            f" -> {event.qty:,} @ {to_dollars(event.price)}"
        )
    return None


class TuiModel:
    def __init__(
        self,
        symbols: dict[str, SymbolSpec],
        selected: str,
        account: int | None = None,
        max_price: int = 10**15,
    ) -> None:
        self.symbols = symbols
        self.max_price = max_price  # [risk] max_price: the band's ceiling
        self.sent: OrderedDict[str, str] = OrderedDict()  # cl_ord_id -> symbol, the last SENT
        self.selected = selected if selected in symbols else next(iter(symbols))
        self.view = AccountView(account)
        self.log: deque[str] = deque(maxlen=LOG)
        self.logged = 0  # lines ever noted (the log keeps the last LOG)
        self.tape: deque[Trade] = deque(maxlen=TAPE)  # every symbol's trades, newest last
        self.last: dict[str, int] = {}  # last trade price per symbol
        self.mid: dict[str, int] = {}  # mid of the selected symbol's book
        self.filter = ""
        self.seq = 0
        self.epoch = 0

    # -- input ------------------------------------------------------------------

    def note(self, text: str, now: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(now))
        self.log.append(f"{stamp} {text}")
        self.logged += 1

    def sent_order(self, cl_ord_id: str, symbol: str) -> None:
        """Remember an order's symbol, so its reject can name the symbol's figures."""
        self.sent[cl_ord_id] = symbol
        if len(self.sent) > SENT:
            self.sent.popitem(last=False)

    def on_report(self, report) -> None:
        self.seq = max(self.seq, report.seq)
        self.epoch = max(self.epoch, report.epoch)
        self.view.apply_report(report)
        for event in report.events:
            line = describe(event, self.view.account)
            if line and type(event) is Rejected and event.cl_ord_id in self.sent:
                spec = self.symbols.get(self.sent[event.cl_ord_id])
                detail = reject_detail(event.code, spec, self.max_price)
                line = f"{line}: {detail}" if detail else line
            if line:
                self.note(line)

    def on_reply(self, reply) -> None:
        """A notice or a gateway reject."""
        if isinstance(reply, Notice):
            self.note(f"NOTICE: {reply.text}")
        elif isinstance(reply, RequestRejected):
            self.note(f"REJECTED: {reply.text}")

    def on_trade(self, trade: Trade) -> None:
        self.tape.append(trade)
        self.last[trade.symbol] = trade.price

    def load_tape(self, trades: list[Trade]) -> None:
        """Trades from before the screen started (the marketdata's recent trades);
        ones already heard on the feed are not added twice. Trade ids are global and
        increasing, so they order the tape across symbols."""
        known = {t.trade_id for t in self.tape}
        fresh = [t for t in trades if t.trade_id not in known]
        if not fresh:
            return
        merged = sorted([*self.tape, *fresh], key=lambda t: t.trade_id)
        self.tape = deque(merged, maxlen=TAPE)
        for t in merged:
            self.last[t.symbol] = t.price

    def on_book(self, symbol: str, bids, asks) -> None:
        if bids and asks:
            self.mid[symbol] = (bids[0][0] + asks[0][0]) // 2

    # -- rows -------------------------------------------------------------------

    def mark(self, symbol: str) -> int:
        """Last trade, else the book's mid, else the reference price."""
        if symbol in self.last:
            return self.last[symbol]
        if symbol in self.mid:
            return self.mid[symbol]
        spec = self.symbols.get(symbol)
        return spec.reference if spec else 0

    @staticmethod
    def session_line(state: int, trading_date: int, indicative) -> str:
        """The lines under the book, within its 42 columns: the state and trading
        date, and in a call period a second line, the auction's indicative price x
        matched volume and the imbalance with its side (B or S), or "no cross"."""
        line = f"{state_name(state)} │ {trading_date or '-'}"
        if state not in (Session.PRE_OPEN, Session.PRE_CLOSE):
            return line
        price, matched, imbalance, side = indicative
        if not price:
            return line + "\nauction: no cross"
        heavier = " " + Side(side).name[0] if side and imbalance else ""
        return line + f"\nauction {to_dollars(price)} x{matched:,} imb {imbalance:,}{heavier}"

    def book_rows(self, bids, asks, depth: int = DEPTH) -> list[tuple[str, str, str, str]]:
        """(bid size, bid, ask, ask size) best first, ``depth`` rows (blank when short);
        our own open size at a level is marked with a '*'."""
        own = {(w.side, w.price) for w in self.view.orders.values() if w.symbol == self.selected}
        rows = []
        for i in range(depth):
            b = bids[i] if i < len(bids) else None
            a = asks[i] if i < len(asks) else None
            rows.append(
                (
                    f"{b[1]:,}" if b else "",
                    (("*" if (Side.BUY, b[0]) in own else "") + to_dollars(b[0])) if b else "",
                    (to_dollars(a[0]) + ("*" if (Side.SELL, a[0]) in own else "")) if a else "",
                    f"{a[1]:,}" if a else "",
                )
            )
        return rows

    def order_rows(self) -> list[tuple[int, str, str, str, str]]:
        """(order id, symbol, side, open size, price), oldest first."""
        return [
            (w.order_id, w.symbol, w.side.name, f"{w.qty:,}", to_dollars(w.price))
            for w in sorted(self.view.orders.values(), key=lambda w: w.order_id)
            if w.qty
        ]

    def position_rows(self) -> list[tuple[str, str, str, str]]:
        """(symbol, shares, mark, value) per holding, then cash and the P&L: cash plus
        every position at its mark (accounts start with no cash)."""
        rows = []
        for symbol, qty in sorted(self.view.positions.items()):
            mark = self.mark(symbol)
            rows.append((symbol, f"{qty:+,}", to_dollars(mark), to_dollars(qty * mark)))
        rows.append(("USD", "", "", to_dollars(self.view.cash)))
        marks = {s: self.mark(s) for s in self.view.positions}
        rows.append(("P&L", "", "", to_dollars(self.view.pnl(marks))))
        return rows

    def pnl(self) -> int:
        return self.view.pnl({s: self.mark(s) for s in self.view.positions})

    def tape_rows(self, symbol: str | None = None, count: int = 50) -> list[str]:
        """Newest first: time-less ``SYMBOL SIDE size @ price`` lines for ``symbol``
        (every symbol when None); the side is the aggressor's."""
        out = []
        for t in reversed(self.tape):
            if symbol is None or t.symbol == symbol:
                side = "buy " if t.side == Side.BUY else "sell"
                out.append(f"{t.symbol:<6}{side} {t.qty:>7,} @ {to_dollars(t.price)}")
                if len(out) == count:
                    break
        return out

    def symbol_rows(self, text: str | None = None) -> list[tuple[str, str, str, str]]:
        """(symbol, tick, lot, reference) for configured symbols matching the filter."""
        needle = (self.filter if text is None else text).strip().upper()
        return [
            (s, to_dollars(spec.tick), str(spec.lot), to_dollars(spec.reference))
            for s, spec in sorted(self.symbols.items())
            if needle in s
        ]
