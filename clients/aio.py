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
says so. Given several gateways, a guard task moves to the next when the one in use
drops the connection or answers nothing, not even a ping (``clients.core.Rotation``),
then logs in there and resends what is unanswered the same way.

    async with AsyncClient("tcp://127.0.0.1:5555") as c:
        await c.login("alice", "Secret.pw1")
        result = await c.place("AAPL", Side.BUY, 100, to_units("170.50"))
        async for report in c.reports():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from clients.core import (
    GONE,
    HEARTBEAT_S,
    PROBE,
    RETRY_LOGIN,
    RETRY_S,
    SILENCE_S,
    ExchangeError,
    NoAnswer,
    OrderPages,
    OrderResult,
    Rotation,
    Waiting,
    cancel_request,
    dealer,
    endpoint_list,
    order_request,
    order_result,
    raise_for,
    replace_request,
    retry_later,
    session_lost,
    signed_up,
    unpack,
)
from services.common.wire import (
    Fills,
    GetFills,
    GetPositions,
    LoggedIn,
    Login,
    Notice,
    Orders,
    Ping,
    Positions,
    Reject,
    Report,
    RequestRejected,
    Resume,
    Signup,
    encode,
    reply_decoder,
)

WATCH_S = 0.1  # how often the guard looks at the gateway in use (several gateways)


class AsyncClient:
    def __init__(
        self,
        endpoint: str | Sequence[str],
        timeout: float = 10.0,
        ctx: zmq.asyncio.Context | None = None,
        curve_keys: tuple[bytes, bytes, bytes] | None = None,
        silence: float = SILENCE_S,
    ) -> None:
        """``endpoint``, ``curve_keys`` and ``silence`` as for ``Client``: one gateway
        or several; (client public, client secret, server public) from
        ``clients.settings.client_keys``, when CURVE is on."""
        self.ctx = ctx or zmq.asyncio.Context.instance()
        self.gateways = Rotation(endpoint_list(endpoint), silence)
        self._curve_keys = curve_keys
        # sessions are per connection: a remade connection has none (see ``_watch``)
        self.socket, self.monitor = dealer(self.ctx, self.gateways.current, curve_keys)
        self._connects = 0
        self._dropped = asyncio.Event()  # the connection dropped, with elsewhere to go
        self.timeout = timeout
        self.account: int | None = None
        self.notices: asyncio.Queue[Notice | RequestRejected] = asyncio.Queue()
        self._reports: asyncio.Queue[Report] = asyncio.Queue()
        self.waiting = Waiting()  # requests sent, each with the future of its answer
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
            asyncio.create_task(self._watch()),
            asyncio.create_task(self._beat()),
        ]
        if self.gateways.several:
            self._tasks.append(asyncio.create_task(self._guard()))

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
        if self.gateways.several:  # one gateway: nowhere to move, nothing to time
            self.gateways.sent(time.monotonic())

    async def _read(self) -> None:
        while True:
            reply = reply_decoder.decode(await self.socket.recv())
            for one in unpack(reply):
                self._dispatch(one)

    def _dispatch(self, reply) -> None:
        """Every report to ``reports()``; an answer to its waiter (``Waiting``);
        notices and rejects nobody waits for to ``notices``."""
        if type(reply) is Report:
            self._reports.put_nowait(reply)
        if session_lost(reply) and self._credentials is not None:
            self._log_in_again(restart=False)
            return  # an answer to a request sent before the session was restored
        answered = self.waiting.answer(reply)
        if self.gateways.several:
            self.gateways.heard(time.monotonic(), self.waiting.due())
        for future in answered:
            if not future.done():
                future.set_result(reply)
        if not answered and isinstance(reply, Notice | RequestRejected):
            self.notices.put_nowait(reply)

    async def _watch(self) -> None:
        """Every connection after the first is a new one, without a session."""
        while True:
            event = parse_monitor_message(await self.monitor.recv_multipart())
            if event["event"] == zmq.EVENT_CONNECTED:
                self.gateways.connected = True
                self._connects += 1
                if self._connects > 1 and self._credentials is not None:
                    self._log_in_again(restart=True)
            elif event["event"] == zmq.EVENT_DISCONNECTED and self.gateways.dropped():
                self._dropped.set()

    async def _guard(self) -> None:
        """Several gateways: ping the one in use when it has gone quiet while an answer
        is due; leave it for the next when it answers nothing or drops the connection."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dropped.wait(), WATCH_S)
            verdict = self.gateways.check(time.monotonic())
            if self._dropped.is_set() or verdict == GONE:
                await self._move()
            elif verdict == PROBE:
                await self._send(Ping(0))
                self.gateways.probed(time.monotonic())

    async def _move(self) -> None:
        """To the next gateway: a new connection (and reader and watcher for it), then
        a log-in there (a token is its own gateway's) and every unanswered request
        again; not logged in, the requests waiting are sent again as they are (a
        sign-up only if the gateway left was never reached)."""
        reached = self.gateways.connected
        for task in self._tasks[:2]:  # the reader and the watcher of the old socket
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)
        self.socket, self.monitor = dealer(self.ctx, self.gateways.move(), self._curve_keys)
        self._connects = 0
        self._dropped.clear()
        self._token = ""
        self._tasks[:2] = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._watch()),
        ]
        if self._credentials is not None:
            self._log_in_again(restart=True)
            return
        for request in self.waiting.unanswered(sessions=True, signups=not reached):
            await self._send(request)

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
                        for future in self.waiting.abandon():
                            if not future.done():
                                future.set_result(RequestRejected(exc.code, exc.text))
                        return
                except NoAnswer:
                    pass
                await asyncio.sleep(pause)
                pause = min(2 * pause, 1.0)
            for request in self.waiting.unanswered():
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

    async def _ask(self, request, timeout: float | None = None, hold: bool = True):
        """Send ``request`` and return its answer (ExchangeError if a reject). An order
        answered NOT_LEADER is sent again until the timeout. ``hold``: wait first while
        the session is being restored (not for the requests that make a session)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            if hold:
                await self._held(deadline)
            future = loop.create_future()
            self.waiting.add(request, future)
            try:
                await self._send(request)
                reply = await self._wait(future, deadline - loop.time())
            finally:
                self.waiting.discard(request, future)
            if not retry_later(reply, deadline - loop.time()):
                raise_for(reply)
                return reply
            await asyncio.sleep(RETRY_S)  # a failover under way: the same id again

    # -- sessions -------------------------------------------------------------

    async def signup(self, name: str, password: str) -> int:
        """Create an account; returns its id."""
        return signed_up(await self._ask(Signup(name, password), hold=False))

    async def login(self, name: str, password: str) -> LoggedIn:
        reply = await self._ask(Login(name, password), hold=False)
        self.account = reply.account
        self._credentials = (name, password)
        self._token = reply.token
        return reply

    async def resume(self, token: str) -> LoggedIn:
        """Attach this connection to a session by its token (no password sent)."""
        reply = await self._ask(Resume(token), hold=False)
        self.account = reply.account
        self._token = token
        return reply

    async def alive(self, timeout: float = 2.0) -> bool:
        """Ping and wait for the answer: False means the gateway is gone or stalled."""
        try:
            await self._ask(Ping(time.monotonic_ns()), timeout, hold=False)
        except NoAnswer:
            return False
        return True

    # -- orders ---------------------------------------------------------------

    async def _order(self, request, timeout: float | None) -> OrderResult:
        return order_result(await self._ask(request, timeout), request)

    async def place(self, *order, timeout: float | None = None, **options) -> OrderResult:
        """Send an order and await its acknowledgement (ExchangeError if rejected):
        ``place(symbol, side, qty, price=0, ord_type=OrdType.LIMIT, tif=Tif.GTC,
        post_only=False, stp=Stp.DEFAULT, cl_ord_id=None, expire_date=0)`` (``expire_date``:
        YYYYMMDD, for ``Tif.GTD`` only), as ``core.order_request``."""
        return await self._order(order_request(*order, **options), timeout)

    async def cancel(self, order_id: int, cl_ord_id: str | None = None) -> OrderResult:
        return await self._order(cancel_request(order_id, cl_ord_id), None)

    async def replace(
        self, order_id: int, price: int, qty: int, cl_ord_id: str | None = None
    ) -> OrderResult:
        return await self._order(replace_request(order_id, price, qty, cl_ord_id), None)

    async def positions(self) -> Positions:
        return await self._ask(GetPositions())

    async def orders(self) -> Orders:
        """Every open order, by order id, a page at a time (see ``Client.orders``)."""
        pages = OrderPages()
        while (request := pages.next()) is not None:
            pages.add(await self._ask(request))
        return pages.result()

    async def fills(self, symbol: str = "", limit: int = 100) -> Fills:
        return await self._ask(GetFills(symbol, limit))

    async def reports(self) -> AsyncIterator[Report]:
        """Every execution report for this account, in commit order, as it arrives
        (answers to this client's own requests included)."""
        while True:
            yield await self._reports.get()


__all__ = ["AsyncClient", "ExchangeError", "NoAnswer", "OrderResult"]
