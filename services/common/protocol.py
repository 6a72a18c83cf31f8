"""Every message of the exchange, defined once and shared by every service.

Messages are msgspec Structs encoded as MessagePack arrays whose first element is the
message tag (see docs/protocol.md for the positional layouts). A typed Struct validates
hostile input while it decodes, and array encoding halves the bytes on the wire.

Money is integers only: prices are in price units (1/10,000 of a dollar, see
``PRICE_SCALE``) and sizes are whole shares; floats appear only at the edges.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

PRICE_SCALE = 10_000  # price units per dollar


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrdType(IntEnum):
    LIMIT = 1
    MARKET = 2


class Tif(IntEnum):
    GTC = 1  # rests until filled or cancelled
    IOC = 2  # what cannot fill at once is cancelled
    FOK = 3  # fills completely at once or not at all


class Stp(IntEnum):
    """Self-trade prevention: what happens when an order would trade with its own account."""

    DEFAULT = 0  # use the account's default
    CANCEL_RESTING = 1
    CANCEL_INCOMING = 2
    CANCEL_BOTH = 3


class Reject(IntEnum):
    """Reject reason codes; ``REJECT_TEXT`` has the readable message for each."""

    UNKNOWN_SYMBOL = 1
    BAD_PRICE = 2
    BAD_QTY = 3
    MAX_ORDER_SIZE = 4
    PRICE_BAND = 5
    POSITION_LIMIT = 6
    MAX_OPEN_ORDERS = 7
    UNKNOWN_ORDER = 8
    UNKNOWN_ACCOUNT = 9
    NAME_TAKEN = 10
    POST_ONLY_WOULD_TRADE = 11
    BAD_TIF = 12
    BAD_NAME = 13
    WEAK_PASSWORD = 14
    MALFORMED = 15
    NOT_LOGGED_IN = 16
    BAD_CREDENTIALS = 17
    BUSY = 18
    BAD_CL_ORD_ID = 19
    NOT_LEADER = 20


REJECT_TEXT: dict[int, str] = {
    Reject.UNKNOWN_SYMBOL: "unknown symbol",
    Reject.BAD_PRICE: "price must be a positive multiple of the symbol's tick size",
    Reject.BAD_QTY: "size must be a positive multiple of the symbol's lot size",
    Reject.MAX_ORDER_SIZE: "size exceeds the maximum order size",
    Reject.PRICE_BAND: "price is outside the band around the reference price",
    Reject.POSITION_LIMIT: "order could take the position past the account's limit",
    Reject.MAX_OPEN_ORDERS: "account has too many open orders",
    Reject.UNKNOWN_ORDER: "no such open order for this account",
    Reject.UNKNOWN_ACCOUNT: "unknown account",
    Reject.NAME_TAKEN: "account name is already taken",
    Reject.POST_ONLY_WOULD_TRADE: "post-only order would trade on arrival",
    Reject.BAD_TIF: "time in force not allowed for this order type",
    Reject.BAD_NAME: "account name must be 1-32 letters, digits, '_', '-' or '.'",
    Reject.WEAK_PASSWORD: (
        "password needs 8+ characters with an upper-case letter, a lower-case letter, "
        "a digit and one of . ! _ @ $"
    ),
    Reject.MALFORMED: "malformed message",
    Reject.NOT_LOGGED_IN: "log in first",
    Reject.BAD_CREDENTIALS: "wrong account name or password",
    Reject.BUSY: "exchange busy, retry later",
    Reject.BAD_CL_ORD_ID: "client order id must be 1-36 printable characters",
    Reject.NOT_LEADER: "no primary matcher right now, retry",
}


class CancelReason(IntEnum):
    USER = 1  # the owner asked
    IOC = 2  # unfilled remainder of an IOC or market order
    FOK = 3  # a fill-or-kill that could not fill completely
    SELF_TRADE = 4  # self-trade prevention


# ---------------------------------------------------------------------------
# Commands: what the matcher's engine takes in. The gateway fills in ``account``
# from the authenticated session; a client never chooses it.
# ---------------------------------------------------------------------------


class Command(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    pass


class CreateAccount(Command, tag="create_account"):
    name: str
    password_hash: str  # salted slow hash made by the gateway; never the password
    stp: Stp = Stp.CANCEL_INCOMING


class NewOrder(Command, tag="new_order"):
    account: int
    cl_ord_id: str
    symbol: str
    side: Side
    qty: int
    price: int = 0  # ignored for market orders
    ord_type: OrdType = OrdType.LIMIT
    tif: Tif = Tif.GTC
    post_only: bool = False
    stp: Stp = Stp.DEFAULT


class CancelOrder(Command, tag="cancel"):
    account: int
    cl_ord_id: str
    order_id: int


class ReplaceOrder(Command, tag="replace"):
    """New price and open size for a resting order; the side never changes."""

    account: int
    cl_ord_id: str
    order_id: int
    price: int
    qty: int


AnyCommand = CreateAccount | NewOrder | CancelOrder | ReplaceOrder


# ---------------------------------------------------------------------------
# Events: what the engine emits for one command, in order. Together with the
# command, its sequence number and the epoch they form one journal record.
# ---------------------------------------------------------------------------


class Event(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    pass


class AccountCreated(Event, tag="account_created"):
    account: int
    name: str


class Accepted(Event, tag="accepted"):
    account: int
    cl_ord_id: str
    order_id: int
    symbol: str
    side: Side
    price: int
    qty: int


class Rejected(Event, tag="rejected"):
    account: int
    cl_ord_id: str
    code: Reject
    order_id: int = 0


class Rested(Event, tag="rested"):
    """The order's open remainder joined the book (adds ``qty`` at ``price``)."""

    account: int
    order_id: int
    symbol: str
    side: Side
    price: int
    qty: int


class Fill(Event, tag="fill"):
    """One trade; ``side`` is the aggressor's, at the resting (maker) order's price."""

    trade_id: int
    symbol: str
    side: Side
    price: int
    qty: int
    taker_account: int
    taker_order: int
    taker_leaves: int
    maker_account: int
    maker_order: int
    maker_leaves: int


class Executed(Event, tag="executed"):
    """The taker's summary once its matching is over: size-weighted average price."""

    account: int
    order_id: int
    cum_qty: int
    notional: int  # sum of price * qty over the fills
    avg_px: int  # notional / cum_qty, rounded to the nearest price unit


class Cancelled(Event, tag="cancelled"):
    account: int
    order_id: int
    symbol: str
    side: Side
    price: int
    qty: int  # the open size that was cancelled
    reason: CancelReason
    from_book: bool  # True when the size was resting (book depth shrinks)


class Replaced(Event, tag="replaced"):
    """The resting order left ``old_price``; if ``kept_priority`` it now rests with ``qty``
    at the same price and place, otherwise later events say where it went."""

    account: int
    cl_ord_id: str
    order_id: int
    symbol: str
    side: Side
    old_price: int
    old_qty: int
    price: int
    qty: int
    kept_priority: bool


class Duplicate(Event, tag="duplicate"):
    """A repeat of (account, cl_ord_id): nothing was done; ``original`` is the first answer."""

    account: int
    cl_ord_id: str
    original: Accepted | Rejected | Replaced | Cancelled


AnyEvent = (
    AccountCreated
    | Accepted
    | Rejected
    | Rested
    | Fill
    | Executed
    | Cancelled
    | Replaced
    | Duplicate
)
