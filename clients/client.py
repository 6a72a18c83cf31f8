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

import time
from collections import deque

import zmq
from zmq.utils.monitor import recv_monitor_message

from clients.core import (
    RELOGINS,
    RETRY_S,
    ExchangeError,
    NoAnswer,
    OrderPages,
    OrderResult,
    Waiting,
    admin_request,
    cancel_request,
    dealer,
    new_cl_ord_id,
    order_request,
    order_result,
    password_request,
    raise_for,
    replace_request,
    retry_later,
    session_lost,
    signed_up,
    unpack,
)
from services.common.wire import (
    Accepted,
    FeedError,
    Fills,
    GetFills,
    GetPositions,
    LoggedIn,
    Login,
    Logout,
    Notice,
    Orders,
    Ping,
    Positions,
    RecentTrades,
    Reject,
    Report,
    RequestRejected,
    Resume,
    Signup,
    Snapshot,
    SnapshotRequest,
    TradesRequest,
    encode,
    feed_decoder,
    reply_decoder,
)

WATCH_S = 0.1  # how often a wait for an answer looks whether the connection was remade


class _Reconnected(Exception):
    """The connection to the gateway was made again: the session it had is gone."""


class _SessionLost(Exception):
    """The gateway answered NOT_LOGGED_IN: it forgot the session (``reply``)."""

    def __init__(self, reply: RequestRejected) -> None:
        super().__init__(reply.text)
        self.reply = reply


class Client:
    def __init__(
        self,
        endpoint: str,
        timeout: float = 10.0,
        ctx: zmq.Context | None = None,
        curve_keys: tuple[bytes, bytes, bytes] | None = None,
    ):
        """``curve_keys``: (client public, client secret, server public), from
        ``clients.settings.client_keys``, when the gateway requires CURVE."""
        self.ctx = ctx or zmq.Context.instance()
        # the gateway keeps a session per connection: when the connection is made
        # again (the gateway restarted, or the network dropped) the session is gone,
        # and the next request must wait until this client has logged in again
        self.socket, self.monitor = dealer(self.ctx, endpoint, curve_keys)
        self._connects = 0
        self._stale = False  # remade since the last log-in: log in before sending
        self.timeout = timeout
        self.reports: deque[Report] = deque()
        # notices and gateway rejects that no call was waiting for (e.g. a failover
        # notice, or the reject of an order sent with ``send``), newest last
        self.notices: deque[Notice | RequestRejected] = deque(maxlen=1_000)
        self._unpacked: deque = deque()  # the rest of a Reports frame, unread
        self.waiting = Waiting()  # the calls under way (one, or a log-in inside one)
        self._early: dict[object, object] = {}  # answers to a call while another waited
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
        """Send without waiting: the answer goes to ``reports`` or ``notices``."""
        self.socket.send(encode(request))

    def _recv(self, deadline: float, watch: bool = False):
        """The next reply; a Reports frame is unpacked into its reports."""
        while not self._unpacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswer("no answer from the gateway")
            wait = min(remaining, WATCH_S) if watch else remaining
            if self.socket.poll(int(wait * 1000) + 1):
                self._unpacked.extend(unpack(reply_decoder.decode(self.socket.recv())))
            elif watch and self._remade():
                raise _Reconnected
        return self._unpacked.popleft()

    def _remade(self) -> bool:
        """Whether the connection was made again since the last log-in (read from the
        socket's monitor: every connection after the first)."""
        while self.monitor.poll(0):
            if recv_monitor_message(self.monitor)["event"] == zmq.EVENT_CONNECTED:
                self._connects += 1
                if self._connects > 1 and self._credentials is not None:
                    self._stale = True
        return self._stale

    def _route(self, reply, handle) -> bool:
        """Whether ``reply`` answers the call waiting on ``handle``. An answer to
        another call is kept for it; reports and notices nobody waits for are queued."""
        answered = self.waiting.answer(reply)
        mine = False
        for other in answered:
            if other is handle:
                mine = True
            else:
                self._early[other] = reply
        if not answered:
            if type(reply) is Report:
                self.reports.append(reply)
            elif isinstance(reply, Notice | RequestRejected):
                self.notices.append(reply)
        return mine

    def _await(self, handle, deadline: float, watch: bool = False):
        """The reply answering ``handle``. With ``watch``: _Reconnected if the
        connection is remade meanwhile, _SessionLost if the gateway forgot the session."""
        while handle not in self._early:
            reply = self._recv(deadline, watch)
            if watch and session_lost(reply):
                raise _SessionLost(reply)
            if self._route(reply, handle):
                return reply
        return self._early.pop(handle)

    def _call(self, request, timeout: float | None = None):
        """Send ``request`` and wait for its answer, as the session is (sign-up, log-in,
        resume, log-out, ping: the calls that make or need no session)."""
        handle = object()
        self.waiting.add(request, handle)
        try:
            self.send(request)
            return self._await(handle, time.monotonic() + (timeout or self.timeout))
        finally:
            self.waiting.discard(request, handle)
            self._early.pop(handle, None)

    def _request(self, request, timeout: float | None = None):
        """Send ``request`` and return its answer (raising if it is a reject). When the
        session is gone (the connection was remade: the gateway restarted; or it went
        silent too long: NOT_LOGGED_IN) log in again first, then send or resend:
        nothing is sent on a connection without a session, and an order's cl_ord_id
        makes a resend exactly-once. An order answered NOT_LEADER (a failover under
        way) is resent until the timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        watch = self._credentials is not None
        if watch and self._remade():
            self._restore()
        handle = object()
        self.waiting.add(request, handle)
        relogins = 0
        try:
            self.send(request)
            while True:
                try:
                    reply = self._await(handle, deadline, watch)
                except _Reconnected:
                    self._restore()
                except _SessionLost as lost:
                    if relogins == RELOGINS:
                        raise_for(lost.reply)
                    relogins += 1
                    self._restore()
                else:
                    if not retry_later(reply, deadline - time.monotonic()):
                        raise_for(reply)
                        return reply
                    time.sleep(RETRY_S)
                    self.waiting.add(request, handle)
                if handle not in self._early:  # its answer came during the log-in
                    self.send(request)
        finally:
            self.waiting.discard(request, handle)
            self._early.pop(handle, None)

    def _next(self, queue: deque, timeout: float | None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not queue:
            self._route(self._recv(deadline), None)
        return queue.popleft()

    def next_report(self, timeout: float | None = None) -> Report:
        """The next execution report no call took as its answer."""
        return self._next(self.reports, timeout)

    def next_notice(self, timeout: float | None = None) -> Notice | RequestRejected:
        """The next notice, or gateway reject no call took as its answer (the answer
        to a request sent with ``send``, say)."""
        return self._next(self.notices, timeout)

    def drain_reports(self) -> list[Report]:
        """Every report already received, without waiting."""
        while self._unpacked or self.socket.poll(0):
            self._route(self._recv(time.monotonic() + 1), None)
        out = list(self.reports)
        self.reports.clear()
        return out

    # -- sessions ---------------------------------------------------------------

    def signup(self, name: str, password: str) -> int:
        """Create an account; returns its id."""
        reply = self._call(Signup(name, password))
        raise_for(reply)
        return signed_up(reply)

    def login(self, name: str, password: str) -> LoggedIn:
        reply = self._call(Login(name, password))
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
        reply = self._call(Resume(token))
        raise_for(reply)
        self.account = reply.account
        self._token = token
        return reply

    def change_password(self, old: str, new: str, cl_ord_id: str | None = None) -> OrderResult:
        """Change this account's password; every other session of it is logged out."""
        result = self._order(password_request(old, new, cl_ord_id), None)
        if self._credentials is not None:
            self._credentials = (self._credentials[0], new)
        return result

    def admin(
        self, action: str, symbol: str = "", account: str = "", price: int = 0, amount: int = 0
    ) -> OrderResult:
        """Operators only: ``halt``/``resume`` a symbol, ``reference`` (a symbol's new
        reference price), ``kill``/``unkill`` an account by name, ``deposit`` ``amount``
        price units into an account by name (negative: a withdrawal)."""
        return self._order(admin_request(action, symbol, account, price, amount), None)

    def logout(self) -> None:
        """End the session (its token with it) and wait until the gateway has: a socket
        closed right after would otherwise drop the request and leave the session to
        time out, counted against the account's session limit until it does."""
        self._call(Logout())
        self.account = None
        self._credentials = None
        self._token = ""

    def ping(self, nonce: int = 0) -> None:
        """Keeps the session alive: the gateway drops sessions silent for three
        client heartbeats (``client_heartbeat_ms``, 2 s by default)."""
        self.send(Ping(nonce))

    def alive(self, timeout: float = 2.0) -> bool:
        """Ping and wait for the answer: False means the gateway is gone or stalled."""
        try:
            self._call(Ping(time.monotonic_ns()), timeout)
        except NoAnswer:
            return False
        return True

    # -- orders -----------------------------------------------------------------

    def _order(self, request, timeout: float | None) -> OrderResult:
        return order_result(self._request(request, timeout), request)

    def place(self, *order, timeout: float | None = None, **options) -> OrderResult:
        """Send an order and wait for its acknowledgement (ExchangeError if rejected):
        ``place(symbol, side, qty, price=0, ord_type=OrdType.LIMIT, tif=Tif.GTC,
        post_only=False, stp=Stp.DEFAULT, cl_ord_id=None)``, as ``core.order_request``."""
        return self._order(order_request(*order, **options), timeout)

    def cancel(self, order_id: int, cl_ord_id: str | None = None) -> OrderResult:
        return self._order(cancel_request(order_id, cl_ord_id), None)

    def replace(
        self, order_id: int, price: int, qty: int, cl_ord_id: str | None = None
    ) -> OrderResult:
        return self._order(replace_request(order_id, price, qty, cl_ord_id), None)

    def positions(self) -> Positions:
        return self._request(GetPositions())

    def orders(self) -> Orders:
        """Every open order of the account, by order id. The gateway answers in pages
        (``ORDERS_PAGE`` at most); this asks for each in turn, so with orders changing
        meanwhile each page is as of its own ``seq`` (the one returned is the last)."""
        pages = OrderPages()
        while (request := pages.next()) is not None:
            pages.add(self._request(request))
        return pages.result()

    def fills(self, symbol: str = "", limit: int = 100) -> Fills:
        """This account's own last fills (of ``symbol`` if given), oldest first.

        >>> [(f.symbol, f.side, f.qty, f.price) for f in c.fills("AAPL").fills]
        """
        return self._request(GetFills(symbol, limit))


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
    "new_cl_ord_id",
    "recent_trades",
    "snapshot",
]
