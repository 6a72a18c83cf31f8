"""A small synchronous client for the gateway, used by the CLI, tests and benchmarks.

Execution reports arrive whenever the exchange has something to say; while a call
waits for its own answer, reports that are not its answer are queued in ``reports``
so none is lost.

    >>> c = Client("tcp://127.0.0.1:5555")
    >>> c.login("alice", "Secret.pw1")
    >>> result = c.place("AAPL", Side.BUY, 100, to_units("170.50"))
    >>> result.ack.order_id
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import recv_monitor_message

from services.common import curve
from services.common.codec import encode, feed_decoder, reply_decoder
from services.common.wire import (
    REJECT_TEXT,
    Accepted,
    AdminRequest,
    CancelRequest,
    ChangePassword,
    Duplicate,
    FeedError,
    Fills,
    GetFills,
    GetOrders,
    GetPositions,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Notice,
    Orders,
    OrdType,
    Ping,
    PlaceOrder,
    Pong,
    Positions,
    RecentTrades,
    Reject,
    Rejected,
    ReplaceRequest,
    Report,
    Reports,
    RequestRejected,
    Resume,
    Side,
    Signup,
    Snapshot,
    SnapshotRequest,
    Stp,
    Tif,
    TradesRequest,
)


class ExchangeError(Exception):
    """The exchange said no: ``code`` is a Reject code (see docs/protocol.md)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{text} (code {int(code)})")
        self.code = int(code)
        self.text = text


class NoAnswer(TimeoutError):
    """The exchange did not answer in time (it may still act on the request)."""


@dataclass
class OrderResult:
    ack: object  # Accepted, Rejected, Cancelled, Replaced or Duplicate
    seq: int
    events: list = field(default_factory=list)  # every event of the same record for us


_ids = itertools.count(1)
WATCH_S = 0.1  # how often a wait for an answer looks whether the connection was remade
RETRY_S = 0.05  # between resends of an order answered NOT_LEADER (a failover under way)
RELOGINS = 3  # log-ins again for one request answered NOT_LOGGED_IN, at most


class _Reconnected(Exception):
    """The connection to the gateway was made again: the session it had is gone."""


def session_reply(name: str = ""):
    """``accept`` for a log-in's or resume's answer: ``logged_in``, or a reject of it
    (its ``ref`` is the name, or empty). A NOT_LOGGED_IN is never one: it answers a
    request sent before, on a connection that had lost its session."""

    def accept(reply) -> bool:
        if isinstance(reply, LoggedIn):
            return True
        return (
            isinstance(reply, RequestRejected)
            and reply.code != Reject.NOT_LOGGED_IN
            and reply.ref in ("", name[:40])
        )

    return accept


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
                raise ExchangeError(event.code, REJECT_TEXT.get(event.code, "rejected"))


def new_cl_ord_id() -> str:
    return f"{os.getpid():x}-{time.time_ns():x}-{next(_ids)}"


class Client:
    def __init__(
        self,
        endpoint: str,
        timeout: float = 10.0,
        ctx: zmq.Context | None = None,
        curve_keys: tuple[bytes, bytes, bytes] | None = None,
    ):
        """``curve_keys``: (client public, client secret, server public), from
        ``services.common.curve.client_keys``, when the gateway requires CURVE."""
        self.ctx = ctx or zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve_keys is not None:
            curve.connect(self.socket, curve_keys)
        # the gateway keeps a session per connection: when the connection is made
        # again (the gateway restarted, or the network dropped) the session is gone,
        # and the next request must wait until this client has logged in again
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_CONNECTED)
        self._connects = 0
        self._stale = False  # remade since the last log-in: log in before sending
        self.socket.connect(endpoint)
        self.timeout = timeout
        self.reports: deque[Report] = deque()
        # notices and gateway rejects that no call was waiting for (e.g. a failover
        # notice, or the reject of an order sent with ``send``), newest last
        self.notices: deque[Notice | RequestRejected] = deque(maxlen=1_000)
        self._unpacked: deque[Report] = deque()  # the rest of a Reports frame, unread
        self.account: int | None = None
        self._credentials: tuple[str, str] | None = None  # to log in again if forgotten
        self._token = ""  # the session's, to resume it without the password

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------

    def send(self, request) -> None:
        self.socket.send(encode(request))

    def _decode(self):
        """The next reply off the socket; a Reports frame is unpacked into its reports."""
        reply = reply_decoder.decode(self.socket.recv())
        if type(reply) is Reports:
            self._unpacked.extend(reply.reports[1:])
            return reply.reports[0]
        return reply

    def _recv(self, deadline: float, watch: bool = False):
        if self._unpacked:
            return self._unpacked.popleft()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswer("no answer from the gateway")
            wait = min(remaining, WATCH_S) if watch else remaining
            if self.socket.poll(int(wait * 1000) + 1):
                return self._decode()
            if watch and self._remade():
                raise _Reconnected

    def _remade(self) -> bool:
        """Whether the connection was made again since the last log-in (read from the
        socket's monitor: every connection after the first)."""
        while self.monitor.poll(0):
            if recv_monitor_message(self.monitor)["event"] == zmq.EVENT_CONNECTED:
                self._connects += 1
                if self._connects > 1 and self._credentials is not None:
                    self._stale = True
        return self._stale

    def _await(
        self,
        accept,
        timeout: float | None = None,
        deadline: float | None = None,
        watch: bool = False,
    ):
        """The first reply for which ``accept(reply)`` is true; reports are queued.
        With ``watch``, raises _Reconnected if the connection is remade meanwhile."""
        if deadline is None:
            deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._recv(deadline, watch)
            if accept(reply):
                return reply
            if isinstance(reply, Report):
                self.reports.append(reply)
            elif isinstance(reply, Notice | RequestRejected):
                self.notices.append(reply)

    def next_report(self, timeout: float | None = None) -> Report:
        if self.reports:
            return self.reports.popleft()
        return self._await(lambda r: isinstance(r, Report), timeout)

    def drain_reports(self) -> list[Report]:
        """Every report already received, without waiting."""
        self.reports.extend(self._unpacked)
        self._unpacked.clear()
        while self.socket.poll(0):
            reply = self._decode()
            if isinstance(reply, Report):
                self.reports.append(reply)
            elif isinstance(reply, Notice | RequestRejected):
                self.notices.append(reply)
            self.reports.extend(self._unpacked)
            self._unpacked.clear()
        out = list(self.reports)
        self.reports.clear()
        return out

    # -- sessions ---------------------------------------------------------------

    def signup(self, name: str, password: str) -> int:
        """Create an account; returns its id."""
        self.send(Signup(name, password))

        def mine(r) -> bool:
            if isinstance(r, RequestRejected):
                return True
            first = r.events[0] if isinstance(r, Report) and r.events else None
            return name in (getattr(first, "name", None), getattr(first, "cl_ord_id", None))

        reply = self._await(mine)
        raise_for(reply)
        return reply.events[0].account

    def login(self, name: str, password: str) -> LoggedIn:
        self.send(Login(name, password))
        reply = self._await(session_reply(name))
        raise_for(reply)
        self.account = reply.account
        self._credentials = (name, password)
        self._token = reply.token
        return reply

    def open_account(self, name: str, password: str, create: bool = False) -> LoggedIn:
        """Log in; with ``create``, sign up first (an account that exists is fine)."""
        if create:
            try:
                self.signup(name, password)
            except ExchangeError as exc:
                if exc.code != Reject.NAME_TAKEN:
                    raise
        return self.login(name, password)

    def _request(self, request, accept, timeout: float | None = None):
        """Send ``request`` and return the reply ``accept`` picks (raising if it is a
        reject). When the session is gone (the connection was remade: the gateway
        restarted; or it went silent too long: NOT_LOGGED_IN) log in again first, then
        send or resend: nothing is sent on a connection without a session, and an
        order's cl_ord_id makes a resend exactly-once. An order answered NOT_LEADER (a
        failover under way) is resent until the timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        watch = self._credentials is not None
        if watch and self._remade():
            self._restore()
        self.send(request)
        relogins = 0
        while True:
            try:
                reply = self._await(accept, deadline=deadline, watch=watch)
            except _Reconnected:
                self._restore()
                self.send(request)
                continue
            if type(reply) is RequestRejected:
                code = reply.code
                if code == Reject.NOT_LOGGED_IN and watch and relogins < RELOGINS:
                    relogins += 1
                    self._restore()
                    self.send(request)
                    continue
                if code == Reject.NOT_LEADER and time.monotonic() + RETRY_S < deadline:
                    time.sleep(RETRY_S)
                    self.send(request)
                    continue
            raise_for(reply)
            return reply

    def _restore(self) -> None:
        """A session on this connection again: resume the token (no password to hash,
        no log-in guard), or, if the gateway forgot it (a restart), log in."""
        self._remade()  # the connections made so far are covered by this log-in
        self._stale = False
        if self._token:
            try:
                self.resume(self._token)
                return
            except ExchangeError as exc:
                if exc.code != Reject.BAD_TOKEN:
                    raise
        self.login(*self._credentials)

    def resume(self, token: str) -> LoggedIn:
        """Attach this connection to a session by its token (no password sent)."""
        self.send(Resume(token))
        reply = self._await(session_reply())
        raise_for(reply)
        self.account = reply.account
        self._token = token
        return reply

    def change_password(self, old: str, new: str, cl_ord_id: str | None = None) -> OrderResult:
        """Change this account's password; every other session of it is logged out."""
        result = self._answer_for(ChangePassword(cl_ord_id or new_cl_ord_id(), old, new), None)
        if self._credentials is not None:
            self._credentials = (self._credentials[0], new)
        return result

    def admin(
        self, action: str, symbol: str = "", account: str = "", price: int = 0, amount: int = 0
    ) -> OrderResult:
        """Operators only: ``halt``/``resume`` a symbol, ``reference`` (a symbol's new
        reference price), ``kill``/``unkill`` an account by name, ``deposit`` ``amount``
        price units into an account by name (negative: a withdrawal)."""
        request = AdminRequest(new_cl_ord_id(), action, symbol, account, price, amount)
        return self._answer_for(request, None)

    def logout(self) -> None:
        """End the session (its token with it) and wait until the gateway has: a socket
        closed right after would otherwise drop the request and leave the session to
        time out, counted against the account's session limit until it does."""
        self.send(Logout())
        self._await(lambda r: isinstance(r, LoggedOut))
        self.account = None
        self._credentials = None
        self._token = ""

    def ping(self, nonce: int = 0) -> None:
        """Keeps the session alive: the gateway drops sessions silent for three
        client heartbeats (``client_heartbeat_ms``, 2 s by default)."""
        self.send(Ping(nonce))

    def alive(self, timeout: float = 2.0) -> bool:
        """Ping and wait for the pong: False means the gateway is gone or stalled."""
        nonce = time.monotonic_ns()
        self.ping(nonce)
        try:
            self._await(lambda r: isinstance(r, Pong) and r.nonce == nonce, timeout)
        except NoAnswer:
            return False
        return True

    # -- orders -----------------------------------------------------------------

    def _answer_for(self, request, timeout: float | None) -> OrderResult:
        cl_ord_id = request.cl_ord_id

        def mine(r) -> bool:
            if isinstance(r, RequestRejected):
                return r.ref == cl_ord_id or not r.ref
            return isinstance(r, Report) and first_answer(r, cl_ord_id) is not None

        reply = self._request(request, mine, timeout)
        return OrderResult(first_answer(reply, cl_ord_id), reply.seq, list(reply.events))

    def place(
        self,
        symbol: str,
        side: Side,
        qty: int,
        price: int = 0,
        ord_type: OrdType = OrdType.LIMIT,
        tif: Tif = Tif.GTC,
        post_only: bool = False,
        stp: Stp = Stp.DEFAULT,
        cl_ord_id: str | None = None,
        timeout: float | None = None,
    ) -> OrderResult:
        """Send an order and wait for its acknowledgement (raises ExchangeError if rejected)."""
        request = PlaceOrder(
            cl_ord_id or new_cl_ord_id(), symbol, side, qty, price, ord_type, tif, post_only, stp
        )
        return self._answer_for(request, timeout)

    def cancel(self, order_id: int, cl_ord_id: str | None = None) -> OrderResult:
        return self._answer_for(CancelRequest(cl_ord_id or new_cl_ord_id(), order_id), None)

    def replace(
        self, order_id: int, price: int, qty: int, cl_ord_id: str | None = None
    ) -> OrderResult:
        request = ReplaceRequest(cl_ord_id or new_cl_ord_id(), order_id, price, qty)
        return self._answer_for(request, None)

    def positions(self) -> Positions:
        return self._request(GetPositions(), lambda r: isinstance(r, Positions | RequestRejected))

    def orders(self) -> Orders:
        """Every open order of the account, by order id. The gateway answers in pages
        (``ORDERS_PAGE`` at most); this asks for each in turn, so with orders changing
        meanwhile each page is as of its own ``seq`` (the one returned is the last)."""
        listed: list = []
        after = 0
        while True:
            page = self._request(
                GetOrders(after), lambda r: isinstance(r, Orders | RequestRejected)
            )
            listed += page.orders
            if not (page.more and page.orders):
                return Orders(page.account, listed, page.seq)
            after = page.orders[-1].order_id

    def fills(self, symbol: str = "", limit: int = 100) -> Fills:
        """This account's own last fills (of ``symbol`` if given), oldest first.

        >>> [(f.symbol, f.side, f.qty, f.price) for f in c.fills("AAPL").fills]
        """
        return self._request(
            GetFills(symbol, limit), lambda r: isinstance(r, Fills | RequestRejected)
        )


def _ask_marketdata(endpoint: str, request, timeout: float, ctx):
    ctx = ctx or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(encode(request))
        if not sock.poll(int(timeout * 1000)):
            raise NoAnswer("no answer from marketdata")
        reply = feed_decoder.decode(sock.recv())
    finally:
        sock.close(0)
    if isinstance(reply, FeedError):  # unknown symbol, malformed, over the rate
        raise ExchangeError(reply.code, reply.text)
    return reply


def snapshot(endpoint: str, symbol: str, timeout: float = 5.0, ctx=None) -> Snapshot:
    """The full-depth book of ``symbol`` from the marketdata service.

    >>> snapshot("tcp://127.0.0.1:5557", "AAPL").bids[:3]   # [(price, size), ...]
    """
    return _ask_marketdata(endpoint, SnapshotRequest(symbol), timeout, ctx)


def recent_trades(
    endpoint: str, symbol: str, limit: int = 50, timeout: float = 5.0, ctx=None
) -> RecentTrades:
    """The public tape: ``symbol``'s last ``limit`` trades, oldest first.

    >>> [t.price for t in recent_trades("tcp://127.0.0.1:5557", "AAPL", 5).trades]
    """
    return _ask_marketdata(endpoint, TradesRequest(symbol, limit), timeout, ctx)


__all__ = [
    "Accepted",
    "Client",
    "ExchangeError",
    "NoAnswer",
    "OrderResult",
    "recent_trades",
    "snapshot",
]
