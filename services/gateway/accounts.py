"""What the gateway knows of accounts, rebuilt from the committed stream only.

Names and password hashes (for log-in), positions, cash and open orders (for queries)
are a projection of committed records, so nothing a user is shown can be taken back
by a failover (durable before visible), and a restarted gateway rebuilds it exactly.
"""

from __future__ import annotations

from collections import deque

import msgspec

from services.common.bus import CreateAccount, NewOrder, Record
from services.common.wire import (
    FILLS_KEPT,
    Accepted,
    AccountCreated,
    Cancelled,
    CashAdjusted,
    Fill,
    OpenOrder,
    OwnFill,
    PasswordChanged,
    Replaced,
    Rested,
    Side,
    Tif,
)


class ViewState(msgspec.Struct, array_like=True):
    """The view at ``seq``, for the gateway's snapshots (see ``services/common/snapfile``)."""

    seq: int
    names: dict[str, int]
    hashes: dict[int, str]
    cash: dict[int, int]
    positions: dict[int, dict[str, int]]
    orders: dict[int, list[OpenOrder]]
    fills: dict[int, list[OwnFill]]


_state_decoder = msgspec.msgpack.Decoder(ViewState)


class AccountView:
    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.hashes: dict[int, str] = {}
        self.cash: dict[int, int] = {}
        self.positions: dict[int, dict[str, int]] = {}
        self.orders: dict[int, dict[int, OpenOrder]] = {}
        self.fills: dict[int, deque[OwnFill]] = {}  # the last FILLS_KEPT per account
        self.seq = 0

    def apply(self, record: Record) -> None:
        cmd = record.command
        # an order's time in force, from its NewOrder or from the entry a replace took
        # out (a Rested event does not carry it)
        tifs: dict[int, tuple[int, int]] = {}
        for event in record.events:
            kind = type(event)
            if kind is Fill:
                self._fill(event, record.seq)
            elif kind is Rested:
                book = self.orders.setdefault(event.account, {})
                before = book.get(event.order_id)
                if before is not None:  # an on-close order joining the book at the pre-close
                    tif, expire = before.tif, before.expire_date
                elif event.order_id in tifs:
                    tif, expire = tifs[event.order_id]
                elif type(cmd) is NewOrder:
                    tif, expire = cmd.tif, cmd.expire_date
                else:
                    tif, expire = Tif.GTC, 0
                book[event.order_id] = OpenOrder(
                    event.order_id, event.symbol, event.side, event.price, event.qty, tif, expire
                )
            elif kind is Accepted and type(cmd) is NewOrder and cmd.tif == Tif.CLOSE:
                # open (it can be cancelled) though held aside until the pre-close
                self.orders.setdefault(event.account, {})[event.order_id] = OpenOrder(
                    event.order_id, event.symbol, event.side, event.price, event.qty, Tif.CLOSE
                )
            elif kind is Cancelled:  # from the book, or an on-close order held aside
                self.orders.get(event.account, {}).pop(event.order_id, None)
            elif kind is Replaced:
                book = self.orders.get(event.account, {})
                old = book.pop(event.order_id, None)
                tif, expire = (old.tif, old.expire_date) if old else (Tif.GTC, 0)
                tifs[event.order_id] = tif, expire
                if event.kept_priority:
                    book[event.order_id] = OpenOrder(
                        event.order_id, event.symbol, event.side, event.price, event.qty, tif,
                        expire,
                    )  # fmt: skip
            elif kind is CashAdjusted:  # an opening balance, a deposit or a withdrawal
                self.cash[event.account] = event.cash
            elif kind is PasswordChanged:
                self.hashes[event.account] = record.command.password_hash
            elif kind is AccountCreated and isinstance(record.command, CreateAccount):
                self.names[event.name] = event.account
                self.hashes[event.account] = record.command.password_hash
        self.seq = record.seq

    def _fill(self, fill: Fill, seq: int) -> None:
        sign = 1 if fill.side == Side.BUY else -1
        value = fill.price * fill.qty
        for account, s, order, maker in (
            (fill.taker_account, sign, fill.taker_order, False),
            (fill.maker_account, -sign, fill.maker_order, True),
        ):
            held = self.positions.setdefault(account, {})
            held[fill.symbol] = held.get(fill.symbol, 0) + s * fill.qty
            self.cash[account] = self.cash.get(account, 0) - s * value
            kept = self.fills.get(account)
            if kept is None:
                kept = self.fills[account] = deque(maxlen=FILLS_KEPT)
            side = Side.BUY if s > 0 else Side.SELL
            kept.append(
                OwnFill(seq, fill.trade_id, fill.symbol, side, fill.price, fill.qty, order, maker)
            )
        # the maker's open order; in an auction the taker's rested too
        for account, order, leaves in (
            (fill.maker_account, fill.maker_order, fill.maker_leaves),
            (fill.taker_account, fill.taker_order, fill.taker_leaves),
        ):
            book = self.orders.get(account, {})
            resting = book.get(order)
            if resting is None:
                continue
            if leaves:
                book[order] = OpenOrder(
                    resting.order_id,
                    resting.symbol,
                    resting.side,
                    resting.price,
                    leaves,
                    resting.tif,
                    resting.expire_date,
                )
            else:
                del book[order]

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(
            ViewState(
                self.seq,
                self.names,
                self.hashes,
                self.cash,
                self.positions,
                {a: list(orders.values()) for a, orders in self.orders.items()},
                {a: list(kept) for a, kept in self.fills.items()},
            )
        )

    @classmethod
    def restore(cls, data: bytes) -> AccountView:
        """The view a snapshot holds; raises msgspec.DecodeError/ValidationError if damaged."""
        state = _state_decoder.decode(data)
        view = cls()
        view.seq = state.seq
        view.names, view.hashes, view.cash = state.names, state.hashes, state.cash
        view.positions = state.positions
        view.orders = {a: {o.order_id: o for o in orders} for a, orders in state.orders.items()}
        view.fills = {a: deque(kept, maxlen=FILLS_KEPT) for a, kept in state.fills.items()}
        return view

    def recent_fills(self, account: int, symbol: str = "", limit: int = 100) -> list[OwnFill]:
        """The account's last ``limit`` fills (of ``symbol`` if given), oldest first."""
        kept = self.fills.get(account, ())
        chosen = [f for f in kept if f.symbol == symbol] if symbol else list(kept)
        return chosen[-limit:] if limit > 0 else []

    def open_orders(
        self, account: int, after: int = 0, limit: int | None = None
    ) -> list[OpenOrder]:
        """The account's open orders with ids above ``after``, by id, at most ``limit``."""
        book = self.orders.get(account, {})
        ids = sorted(i for i in book if i > after)
        return [book[i] for i in (ids if limit is None else ids[:limit])]
