"""The engine's records: accounts, holdings and resting orders.

msgspec Structs with ``gc=False``: cheap to create and invisible to the cyclic garbage
collector (they never form cycles), which keeps GC pauses off the order path.
"""

from __future__ import annotations

import msgspec

from services.common.protocol import Event


class Holding(msgspec.Struct, gc=False):
    """One account's position in one symbol, and the open size of its orders per side."""

    position: int = 0
    open: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])  # by Side: BUY, SELL


class Account(msgspec.Struct, gc=False):
    account: int
    name: str
    password_hash: str
    stp: int
    cash: int = 0  # price units * shares; negative after buying
    holdings: dict[str, Holding] = msgspec.field(default_factory=dict)
    open_orders: int = 0
    # exactly-once entry: client order id -> the first answer (part of the replicated state)
    seen: dict[str, Event] = msgspec.field(default_factory=dict)


class Order(msgspec.Struct, gc=False):
    """A resting order; it points at its owner's records so a fill needs no lookups."""

    order_id: int
    account: int
    symbol: str
    side: int
    price: int
    leaves: int
    stp: int
    owner: Account
    holding: Holding
    post_only: bool = False  # kept so a replace can never make it take liquidity
    live: bool = True
