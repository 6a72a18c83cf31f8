"""The engine's records: accounts, holdings and resting orders.

Orders, made by the hundred thousand, are msgspec Structs with ``gc=False``: three
times cheaper to create than a class and invisible to the cyclic garbage collector.
Accounts and holdings, few and updated on every order, are ``__slots__`` classes,
whose attribute writes cost half a Struct's.
"""

from __future__ import annotations

import msgspec

from services.common.protocol import Event


class Holding:
    """One account's position in one symbol, and the open size of its orders per side."""

    __slots__ = ("position", "open")

    def __init__(self) -> None:
        self.position = 0
        self.open = [0, 0, 0]  # by Side: [unused, BUY, SELL]


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
    )

    def __init__(self, account: int, name: str, password_hash: str, stp: int) -> None:
        self.account = account
        self.name = name
        self.password_hash = password_hash
        self.stp = stp
        self.cash = 0  # price units * shares; negative after buying
        self.holdings: dict[str, Holding] = {}
        self.open_orders = 0
        # exactly-once entry: client order id -> the first answer (replicated state)
        self.seen: dict[str, Event] = {}
        self.blocked = False  # an operator's kill switch: no new orders


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
