"""Public books built from committed records, and the feed messages they cause.

Pure logic, no sockets: the service feeds it records and publishes what it returns,
and tests drive it directly. Only aggregated price levels are public; who posted what
never leaves the exchange.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.common.protocol import (
    Bbo,
    Cancelled,
    Fill,
    L2Update,
    Record,
    Replaced,
    Rested,
    Side,
    Snapshot,
    Trade,
)

BUY = int(Side.BUY)


class PublicBook:
    """One symbol's aggregated levels: price -> total open size, per side."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = {"l2": 0, "trade": 0, "bbo": 0}  # per-topic sequence numbers

    def change(self, side: int, price: int, delta: int) -> None:
        levels = self.bids if side == BUY else self.asks
        size = levels.get(price, 0) + delta
        if size > 0:
            levels[price] = size
        else:
            levels.pop(price, None)

    def top(self, depth: int | None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks

    def bbo(self) -> tuple[int, int, int, int]:
        bid = max(self.bids) if self.bids else 0
        ask = min(self.asks) if self.asks else 0
        return bid, self.bids.get(bid, 0), ask, self.asks.get(ask, 0)

    def next_seq(self, topic: str) -> int:
        self.seq[topic] += 1
        return self.seq[topic]

    def snapshot(self, depth: int, journal_seq: int) -> Snapshot:
        bids, asks = self.top(None)
        return Snapshot(self.symbol, self.seq["l2"], depth, bids, asks, journal_seq)


def diff(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Levels to send so a subscriber's top-N goes from ``before`` to ``after``:
    changed or new levels with their size, levels that left with size 0."""
    old, new = dict(before), dict(after)
    out = [(p, q) for p, q in after if old.get(p) != q]
    out += [(p, 0) for p in old if p not in new]
    return out


class MarketData:
    """Every symbol's public book; ``apply`` returns the feed messages to publish."""

    def __init__(self, symbols: Iterable[str], depth: int = 10) -> None:
        self.depth = depth
        self.books = {s: PublicBook(s) for s in symbols}
        self.journal_seq = 0

    def apply(self, records: list[Record]) -> list:
        """Apply records; per touched symbol: trades, then one L2 update, then a BBO."""
        touched: dict[str, tuple] = {}
        trades: list[Trade] = []
        for record in records:
            for event in record.events:
                kind = type(event)
                if kind is Rested:
                    self._touch(touched, event.symbol).change(event.side, event.price, event.qty)
                elif kind is Fill:
                    book = self._touch(touched, event.symbol)
                    book.change(3 - event.side, event.price, -event.qty)
                    trades.append(
                        Trade(
                            event.symbol,
                            book.next_seq("trade"),
                            event.trade_id,
                            event.price,
                            event.qty,
                            event.side,
                        )
                    )
                elif kind is Cancelled:
                    if event.from_book:
                        self._touch(touched, event.symbol).change(
                            event.side, event.price, -event.qty
                        )
                elif kind is Replaced:
                    book = self._touch(touched, event.symbol)
                    book.change(event.side, event.old_price, -event.old_qty)
                    if event.kept_priority:
                        book.change(event.side, event.price, event.qty)
            self.journal_seq = record.seq
        out: list = list(trades)
        for symbol, (bids0, asks0, bbo0) in touched.items():
            book = self.books[symbol]
            bids1, asks1 = book.top(self.depth)
            bid_changes, ask_changes = diff(bids0, bids1), diff(asks0, asks1)
            if bid_changes or ask_changes:
                out.append(L2Update(symbol, book.next_seq("l2"), bid_changes, ask_changes))
            bbo1 = book.bbo()
            if bbo1 != bbo0:
                out.append(Bbo(symbol, book.next_seq("bbo"), *bbo1))
        return out

    def _touch(self, touched: dict, symbol: str) -> PublicBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = PublicBook(symbol)
        if symbol not in touched:
            touched[symbol] = (*book.top(self.depth), book.bbo())
        return book

    def snapshot(self, symbol: str) -> Snapshot:
        book = self.books.get(symbol)
        if book is None:
            return Snapshot(symbol, 0, self.depth, [], [], self.journal_seq)
        return book.snapshot(self.depth, self.journal_seq)
