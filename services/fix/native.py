"""One FIX session's link to the native gateway: its own DEALER and gateway session.

The FIX service is the gateway's client like any other, so every check (validation,
rate limits, risk, exactly-once on ``cl_ord_id``) applies to FIX orders unchanged.
Answers come from the journal's committed stream (``orders.py``); this link only hears
what the gateway refuses before the matcher sees it, keeps its session alive, logs in
again if the gateway forgot it, and sends again what a failover left unanswered (the
same ``cl_ord_id``, so the matcher answers a repeat with the original).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import zmq
import zmq.asyncio

from clients.core import HEARTBEAT_S, RETRY_S, dealer, unpack
from services.common.wire import DecodeError as WireDecodeError
from services.common.wire import (
    LoggedIn,
    Login,
    Logout,
    Ping,
    Reject,
    RequestRejected,
    encode,
    reply_decoder,
)

LOGIN_TIMEOUT_S = 10.0


class LoginRefused(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class NativeLink:
    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        on_reject: Callable[[str, RequestRejected, object], None],
    ) -> None:
        self.socket, monitor = dealer(ctx, endpoint, None)
        self.socket.disable_monitor()
        monitor.close(0)
        # sends never wait: the same socket, used synchronously, raises zmq.Again at once
        self._sync = zmq.Socket.shadow(self.socket.underlying)
        self.on_reject = on_reject  # (cl_ord_id, reject, request) for a refused request
        self.inflight: dict[str, object] = {}  # cl_ord_id -> request, until answered
        self.account = 0
        self._credentials: tuple[str, str] | None = None
        self._login: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []

    async def login(self, name: str, password: str) -> LoggedIn:
        """Log in (LoginRefused with the gateway's code if it says no)."""
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._beat())]
        reply = await self._ask_login(name, password)
        self._credentials = (name, password)
        self.account = reply.account
        return reply

    async def _ask_login(self, name: str, password: str) -> LoggedIn:
        self._login = asyncio.get_running_loop().create_future()
        self._sync.send(encode(Login(name, password)), zmq.NOBLOCK)
        try:
            reply = await asyncio.wait_for(self._login, LOGIN_TIMEOUT_S)
        except TimeoutError:
            raise LoginRefused(Reject.BUSY, "the exchange did not answer the log-on") from None
        if type(reply) is RequestRejected:
            raise LoginRefused(reply.code, reply.text)
        return reply

    async def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            if self._credentials is not None:
                self._sync.send(encode(Logout()), zmq.NOBLOCK)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.socket.close(linger=200)

    def send(self, request) -> None:
        """Forward ``request`` (it carries a ``cl_ord_id``) and keep it until answered."""
        self.inflight[request.cl_ord_id] = request
        self._send(request)

    def _send(self, request) -> None:
        try:
            self._sync.send(encode(request), zmq.NOBLOCK)
        except zmq.Again:  # our own queue to the gateway is full: as the gateway's BUSY
            self._refused(RequestRejected(Reject.BUSY, "exchange busy", request.cl_ord_id))

    def answered(self, cl_ord_id: str) -> None:
        """The committed stream answered it."""
        self.inflight.pop(cl_ord_id, None)

    def _refused(self, reply: RequestRejected) -> None:
        request = self.inflight.pop(reply.ref, None)
        if request is not None:
            self.on_reject(reply.ref, reply, request)

    async def _read(self) -> None:
        while True:
            try:
                reply = reply_decoder.decode(await self.socket.recv())
            except WireDecodeError:
                continue
            for one in unpack(reply):
                kind = type(one)
                if kind is LoggedIn or (kind is RequestRejected and self._login_waiting(one)):
                    if self._login is not None and not self._login.done():
                        self._login.set_result(one)
                    continue
                if kind is not RequestRejected:
                    continue  # reports: the committed stream tells the FIX service those
                if one.code == Reject.NOT_LOGGED_IN:
                    asyncio.create_task(self._again())
                elif one.code == Reject.NOT_LEADER and one.ref in self.inflight:
                    asyncio.get_running_loop().call_later(
                        RETRY_S, self._resend, one.ref
                    )  # a failover under way: the same id again
                else:
                    self._refused(one)

    def _login_waiting(self, reply: RequestRejected) -> bool:
        return self._login is not None and not self._login.done() and reply.ref not in self.inflight

    def _resend(self, cl_ord_id: str) -> None:
        request = self.inflight.get(cl_ord_id)
        if request is not None:
            self._send(request)

    async def _again(self) -> None:
        """The gateway forgot the session (it restarted): log in, send what is unanswered."""
        if self._credentials is None or (self._login is not None and not self._login.done()):
            return
        with contextlib.suppress(LoginRefused):
            await self._ask_login(*self._credentials)
            for request in list(self.inflight.values()):
                self._send(request)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(zmq.Again):
                self._sync.send(encode(Ping(0)), zmq.NOBLOCK)
