"""Public books built from committed records, and the feed messages they cause.

Pure logic, no sockets: the service feeds it records and publishes what it returns,
and tests drive it directly. Only aggregated price levels are public; who posted what
never leaves the exchange. A volatility pause (``pause`` events) moves no level: it
is published as a ``bbo`` with ``paused`` set when it begins and cleared when it ends,
and the orders it cancels come as ``cancelled`` events like any other.

The trading day: a symbol's session state and trading date go out as ``session``
(topic ``S.<symbol>``) when it changes state and when a day ends; a call period's
indicative auction as ``indicative`` (topic ``A.<symbol>``), the last one of each
symbol per batch of records (each is whole on its own), and the uncross's result as
one with ``final`` set. An auction executes resting orders on both sides, each at the
auction price, not its own: the book keeps every resting order's side and price by
order id, so each side's level shrinks where that order rests. Every other event
(accounts, cash, rejects, halts...) is passed over.

Messages are computed record by record, never per batch, so every topic's sequence
numbers are a pure function of the journal: a restarted marketdata that replays the
journal continues exactly the numbering its predecessor published, and a subscriber
that missed nothing sees no gap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import islice

import msgspec
from sortedcontainers import SortedList

from services.common.bus import Record
from services.common.wire import (
    TRADES_KEPT,
    AuctionDone,
    AuctionInfo,
    Bbo,
    Cancelled,
    DayEnded,
    Fill,
    Indicative,
    L2Update,
    RecentTrades,
    Replaced,
    Rested,
    Session,
    SessionChanged,
    SessionState,
    Side,
    Snapshot,
    Trade,
    TradingPause,
)

BUY = int(Side.BUY)
CALLS = frozenset((int(Session.PRE_OPEN), int(Session.PRE_CLOSE)))
NO_AUCTION = (0, 0, 0, 0)

Levels = list[tuple[int, int]]
FeedMessage = L2Update | Trade | Bbo | SessionState | AuctionInfo
BOOK_EVENTS = frozenset((Rested, Fill, Cancelled, Replaced))  # the events that move levels
DAY_EVENTS = frozenset((SessionChanged, Indicative, AuctionDone, DayEnded))


class BookSide:
    """One side's aggregated levels: sizes by price, and the prices kept sorted so the
    top N costs O(N) with no per-level Python iterator in the way.

    ``shown`` is the top the feed last published, while no change has come since:
    the next record's "before" and the best level, without reading the sorted list."""

    __slots__ = ("sizes", "prices", "descending", "shown")

    def __init__(self, descending: bool) -> None:
        self.sizes: dict[int, int] = {}
        self.prices = SortedList()
        self.descending = descending  # bids: the best price is the highest
        self.shown: Levels | None = None

    def __len__(self) -> int:
        return len(self.sizes)

    def top(self, depth: int | None = None) -> Levels:
        """Levels best first, at most ``depth`` of them (all if None)."""
        order = reversed(self.prices) if self.descending else self.prices
        sizes = self.sizes
        return [(p, sizes[p]) for p in islice(order, depth)]

    def best(self) -> tuple[int, int]:
        """(price, size) of the best level; (0, 0) when empty."""
        shown = self.shown
        if shown is not None:
            return shown[0] if shown else (0, 0)
        if not self.sizes:
            return 0, 0
        price = self.prices[-1] if self.descending else self.prices[0]
        return price, self.sizes[price]

    def change(self, price: int, delta: int) -> bool:
        """Add ``delta`` at ``price``; False when that removes more than the level held."""
        self.shown = None
        sizes = self.sizes
        old = sizes.get(price)
        size = (old or 0) + delta
        if size > 0:
            sizes[price] = size
            if old is None:
                self.prices.add(price)
            return True
        if old is not None:
            del sizes[price]
            self.prices.remove(price)
        return size == 0


class PublicBook:
    """One symbol's aggregated levels (price -> total open size) and its topics' sequence
    numbers."""

    __slots__ = (
        "symbol",
        "bids",
        "asks",
        "l2_seq",
        "trade_seq",
        "bbo_seq",
        "anomalies",
        "recent",
        "paused",
        "state",
        "trading_date",
        "indicative",
        "orders",
        "known",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.recent: deque[Trade] = deque(maxlen=TRADES_KEPT)  # the tape for late joiners
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        self.l2_seq = 0
        self.trade_seq = 0
        self.bbo_seq = 0
        self.anomalies = 0  # removals of more than a level held: a stream we misread
        self.paused = False  # in a volatility pause
        self.state = int(Session.CONTINUOUS)  # the session state (the engine's default)
        self.trading_date = 0
        self.indicative = NO_AUCTION  # in a call: price, matched, imbalance, its side
        self.orders: dict[int, tuple[int, int]] = {}  # resting order id -> (side, price)
        # whether ``orders`` holds every resting order (not so after a snapshot written
        # before the book kept them: a replace then moves levels as the event says)
        self.known = True

    def side(self, side: int) -> BookSide:
        return self.bids if side == BUY else self.asks

    def change(self, side: int, price: int, delta: int) -> None:
        if not (self.bids if side == BUY else self.asks).change(price, delta):
            self.anomalies += 1

    def top(self, depth: int | None = None) -> tuple[Levels, Levels]:
        """(bids, asks), best first, at most ``depth`` levels each (all if None)."""
        return self.bids.top(depth), self.asks.top(depth)

    def bbo(self) -> tuple[int, int, int, int]:
        """(bid_px, bid_qty, ask_px, ask_qty); zeros for an empty side."""
        return (*self.bids.best(), *self.asks.best())

    def snapshot(self, depth: int, levels: int, journal_seq: int) -> Snapshot:
        """The best ``levels`` of each side; ``depth`` is the feed's, for the reader."""
        bids, asks = self.top(levels)
        return Snapshot(
            self.symbol,
            self.l2_seq,
            depth,
            bids,
            asks,
            journal_seq,
            len(self.bids) - len(bids),
            len(self.asks) - len(asks),
            self.paused,
            self.state,
            self.trading_date,
            self.indicative,
        )


def diff(before: Levels, after: Levels) -> Levels:
    """Levels to send so a subscriber's top N goes from ``before`` to ``after``:
    changed or new levels with their size, then levels that left with size 0."""
    if before == after:  # most changes are below the top N, or cancel out
        return []
    old = dict(before)
    out = [(p, q) for p, q in after if old.get(p) != q]
    if len(after) != len(before) or out:
        new = dict(after)
        out += [(p, 0) for p, _ in before if p not in new]
    return out


def conflate(out: list[FeedMessage]) -> list[FeedMessage]:
    """Each symbol's last indicative of a batch stands for the ones before it (each
    is whole on its own): the others are dropped, so a burst of orders in a call is
    one message a symbol, not one per order."""
    last: dict[str, int] = {}
    for i, message in enumerate(out):
        if type(message) is AuctionInfo and not message.final:
            last[message.symbol] = i
    return [
        m for i, m in enumerate(out) if type(m) is not AuctionInfo or m.final or last[m.symbol] == i
    ]


class BookState(msgspec.Struct, array_like=True):
    symbol: str
    l2_seq: int
    trade_seq: int
    bbo_seq: int
    bids: Levels
    asks: Levels
    recent: list[Trade]
    paused: bool = False  # at the end: a snapshot file written before them still loads
    state: int = int(Session.CONTINUOUS)
    trading_date: int = 0
    indicative: tuple[int, int, int, int] = NO_AUCTION
    # (order id, side, price) of every resting order; None in a snapshot written before
    # the book kept them
    orders: list[tuple[int, int, int]] | None = None


class MarketState(msgspec.Struct, array_like=True):
    """Every book at ``journal_seq``, with its topics' sequence numbers: what a
    restarted service needs to carry on the same feeds without the journal's head."""

    journal_seq: int
    books: list[BookState]


_state_decoder = msgspec.msgpack.Decoder(MarketState)


class MarketData:
    """Every symbol's public book; ``apply`` returns the feed messages to publish."""

    def __init__(self, symbols: Iterable[str], depth: int = 10, max_depth: int = 1000) -> None:
        if depth < 1:
            raise ValueError("marketdata depth must be at least 1")
        if max_depth < depth:  # a subscriber's snapshot must hold every level the feed keeps
            raise ValueError("marketdata snapshot_max_depth must be at least depth")
        self.depth = depth
        self.max_depth = max_depth
        self.books = {s: PublicBook(s) for s in symbols}
        self.journal_seq = 0  # last record applied
        self._indicatives = 0  # indicative messages in the batch being applied

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
        if self._indicatives > 1:
            out = conflate(out)
        self._indicatives = 0
        return out

    def _apply_record(self, record: Record, out: list[FeedMessage]) -> None:
        depth = self.depth
        # symbol -> [bids top, asks top, bbo, paused] before the record; a side's top is
        # taken only when the record first touches that side (most touch one side)
        before: dict[str, list] = {}
        for event in record.events:
            kind = type(event)
            if kind not in BOOK_EVENTS or (kind is Cancelled and not event.from_book):
                if kind in DAY_EVENTS:
                    self._day_event(event, record.seq, out)
                elif kind is TradingPause:
                    book = self.book(event.symbol)
                    if event.symbol not in before:
                        before[event.symbol] = [None, None, book.bbo(), book.paused]
                    book.paused = event.paused
                continue  # acks, rejects... and IOC/FOK/STP remainders that never rested
            symbol = event.symbol
            book = self.books.get(symbol) or self.book(symbol)
            side = 3 - event.side if kind is Fill else event.side  # a fill takes from the maker
            seen = before.get(symbol)
            if seen is None:
                seen = before[symbol] = [None, None, book.bbo(), book.paused]
            i = 0 if side == BUY else 1
            if seen[i] is None:
                touched = book.bids if i == 0 else book.asks
                seen[i] = touched.shown if touched.shown is not None else touched.top(depth)
            orders = book.orders
            if kind is Rested:
                book.change(side, event.price, event.qty)
                orders[event.order_id] = (side, event.price)
            elif kind is Fill:
                auction = event.auction
                maker = event.maker_order
                # the maker rests at the fill's price, except in an auction's uncross
                price = orders[maker][1] if auction and maker in orders else event.price
                book.change(side, price, -event.qty)
                if not event.maker_leaves:
                    orders.pop(maker, None)
                if auction:  # the later order rested too: its side shrinks where it rests
                    self._auction_taker(book, event, seen, depth)
                book.trade_seq += 1
                trade = Trade(
                    symbol,
                    book.trade_seq,
                    event.trade_id,
                    event.price,
                    event.qty,
                    event.side,
                    auction,
                )
                book.recent.append(trade)
                out.append(trade)
            elif kind is Cancelled:
                book.change(side, event.price, -event.qty)
                orders.pop(event.order_id, None)
            elif event.order_id in orders or not book.known:
                # Replaced: if it lost priority, later events say where it went
                book.change(side, event.old_price, -event.old_qty)
                if event.kept_priority:
                    book.change(side, event.price, event.qty)
                    orders[event.order_id] = (side, event.price)
                else:
                    orders.pop(event.order_id, None)
            # else: an order not in the public book (on-close, held aside until the
            # closing call) was replaced: no level moves
        for symbol, (bids0, asks0, bbo0, paused0) in before.items():
            book = self.books[symbol]
            bid_changes = ask_changes = []
            if bids0 is not None:
                bids1 = book.bids.shown = book.bids.top(depth)
                bid_changes = diff(bids0, bids1)
            if asks0 is not None:
                asks1 = book.asks.shown = book.asks.top(depth)
                ask_changes = diff(asks0, asks1)
            if bid_changes or ask_changes:
                book.l2_seq += 1
                out.append(L2Update(symbol, book.l2_seq, bid_changes, ask_changes))
            bbo1 = book.bbo()
            if bbo1 != bbo0 or book.paused != paused0:
                book.bbo_seq += 1
                out.append(Bbo(symbol, book.bbo_seq, *bbo1, book.paused))

    @staticmethod
    def _auction_taker(book: PublicBook, fill: Fill, seen: list, depth: int) -> None:
        """An auction fill's later order (``fill.side``) was resting too: take its size
        from where it rests (an order the book never saw rest, such as a market order
        waiting for the uncross, moves no level)."""
        rested = book.orders.get(fill.taker_order)
        if rested is None:
            return
        side, price = rested
        i = 0 if side == BUY else 1
        if seen[i] is None:
            touched = book.bids if i == 0 else book.asks
            seen[i] = touched.shown if touched.shown is not None else touched.top(depth)
        book.change(side, price, -fill.qty)
        if not fill.taker_leaves:
            del book.orders[fill.taker_order]

    def _day_event(self, event, seq: int, out: list[FeedMessage]) -> None:
        """A session change, an indicative auction, an uncross's result, a day's end."""
        kind = type(event)
        if kind is DayEnded:  # every symbol's new date, in its state
            for book in self.books.values():
                book.trading_date = event.next_date
                out.append(SessionState(book.symbol, seq, book.state, event.next_date))
            return
        book = self.book(event.symbol)
        if kind is SessionChanged:
            book.state, book.trading_date = event.state, event.trading_date
            if event.state not in CALLS:
                book.indicative = NO_AUCTION
            out.append(SessionState(book.symbol, seq, event.state, event.trading_date))
            return
        final = kind is AuctionDone
        numbers = (event.price, event.matched, event.imbalance, event.imbalance_side)
        book.indicative = NO_AUCTION if final else numbers
        out.append(AuctionInfo(book.symbol, seq, *numbers, final))
        self._indicatives += not final

    def snapshot(self, symbol: str, depth: int = 0) -> Snapshot | None:
        """The best ``depth`` levels per side of ``symbol`` (0, or more than
        ``max_depth``: ``max_depth``); None for a symbol with no book."""
        book = self.books.get(symbol)
        if book is None:
            return None
        levels = self.max_depth if depth <= 0 else min(depth, self.max_depth)
        return book.snapshot(self.depth, levels, self.journal_seq)

    def recent_trades(self, symbol: str, limit: int) -> RecentTrades | None:
        """The last ``limit`` trades of ``symbol`` (at most TRADES_KEPT), oldest first;
        None for a symbol with no book."""
        book = self.books.get(symbol)
        if book is None:
            return None
        if limit <= 0:
            return RecentTrades(symbol, book.trade_seq, [])
        recent = book.recent  # a deque of at most TRADES_KEPT: the limit needs no cap
        return RecentTrades(symbol, book.trade_seq, list(recent)[-limit:])

    def state(self) -> bytes:
        return msgspec.msgpack.encode(
            MarketState(
                self.journal_seq,
                [
                    BookState(
                        b.symbol,
                        b.l2_seq,
                        b.trade_seq,
                        b.bbo_seq,
                        b.bids.top(),
                        b.asks.top(),
                        list(b.recent),
                        b.paused,
                        b.state,
                        b.trading_date,
                        b.indicative,
                        [(order, side, price) for order, (side, price) in b.orders.items()],
                    )
                    for b in self.books.values()
                ],
            )
        )

    def restore(self, data: bytes) -> MarketData:
        """Take the state a snapshot holds (raises msgspec's errors if it is damaged)."""
        state = _state_decoder.decode(data)
        for b in state.books:
            book = self.book(b.symbol)
            book.l2_seq, book.trade_seq, book.bbo_seq = b.l2_seq, b.trade_seq, b.bbo_seq
            book.paused = b.paused
            book.state, book.trading_date, book.indicative = b.state, b.trading_date, b.indicative
            book.known = b.orders is not None
            book.orders = {order: (side, price) for order, side, price in b.orders or ()}
            for side, levels in ((BUY, b.bids), (3 - BUY, b.asks)):
                for price, size in levels:
                    book.change(side, price, size)
            book.recent.extend(b.recent)
        self.journal_seq = state.journal_seq
        return self

    def anomalies(self) -> int:
        return sum(book.anomalies for book in self.books.values())
