"""The auction's price rule, apart from the book: price levels in, one price out.

A call auction executes everything it can at one price. Of every price on tick the
rule picks the one that

1. maximises the executed volume, min(buy size at or above it, sell size at or below),
2. then minimises the imbalance, the size left unexecuted on the heavier side,
3. then is nearest the reference price (the engine passes the last trade, else the
   previous close, else the symbol's configured reference),
4. then is the lower price.

Both sizes are step functions that change only at the levels' prices, so the rule is
evaluated at each level price and once for each gap between two neighbouring levels
(inside a gap every price gives the same sizes: the one nearest the reference wins
there). With ``k`` levels given that is O(k log k) work, whatever the tick. Only the
levels that could trade matter (bids at or above the best ask, asks at or below the
best bid: outside that range nothing executes), and the engine passes only those.
"""

from __future__ import annotations

NO_AUCTION = (0, 0, 0, 0)  # price, matched, imbalance, imbalance side: nothing executes
BUY_HEAVY = 1
SELL_HEAVY = 2


def _nearest(reference: int, lo: int, hi: int, tick: int) -> int:
    """The price on tick in ``lo`` .. ``hi`` (both on tick) nearest ``reference``; the
    lower of two equally near."""
    if reference <= lo:
        return lo
    if reference >= hi:
        return hi
    below = reference - reference % tick
    above = below if below == reference else below + tick
    return below if reference - below <= above - reference else above


def clearing(
    bids: list[tuple[int, int]], asks: list[tuple[int, int]], tick: int, reference: int
) -> tuple[int, int, int, int]:
    """(price, matched, imbalance, imbalance side) of an uncross of these levels.

    ``bids`` and ``asks`` are (price, size) per level, any order, prices on tick; a
    market order counts at its collar. The imbalance side is 1 (buy) or 2 (sell), 0
    when both sides match exactly. ``NO_AUCTION`` when nothing would execute."""
    if not bids or not asks:
        return NO_AUCTION
    buy_at: dict[int, int] = {}
    sell_at: dict[int, int] = {}
    for price, qty in bids:
        buy_at[price] = buy_at.get(price, 0) + qty
    for price, qty in asks:
        sell_at[price] = sell_at.get(price, 0) + qty
    prices = sorted(buy_at.keys() | sell_at.keys())
    buys_left = sum(buy_at.values())  # buy size at or above the price reached
    sells = 0  # sell size at or below it
    best_key = None
    best = NO_AUCTION
    for i, price in enumerate(prices):
        sells += sell_at.get(price, 0)
        # the level price itself, then the gap up to the next level (if it holds a tick)
        candidates = [(price, price, buys_left, sells)]
        buys_left -= buy_at.get(price, 0)
        if i + 1 < len(prices) and prices[i + 1] - price > tick:
            candidates.append((price + tick, prices[i + 1] - tick, buys_left, sells))
        for lo, hi, buy, sell in candidates:
            matched = min(buy, sell)
            if not matched:
                continue
            at = _nearest(reference, lo, hi, tick)
            key = (matched, -abs(buy - sell), -abs(at - reference), -at)
            if best_key is None or key > best_key:
                best_key = key
                side = BUY_HEAVY if buy > sell else SELL_HEAVY if sell > buy else 0
                best = (at, matched, abs(buy - sell), side)
    return best
