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


def check_ledger(engine: Engine) -> None:
    """Every account's open-order counts are what its live orders (in a book, or held
    aside for the pre-close) add up to, and each level's size and count its orders'."""
    held = {oid for book in engine.books.values() for oid in book.held}
    in_book = {}
    for book in engine.books.values():
        for side in (book.bids, book.asks):
            for key, level in side.levels.items():
                live = [o for o in level.orders if o.live]
                assert (level.qty, level.count) == (sum(o.leaves for o in live), len(live)), key
                in_book.update((o.order_id, o) for o in live)
    assert set(engine.orders) == set(in_book) | held and not set(in_book) & held
    for acct in engine.accounts.values():
        mine = [o for o in engine.orders.values() if o.account == acct.account]
        assert acct.open_orders == len(mine)
        assert acct.open_buy_value == sum(o.price * o.leaves for o in mine if o.side == BUY)
        assert acct.open_sell_qty == sum(o.leaves for o in mine if o.side == SELL)
        for sym, h in acct.holdings.items():
            for side in (BUY, SELL):
                assert h.open[side] == sum(
                    o.leaves for o in mine if o.symbol == sym and o.side == side
                )
