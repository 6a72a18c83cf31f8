"""Whole-engine snapshots, so a matcher boots from the newest one plus the journal's tail.

A snapshot is the engine's state at a sequence number, MessagePack-encoded, written
atomically (``services/common/snapfile.py``) with the state hash inside.
Loading one rebuilds the books by re-adding every resting order in priority order, and
is checked: the loaded engine must give the recorded hash, or the snapshot is refused.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from services.common import snapfile
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import AnyEvent
from services.matcher.engine import Engine
from services.matcher.state import Account, ExactlyOnce, Holding, Order


class SnapshotAccount(msgspec.Struct, array_like=True):
    account: int
    name: str
    password_hash: str
    stp: int
    cash: int
    open_orders: int
    holdings: list[tuple[str, int, int, int]]  # symbol, position, open buy, open sell
    seen: list[AnyEvent]  # first answers in arrival order; each carries its cl_ord_id
    blocked: bool = False


class SnapshotOrder(msgspec.Struct, array_like=True):
    order_id: int
    account: int
    side: int
    price: int
    leaves: int
    stp: int
    post_only: bool
    tif: int = 1  # GTC
    expire_date: int = 0
    market: bool = False  # a market order waiting for an auction


class SnapshotBook(msgspec.Struct, array_like=True):
    symbol: str
    last_price: int
    band_lo: int
    band_hi: int
    orders: list[SnapshotOrder]  # bids then asks, each in priority order
    dyn_lo: int = 0  # the dynamic band and the volatility pause
    dyn_hi: int = 0
    paused: bool = False
    state: int = 3  # the session state (CONTINUOUS)
    reopening: bool = False  # the call under way re-opens after a halt
    held: list[SnapshotOrder] = []  # on-close orders waiting for the pre-close, in order
    indicative: tuple[int, int, int, int] = (0, 0, 0, 0)  # the last one published
    credit: int = 0  # the indicative's amortised work paid for (engine._indicate)


class Snapshot(msgspec.Struct, array_like=True):
    seq: int
    epoch: int
    state_hash: str
    next_account: int
    next_order: int
    next_trade: int
    accounts: list[SnapshotAccount]
    books: list[SnapshotBook]
    halted: list[str] = []
    trading_date: int = 0
    closes: list[tuple[str, int]] = []  # the last ended day's official closes


_decoder = msgspec.msgpack.Decoder(Snapshot)


def capture(engine: Engine, seq: int, epoch: int) -> Snapshot:
    accounts = [
        SnapshotAccount(
            a.account,
            a.name,
            a.password_hash,
            a.stp,
            a.cash,
            a.open_orders,
            [(s, h.position, h.open[1], h.open[2]) for s, h in sorted(a.holdings.items())],
            a.seen.items(),  # in arrival order, which state_hash covers
            a.blocked,
        )
        for _, a in sorted(engine.accounts.items())
    ]
    books = []
    for symbol, book in engine.books.items():
        orders = [_order(o) for side in (book.bids, book.asks) for o in side.live_orders()]
        books.append(
            SnapshotBook(
                symbol,
                book.last_price,
                book.band_lo,
                book.band_hi,
                orders,
                book.dyn_lo,
                book.dyn_hi,
                book.paused,
                book.state,
                book.reopening,
                [_order(o) for o in book.held.values()],
                book.indicative,
                book.credit,
            )  # fmt: skip
        )
    return Snapshot(
        seq, epoch, engine.state_hash(), engine.next_account, engine.next_order,
        engine.next_trade, accounts, books, sorted(engine.halted), engine.trading_date,
        sorted(engine.closes.items()),
    )  # fmt: skip


def _order(o: Order) -> SnapshotOrder:
    return SnapshotOrder(
        o.order_id, o.account, o.side, o.price, o.leaves, o.stp, o.post_only, o.tif,
        o.expire_date, o.market,
    )  # fmt: skip


def restore(snap: Snapshot, symbols: dict[str, SymbolSpec], risk: RiskLimits) -> Engine:
    engine = Engine(symbols, risk)
    for a in snap.accounts:
        acct = Account(a.account, a.name, a.password_hash, a.stp)
        acct.cash, acct.open_orders = a.cash, a.open_orders
        for symbol, position, open_buy, open_sell in a.holdings:
            holding = acct.holdings[symbol] = Holding()
            holding.position, holding.open = position, [0, open_buy, open_sell]
        acct.seen = ExactlyOnce(a.seen)
        acct.blocked = a.blocked
        engine.accounts[a.account] = acct
        engine.names[a.name] = a.account
    for b in snap.books:
        book = engine.books[b.symbol]
        book.last_price, book.band_lo, book.band_hi = b.last_price, b.band_lo, b.band_hi
        book.dyn_lo, book.dyn_hi, book.paused = b.dyn_lo, b.dyn_hi, b.paused
        book.state, book.reopening, book.indicative = b.state, b.reopening, tuple(b.indicative)
        book.credit = b.credit
        if b.paused:
            engine.paused.add(b.symbol)
        for o in b.orders:
            order = _restored(engine, b.symbol, o)
            book.side(o.side).add(order)
            if order.market or order.tif == 6:  # auction-only (Tif.CLOSE): derived
                book.auction_only[o.order_id] = order
        for o in b.held:
            book.held[o.order_id] = _restored(engine, b.symbol, o)
    engine.next_account, engine.next_order = snap.next_account, snap.next_order
    engine.next_trade = snap.next_trade
    engine.halted = set(snap.halted)
    engine.trading_date, engine.closes = snap.trading_date, dict(snap.closes)
    if engine.state_hash() != snap.state_hash:
        raise ValueError(f"snapshot at seq {snap.seq} does not restore to its state hash")
    return engine


def _restored(engine: Engine, symbol: str, o: SnapshotOrder) -> Order:
    owner = engine.accounts[o.account]
    order = Order(
        o.order_id, o.account, symbol, o.side, o.price, o.leaves, o.stp, owner,
        owner.holdings[symbol], o.post_only, o.tif, o.expire_date, o.market,
    )  # fmt: skip
    engine.orders[o.order_id] = order
    if o.side == 1:  # open buy value and open sell size are the book's, derived
        owner.open_buy_value += o.price * o.leaves
    else:
        owner.open_sell_qty += o.leaves
    return order


def write(directory: Path, snap: Snapshot, keep: int = 3) -> Path:
    """Write atomically, then keep only the newest ``keep`` snapshots."""
    return snapfile.write(directory, snap.seq, msgspec.msgpack.encode(snap), keep)


def loads(data: bytes, symbols: dict[str, SymbolSpec], risk: RiskLimits):
    """(engine, seq, epoch) from an encoded snapshot; raises if it is damaged or does
    not restore to its state hash."""
    snap = _decoder.decode(data)
    return restore(snap, symbols, risk), snap.seq, snap.epoch


def newest(directory: Path, symbols: dict[str, SymbolSpec], risk: RiskLimits):
    """(engine, seq, epoch) from the newest snapshot that loads and checks, or None."""
    found = snapfile.newest_state(directory, lambda data: loads(data, symbols, risk))
    return None if found is None else found[1]
