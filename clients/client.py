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

from services.common import curve
from services.common.codec import encode, feed_decoder, reply_decoder
from services.common.protocol import (
    REJECT_TEXT,
    Accepted,
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
        self.socket.connect(endpoint)
        self.timeout = timeout
        self.reports: deque[Report] = deque()
        # notices and gateway rejects that no call was waiting for (e.g. a failover
        # notice, or the reject of an order sent with ``send``), newest last
        self.notices: deque[Notice | RequestRejected] = deque(maxlen=1_000)
        self._unpacked: deque[Report] = deque()  # the rest of a Reports frame, unread
        self.account: int | None = None
        self._credentials: tuple[str, str] | None = None  # to log in again if forgotten

    def close(self) -> None:
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

    def _recv(self, deadline: float):
        if self._unpacked:
            return self._unpacked.popleft()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self.socket.poll(int(remaining * 1000) + 1):
            raise NoAnswer("no answer from the gateway")
        return self._decode()

    def _await(self, accept, timeout: float | None = None):
        """The first reply for which ``accept(reply)`` is true; reports are queued."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._recv(deadline)
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
        reply = self._await(lambda r: isinstance(r, LoggedIn | RequestRejected))
        raise_for(reply)
        self.account = reply.account
        self._credentials = (name, password)
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
        reject). If the gateway forgot the session (it restarted, or the session went
        silent too long) log in again and resend once: an order's cl_ord_id makes the
        resend exactly-once."""
        self.send(request)
        reply = self._await(accept, timeout)
        if (
            type(reply) is RequestRejected
            and reply.code == Reject.NOT_LOGGED_IN
            and self._credentials is not None
        ):
            self.login(*self._credentials)
            self.send(request)
            reply = self._await(accept, timeout)
        raise_for(reply)
        return reply

    def resume(self, token: str) -> LoggedIn:
        """Attach this connection to a session by its token (no password sent)."""
        self.send(Resume(token))
        reply = self._await(lambda r: isinstance(r, LoggedIn | RequestRejected))
        raise_for(reply)
        self.account = reply.account
        return reply

    def change_password(self, old: str, new: str, cl_ord_id: str | None = None) -> OrderResult:
        """Change this account's password; every other session of it is logged out."""
        result = self._answer_for(ChangePassword(cl_ord_id or new_cl_ord_id(), old, new), None)
        if self._credentials is not None:
            self._credentials = (self._credentials[0], new)
        return result

    def admin(
        self, action: str, symbol: str = "", account: str = "", price: int = 0
    ) -> OrderResult:
        """Operators only: ``halt``/``resume`` a symbol, ``reference`` (a symbol's new
        reference price), ``kill``/``unkill`` an account by name."""
        request = AdminRequest(new_cl_ord_id(), action, symbol, account, price)
        return self._answer_for(request, None)

    def logout(self) -> None:
        """End the session (its token with it) and wait until the gateway has: a socket
        closed right after would otherwise drop the request and leave the session to
        time out, counted against the account's session limit until it does."""
        self.send(Logout())
        self._await(lambda r: isinstance(r, LoggedOut))
        self.account = None
        self._credentials = None

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
        return self._request(GetOrders(), lambda r: isinstance(r, Orders | RequestRejected))

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
        return feed_decoder.decode(sock.recv())
    finally:
        sock.close(0)


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
