"""Execution reports from committed records: pure, so it is tested without sockets.

The FIX service follows the journal's committed stream (so nothing it reports can be
undone) and turns the events each tracked account is told (``reports.route``, the
gateway's own routing) into ExecutionReports (8) and OrderCancelRejects (9). It keeps
what FIX reports carry and the native events do not: each order's ClOrdID chain,
OrderQty, CumQty and AvgPx. Which session a report goes to is the service's business:
every report names the order's ``owner`` (the SenderCompID that entered it, "" for an
order from the native gateway).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from services.common.bus import CancelOrder, NewOrder, Record, ReplaceOrder
from services.common.money import to_dollars
from services.common.wire import (
    REJECT_TEXT,
    Accepted,
    Cancelled,
    CancelReason,
    Duplicate,
    Fill,
    Reject,
    Rejected,
    Replaced,
)

# ExecType (150) and OrdStatus (39)
NEW, PARTIAL, FILLED, CANCELED, REPLACED, REJECTED, TRADE, STATUS = (
    "0",
    "1",
    "2",
    "4",
    "5",
    "8",
    "F",
    "I",
)
SIDE_FIX = {1: "1", 2: "2"}
ORD_TYPE_FIX = {1: "2", 2: "1"}  # ours: 1 limit, 2 market; FIX 40: 1 market, 2 limit
TIF_FIX = {1: "1", 2: "3", 3: "4", 4: "0", 5: "6", 6: "7"}  # GTC IOC FOK Day GTD AtTheClose

# our reject codes as OrdRejReason (103); the Text (58) always names our code too
ORD_REJ_REASON = {
    Reject.UNKNOWN_SYMBOL: 1,
    Reject.SYMBOL_HALTED: 2,
    Reject.TRADING_PAUSED: 2,
    Reject.MAX_ORDER_SIZE: 3,
    Reject.POSITION_LIMIT: 3,
    Reject.MAX_OPEN_ORDERS: 3,
    Reject.INSUFFICIENT_FUNDS: 3,
    Reject.INSUFFICIENT_SHARES: 3,
    Reject.VALUE_LIMIT: 3,
    Reject.UNKNOWN_ORDER: 5,
    Reject.BAD_TIF: 11,
    Reject.ACCOUNT_BLOCKED: 12,
    Reject.BAD_QTY: 13,
    Reject.UNKNOWN_ACCOUNT: 15,
    Reject.BAD_PRICE: 18,
    Reject.MARKET_CLOSED: 2,  # exchange closed
    Reject.TIF_NOT_NOW: 11,
}
OTHER = 99
CXL_TOO_LATE, CXL_UNKNOWN, CXL_BROKER = 0, 1, 2
CANCEL_TEXT = {
    CancelReason.USER: "cancelled on request",
    CancelReason.IOC: "unfilled remainder of an IOC or market order",
    CancelReason.FOK: "fill-or-kill could not fill completely",
    CancelReason.SELF_TRADE: "self-trade prevention",
    CancelReason.KILL_SWITCH: "an operator blocked the account",
    CancelReason.VOLATILITY_PAUSE: "volatility pause",
    CancelReason.OUTSIDE_BAND: "outside the new price band",
    CancelReason.EXPIRED: "expired at the end of its trading day",
    CancelReason.AUCTION: "left unexecuted by the auction it was for",
}


def reject_text(code: int) -> str:
    try:
        name = Reject(code).name
    except ValueError:
        name = str(code)
    return f"{name}: {REJECT_TEXT.get(code, 'rejected')}"


def price_text(units: int) -> str:
    return to_dollars(units)


@dataclass(slots=True)
class Order:
    account: int
    order_id: int
    cl_ord_id: str  # the ClOrdID in force (the last replace's or cancel's)
    symbol: str
    side: int
    price: int
    order_qty: int  # FIX OrderQty: cum_qty + leaves while open
    leaves: int
    ord_type: int = 1
    tif: int = 1
    expire_date: int = 0  # GTD: the last trading day (FIX 432 ExpireDate)
    cum_qty: int = 0
    notional: int = 0  # sum of price * qty over the fills
    status: str = NEW
    owner: str = ""  # the SenderCompID that entered it; "" from the native gateway

    @property
    def open(self) -> bool:
        return self.status in (NEW, PARTIAL)

    def avg_px(self) -> str:
        return price_text(round(self.notional / self.cum_qty)) if self.cum_qty else "0"

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in ORDER_FIELDS}


ORDER_FIELDS = tuple(f.name for f in dataclasses.fields(Order))


@dataclass(slots=True)
class Pending:
    """A FIX request forwarded to the gateway and not yet answered: who sent it."""

    sender: str
    kind: str  # "D", "F" or "G"
    orig_cl_ord_id: str = ""  # F and G: the order's ClOrdID as the request named it
    order_id: int = 0


@dataclass(slots=True)
class Outgoing:
    """One message for the order's owner session and the account's drop copies."""

    account: int
    owner: str
    msg_type: str  # "8" or "9"
    fields: list[tuple[int, object]]


@dataclass
class Book:
    """Every tracked account's orders, and the requests awaiting an answer."""

    orders_kept: int = 100_000
    orders: dict[int, Order] = field(default_factory=dict)  # order id -> order
    by_cl_ord_id: dict[tuple[int, str], int] = field(default_factory=dict)
    pending: dict[tuple[int, str], Pending] = field(default_factory=dict)
    finished: dict[int, deque] = field(default_factory=dict)  # account -> done order ids
    dirty: set[int] = field(default_factory=set)  # order ids changed since last save
    dropped: set[int] = field(default_factory=set)  # order ids forgotten since last save
    # (account, cl_ord_id) of pending requests added or answered since the last save
    pending_changed: set[tuple[int, str]] = field(default_factory=set)
    exec_ids: int = 0

    # -- state ------------------------------------------------------------------------

    def expect(self, key: tuple[int, str], pending: Pending) -> None:
        """A request forwarded under ``key`` (account, cl_ord_id), awaiting its answer."""
        self.pending[key] = pending
        self.pending_changed.add(key)

    def answer(self, key: tuple[int, str]) -> Pending | None:
        """The pending request ``key`` names, now answered (None if none was)."""
        self.pending_changed.add(key)
        return self.pending.pop(key, None)

    def add(self, order: Order) -> None:
        self.orders[order.order_id] = order
        self.by_cl_ord_id[(order.account, order.cl_ord_id)] = order.order_id
        if not order.open:
            self._finish(order)

    def find(self, account: int, cl_ord_id: str) -> Order | None:
        order_id = self.by_cl_ord_id.get((account, cl_ord_id))
        return self.orders.get(order_id) if order_id is not None else None

    def _rename(self, order: Order, cl_ord_id: str) -> None:
        """A replace or cancel gives the order its ClOrdID; the old one no longer names
        it (FIX: OrigClOrdID is the latest ClOrdID)."""
        self.by_cl_ord_id.pop((order.account, order.cl_ord_id), None)
        self.by_cl_ord_id[(order.account, cl_ord_id)] = order.order_id
        order.cl_ord_id = cl_ord_id

    def _touch(self, order: Order) -> None:
        self.dirty.add(order.order_id)
        if not order.open:
            self._finish(order)

    def _finish(self, order: Order) -> None:
        """Keep the last ``orders_kept`` finished orders of an account (for status
        requests and answers to resends); forget older ones."""
        done = self.finished.setdefault(order.account, deque())
        done.append(order.order_id)
        while len(done) > self.orders_kept:
            old = self.orders.pop(done.popleft(), None)
            key = None if old is None else (old.account, old.cl_ord_id)
            if key is not None and self.by_cl_ord_id.get(key) == old.order_id:
                # (a ClOrdID is unique per trading day: a later day's order may use it)
                del self.by_cl_ord_id[key]
                self.dropped.add(old.order_id)
                self.dirty.discard(old.order_id)

    # -- reports ----------------------------------------------------------------------

    def _exec_id(self, seq: int) -> str:
        self.exec_ids += 1
        return f"{seq}-{self.exec_ids}"

    def report(
        self,
        order: Order,
        exec_type: str,
        seq: int,
        cl_ord_id: str | None = None,
        orig: str | None = None,
        last: tuple[int, int] | None = None,
        text: str = "",
        trade_id: int = 0,
    ) -> list[tuple[int, object]]:
        """The body of an ExecutionReport about ``order`` as it is now."""
        fields: list[tuple[int, object]] = [
            (37, order.order_id),
            (11, cl_ord_id or order.cl_ord_id),
            (41, orig),
            (17, self._exec_id(seq)),
            (150, exec_type),
            (39, order.status),
            (55, order.symbol),
            (54, SIDE_FIX[order.side]),
            (38, order.order_qty),
            (40, ORD_TYPE_FIX[order.ord_type]),
            (44, price_text(order.price) if order.ord_type == 1 else None),
            (59, TIF_FIX[order.tif]),
            (432, order.expire_date or None),
        ]
        if last is not None:
            fields += [(32, last[1]), (31, price_text(last[0])), (880, trade_id)]
        fields += [(151, order.leaves if order.open else 0), (14, order.cum_qty)]
        fields += [(6, order.avg_px()), (58, text)]
        return fields

    def rejection(self, account: int, cmd, code: int, seq: int) -> list[tuple[int, object]]:
        """An ExecutionReport rejecting a new order that never got an order id."""
        return [
            (37, "NONE"),
            (11, cmd.cl_ord_id),
            (17, self._exec_id(seq)),
            (150, REJECTED),
            (39, REJECTED),
            (55, cmd.symbol),
            (54, SIDE_FIX.get(cmd.side, "1")),
            (38, cmd.qty),
            (40, ORD_TYPE_FIX.get(cmd.ord_type, "2")),
            (151, 0),
            (14, 0),
            (6, "0"),
            (103, ORD_REJ_REASON.get(code, OTHER)),
            (58, reject_text(code)),
        ]

    def cancel_reject(
        self, cl_ord_id: str, pending: Pending | None, kind: str, code: int, order_id: int
    ) -> list[tuple[int, object]]:
        order = self.orders.get(order_id or (pending.order_id if pending else 0))
        too_late = order is not None and not order.open
        if code == Reject.UNKNOWN_ORDER:
            reason = CXL_TOO_LATE if too_late else CXL_UNKNOWN
        else:
            reason = CXL_BROKER
        return [
            (37, order.order_id if order else "NONE"),
            (11, cl_ord_id),
            (41, pending.orig_cl_ord_id if pending else (order.cl_ord_id if order else "NONE")),
            (39, order.status if order else REJECTED),
            (434, 1 if kind == "F" else 2),
            (102, reason),
            (58, reject_text(code)),
        ]

    def gateway_reject(self, account: int, request, pending: Pending, code: int, seq: int):
        """The gateway refused a forwarded request (validation, limits, no primary):
        the answer the matcher would have given, never journaled."""
        if pending.kind == "D":
            return Outgoing(
                account, pending.sender, "8", self.rejection(account, request, code, seq)
            )
        return Outgoing(
            account,
            pending.sender,
            "9",
            self.cancel_reject(request.cl_ord_id, pending, pending.kind, code, 0),
        )

    def apply(self, record: Record, account: int, events: list) -> list[Outgoing]:
        """The messages ``events`` (what ``account`` is told of ``record``) make."""
        out: list[Outgoing] = []
        seq = record.seq
        cmd = record.command
        for event in events:
            kind = type(event)
            if kind is Accepted:
                pend = self.answer((account, event.cl_ord_id))
                new = Order(
                    account, event.order_id, event.cl_ord_id, event.symbol, event.side,
                    event.price, event.qty, event.qty,
                    owner=pend.sender if pend else "",
                )  # fmt: skip
                if type(cmd) is NewOrder and cmd.cl_ord_id == event.cl_ord_id:
                    new.ord_type, new.tif = cmd.ord_type, cmd.tif
                    new.expire_date = cmd.expire_date
                self.add(new)
                self.dirty.add(new.order_id)
                out.append(Outgoing(account, new.owner, "8", self.report(new, NEW, seq)))
            elif kind is Fill:
                mine = []
                if event.taker_account == account:
                    mine.append((event.taker_order, event.taker_leaves))
                if event.maker_account == account and event.maker_order != event.taker_order:
                    mine.append((event.maker_order, event.maker_leaves))
                for order_id, leaves in mine:
                    order = self.orders.get(order_id)
                    if order is None:  # entered before this account was tracked
                        order = Order(
                            account, order_id, "NONE", event.symbol, 0, event.price,
                            event.qty + leaves, leaves + event.qty,
                        )  # fmt: skip
                        order.side = event.side if order_id == event.taker_order else 3 - event.side
                        self.add(order)
                    order.cum_qty += event.qty
                    order.notional += event.price * event.qty
                    order.leaves = leaves
                    order.order_qty = order.cum_qty + leaves
                    order.status = FILLED if leaves == 0 else PARTIAL
                    self._touch(order)
                    fields = self.report(
                        order, TRADE, seq, last=(event.price, event.qty), trade_id=event.trade_id
                    )
                    out.append(Outgoing(account, order.owner, "8", fields))
            elif kind is Cancelled:
                order = self.orders.get(event.order_id)
                if order is None:
                    continue
                orig = None
                if event.cl_ord_id:
                    self.answer((account, event.cl_ord_id))
                    orig = order.cl_ord_id
                    self._rename(order, event.cl_ord_id)
                order.status = CANCELED
                text = CANCEL_TEXT.get(event.reason, "cancelled")
                self._touch(order)
                fields = self.report(order, CANCELED, seq, orig=orig, text=text)
                out.append(Outgoing(account, order.owner, "8", fields))
            elif kind is Replaced:
                order = self.orders.get(event.order_id)
                self.answer((account, event.cl_ord_id))
                if order is None:
                    continue
                orig = order.cl_ord_id
                self._rename(order, event.cl_ord_id)
                order.price, order.leaves = event.price, event.qty
                order.order_qty = order.cum_qty + event.qty
                order.status = PARTIAL if order.cum_qty else NEW
                self._touch(order)
                out.append(
                    Outgoing(
                        account, order.owner, "8", self.report(order, REPLACED, seq, orig=orig)
                    )
                )
            elif kind is Rejected:
                pend = self.answer((account, event.cl_ord_id))
                owner = pend.sender if pend else ""
                if type(cmd) is NewOrder:
                    out.append(
                        Outgoing(account, owner, "8", self.rejection(account, cmd, event.code, seq))
                    )
                elif type(cmd) in (CancelOrder, ReplaceOrder):
                    kind_fix = "F" if type(cmd) is CancelOrder else "G"
                    fields = self.cancel_reject(
                        event.cl_ord_id, pend, kind_fix, event.code, cmd.order_id
                    )
                    out.append(Outgoing(account, owner, "9", fields))
            elif kind is Duplicate:
                out += self._duplicate(account, cmd, event, seq)
        return out

    def _duplicate(self, account: int, cmd, event: Duplicate, seq: int) -> list[Outgoing]:
        """A repeat of a ClOrdID (a resend after a reconnect or a failover): nothing was
        done again; the owner is told where the original stands."""
        pend = self.answer((account, event.cl_ord_id))
        sender = pend.sender if pend else ""
        original = event.original
        if type(original) is Rejected:
            if type(cmd) is NewOrder:
                return [
                    Outgoing(account, sender, "8", self.rejection(account, cmd, original.code, seq))
                ]
            kind_fix = "F" if type(cmd) is CancelOrder else "G"
            fields = self.cancel_reject(event.cl_ord_id, pend, kind_fix, original.code, 0)
            return [Outgoing(account, sender, "9", fields)]
        order = self.orders.get(getattr(original, "order_id", 0))
        if order is None:
            return []
        if not order.owner and sender:
            order.owner = sender  # its first answer was lost with a crash: it is this session's
            self._touch(order)
        fields = self.report(
            order, STATUS, seq, cl_ord_id=event.cl_ord_id, text="duplicate ClOrdID: status"
        )
        return [Outgoing(account, sender or order.owner, "8", fields)]

    def status(self, account: int, cl_ord_id: str, order_id: int, seq: int):
        """The body of an ExecutionReport answering an OrderStatusRequest (H), or None."""
        order = self.orders.get(order_id) if order_id else self.find(account, cl_ord_id)
        if order is None or order.account != account:
            return None
        return self.report(order, STATUS, seq)
