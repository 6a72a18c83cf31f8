"""A small synchronous client for the gateway, used by the CLI, tests and benchmarks.

Execution reports arrive whenever the exchange has something to say; while a call
waits for its own answer, reports that are not its answer are queued in ``reports``
so none is lost.

    >>> c = Client("tcp://127.0.0.1:5555")
    >>> c.login("alice", "Secret.pw1")
    >>> result = c.place("AAPL", Side.BUY, 100, to_units("170.50"))
    >>> result.ack.order_id

Given several gateways (``Client(["tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"])``) it
talks to one at a time and moves to the next when the one in use drops the connection
or goes silent (``clients.core.Rotation``), logs in there and resends what was
unanswered, orders by their ``cl_ord_id`` (exactly once).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import zmq
from zmq.utils.monitor import recv_monitor_message

from clients.core import (
    GONE,
    PROBE,
    RELOGINS,
    RETRY_S,
    SESSION_REQUESTS,
    SILENCE_S,
    ExchangeError,
    NoAnswer,
    OrderPages,
    OrderResult,
    Rotation,
    Waiting,
    admin_request,
    cancel_request,
    dealer,
    endpoint_list,
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
    Session,
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


class _Moved(_Reconnected):
    """The client left a silent or dropped gateway for the next: no session there yet.
    ``reached``: whether the one left had been connected (a request sent to a gateway
    never reached was not delivered)."""

    def __init__(self, reached: bool) -> None:
        super().__init__("moved to the next gateway")
        self.reached = reached


class _SessionLost(Exception):
    """The gateway answered NOT_LOGGED_IN: it forgot the session (``reply``)."""

    def __init__(self, reply: RequestRejected) -> None:
        super().__init__(reply.text)
        self.reply = reply


class Client:
    def __init__(
        self,
        endpoint: str | Sequence[str],
        timeout: float = 10.0,
        ctx: zmq.Context | None = None,
        curve_keys: tuple[bytes, bytes, bytes] | None = None,
        silence: float = SILENCE_S,
    ):
        """``endpoint``: the gateway's, or several (a list, or commas between them).
        ``curve_keys``: (client public, client secret, server public), from
        ``clients.settings.client_keys``, when the gateway requires CURVE. With several
        gateways, one that answers no ping for ``silence`` seconds is left."""
        self.ctx = ctx or zmq.Context.instance()
        self.gateways = Rotation(endpoint_list(endpoint), silence)
        self._curve_keys = curve_keys
        # the gateway keeps a session per connection: when the connection is made
        # again (the gateway restarted, or the network dropped) the session is gone,
        # and the next request must wait until this client has logged in again
        self.socket, self.monitor = dealer(self.ctx, self.gateways.current, curve_keys)
        self._connects = 0
        self._stale = False  # remade since the last log-in: log in before sending
        self._dropped = False  # the connection dropped, with another gateway to go to
        self._resend_sent = False  # moved: resend what ``send`` sent, once logged in
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

    def _move(self) -> None:
        """Leave the gateway in use for the next one: a new connection, no session on
        it yet, and no token either (a token is its own gateway's)."""
        reached = self.gateways.connected
        self.close()
        self.socket, self.monitor = dealer(self.ctx, self.gateways.move(), self._curve_keys)
        self._connects = 0
        self._dropped = False
        self._token = ""
        self._stale = self._credentials is not None
        self._resend_sent = True
        raise _Moved(reached)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------

    def send(self, request) -> None:
        """Send without waiting: the answer goes to ``reports`` or ``notices``. An
        order, cancel or replace is kept until answered, and resent by its
        ``cl_ord_id`` if the client moves to another gateway meanwhile (on the same
        gateway a lost session's refusals, NOT_LOGGED_IN, go to ``notices`` as ever)."""
        self.waiting.track(request)
        self._send(request)

    def _send(self, request) -> None:
        self.socket.send(encode(request))
        if self.gateways.several:  # one gateway: nowhere to move, nothing to time
            self.gateways.sent(time.monotonic())

    def _recv(self, deadline: float, watch: bool = False):
        """The next reply; a Reports frame is unpacked into its reports. With
        ``watch``, _Reconnected when the connection was made again; with several
        gateways, _Moved when the one in use went silent or dropped (see ``_look``)."""
        look = watch or self.gateways.several
        while not self._unpacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswer("no answer from the gateway")
            wait = min(remaining, WATCH_S) if look else remaining
            if self.socket.poll(int(wait * 1000) + 1):
                self._unpacked.extend(unpack(reply_decoder.decode(self.socket.recv())))
            elif look:
                self._look(watch)
        return self._unpacked.popleft()

    def _look(self, watch: bool) -> None:
        """Between waits: with several gateways, leave one that dropped the connection
        or answers nothing, not even a ping (_Moved), and ping one that has gone quiet
        while an answer is due; with ``watch``, _Reconnected if the connection was
        made again since the last log-in."""
        self._remade()
        rotation = self.gateways
        if rotation.several:
            verdict = rotation.check(time.monotonic())
            if self._dropped or verdict == GONE:
                self._move()
            if verdict == PROBE:
                self._send(Ping(0))
                rotation.probed(time.monotonic())
        if watch and self._stale:
            raise _Reconnected

    def _remade(self) -> bool:
        """Whether the connection was made again since the last log-in (read from the
        socket's monitor: every connection after the first); notes a dropped one."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self.gateways.connected = True
                self._connects += 1
                if self._connects > 1 and self._credentials is not None:
                    self._stale = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._dropped = self.gateways.dropped()
        return self._stale

    def _route(self, reply, handle) -> bool:
        """Whether ``reply`` answers the call waiting on ``handle``. An answer to
        another call is kept for it; reports and notices nobody waits for are queued."""
        answered = self.waiting.answer(reply)
        if self.gateways.several:
            self.gateways.heard(time.monotonic(), self.waiting.due())
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
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            self._send(request)
            while True:
                try:
                    return self._await(handle, deadline)
                except _Moved as moved:  # to the next gateway: the same request there
                    if type(request) is Signup and moved.reached:
                        raise NoAnswer("the gateway went away: the account may exist") from None
                    if type(request) in SESSION_REQUESTS:
                        self._stale = False  # this log-in makes the session there
                    self._send(request)
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
        if watch or self.gateways.several:
            try:
                self._look(watch)
            except _Reconnected:
                if watch:
                    self._restore()
        handle = object()
        self.waiting.add(request, handle)
        relogins = 0
        try:
            self._send(request)
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
                    self._send(request)
        finally:
            self.waiting.discard(request, handle)
            self._early.pop(handle, None)

    def _next(self, queue: deque, timeout: float | None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not queue:
            try:
                self._route(self._recv(deadline), None)
            except _Moved:
                self._follow()
        return queue.popleft()

    def _follow(self) -> None:
        """Log in on the gateway just moved to (if logged in at all); if that cannot be
        done now, the next request tries again."""
        if self._credentials is None:
            return
        try:
            self._restore()
        except NoAnswer:
            self._stale = True

    def next_report(self, timeout: float | None = None) -> Report:
        """The next execution report no call took as its answer."""
        return self._next(self.reports, timeout)

    def next_notice(self, timeout: float | None = None) -> Notice | RequestRejected:
        """The next notice, or gateway reject no call took as its answer (the answer
        to a request sent with ``send``, say)."""
        return self._next(self.notices, timeout)

    def drain_reports(self) -> list[Report]:
        """Every report already received, without waiting. With several gateways this
        is also where a loop that only sends and drains (the market maker) follows a
        silent or dropped gateway to the next."""
        if self.gateways.several:
            try:
                self._look(self._credentials is not None)
            except _Reconnected:
                self._follow()
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
        no log-in guard), or, if the gateway forgot it (a restart; or this is another
        gateway), log in. After a move to another gateway, resend what was sent
        without waiting and is unanswered (the caller resends its own request)."""
        self._remade()  # the connections made so far are covered by this log-in
        self._stale = False
        resumed = False
        if self._token:
            try:
                self.resume(self._token)
                resumed = True
            except ExchangeError as exc:
                if exc.code != Reject.BAD_TOKEN:
                    raise
        if not resumed:
            self.login(*self._credentials)
        if self._resend_sent:
            self._resend_sent = False
            for request in self.waiting.tracked():
                self._send(request)

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
        self,
        action: str,
        symbol: str = "",
        account: str = "",
        price: int = 0,
        amount: int = 0,
        state: int = 0,
    ) -> OrderResult:
        """Operators only: ``halt``/``resume`` a symbol, ``reference`` (a symbol's new
        reference price), ``kill``/``unkill`` an account by name, ``deposit`` ``amount``
        price units into an account by name (negative: a withdrawal), ``session``
        (move a symbol to ``state``, a ``Session``), ``end_of_day`` (end the trading
        day; the gateway names the next trading date from its calendar)."""
        return self._order(admin_request(action, symbol, account, price, amount, state), None)

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
        post_only=False, stp=Stp.DEFAULT, cl_ord_id=None, expire_date=0)`` (``expire_date``:
        YYYYMMDD, for ``Tif.GTD`` only), as ``core.order_request``."""
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


def _ask_marketdata(endpoint: str | Sequence[str], request, timeout: float, ctx):
    """Ask each snapshot endpoint in turn (``timeout`` each) until one answers."""
    ctx = ctx or zmq.Context.instance()
    for one in endpoint_list(endpoint):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(one)
        try:
            sock.send(encode(request))
            if sock.poll(int(timeout * 1000)):
                reply = feed_decoder.decode(sock.recv())
                break
        finally:
            sock.close(0)
    else:
        raise NoAnswer("no answer from marketdata")
    if isinstance(reply, FeedError):  # unknown symbol, malformed, over the rate
        raise ExchangeError(reply.code, reply.text)
    return reply


def snapshot(
    endpoint: str | Sequence[str], symbol: str, timeout: float = 5.0, ctx=None, depth: int = 0
) -> Snapshot:
    """The book of ``symbol`` (full depth, or ``depth`` levels a side) from the
    marketdata service (the first of several snapshot endpoints that answers), with
    its session state, trading date and, in a call period, indicative auction.

    >>> snapshot("tcp://127.0.0.1:5557", "AAPL").bids[:3]   # [(price, size), ...]
    """
    return _ask_marketdata(endpoint, SnapshotRequest(symbol, depth), timeout, ctx)


class SessionInfo(NamedTuple):
    """A symbol's trading session as marketdata last published it."""

    symbol: str
    state: Session  # CLOSED, PRE_OPEN, CONTINUOUS or PRE_CLOSE
    trading_date: int  # YYYYMMDD
    indicative: tuple[int, int, int, int]  # in a call: price, matched, imbalance, its side

    @property
    def in_call(self) -> bool:
        return self.state in (Session.PRE_OPEN, Session.PRE_CLOSE)


def session(endpoint: str | Sequence[str], symbol: str, timeout: float = 5.0, ctx=None):
    """``symbol``'s session state, trading date and indicative auction.

    >>> session("tcp://127.0.0.1:5557", "AAPL").state   # Session.CONTINUOUS
    """
    snap = snapshot(endpoint, symbol, timeout, ctx, depth=1)
    return SessionInfo(symbol, Session(snap.state), snap.trading_date, tuple(snap.indicative))


def recent_trades(
    endpoint: str | Sequence[str], symbol: str, limit: int = 50, timeout: float = 5.0, ctx=None
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
    "session",
    "snapshot",
]
