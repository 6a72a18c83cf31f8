"""Public books built from committed records, and the feed messages they cause.

Pure logic, no sockets: the service feeds it records and publishes what it returns,
and tests drive it directly. Only aggregated price levels are public; who posted what
never leaves the exchange.

Messages are computed record by record, never per batch, so every topic's sequence
numbers are a pure function of the journal: a restarted marketdata that replays the
journal continues exactly the numbering its predecessor published, and a subscriber
that missed nothing sees no gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from operator import neg

from sortedcontainers import SortedDict

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

Levels = list[tuple[int, int]]
FeedMessage = L2Update | Trade | Bbo
BOOK_EVENTS = frozenset((Rested, Fill, Cancelled, Replaced))  # the events that move levels


class PublicBook:
    """One symbol's aggregated levels (price -> total open size) and its topics' sequence
    numbers. Sides are sorted best first, so the top N costs O(N), not a sort."""

    __slots__ = ("symbol", "bids", "asks", "l2_seq", "trade_seq", "bbo_seq", "anomalies")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: SortedDict = SortedDict(neg)  # highest price first
        self.asks: SortedDict = SortedDict()  # lowest price first
        self.l2_seq = 0
        self.trade_seq = 0
        self.bbo_seq = 0
        self.anomalies = 0  # removals of more than a level held: a stream we misread

    def change(self, side: int, price: int, delta: int) -> None:
        levels = self.bids if side == BUY else self.asks
        size = levels.get(price, 0) + delta
        if size > 0:
            levels[price] = size
            return
        if size < 0:
            self.anomalies += 1
        levels.pop(price, None)

    def top(self, depth: int | None = None) -> tuple[Levels, Levels]:
        """(bids, asks), best first, at most ``depth`` levels each (all if None)."""
        return (
            list(islice(self.bids.items(), depth)),
            list(islice(self.asks.items(), depth)),
        )

    def bbo(self) -> tuple[int, int, int, int]:
        """(bid_px, bid_qty, ask_px, ask_qty); zeros for an empty side."""
        bid_px, bid_qty = self.bids.peekitem(0) if self.bids else (0, 0)
        ask_px, ask_qty = self.asks.peekitem(0) if self.asks else (0, 0)
        return bid_px, bid_qty, ask_px, ask_qty

    def snapshot(self, depth: int, journal_seq: int) -> Snapshot:
        bids, asks = self.top()
        return Snapshot(self.symbol, self.l2_seq, depth, bids, asks, journal_seq)


def diff(before: Levels, after: Levels) -> Levels:
    """Levels to send so a subscriber's top N goes from ``before`` to ``after``:
    changed or new levels with their size, then levels that left with size 0."""
    old = dict(before)
    out = [(p, q) for p, q in after if old.get(p) != q]
    if len(after) != len(before) or out:
        new = dict(after)
        out += [(p, 0) for p, _ in before if p not in new]
    return out


class MarketData:
    """Every symbol's public book; ``apply`` returns the feed messages to publish."""

    def __init__(self, symbols: Iterable[str], depth: int = 10) -> None:
        if depth < 1:
            raise ValueError("marketdata depth must be at least 1")
        self.depth = depth
        self.books = {s: PublicBook(s) for s in symbols}
        self.journal_seq = 0  # last record applied

    def book(self, symbol: str) -> PublicBook:
        book = self.books.get(symbol)
        if book is None:  # a symbol added to the matcher's config but not ours yet
            book = self.books[symbol] = PublicBook(symbol)
        return book

    def apply(self, records: Iterable[Record]) -> list[FeedMessage]:
        """Apply records in order. For each record: its trades, then per symbol it
        touched an L2 update (if the top ``depth`` changed) and a BBO (if it changed)."""
        out: list[FeedMessage] = []
        for record in records:
            self._apply_record(record, out)
            self.journal_seq = record.seq
        return out

    def _apply_record(self, record: Record, out: list[FeedMessage]) -> None:
        depth = self.depth
        before: dict[str, tuple] = {}  # symbol -> (bids, asks, bbo) before the record
        for event in record.events:
            kind = type(event)
            if kind not in BOOK_EVENTS or (kind is Cancelled and not event.from_book):
                continue  # acks, rejects... and IOC/FOK/STP remainders that never rested
            symbol = event.symbol
            book = self.books.get(symbol) or self.book(symbol)
            if symbol not in before:
                before[symbol] = (*book.top(depth), book.bbo())
            if kind is Rested:
                book.change(event.side, event.price, event.qty)
            elif kind is Fill:  # size leaves the maker's side, opposite the aggressor's
                book.change(3 - event.side, event.price, -event.qty)
                book.trade_seq += 1
                out.append(
                    Trade(
                        symbol, book.trade_seq, event.trade_id, event.price, event.qty, event.side
                    )
                )
            elif kind is Cancelled:
                book.change(event.side, event.price, -event.qty)
            else:  # Replaced: if it lost priority, later events say where it went
                book.change(event.side, event.old_price, -event.old_qty)
                if event.kept_priority:
                    book.change(event.side, event.price, event.qty)
        for symbol, (bids0, asks0, bbo0) in before.items():
            book = self.books[symbol]
            bids1, asks1 = book.top(depth)
            bid_changes = diff(bids0, bids1)
            ask_changes = diff(asks0, asks1)
            if bid_changes or ask_changes:
                book.l2_seq += 1
                out.append(L2Update(symbol, book.l2_seq, bid_changes, ask_changes))
            bbo1 = book.bbo()
            if bbo1 != bbo0:
                book.bbo_seq += 1
                out.append(Bbo(symbol, book.bbo_seq, *bbo1))

    def snapshot(self, symbol: str) -> Snapshot:
        """The full book of ``symbol``; an unknown symbol is an empty book at seq 0."""
        book = self.books.get(symbol)
        if book is None:
            return Snapshot(symbol, 0, self.depth, [], [], self.journal_seq)
        return book.snapshot(self.depth, self.journal_seq)

    def anomalies(self) -> int:
        return sum(book.anomalies for book in self.books.values())
