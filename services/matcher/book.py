"""One symbol's order book: price levels in time priority, best price in O(1).

Each side keys its levels by the price for asks and minus the price for bids, so the
best level has the smallest key on both sides and one matching loop serves both. A
binary heap of keys finds the next best level in O(log n) when the best one empties
(C-level heapq: five times cheaper per level than a sorted list here).
Cancels are O(1): the order is marked dead and its size leaves the level at once; the
dead entry is dropped when it reaches the front of its queue, or when the level's
queue is compacted because dead entries outnumber live ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from itertools import islice

from services.common.config import SymbolSpec
from services.common.wire import Session, Side
from services.matcher.auction import NO_AUCTION
from services.matcher.state import Order


class Level:
    """One price level: live orders in time order (dead ones dropped lazily)."""

    __slots__ = ("price", "qty", "count", "orders")

    def __init__(self, price: int) -> None:
        self.price = price
        self.qty = 0  # open size of the live orders
        self.count = 0  # live orders
        self.orders: deque[Order] = deque()


class BookSide:
    """One side of a book. ``heap`` holds the keys of the levels (a key is the price for
    asks, minus the price for bids, so the best level has the smallest key on both
    sides); keys of removed levels stay in it until they surface or a compaction."""

    __slots__ = ("sign", "levels", "heap", "best_key")

    def __init__(self, side: int) -> None:
        self.sign = -1 if side == Side.BUY else 1
        self.levels: dict[int, Level] = {}  # key -> live level
        self.heap: list[int] = []
        self.best_key: int | None = None

    def add(self, order: Order) -> None:
        key = self.sign * order.price
        level = self.levels.get(key) or self.new_level(key, order.price)
        level.orders.append(order)
        level.qty += order.leaves
        level.count += 1

    def new_level(self, key: int, price: int) -> Level:
        level = self.levels[key] = Level(price)
        heappush(self.heap, key)
        if self.best_key is None or key < self.best_key:
            self.best_key = key
        return level

    def remove_level(self, key: int) -> None:
        levels = self.levels
        del levels[key]
        heap = self.heap
        if key == self.best_key:
            while heap and heap[0] not in levels:
                heappop(heap)
            self.best_key = heap[0] if heap else None
        elif len(heap) > 2 * len(levels) + 64:
            heap[:] = levels
            heapify(heap)

    def unlink(self, order: Order) -> None:
        """Take a live order out of the book (cancel, or a replace that loses priority)."""
        key = self.sign * order.price
        level = self.levels[key]
        order.live = False
        level.qty -= order.leaves
        count = level.count = level.count - 1
        if not count:
            self.remove_level(key)
        elif len(level.orders) > 2 * count + 8:
            level.orders = deque([o for o in level.orders if o.live])

    def keys_upto(self, maximum: int) -> list[int]:
        """Live level keys up to ``maximum``, best first. A walk of the heap from its
        root that stops at every entry past ``maximum`` (its children are larger still),
        so the cost follows the levels returned, not the side's size: an auction's
        indicative reads only the crossed levels of a deep book this way."""
        heap = self.heap
        levels = self.levels
        size = len(heap)
        found = set()
        todo = [0] if size else []
        while todo:
            i = todo.pop()
            key = heap[i]
            if key > maximum:
                continue
            if key in levels:
                found.add(key)
            child = 2 * i + 1
            if child < size:
                todo.append(child)
                if child + 1 < size:
                    todo.append(child + 1)
        return sorted(found)

    def keys_in_order(self, maximum: int | None = None) -> Iterator[int]:
        """Live level keys, best first, up to ``maximum``; pops a copy of the heap, so
        reading the top few levels costs a copy, not a sort."""
        heap = self.heap.copy()
        levels = self.levels
        last = None
        while heap:
            key = heappop(heap)
            if key == last or key not in levels:
                continue
            if maximum is not None and key > maximum:
                return
            last = key
            yield key

    def depth(self, limit: int | None = None) -> list[tuple[int, int]]:
        """Aggregated (price, size) levels, best first."""
        levels = self.levels
        return [(levels[k].price, levels[k].qty) for k in islice(self.keys_in_order(), limit)]

    def live_orders(self, maximum: int | None = None) -> Iterator[Order]:
        """Live orders in priority order (best price, then time), up to key ``maximum``."""
        for key in self.keys_in_order(maximum):
            for order in self.levels[key].orders:
                if order.live:
                    yield order


class Book:
    """One symbol's book and its price bands.

    The static band (``band_lo`` .. ``band_hi``) is set around the day's reference (the
    config's, or an operator's) and no trade moves it: limit prices outside it are
    refused. Inside it the dynamic band (``dyn_lo`` .. ``dyn_hi``) follows the last
    trade: an order that would trade outside it pauses the symbol instead (limit up /
    limit down), so no sequence of trades can walk the price past the static band, and
    a fast move stops for a moment instead of running through a thin book."""

    __slots__ = (
        "spec",
        "symbol",
        "tick",
        "lot",
        "bids",
        "asks",
        "last_price",
        "band_lo",
        "band_hi",
        "dyn_lo",
        "dyn_hi",
        "paused",
        "max_price",
        "band_bps",
        "dynamic_bps",
        "state",
        "reopening",
        "held",
        "auction_only",
        "indicative",
        "credit",
    )

    def __init__(self, spec: SymbolSpec, max_price: int = 10**10) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.tick = spec.tick
        self.lot = spec.lot
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)
        self.last_price = 0
        self.paused = False  # a volatility pause: no new orders until a Reopen
        self.max_price = max_price
        # read once: every trade sets the dynamic band, and dynamic_bps is a property
        self.band_bps = spec.band_bps
        self.dynamic_bps = spec.dynamic_bps
        self.set_band(spec.reference)
        # the trading day (docs/architecture.md, "The trading day"): the session state,
        # whether the call under way re-opens after a halt, the on-close orders waiting
        # for the pre-close (by order id, which is the order they join the book in),
        # the auction-only orders in the book (market orders entered in a call, on-close
        # orders), cancelled if the next uncross leaves them, and the indicative last
        # published (price, matched, imbalance, imbalance side)
        self.state = int(Session.CONTINUOUS)
        self.reopening = False
        self.held: dict[int, Order] = {}
        self.auction_only: dict[int, Order] = {}
        self.indicative = NO_AUCTION
        # price levels' worth of indicative work the call's commands have paid for
        # since it was last computed (engine._indicate: amortised, so bounded per command)
        self.credit = 0

    def set_band(self, reference: int) -> None:
        """The static band around ``reference``; the dynamic band starts there too."""
        bps = self.band_bps
        self.band_lo = max(1, -(-reference * (10_000 - bps) // 10_000))
        self.band_hi = min(self.max_price, reference * (10_000 + bps) // 10_000)
        self.set_dynamic(reference)

    def set_dynamic(self, price: int) -> None:
        """The dynamic band around ``price`` (the last trade, or the price that started
        a pause), taken inside the static band so it is never empty."""
        # every trade comes here: min and max written out (a call costs more), and the
        # band's half-width, price * bps // 10_000, taken without the product, which
        # could pass int64 (the compiled build's integers) at the highest max_price
        lo, hi, bps = self.band_lo, self.band_hi, self.dynamic_bps
        if price < lo:
            price = lo
        if price > hi:
            price = hi
        half = price // 10_000 * bps + price % 10_000 * bps // 10_000
        dyn_lo = price - half  # = ceil(price * (10_000 - bps) / 10_000)
        dyn_hi = price + half  # = floor(price * (10_000 + bps) / 10_000)
        self.dyn_lo = dyn_lo if dyn_lo > lo else lo
        self.dyn_hi = dyn_hi if dyn_hi < hi else hi

    def collar(self, side: int) -> int:
        """Where a market order waits for an auction: the static band's edge on its
        side, rounded inwards to the tick so an auction price is always on tick."""
        tick = self.tick
        if side == Side.BUY:
            return self.band_hi - self.band_hi % tick
        return self.band_lo + (-self.band_lo) % tick

    def side(self, side: int) -> BookSide:
        return self.bids if side == Side.BUY else self.asks

    def opposite(self, side: int) -> BookSide:
        return self.asks if side == Side.BUY else self.bids
