"""The public wire protocol: every message a client sends to or gets from the exchange.

Order entry (requests to the gateway and its replies), the execution-report events the
replies carry, the market-data feeds and the snapshot endpoint's messages, with their
enumerations, reject codes and texts, and the public encoder and decoders. What only
the exchange's own services exchange (commands as the engine takes them, journal
records, the internal bus) is in ``services.common.bus``; docs/protocol.md describes
both, field by field.

Messages are msgspec Structs encoded as MessagePack arrays whose first element is the
message tag (see docs/protocol.md for the positional layouts). A typed Struct validates
hostile input while it decodes, and array encoding halves the bytes on the wire.

Money is integers only: prices are in price units (1/10,000 of a dollar, see
``PRICE_SCALE``) and sizes are whole shares; floats appear only at the edges.

This module and ``services.common.money`` are all the client SDK (``clients.client``,
``clients.aio``, ``clients.feed``) takes from the server's package: they import only
msgspec and the standard library, so the SDK installs without the server's dependencies.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Literal

import msgspec

PRICE_SCALE = 10_000  # price units per dollar
ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}")


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrdType(IntEnum):
    LIMIT = 1
    MARKET = 2


class Tif(IntEnum):
    GTC = 1  # rests until filled or cancelled; carries over from day to day
    IOC = 2  # what cannot fill at once is cancelled
    FOK = 3  # fills completely at once or not at all
    DAY = 4  # cancelled (reason EXPIRED) at the end of the trading day it was entered
    GTD = 5  # rests until the end of the trading day ``expire_date`` (YYYYMMDD)
    CLOSE = 6  # on-close (market-on-close / limit-on-close): executes only in the closing auction


class Session(IntEnum):
    """A symbol's trading session state. The opening (and re-opening) auction is the
    uncross run when a symbol moves from PRE_OPEN to CONTINUOUS; the closing auction
    the one run when it moves from PRE_CLOSE to CLOSED."""

    CLOSED = 1  # no new orders (cancels are taken); resting orders stay
    PRE_OPEN = 2  # call period: orders rest without matching; also after a halt
    CONTINUOUS = 3  # continuous matching
    PRE_CLOSE = 4  # call period for the closing auction; on-close orders join the book


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
    TOO_MANY_ATTEMPTS = 21
    RATE_LIMITED = 22
    TOO_MANY_SESSIONS = 23
    NOT_AUTHORIZED = 24
    SYMBOL_HALTED = 25
    ACCOUNT_BLOCKED = 26
    BAD_TOKEN = 27
    INSUFFICIENT_FUNDS = 28
    INSUFFICIENT_SHARES = 29
    TRADING_PAUSED = 30
    VALUE_LIMIT = 31
    JOURNAL_FULL = 32
    TOO_MANY_IN_FLIGHT = 33
    BAD_AMOUNT = 34
    MARKET_CLOSED = 35
    TIF_NOT_NOW = 36
    BAD_EXPIRE_DATE = 37


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
    Reject.TOO_MANY_ATTEMPTS: "too many failed log-ins for this account; wait and retry",
    Reject.RATE_LIMITED: "too many requests; slow down",
    Reject.TOO_MANY_SESSIONS: "this account has too many sessions open",
    Reject.NOT_AUTHORIZED: "not allowed for this account",
    Reject.SYMBOL_HALTED: "trading in this symbol is halted",
    Reject.ACCOUNT_BLOCKED: "this account is blocked by an operator",
    Reject.BAD_TOKEN: "unknown or expired session token; log in again",
    Reject.INSUFFICIENT_FUNDS: (
        "buy needs more cash than the account has free (cash + credit - open buys)"
    ),
    Reject.INSUFFICIENT_SHARES: (
        "sell needs shares the account does not hold free (short sales past the limit)"
    ),
    Reject.TRADING_PAUSED: "volatility pause: this symbol reopens shortly, retry then",
    Reject.VALUE_LIMIT: "price, order value or resulting cash would pass the exchange's limits",
    Reject.JOURNAL_FULL: "the exchange cannot store new orders now (journal disk full); retry",
    Reject.TOO_MANY_IN_FLIGHT: "too many of this account's requests await an answer; wait",
    Reject.BAD_AMOUNT: "amount must be a non-zero integer within the exchange's cash limit",
    Reject.MARKET_CLOSED: "this symbol's session is closed; orders are taken from pre-open on",
    Reject.TIF_NOT_NOW: (
        "time in force not taken in this session state (IOC and FOK only in continuous "
        "trading; on-close orders only until the closing auction)"
    ),
    Reject.BAD_EXPIRE_DATE: (
        "expire date must be a YYYYMMDD trading date from today on, and is only for GTD"
    ),
}


class CancelReason(IntEnum):
    USER = 1  # the owner asked
    IOC = 2  # unfilled remainder of an IOC or market order
    FOK = 3  # a fill-or-kill that could not fill completely
    SELF_TRADE = 4  # self-trade prevention
    KILL_SWITCH = 5  # an operator blocked the account
    VOLATILITY_PAUSE = 6  # the rest of an order that would trade past the dynamic band
    OUTSIDE_BAND = 7  # resting outside the static band an operator's new reference set
    EXPIRED = 8  # a DAY order at its day's end, a GTD order at its expire date's end
    AUCTION = 9  # what an auction-only order (market in a call, on-close) left unexecuted


# Message fields hold these codes as plain integers (validated on decode). The IntEnums
# above name them; the engine compares plain ints, which CPython's adaptive
# interpreter specialises (an IntEnum operand would take the slow generic path).
SideCode = Literal[1, 2]
OrdTypeCode = Literal[1, 2]
TifCode = Literal[1, 2, 3, 4, 5, 6]
SessionCode = Literal[1, 2, 3, 4]
StpCode = Literal[0, 1, 2, 3]
CancelReasonCode = Literal[1, 2, 3, 4, 5, 6, 7, 8, 9]
AdminActionCode = Literal[
    "halt", "resume", "reference", "kill", "unkill", "deposit", "session", "end_of_day"
]
AuctionKindCode = Literal["open", "reopen", "close"]
RejectCode = int


# ---------------------------------------------------------------------------
# Events: what the engine emits for one command, in order. The journal records them
# with the command (``services.common.bus.Record``), and the gateway sends a session
# the ones about its account in execution reports (``Report``), so they are public.
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
    side: SideCode
    price: int
    qty: int


class Rejected(Event, tag="rejected"):
    account: int
    cl_ord_id: str
    code: RejectCode
    order_id: int = 0


class Rested(Event, tag="rested"):
    """The order's open remainder joined the book (adds ``qty`` at ``price``)."""

    account: int
    order_id: int
    symbol: str
    side: SideCode
    price: int
    qty: int


class Fill(Event, tag="fill"):
    """One trade; ``side`` is the aggressor's, at the resting (maker) order's price."""

    trade_id: int
    symbol: str
    side: SideCode
    price: int
    qty: int
    taker_account: int
    taker_order: int
    taker_leaves: int
    maker_account: int
    maker_order: int
    maker_leaves: int
    auction: bool = False  # executed in an auction's uncross (``side``: the later order's)


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
    side: SideCode
    price: int
    qty: int  # the open size that was cancelled
    reason: CancelReasonCode
    from_book: bool  # True when the size was resting (book depth shrinks)
    cl_ord_id: str = ""  # the cancel request's id when the owner asked, else empty


class Replaced(Event, tag="replaced"):
    """The resting order left ``old_price``; if ``kept_priority`` it now rests with ``qty``
    at the same price and place, otherwise later events say where it went."""

    account: int
    cl_ord_id: str
    order_id: int
    symbol: str
    side: SideCode
    old_price: int
    old_qty: int
    price: int
    qty: int
    kept_priority: bool


class PasswordChanged(Event, tag="password_changed"):
    account: int
    cl_ord_id: str


class AdminDone(Event, tag="admin_done"):
    """The operator's acknowledgement; what changed follows as its own events."""

    account: int
    cl_ord_id: str
    action: AdminActionCode


class Duplicate(Event, tag="duplicate"):
    """A repeat of (account, cl_ord_id): nothing was done; ``original`` is the first answer."""

    account: int
    cl_ord_id: str
    # one id space per account: an order may repeat a password change's or an
    # operator action's id, and the record must still decode everywhere
    original: Accepted | Rejected | Replaced | Cancelled | PasswordChanged | AdminDone


class SymbolHalted(Event, tag="symbol_halted"):
    symbol: str
    halted: bool  # False: trading resumed


class ReferenceSet(Event, tag="reference_set"):
    symbol: str
    price: int
    band_lo: int  # the new price band
    band_hi: int


class AccountBlocked(Event, tag="account_blocked"):
    account: int
    blocked: bool  # False: unblocked
    cancelled: int  # open orders the kill switch cancelled (each also a cancelled event)


class CashAdjusted(Event, tag="cash"):
    """Cash moved into (``amount`` > 0) or out of an account other than by a trade: the
    opening balance of a new account, or an operator's deposit or withdrawal."""

    account: int
    amount: int  # price units
    cash: int  # the account's cash afterwards


class TradingPause(Event, tag="pause"):
    """A volatility pause began (``paused``) or ended. It begins when an order would
    trade outside the dynamic band around the last trade; the band it names is the
    one in force when trading reopens (re-anchored on the last trade)."""

    symbol: str
    paused: bool
    last_price: int
    band_lo: int  # dynamic band: trades only within band_lo .. band_hi
    band_hi: int


class SessionChanged(Event, tag="session"):
    """A symbol entered a session state (a scheduler's or an operator's command, or a
    resume after a halt, which re-opens through PRE_OPEN)."""

    symbol: str
    state: SessionCode
    trading_date: int  # YYYYMMDD


class Indicative(Event, tag="indicative"):
    """During a call period, what the auction would do if it ran now; emitted after a
    command that changed it. ``price`` 0: nothing would execute."""

    symbol: str
    price: int
    matched: int  # shares that would execute at ``price``
    imbalance: int  # shares left unexecuted on the heavier side at ``price``
    imbalance_side: int  # 0 none, 1 buy, 2 sell


class AuctionDone(Event, tag="auction"):
    """An auction's uncross ran; its fills (``auction`` True) follow, all at ``price``."""

    symbol: str
    kind: AuctionKindCode
    price: int  # 0: nothing executed
    matched: int
    imbalance: int
    imbalance_side: int


class ClosePrice(msgspec.Struct, array_like=True, frozen=True, gc=False):
    symbol: str
    price: int  # the official close: the closing auction's price, else the last trade,
    # else the previous close (0 when the symbol never traded)


class DayEnded(Event, tag="day_ended"):
    """The end of a trading day: DAY and expiring GTD orders were cancelled (each a
    ``cancelled`` event, reason EXPIRED, before this one), the closes recorded, and
    client order ids may be used again from ``next_date`` on."""

    trading_date: int  # the day that ended (0: the first day began)
    next_date: int
    closes: list[ClosePrice]


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
    | PasswordChanged
    | AdminDone
    | SymbolHalted
    | ReferenceSet
    | AccountBlocked
    | CashAdjusted
    | TradingPause
    | SessionChanged
    | Indicative
    | AuctionDone
    | DayEnded
)


# ---------------------------------------------------------------------------
# Order entry: client <-> gateway (client DEALER, gateway ROUTER).
# ---------------------------------------------------------------------------


class Request(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    """Trailing elements past a request's last field are ignored (not refused), so a
    newer client's additive fields reach an older gateway harmlessly."""


class Signup(Request, tag="signup"):
    name: str
    password: str


class Login(Request, tag="login"):
    name: str
    password: str


class Logout(Request, tag="logout"):
    pass


class PlaceOrder(Request, tag="order"):
    cl_ord_id: str
    symbol: str
    side: SideCode
    qty: int
    price: int = 0
    ord_type: OrdTypeCode = 1
    tif: TifCode = 1
    post_only: bool = False
    stp: StpCode = 0
    expire_date: int = 0  # GTD only: the last trading day (YYYYMMDD) the order rests


class CancelRequest(Request, tag="cancel"):
    cl_ord_id: str
    order_id: int


class ReplaceRequest(Request, tag="replace"):
    cl_ord_id: str
    order_id: int
    price: int
    qty: int


class GetPositions(Request, tag="positions"):
    pass


class GetOrders(Request, tag="orders"):
    """One page of the account's open orders, by order id: those above ``after``, at
    most ``limit`` (capped at ORDERS_PAGE); ``orders.more`` says whether more follow."""

    after: int = 0
    limit: int = 1_000


class GetFills(Request, tag="fills"):
    """The account's own most recent fills (at most FILLS_KEPT), optionally one symbol."""

    symbol: str = ""
    limit: int = 100


class Resume(Request, tag="resume"):
    """Attach this connection to the session a token from ``logged_in`` names (a
    reconnecting client, without sending its password again)."""

    token: str


class ChangePassword(Request, tag="change_password"):
    cl_ord_id: str
    old_password: str
    new_password: str


class AdminRequest(Request, tag="admin"):
    """Operators only: halt/resume a symbol, set its reference price, or kill (cancel
    all and block) / unkill an account by name."""

    cl_ord_id: str
    action: AdminActionCode
    symbol: str = ""
    account: str = ""
    price: int = 0
    amount: int = 0  # ``deposit``: price units into (> 0) or out of (< 0) ``account``
    state: int = 0  # ``session``: the Session code to move ``symbol`` to


class Ping(Request, tag="ping"):
    nonce: int = 0


AnyRequest = (
    Signup
    | Login
    | Logout
    | PlaceOrder
    | CancelRequest
    | ReplaceRequest
    | GetPositions
    | GetOrders
    | GetFills
    | Resume
    | ChangePassword
    | AdminRequest
    | Ping
)


class Reply(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    pass


class Report(Reply, tag="report"):
    """Execution reports: the events of one committed record that concern the
    session's account, in order, in one message (so a client sees them atomically)."""

    seq: int
    epoch: int
    events: list[AnyEvent]


class Reports(Reply, tag="reports"):
    """Several execution reports for one session in one frame, in commit order: the
    gateway coalesces what one drain of the committed stream holds for a session, so
    under load a busy client gets one frame per drain instead of one per record."""

    reports: list[Report]


class RequestRejected(Reply, tag="reject"):
    """The gateway refused a request before it reached the matcher: nothing was
    sequenced, so the request's client order id is not used (a resend is acted on)."""

    code: RejectCode
    text: str
    ref: str = ""  # the request's cl_ord_id (or account name for signup/login), when readable


class LoggedIn(Reply, tag="logged_in"):
    account: int
    name: str
    token: str = ""  # resumes this session from another connection (see ``resume``)
    expires_in_s: int = 0  # the token's lifetime from now
    operator: bool = False


class LoggedOut(Reply, tag="logged_out"):
    pass


class Positions(Reply, tag="positions"):
    account: int
    cash: int  # price units; USD = cash / PRICE_SCALE
    positions: dict[str, int]
    seq: int  # the committed sequence number the view is valid at


class OpenOrder(msgspec.Struct, array_like=True, frozen=True, gc=False):
    order_id: int
    symbol: str
    side: SideCode
    price: int
    qty: int  # open size
    tif: TifCode = 1
    expire_date: int = 0


class Orders(Reply, tag="orders"):
    account: int
    orders: list[OpenOrder]
    seq: int
    more: bool = False  # open orders past this page: ask again with ``after`` the last id


class OwnFill(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One fill as its account sees it: its own side and order, and whether it rested."""

    seq: int  # the committed record it came from
    trade_id: int
    symbol: str
    side: SideCode  # this account's side
    price: int
    qty: int
    order_id: int  # this account's order
    maker: bool  # True when this account's order was resting (it provided liquidity)


class Fills(Reply, tag="fills"):
    account: int
    fills: list[OwnFill]  # oldest first
    seq: int


FILLS_KEPT = 1_000  # per account, in the gateway's view
ORDERS_PAGE = 1_000  # open orders in one ``orders`` answer at most


class Pong(Reply, tag="pong"):
    nonce: int
    logged_in: bool = False  # whether this connection has a session now


NOTICE_FAILOVER = "failover"  # a matcher failover the gateway handled by resending
NOTICE_SESSION_ENDED = "session_ended"  # this connection has no session any more


class Notice(Reply, tag="notice"):
    """Information, unasked: a matcher failover the gateway handled, or the end of this
    connection's session (idle too long, token expired, logged out elsewhere, password
    changed); ``kind`` says which for a program, ``text`` for a person."""

    text: str
    kind: str = ""  # NOTICE_FAILOVER, NOTICE_SESSION_ENDED ("" from older gateways)


AnyReply = (
    Report
    | Reports
    | RequestRejected
    | LoggedIn
    | LoggedOut
    | Positions
    | Orders
    | Fills
    | Pong
    | Notice
)


# ---------------------------------------------------------------------------
# Market data: public PUB feeds (topic frame + payload) and the snapshot ROUTER.
# ---------------------------------------------------------------------------


class Feed(msgspec.Struct, array_like=True, tag=True, frozen=True, gc=False):
    pass


class L2Update(Feed, tag="l2"):
    """Changed levels within the top ``depth``; size 0 removes a level."""

    symbol: str
    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class Trade(Feed, tag="trade"):
    symbol: str
    seq: int
    trade_id: int
    price: int
    qty: int
    side: SideCode  # the aggressor's side (an auction's: the later order's)
    auction: bool = False  # executed in an opening, re-opening or closing auction


class Bbo(Feed, tag="bbo"):
    symbol: str
    seq: int
    bid_px: int  # 0 when the side is empty
    bid_qty: int
    ask_px: int
    ask_qty: int
    paused: bool = False  # in a volatility pause (a bbo is sent when it begins and ends)


class SnapshotRequest(Feed, tag="snapshot_req"):
    symbol: str
    depth: int = 0  # levels per side wanted; 0 (or past the service's cap): the cap


class Snapshot(Feed, tag="snapshot"):
    """The best levels of each side (all of them up to the service's cap), valid at L2
    sequence ``seq``: a subscriber drops updates at or below it and keeps the top
    ``depth`` levels, as the L2 feed describes them."""

    symbol: str
    seq: int
    depth: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    journal_seq: int
    bids_omitted: int = 0  # levels of the book past the ones sent
    asks_omitted: int = 0
    paused: bool = False  # in a volatility pause
    state: SessionCode = 3  # the symbol's session state
    trading_date: int = 0
    indicative: tuple[int, int, int, int] = (0, 0, 0, 0)  # in a call: price, matched,
    # imbalance, imbalance_side (as the ``indicative`` feed message)


class SessionState(Feed, tag="session"):
    """A symbol's session state changed (topic ``S.<symbol>``)."""

    symbol: str
    seq: int  # the journal sequence number of the change
    state: SessionCode
    trading_date: int


class AuctionInfo(Feed, tag="indicative"):
    """In a call period, the auction's indicative result when it changes (topic
    ``A.<symbol>``); after the uncross, one with ``final`` True gives its result."""

    symbol: str
    seq: int
    price: int
    matched: int
    imbalance: int
    imbalance_side: int  # 0 none, 1 buy, 2 sell
    final: bool = False


class TradesRequest(Feed, tag="trades_req"):
    """Asked on the snapshot endpoint: the symbol's most recent public trades."""

    symbol: str
    limit: int = 50


class RecentTrades(Feed, tag="trades"):
    """The last ``trades`` of a symbol, oldest first (at most TRADES_KEPT), valid at
    trade-feed sequence ``seq``: the tape a late joiner starts from."""

    symbol: str
    seq: int
    trades: list[Trade]


class FeedError(Feed, tag="feed_error"):
    """The snapshot endpoint's answer to a request it will not serve (unknown symbol,
    malformed, over the peer's rate); ``code`` is a Reject code."""

    code: RejectCode
    text: str
    symbol: str = ""  # the request's symbol, when it had one


AnyFeed = (
    L2Update
    | Trade
    | Bbo
    | SnapshotRequest
    | Snapshot
    | TradesRequest
    | RecentTrades
    | FeedError
    | SessionState
    | AuctionInfo
)
TRADES_KEPT = 200  # per symbol, for TradesRequest


def l2_topic(symbol: str) -> bytes:
    return b"L2." + symbol.encode()


def trade_topic(symbol: str) -> bytes:
    return b"T." + symbol.encode()


def bbo_topic(symbol: str) -> bytes:
    return b"BBO." + symbol.encode()


def session_topic(symbol: str) -> bytes:
    return b"S." + symbol.encode()


def auction_topic(symbol: str) -> bytes:
    return b"A." + symbol.encode()


# ---------------------------------------------------------------------------
# Encoding: one encoder for every message; a typed decoder per direction.
# ---------------------------------------------------------------------------

encoder = msgspec.msgpack.Encoder()
encode = encoder.encode
request_decoder = msgspec.msgpack.Decoder(AnyRequest)  # the gateway reads these
reply_decoder = msgspec.msgpack.Decoder(AnyReply)  # a client reads these
feed_decoder = msgspec.msgpack.Decoder(AnyFeed)  # feed messages and snapshot answers

# msgspec raises UnicodeDecodeError (not its own error) for a str that is not UTF-8:
# the fuzz test found that one, which would have stopped the gateway.
DecodeError = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
