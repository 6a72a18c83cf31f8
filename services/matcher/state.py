"""The engine's records: accounts, holdings and resting orders.

All are ``__slots__`` classes: the compiled build (services/matcher/compiled.py) makes
each a C struct (state.pxd), which a msgspec Struct, cheaper to create in pure Python,
could not become; field reads and writes are the engine's commonest operations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from services.common.wire import Event

SHARDS = 16  # a power of two: an id's shard is its hash & SHARD_MASK
SHARD_MASK = SHARDS - 1


class ExactlyOnce:
    """One account's exactly-once table: each client order id it has used, and the
    first answer to it (replicated state, docs/architecture.md, invariant 5).

    The table only grows, and a dict grows by copying itself whole: one insert took
    1.5 ms at 44,000 ids and 28 ms at 700,000 here, a stall for every order behind it
    (bench sustained's two load accounts crossed 43,690 ids in the same batch). Over
    16 dicts each copy is a sixteenth of that, for about 0.25 us more per order. Python
    salts str hashes per process, so the split differs between matchers; the answers
    are also kept in arrival order (a deque, which grows without copying), and that
    order is what snapshots and the state hash see. Every answer carries its own
    ``cl_ord_id``, so the arrival order is the answers alone: a snapshot copies the
    deque as it is instead of looking every id up again (at 300,000 ids that lookup
    and the tuples it built were most of a standby's 1.4 s snapshot)."""

    __slots__ = ("shards", "answers", "arrived")

    def __init__(self, answers: Iterable[Event] = ()) -> None:
        self.shards: list[dict[str, Event]] = [{} for _ in range(SHARDS)]
        self.answers: deque[Event] = deque()
        # bound once: the engine's busiest paths append every answer
        self.arrived = self.answers.append
        for event in answers:
            self.add(event)

    def first(self, cl_ord_id: str) -> Event | None:
        """The answer ``cl_ord_id`` got the first time, or None if it is new."""
        return self.shards[hash(cl_ord_id) & SHARD_MASK].get(cl_ord_id)

    def add(self, event: Event) -> Event:
        """Remember ``event`` as the answer to its ``cl_ord_id`` (new: see ``first``)."""
        cl_ord_id = event.cl_ord_id
        self.shards[hash(cl_ord_id) & SHARD_MASK][cl_ord_id] = event
        self.arrived(event)
        return event

    def items(self) -> list[Event]:
        """Every first answer, in arrival order."""
        return list(self.answers)


class Holding:
    """One account's position in one symbol, and the open size of its orders per side."""

    __slots__ = ("position", "open_buy", "open_sell")

    def __init__(self) -> None:
        self.position = 0
        self.open_buy = 0
        self.open_sell = 0

    @property
    def open(self) -> list[int]:
        """The open sizes by Side: [unused, BUY, SELL] (snapshots and tests read them so)."""
        return [0, self.open_buy, self.open_sell]

    @open.setter
    def open(self, sizes: list[int]) -> None:
        _, self.open_buy, self.open_sell = sizes


class Account:
    __slots__ = (
        "account",
        "name",
        "password_hash",
        "stp",
        "cash",
        "holdings",
        "open_orders",
        "seen",
        "blocked",
        "open_buy_value",
        "open_sell_qty",
    )

    def __init__(self, account: int, name: str, password_hash: str, stp: int) -> None:
        self.account = account
        self.name = name
        self.password_hash = password_hash
        self.stp = stp
        self.cash = 0  # price units * shares; negative after buying
        self.holdings: dict[str, Holding] = {}
        self.open_orders = 0
        self.seen = ExactlyOnce()
        self.blocked = False  # an operator's kill switch: no new orders
        # buying power and the cash ceiling: price * open size of resting buys, and
        # the open size of resting sells (derived from the book; not in snapshots)
        self.open_buy_value = 0
        self.open_sell_qty = 0


class Order:
    """A resting order; it points at its owner's records so a fill needs no lookups."""

    __slots__ = (
        "order_id",
        "account",
        "symbol",
        "side",
        "price",
        "leaves",
        "stp",
        "owner",
        "holding",
        "post_only",
        "live",
        "tif",
        "expire_date",
        "market",
    )

    def __init__(
        self,
        order_id: int,
        account: int,
        symbol: str,
        side: int,
        price: int,
        leaves: int,
        stp: int,
        owner: Account,
        holding: Holding,
        post_only: bool = False,  # kept so a replace can never make it take liquidity
        tif: int = 1,  # GTC; DAY and GTD expire at an end of day, CLOSE waits for the close
        expire_date: int = 0,  # GTD: the last trading day it rests (YYYYMMDD)
        market: bool = False,  # a market order waiting for an auction, at its collar
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.symbol = symbol
        self.side = side
        self.price = price
        self.leaves = leaves
        self.stp = stp
        self.owner = owner
        self.holding = holding
        self.post_only = post_only
        self.live = True
        self.tif = tif
        self.expire_date = expire_date
        self.market = market


def resting(
    order_id, account, symbol, side, price, leaves, stp, owner, holding, post_only
) -> Order:
    """``Order(...)`` with Order's first ten arguments and the defaults, for the busiest
    path (every order that rests): the compiled build fills the struct in place
    instead of parsing thirteen arguments."""
    order = Order.__new__(Order)
    order.order_id = order_id
    order.account = account
    order.symbol = symbol
    order.side = side
    order.price = price
    order.leaves = leaves
    order.stp = stp
    order.owner = owner
    order.holding = holding
    order.post_only = post_only
    order.live = True
    order.tif = 1  # GTC
    order.expire_date = 0
    order.market = False
    return order
