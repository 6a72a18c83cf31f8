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

Several gateways (``Rotation``): a client given a list talks to one at a time. When an
answer is due and nothing comes, it pings; when the ping is not answered either, or
the connection drops, it moves to the next gateway, logs in again (a session and its
token belong to one gateway) and resends everything unanswered, orders by their
``cl_ord_id``: the matcher's exactly-once table answers a repeat with the original
result, so an order the dead gateway did pass on is entered once.

Only msgspec, pyzmq and the public protocol (``services.common.wire``) are imported,
so the SDK installs without the server's packages.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict, deque
from collections.abc import Sequence
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
# with several gateways: an answer due and nothing heard for PROBE_S sends a ping; that
# ping and everything else unanswered SILENCE_S later means the gateway is gone (a live
# gateway answers a ping itself, at once, even while a matcher failover holds orders)
PROBE_S = 0.25
SILENCE_S = 1.0
MAX_SENT = 10_000  # requests sent without waiting kept for a resend (oldest go first)


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
    made and dropped (the gateway keeps a session per connection: a remade one has
    none; a dropped one, with other gateways to go to, is a reason to move)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve_keys is not None:
        curve_client(sock, curve_keys)
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    sock.connect(endpoint)
    return sock, monitor


# -- several gateways -------------------------------------------------------------


def endpoint_list(endpoints: str | Sequence[str]) -> list[str]:
    """One endpoint or several: a list, or one string with commas between them (as
    ``EXCHANGE_GATEWAYS`` holds)."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = [item.strip() for item in items if item.strip()]
    if not out:
        raise ValueError("no endpoint given")
    return out


WAIT, PROBE, GONE = "wait", "probe", "gone"


class Rotation:
    """Which of several services to talk to, and when to leave it for the next: fed
    the time, no socket.

    Silence: an answer has been due (something was sent and is not all answered) with
    nothing heard for ``probe_s``: ``check`` says PROBE (send a ping, then call
    ``probed``); nothing heard ``silence_s`` after that either: GONE (``move`` on).
    Anything heard clears both. With one endpoint there is nowhere to go: ``check``
    always says WAIT, and a dropped connection is left to ZeroMQ to make again.
    ``connected`` says whether the current connection was ever made: a request sent
    to a service never reached is known not to have been delivered."""

    def __init__(self, endpoints: Sequence, silence_s: float = SILENCE_S, probe_s: float = PROBE_S):
        if not endpoints:
            raise ValueError("no endpoint given")
        self.endpoints = list(endpoints)
        self.index = 0
        self.silence_s = silence_s
        self.probe_s = probe_s
        self.moves = 0
        self.connected = False
        self._due: float | None = None  # since when an answer is due, nothing heard
        self._probed: float | None = None  # when the ping asking "are you there" went

    @property
    def current(self):
        return self.endpoints[self.index]

    @property
    def several(self) -> bool:
        return len(self.endpoints) > 1

    def sent(self, now: float) -> None:
        if self._due is None:
            self._due = now

    def heard(self, now: float, still_due: bool) -> None:
        self._probed = None
        self._due = now if still_due else None

    def check(self, now: float) -> str:
        """WAIT, PROBE (ping it, then ``probed``) or GONE (``move``)."""
        if not self.several or self._due is None:
            return WAIT
        if self._probed is None:
            return PROBE if now - self._due >= self.probe_s else WAIT
        return GONE if now - self._probed >= self.silence_s else WAIT

    def probed(self, now: float) -> None:
        self._probed = now

    def dropped(self) -> bool:
        """Whether a dropped connection means moving on (it does with somewhere to go)."""
        return self.several

    def move(self):
        """The next endpoint, round the list; nothing is due there yet."""
        self.index = (self.index + 1) % len(self.endpoints)
        self.moves += 1
        self.connected = False
        self._due = self._probed = None
        return self.current


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
    expire_date: int = 0,
) -> PlaceOrder:
    return PlaceOrder(
        cl_ord_id or new_cl_ord_id(),
        symbol,
        side,
        qty,
        price,
        ord_type,
        tif,
        post_only,
        stp,
        expire_date,
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
    action: str,
    symbol: str = "",
    account: str = "",
    price: int = 0,
    amount: int = 0,
    state: int = 0,
) -> AdminRequest:
    return AdminRequest(new_cl_ord_id(), action, symbol, account, price, amount, state)


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
        self._sent: dict[str, object] = {}  # cl_ord_id -> request sent without waiting

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

    def track(self, request) -> None:
        """Keep ``request``, sent without anyone waiting for its answer, until it is
        answered, to resend it if the session must be made again (orders, cancels,
        replaces: what has a ``cl_ord_id``). At most MAX_SENT, the oldest dropped."""
        cl_ord_id = getattr(request, "cl_ord_id", None)
        if type(request) is Signup or not isinstance(cl_ord_id, str):
            return
        sent = self._sent
        sent[cl_ord_id] = request
        if len(sent) > MAX_SENT:
            del sent[next(iter(sent))]

    def tracked(self) -> list:
        """The requests sent without waiting and not answered yet, oldest first."""
        return [request for request in self._sent.values() if request.cl_ord_id not in self._orders]

    def due(self) -> bool:
        """Whether any answer is still to come (a call's, or a tracked request's)."""
        return bool(self._sent) or len(self) > 0

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
            self._sent.pop(cl_ord_id, None)  # answered: the report goes to whoever reads
            if cl_ord_id in self._orders:
                out.append(self._orders.pop(cl_ord_id)[0])
            elif cl_ord_id in self._signups:  # a sign-up the matcher rejected
                out.append(self._signups.pop(cl_ord_id)[0])
            elif name is not None and name[:REF_CHARS] in self._signups:
                out.append(self._signups.pop(name[:REF_CHARS])[0])
        return out

    def _rejected(self, reply: RequestRejected) -> list:
        ref, code = reply.ref, reply.code
        if self._sent.pop(ref, None) is not None:
            return []  # nobody waits: the reject goes to whoever reads notices
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

    def unanswered(self, sessions: bool = False, signups: bool = False) -> list:
        """What to send again once the session is restored: every request waiting, and
        every one tracked; log-ins only with ``sessions`` (a restore makes its own),
        sign-ups only with ``signups`` (not repeatable: only when known undelivered)."""
        out = [request for _, request in self._orders.values()] + self.tracked()
        for kind, waiting in self._queries.items():
            if sessions or kind is not LoggedIn:
                out += [request for _, request in waiting]
        if signups:
            out += [request for _, request in self._signups.values()]
        return out

    def abandon(self) -> list:
        """The handles of everything ``unanswered`` would resend, no longer waiting
        (the session could not be restored)."""
        out = [handle for handle, _ in self._orders.values()]
        self._orders.clear()
        self._sent.clear()
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
