"""The asyncio client: the same requests as ``clients.client.Client``, for bots that do
several things at once.

One reader task takes every frame off the socket and hands each reply to whoever
waits for it (an order's answer by its ``cl_ord_id``, a query by its reply type);
every execution report also goes to ``reports()``, and notices to ``notices``. A
heartbeat task pings the gateway so an idle session is not dropped, and when the
session is gone (the connection was made again, as after a gateway restart, or the
gateway answers NOT_LOGGED_IN because it went silent too long) the client holds new
requests, resumes its session by token or logs in again, then resends whatever is
unanswered: orders carry their ``cl_ord_id``, so a resend is answered once
(exactly-once entry). An order answered NOT_LEADER is resent until its timeout. A
matcher failover needs nothing from the caller: the gateway resends and a ``notice``
says so.

    async with AsyncClient("tcp://127.0.0.1:5555") as c:
        await c.login("alice", "Secret.pw1")
        result = await c.place("AAPL", Side.BUY, 100, to_units("170.50"))
        async for report in c.reports():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from clients.client import (
    RETRY_S,
    ExchangeError,
    NoAnswer,
    OrderResult,
    first_answer,
    new_cl_ord_id,
    raise_for,
)
from services.common import curve
from services.common.codec import encode, reply_decoder
from services.common.wire import (
    CancelRequest,
    Duplicate,
    Fills,
    GetFills,
    GetOrders,
    GetPositions,
    LoggedIn,
    Login,
    Notice,
    Orders,
    OrdType,
    Ping,
    PlaceOrder,
    Pong,
    Positions,
    Reject,
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

HEARTBEAT_S = 1.0  # well inside the gateway's 3 x client_heartbeat_ms (6 s by default)
# rejects that answer a log-in or resume (the gateway's ``ref`` is the name or empty)
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


class AsyncClient:
    def __init__(
        self,
        endpoint: str,
        timeout: float = 10.0,
        ctx: zmq.asyncio.Context | None = None,
        curve_keys: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        """``curve_keys`` as for ``Client``: (client public, client secret, server
        public) from ``services.common.curve.client_keys``, when CURVE is on."""
        self.ctx = ctx or zmq.asyncio.Context.instance()
        self.socket = self.ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve_keys is not None:
            curve.connect(self.socket, curve_keys)
        # sessions are per connection: a remade connection has none (see ``_watch``)
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_CONNECTED)
        self._connects = 0
        self.socket.connect(endpoint)
        self.timeout = timeout
        self.account: int | None = None
        self.notices: asyncio.Queue[Notice | RequestRejected] = asyncio.Queue()
        self._reports: asyncio.Queue[Report] = asyncio.Queue()
        self._orders: dict[str, tuple[asyncio.Future, object]] = {}  # cl_ord_id -> (fut, req)
        # reply type -> (future, request) of queries waiting, oldest first
        self._queries: dict[type, deque[tuple[asyncio.Future, object]]] = defaultdict(deque)
        self._signups: dict[str, asyncio.Future] = {}
        self._credentials: tuple[str, str] | None = None
        self._token = ""  # the session's, to resume it without the password
        self._relogin: asyncio.Task | None = None
        # clear while the session is being restored: new requests wait for it, rather
        # than earn NOT_LOGGED_IN and spend the gateway's budget for connections
        # that are not logged in
        self._ready = asyncio.Event()
        self._ready.set()
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._beat()),
            asyncio.create_task(self._watch()),
        ]

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._relogin is not None:  # its outcome went to the requests it answered
            self._relogin.cancel()
            with contextlib.suppress(asyncio.CancelledError, ExchangeError, NoAnswer):
                await self._relogin
        self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)

    # -- plumbing -------------------------------------------------------------

    async def _send(self, request) -> None:
        await self.socket.send(encode(request))

    async def _read(self) -> None:
        while True:
            reply = reply_decoder.decode(await self.socket.recv())
            for one in reply.reports if type(reply) is Reports else (reply,):
                self._dispatch(one)

    def _dispatch(self, reply) -> None:
        kind = type(reply)
        if kind is Report:
            self._reports.put_nowait(reply)
            self._answer_orders(reply)
        elif kind is RequestRejected:
            self._rejected(reply)
        elif kind is Notice:
            self.notices.put_nowait(reply)
        else:  # LoggedIn, Positions, Orders, Fills, Pong: the oldest waiter of its kind
            waiting = self._queries.get(kind)
            while waiting:
                future, _ = waiting.popleft()
                if not future.done():
                    future.set_result(reply)
                    break

    def _answer_orders(self, report: Report) -> None:
        for event in report.events:
            cl_ord_id = getattr(event, "cl_ord_id", None)
            name = getattr(event, "name", None)  # account_created answers a signup
            if cl_ord_id in self._orders:
                future, _ = self._orders.pop(cl_ord_id)
                if not future.done():
                    future.set_result(report)
            elif name in self._signups:
                future = self._signups.pop(name)
                if not future.done():
                    future.set_result(report)
            elif isinstance(event, Duplicate):
                self._answer_orders(Report(report.seq, report.epoch, [event.original]))

    def _rejected(self, reply: RequestRejected) -> None:
        if reply.code == Reject.NOT_LOGGED_IN:
            if self._credentials is not None:
                self._log_in_again(restart=False)
            return  # an answer to a request sent before the session was restored
        target = None
        if reply.ref in self._orders:
            target = self._orders.pop(reply.ref)[0]
        elif reply.ref in self._signups:
            target = self._signups.pop(reply.ref)
        elif reply.code in SESSION_REJECTS and self._queries[LoggedIn]:
            target = self._queries[LoggedIn].popleft()[0]
        if target is not None and not target.done():
            target.set_result(reply)
        else:
            self.notices.put_nowait(reply)

    async def _watch(self) -> None:
        """Every connection after the first is a new one, without a session."""
        while True:
            event = parse_monitor_message(await self.monitor.recv_multipart())
            if event["event"] == zmq.EVENT_CONNECTED:
                self._connects += 1
                if self._connects > 1 and self._credentials is not None:
                    self._log_in_again(restart=True)

    def _log_in_again(self, restart: bool) -> None:
        """Hold new requests and restore the session; ``restart``: start over if a
        restore is under way (it was talking over the connection just replaced)."""
        self._ready.clear()
        if self._relogin is not None and not self._relogin.done():
            if not restart:
                return
            self._relogin.cancel()
        self._relogin = asyncio.create_task(self._login_again())

    async def _login_again(self) -> None:
        """Resume the session (or log in again if the gateway forgot it), then resend
        what is unanswered. Refusals that pass (BUSY, RATE_LIMITED, TOO_MANY_ATTEMPTS)
        are waited out; a final one answers every waiting request with it."""
        pause = RETRY_S
        try:
            while self._credentials is not None:
                try:
                    await self._restore()
                    break
                except ExchangeError as exc:
                    if exc.code not in RETRY_LOGIN:
                        self._answer_waiting(RequestRejected(exc.code, exc.text))
                        return
                except NoAnswer:
                    pass
                await asyncio.sleep(pause)
                pause = min(2 * pause, 1.0)
            for _, request in list(self._orders.values()):
                await self._send(request)
            for kind, waiting in self._queries.items():
                for _, request in list(waiting) if kind is not LoggedIn else ():
                    await self._send(request)
        finally:
            if self._relogin is asyncio.current_task():
                self._ready.set()

    async def _restore(self) -> None:
        if self._token:
            try:
                await self.resume(self._token)
                return
            except ExchangeError as exc:
                if exc.code != Reject.BAD_TOKEN:
                    raise
        await self.login(*self._credentials)

    def _answer_waiting(self, reply: RequestRejected) -> None:
        for future, _ in self._orders.values():
            if not future.done():
                future.set_result(reply)
        for kind, waiting in self._queries.items():
            for future, _ in waiting if kind is not LoggedIn else ():
                if not future.done():
                    future.set_result(reply)

    async def _held(self, deadline: float) -> None:
        """Wait, until ``deadline``, while the session is being restored."""
        if self._ready.is_set():
            return
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self._ready.wait(), max(remaining, 0))
        except TimeoutError:
            raise NoAnswer("not logged in again in time") from None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if self._credentials is not None:
                await self._send(Ping(0))

    async def _wait(self, future: asyncio.Future, timeout: float | None):
        try:
            wait = self.timeout if timeout is None else max(timeout, 0.0)
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            raise NoAnswer("no answer from the gateway") from None

    async def _query(self, request, kind: type, timeout: float | None = None, hold: bool = True):
        """``hold``: wait first while the session is being restored (not for the
        requests that restore it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        if hold:
            await self._held(deadline)
        future = loop.create_future()
        self._queries[kind].append((future, request))
        await self._send(request)
        reply = await self._wait(future, deadline - loop.time())
        raise_for(reply)
        return reply

    # -- sessions -------------------------------------------------------------

    async def signup(self, name: str, password: str) -> int:
        """Create an account; returns its id."""
        future = asyncio.get_running_loop().create_future()
        self._signups[name] = future
        await self._send(Signup(name, password))
        reply = await self._wait(future, None)
        raise_for(reply)
        return reply.events[0].account

    async def login(self, name: str, password: str) -> LoggedIn:
        reply = await self._query(Login(name, password), LoggedIn, hold=False)
        self.account = reply.account
        self._credentials = (name, password)
        self._token = reply.token
        return reply

    async def resume(self, token: str) -> LoggedIn:
        """Attach this connection to a session by its token (no password sent)."""
        reply = await self._query(Resume(token), LoggedIn, hold=False)
        self.account = reply.account
        self._token = token
        return reply

    async def alive(self, timeout: float = 2.0) -> bool:
        """Ping and wait for the pong: False means the gateway is gone or stalled."""
        try:
            await self._query(Ping(1), Pong, timeout, hold=False)
        except NoAnswer:
            return False
        return True

    # -- orders ---------------------------------------------------------------

    async def _order(self, request, timeout: float | None) -> OrderResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            await self._held(deadline)
            future = loop.create_future()
            self._orders[request.cl_ord_id] = (future, request)
            await self._send(request)
            try:
                reply = await self._wait(future, deadline - loop.time())
            finally:
                self._orders.pop(request.cl_ord_id, None)
            if not (
                type(reply) is RequestRejected
                and reply.code == Reject.NOT_LEADER
                and loop.time() + RETRY_S < deadline
            ):
                break
            await asyncio.sleep(RETRY_S)  # a failover under way: the same id again
        raise_for(reply)
        ack = first_answer(reply, request.cl_ord_id)
        return OrderResult(ack, reply.seq, list(reply.events))

    async def place(
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
        """Send an order and await its acknowledgement (ExchangeError if rejected)."""
        request = PlaceOrder(
            cl_ord_id or new_cl_ord_id(), symbol, side, qty, price, ord_type, tif, post_only, stp
        )
        return await self._order(request, timeout)

    async def cancel(self, order_id: int, cl_ord_id: str | None = None) -> OrderResult:
        return await self._order(CancelRequest(cl_ord_id or new_cl_ord_id(), order_id), None)

    async def replace(
        self, order_id: int, price: int, qty: int, cl_ord_id: str | None = None
    ) -> OrderResult:
        request = ReplaceRequest(cl_ord_id or new_cl_ord_id(), order_id, price, qty)
        return await self._order(request, None)

    async def positions(self) -> Positions:
        return await self._query(GetPositions(), Positions)

    async def orders(self) -> Orders:
        """Every open order, by order id, a page at a time (see ``Client.orders``)."""
        listed: list = []
        after = 0
        while True:
            page = await self._query(GetOrders(after), Orders)
            listed += page.orders
            if not (page.more and page.orders):
                return Orders(page.account, listed, page.seq)
            after = page.orders[-1].order_id

    async def fills(self, symbol: str = "", limit: int = 100) -> Fills:
        return await self._query(GetFills(symbol, limit), Fills)

    async def reports(self) -> AsyncIterator[Report]:
        """Every execution report for this account, in commit order, as it arrives
        (answers to this client's own requests included)."""
        while True:
            yield await self._reports.get()


__all__ = ["AsyncClient", "ExchangeError", "NoAnswer", "OrderResult"]
