"""What the engine tests compare: the engine's state without its exactly-once record."""

from __future__ import annotations

from services.common.wire import Side
from services.matcher.engine import Engine

BUY, SELL = int(Side.BUY), int(Side.SELL)


def resting(book_side) -> list[tuple]:
    return [(o.order_id, o.account, o.price, o.leaves, int(o.stp)) for o in book_side.live_orders()]


def holdings(acct) -> list[tuple]:
    return sorted(
        (sym, h.position, h.open[BUY], h.open[SELL])
        for sym, h in acct.holdings.items()
        if h.position or h.open[BUY] or h.open[SELL]
    )


def core_state(engine: Engine) -> tuple:
    """Everything about the engine's state but its exactly-once (dedup) record."""
    accounts = [
        (a.account, a.name, int(a.stp), a.cash, a.open_orders, holdings(a))
        for _, a in sorted(engine.accounts.items())
    ]
    books = [
        (sym, b.last_price, b.band_lo, b.band_hi, resting(b.bids), resting(b.asks))
        for sym, b in engine.books.items()
    ]
    counters = (engine.next_account, engine.next_order, engine.next_trade)
    return accounts, books, sorted(engine.orders), counters
