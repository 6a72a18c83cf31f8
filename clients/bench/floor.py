"""The floor under `exchange bench engine`: a bare price-time matching loop.

No events, risk, accounts, bands, self-trade prevention or exactly-once table: price
levels are plain dicts of deques, the best price comes from a heap, a cancel leaves a
tombstone. It runs the same command flow as the engine (``ops`` converts it), so the
engine's throughput reads as a fraction of what CPython does for bare matching on
this host at this moment, whatever the host.
"""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush

from services.common.bus import CancelOrder, NewOrder
from services.common.wire import Side, Tif

ADD, CANCEL = 0, 1
BUY = int(Side.BUY)


class BareBook:
    """Every symbol's book; order ids come with the commands, as the engine gave them."""

    def __init__(self) -> None:
        # per symbol and side: {price: deque of [order id, open qty]}, and a heap of
        # keys (bids: -price) that may hold prices whose level is gone
        self.levels: dict[tuple[str, int], dict[int, deque]] = {}
        self.heaps: dict[tuple[str, int], list[int]] = {}
        self.orders: dict[int, list] = {}  # order id -> its [id, qty] entry
        self.trades = 0

    def add(self, order_id: int, symbol: str, side: int, price: int, qty: int, ioc: bool):
        """Match against the other side at the resting orders' prices, best price and
        then oldest first; rest what is left unless ``ioc``."""
        buy = side == BUY
        opp = (symbol, 3 - side)
        levels = self.levels.get(opp)
        if levels:
            heap = self.heaps[opp]
            limit = price if buy else -price
            while qty and heap:
                key = heap[0]
                level = levels.get(key)
                if level is None:  # a level emptied since this key was pushed
                    heappop(heap)
                    continue
                if key > limit:
                    break
                while qty and level:
                    maker = level[0]
                    if maker[1] <= qty:
                        qty -= maker[1]
                        level.popleft()
                        if maker[1]:  # 0: cancelled, a tombstone
                            self.trades += 1
                            del self.orders[maker[0]]
                    else:
                        maker[1] -= qty
                        qty = 0
                        self.trades += 1
                if not level:
                    del levels[key]
                    heappop(heap)
        if qty and not ioc:
            own = (symbol, side)
            key = -price if buy else price
            levels = self.levels.setdefault(own, {})
            level = levels.get(key)
            if level is None:
                level = levels[key] = deque()
                heappush(self.heaps.setdefault(own, []), key)
            entry = [order_id, qty]
            level.append(entry)
            self.orders[order_id] = entry

    def cancel(self, order_id: int) -> None:
        entry = self.orders.pop(order_id, None)
        if entry is not None:
            entry[1] = 0  # left in its level, skipped when matching reaches it

    def depth(self, symbol: str, side: int) -> dict[int, int]:
        """{price: open qty} of one side, for tests."""
        sign = -1 if side == BUY else 1
        levels = self.levels.get((symbol, side), {})
        return {sign * k: s for k, q in levels.items() if (s := sum(e[1] for e in q))}


def ops(flow: list) -> list[tuple]:
    """The flow as the bare loop's calls. Order ids are numbered from 1 in the order
    the new orders come, as the engine numbers the ones it accepts: the bench checks
    that it accepted every one (``run`` in clients/bench/engine.py)."""
    out: list[tuple] = []
    next_id = 1
    for cmd in flow:
        if type(cmd) is NewOrder:
            ioc = cmd.tif != Tif.GTC
            out.append((ADD, next_id, cmd.symbol, int(cmd.side), cmd.price, cmd.qty, ioc))
            next_id += 1
        elif type(cmd) is CancelOrder:
            out.append((CANCEL, cmd.order_id))
    return out


def replay(book: BareBook, calls: list[tuple]) -> None:
    add, cancel = book.add, book.cancel
    for call in calls:
        if call[0] == ADD:
            add(call[1], call[2], call[3], call[4], call[5], call[6])
        else:
            cancel(call[1])
