"""What the synchronous and the asyncio clients share: requests and their answers,
without a socket.

``Client`` (clients/client.py) and ``AsyncClient`` (clients/aio.py) differ only in how
they wait. Everything else is here, once: building requests, the table of requests
sent and not yet answered (``Waiting``: which reply answers which request, what to
resend once a session is restored), turning an answer into a result or an
``ExchangeError``, and the paging of open orders.

How a reply finds its request:

- an execution report answers the order, cancel, replace, password change or
  operator action whose ``cl_ord_id`` one of its events names (a ``duplicate``'s
  original counts), and the sign-up whose name an ``account_created`` names;
- a gateway reject answers the request its ``ref`` names (a ``cl_ord_id`` or an
  account name); a log-in's or resume's reject may come without one; a reject with
  no ``ref`` answers the request waiting if only one is;
- ``logged_in`` answers the oldest log-in or resume waiting, and ``positions``,
  ``orders``, ``fills`` and ``logged_out`` the oldest request of their kind; a
  ``pong`` answers the ping with its nonce;
- NOT_LOGGED_IN says the session is gone: a client that knows its credentials
  restores the session and resends what is unanswered (``unanswered``); orders carry
  their ``cl_ord_id``, so a resend is answered once.

Only msgspec, pyzmq and the public protocol (``services.common.wire``) are imported,
so the SDK installs without the server's packages.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from services.common.wire import (
    REJECT_TEXT,
    AdminRequest,
    CancelRequest,
    ChangePassword,
    Duplicate,
    Fills,
    GetFills,
    GetOrders,
    GetPositions,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Orders,
    OrdType,
    Ping,
    PlaceOrder,
    Pong,
    Positions,
    Reject,
    Rejected,
    ReplaceRequest,
    Report,
    Reports,
    RequestRejected,
    Resume,
    Side,
    Signup,
    Stp,
    Tif,
)

RETRY_S = 0.05  # between resends of an order answered NOT_LEADER (a failover under way)
RELOGINS = 3  # log-ins again for one request answered NOT_LOGGED_IN, at most (sync client)
HEARTBEAT_S = 1.0  # well inside the gateway's 3 x client_heartbeat_ms (6 s by default)
# rejects that answer a log-in or resume even without a ``ref``
SESSION_REJECTS = frozenset(
    {
        Reject.BAD_CREDENTIALS,
        Reject.TOO_MANY_ATTEMPTS,
        Reject.TOO_MANY_SESSIONS,
        Reject.BAD_TOKEN,
        Reject.BAD_NAME,
        Reject.BUSY,
        Reject.RATE_LIMITED,
    }
)
# a log-in again that met these is tried again after a pause; others are final
RETRY_LOGIN = frozenset({Reject.BUSY, Reject.RATE_LIMITED, Reject.TOO_MANY_ATTEMPTS})
REF_CHARS = 40  # the gateway quotes at most this much of a name in a reject's ``ref``


class ExchangeError(Exception):
    """The exchange said no: ``code`` is a Reject code (see docs/protocol.md).
    ``consumed``: the matcher rejected it (a journaled ``rejected`` event), so its
    client order id is used and a resend only repeats this answer; False for the
    gateway's ``reject``, after which the same id may be sent again and acted on."""

    def __init__(self, code: int, text: str, consumed: bool = False) -> None:
        super().__init__(f"{text} (code {int(code)})")
        self.code = int(code)
        self.text = text
        self.consumed = consumed


class NoAnswer(TimeoutError):
    """The exchange did not answer in time (it may still act on the request)."""


@dataclass
class OrderResult:
    ack: object  # Accepted, Rejected, Cancelled, Replaced or Duplicate
    seq: int
    events: list = field(default_factory=list)  # every event of the same record for us


_ids = itertools.count(1)


def new_cl_ord_id() -> str:
    return f"{os.getpid():x}-{time.time_ns():x}-{next(_ids)}"


def curve_client(sock: zmq.Socket, keys: tuple[bytes, bytes, bytes]) -> None:
    """Make ``sock`` (not yet connected) a CURVE client with ``keys``: (client public,
    client secret, server public), as ``clients.settings.client_keys`` loads them."""
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys


def dealer(ctx: zmq.Context, endpoint: str, curve_keys: tuple[bytes, bytes, bytes] | None):
    """(socket, monitor): a DEALER to the gateway, CURVE when ``curve_keys`` (client
    public, client secret, server public) are given, and a monitor of its connections
    (the gateway keeps a session per connection: a remade one has none)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve_keys is not None:
        curve_client(sock, curve_keys)
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
    sock.connect(endpoint)
    return sock, monitor


# -- requests ---------------------------------------------------------------------


def order_request(
    symbol: str,
    side: Side,
    qty: int,
    price: int = 0,
    ord_type: OrdType = OrdType.LIMIT,
    tif: Tif = Tif.GTC,
    post_only: bool = False,
    stp: Stp = Stp.DEFAULT,
    cl_ord_id: str | None = None,
) -> PlaceOrder:
    return PlaceOrder(
        cl_ord_id or new_cl_ord_id(), symbol, side, qty, price, ord_type, tif, post_only, stp
    )


def cancel_request(order_id: int, cl_ord_id: str | None = None) -> CancelRequest:
    return CancelRequest(cl_ord_id or new_cl_ord_id(), order_id)


def replace_request(
    order_id: int, price: int, qty: int, cl_ord_id: str | None = None
) -> ReplaceRequest:
    return ReplaceRequest(cl_ord_id or new_cl_ord_id(), order_id, price, qty)


def password_request(old: str, new: str, cl_ord_id: str | None = None) -> ChangePassword:
    return ChangePassword(cl_ord_id or new_cl_ord_id(), old, new)


def admin_request(
    action: str, symbol: str = "", account: str = "", price: int = 0, amount: int = 0
) -> AdminRequest:
    return AdminRequest(new_cl_ord_id(), action, symbol, account, price, amount)


# -- answers ----------------------------------------------------------------------


def unpack(reply) -> tuple | list:
    """The replies in one frame: a ``reports`` frame holds several reports."""
    return reply.reports if type(reply) is Reports else (reply,)


def first_answer(report: Report, cl_ord_id: str):
    """The event answering request ``cl_ord_id`` in a report (a duplicate's original)."""
    for event in report.events:
        if getattr(event, "cl_ord_id", None) == cl_ord_id:
            return event.original if isinstance(event, Duplicate) else event
    return None


def raise_for(reply) -> None:
    """Raise ExchangeError if ``reply`` is a reject, or a report of a rejected request."""
    if isinstance(reply, RequestRejected):
        raise ExchangeError(reply.code, reply.text)
    if isinstance(reply, Report):
        for event in reply.events:
            if isinstance(event, Duplicate):
                event = event.original
            if isinstance(event, Rejected):
                raise ExchangeError(event.code, REJECT_TEXT.get(event.code, "rejected"), True)


def order_result(reply: Report, request) -> OrderResult:
    """An order's (cancel's, replace's ...) answer once ``raise_for`` let it pass."""
    return OrderResult(first_answer(reply, request.cl_ord_id), reply.seq, list(reply.events))


def signed_up(reply: Report) -> int:
    """The account id a sign-up's answer names."""
    return reply.events[0].account


def session_lost(reply) -> bool:
    """The gateway has no session for this connection (it restarted, or the session
    went silent too long): log in again, then resend."""
    return type(reply) is RequestRejected and reply.code == Reject.NOT_LOGGED_IN


def retry_later(reply, remaining_s: float) -> bool:
    """An order answered NOT_LEADER (a failover under way) is sent again, with the same
    ``cl_ord_id``, after RETRY_S while its time lasts."""
    return (
        type(reply) is RequestRejected and reply.code == Reject.NOT_LEADER and remaining_s > RETRY_S
    )


# the reply that answers each kind of query (requests without a cl_ord_id)
ANSWER_KIND: dict[type, type] = {
    Login: LoggedIn,
    Resume: LoggedIn,
    GetPositions: Positions,
    GetOrders: Orders,
    GetFills: Fills,
    Logout: LoggedOut,
    Ping: Pong,
}
SESSION_REQUESTS = (Login, Resume)


class Waiting:
    """The requests sent and not answered yet, each with the caller's ``handle`` (what
    it waits on: a future, a token). ``answer`` finds who a reply answers; nothing here
    sends or receives."""

    def __init__(self) -> None:
        self._orders: dict[str, tuple[Any, object]] = {}  # cl_ord_id -> (handle, request)
        self._signups: dict[str, tuple[Any, object]] = {}  # name -> (handle, request)
        self._queries: dict[type, deque[tuple[Any, object]]] = defaultdict(deque)

    def __len__(self) -> int:
        return len(self._orders) + len(self._signups) + sum(map(len, self._queries.values()))

    def add(self, request, handle) -> None:
        kind = type(request)
        if kind is Signup:
            self._signups[request.name[:REF_CHARS]] = (handle, request)
        elif kind in ANSWER_KIND:
            self._queries[ANSWER_KIND[kind]].append((handle, request))
        else:
            self._orders[request.cl_ord_id] = (handle, request)

    def discard(self, request, handle) -> None:
        """Forget ``request`` (its caller gave up), if ``handle`` still waits on it."""
        kind = type(request)
        if kind is Signup:
            table, key = self._signups, request.name[:REF_CHARS]
        elif kind in ANSWER_KIND:
            waiting = self._queries[ANSWER_KIND[kind]]
            if (handle, request) in waiting:
                waiting.remove((handle, request))
            return
        else:
            table, key = self._orders, request.cl_ord_id
        if key in table and table[key][0] is handle:
            del table[key]

    def answer(self, reply) -> list:
        """The handles ``reply`` answers, no longer waiting: none for a notice, a
        report about nothing this client waits for, or NOT_LOGGED_IN."""
        kind = type(reply)
        if kind is Report:
            return self._report(reply)
        if kind is RequestRejected:
            return self._rejected(reply)
        waiting = self._queries.get(kind)
        if not waiting:
            return []
        if kind is Pong:  # the ping with its nonce; the heartbeat's pings wait for none
            for entry in waiting:
                if entry[1].nonce == reply.nonce:
                    waiting.remove(entry)
                    return [entry[0]]
            return []
        return [waiting.popleft()[0]]

    def _report(self, report: Report) -> list:
        out = []
        for event in report.events:
            if isinstance(event, Duplicate):
                event = event.original
            cl_ord_id = getattr(event, "cl_ord_id", None)
            name = getattr(event, "name", None)  # account_created answers a sign-up
            if cl_ord_id in self._orders:
                out.append(self._orders.pop(cl_ord_id)[0])
            elif cl_ord_id in self._signups:  # a sign-up the matcher rejected
                out.append(self._signups.pop(cl_ord_id)[0])
            elif name is not None and name[:REF_CHARS] in self._signups:
                out.append(self._signups.pop(name[:REF_CHARS])[0])
        return out

    def _rejected(self, reply: RequestRejected) -> list:
        ref, code = reply.ref, reply.code
        if ref in self._orders:
            return [self._orders.pop(ref)[0]]
        if ref in self._signups:
            return [self._signups.pop(ref)[0]]
        sessions = self._queries.get(LoggedIn)
        if sessions and code != Reject.NOT_LOGGED_IN:
            request = sessions[0][1]
            name = request.name[:REF_CHARS] if type(request) is Login else ""
            if ref == name or (not ref and code in SESSION_REJECTS):
                return [sessions.popleft()[0]]
        if not ref and len(self) == 1:
            # no name on it: the one request waiting; but an order is not answered by a
            # RATE_LIMITED that may be about a dropped ping while it went through, nor a
            # log-in or resume by a NOT_LOGGED_IN that a request sent before a
            # reconnect earned
            if self._signups or (self._orders and code != Reject.RATE_LIMITED):
                return [(self._orders or self._signups).popitem()[1][0]]
            for kind, waiting in self._queries.items():
                if waiting and not (kind is LoggedIn and code == Reject.NOT_LOGGED_IN):
                    return [waiting.popleft()[0]]
        return []

    def unanswered(self) -> list:
        """What to send again once the session is restored: every request waiting but
        sign-ups (not repeatable) and log-ins (the restore makes its own)."""
        out = [request for _, request in self._orders.values()]
        for kind, waiting in self._queries.items():
            if kind is not LoggedIn:
                out += [request for _, request in waiting]
        return out

    def abandon(self) -> list:
        """The handles of everything ``unanswered`` would resend, no longer waiting
        (the session could not be restored)."""
        out = [handle for handle, _ in self._orders.values()]
        self._orders.clear()
        for kind, waiting in self._queries.items():
            if kind is not LoggedIn:
                out += [handle for handle, _ in waiting]
                waiting.clear()
        return out


class OrderPages:
    """The account's open orders, a page at a time (``ORDERS_PAGE`` at most per
    answer). With orders changing meanwhile each page is as of its own ``seq``; the
    result carries the last.

        pages = OrderPages()
        while (request := pages.next()) is not None:
            pages.add(<the answer to request>)
        return pages.result()
    """

    def __init__(self) -> None:
        self.listed: list = []
        self.last: Orders | None = None

    def next(self) -> GetOrders | None:
        last = self.last
        if last is None:
            return GetOrders(0)
        if not (last.more and last.orders):
            return None
        return GetOrders(last.orders[-1].order_id)

    def add(self, page: Orders) -> None:
        self.listed += page.orders
        self.last = page

    def result(self) -> Orders:
        return Orders(self.last.account, self.listed, self.last.seq)
