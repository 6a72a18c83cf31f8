"""The gateway: the exchange's front door for traders and bots.

It owns sessions, validates every frame (hostile input is normal), hashes and checks
passwords on worker threads, forwards commands to the primary matcher in batches, and
answers users only from the committed stream, so nothing it says can be undone.
Commands it forwarded but has not yet seen committed stay in an in-flight table; when
the heartbeat service names a new primary they are all sent again, and the matcher's
exactly-once table turns repeats into the original answers.
"""

from __future__ import annotations

import signal
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import zmq

from services.common import snapfile
from services.common.beats import BeatSender
from services.common.codec import DecodeError, bus_decoder, encode, request_decoder
from services.common.config import Config, matcher_endpoints
from services.common.frames import NOBLOCK, recv_frames, send_pair
from services.common.protocol import (
    ACCOUNT_NAME_RE,
    FILLS_KEPT,
    REJECT_TEXT,
    CancelRequest,
    CommandBatch,
    CreateAccount,
    Fill,
    Fills,
    GetFills,
    GetOrders,
    GetPositions,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    MatcherBusy,
    Notice,
    Orders,
    Ping,
    PlaceOrder,
    Pong,
    Positions,
    Record,
    Reject,
    ReplaceRequest,
    Report,
    Reports,
    RequestRejected,
    Signup,
)
from services.common.runtime import tune_gc
from services.common.status import current_primary, latest_status, status_socket
from services.common.stream import Follower
from services.gateway import passwords, validate
from services.gateway.accounts import AccountView

DRAIN_FRAMES = 512
MAX_INFLIGHT = 20_000
MAX_FRAME = 64 * 1024


@dataclass
class Session:
    account: int
    name: str
    last_seen: float


class Gateway:
    def __init__(self, cfg: Config, log) -> None:
        self.cfg = cfg
        self.log = log
        self.ctx = zmq.Context.instance()
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        self.front.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        self.front.setsockopt(zmq.SNDHWM, 100_000)
        self.front.setsockopt(zmq.RCVHWM, 100_000)
        self.front.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.front.bind(cfg.endpoints["gateway"])
        self.back: zmq.Socket | None = None
        self.primary: str | None = None  # endpoint of the primary matcher
        self.epoch = 0
        self.status = status_socket(self.ctx, cfg.endpoints["status_pub"])
        every = int(cfg.gateway.get("snapshot_every", 50_000))
        self.snapshots = snapfile.Snapshots(cfg.home, "gateway", every, log)
        self.view = self.snapshots.load(AccountView.restore) or AccountView()
        self.follower = Follower(
            self.ctx,
            cfg.endpoints["journal_pub"],
            cfg.endpoints["journal_read"],
            self.view.seq + 1,
        )
        heartbeat_ms = cfg.timings.get("heartbeat_ms", 100)
        self.beats = BeatSender(self.ctx, cfg.endpoints["heartbeat"], "gateway", heartbeat_ms)
        self.session_timeout = 3 * cfg.timings.get("client_heartbeat_ms", 1_000) / 1000
        self.sessions: dict[bytes, Session] = {}
        self.by_account: dict[int, set[bytes]] = {}
        self.inflight: OrderedDict[tuple, tuple[bytes, object]] = OrderedDict()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="passwords")
        self.hashing: list[tuple[Future, bytes, object]] = []
        self.outbox: list = []  # commands to forward at the end of this loop turn
        self.running = True

    # -- replies --------------------------------------------------------------

    def reply(self, ident: bytes, message) -> None:
        try:
            send_pair(self.front, ident, encode(message), NOBLOCK)
        except zmq.Again:
            self.log.warning("client_queue_full")  # a client that does not read

    def reject(self, ident: bytes, code: int, ref: str = "", detail: str = "") -> None:
        text = REJECT_TEXT[code] + (f": {detail}" if detail else "")
        self.reply(ident, RequestRejected(code, text, ref))

    # -- requests -------------------------------------------------------------

    def _handle(self, ident: bytes, payload: bytes, now: float) -> None:
        try:
            req = request_decoder.decode(payload)
        except DecodeError as exc:
            self.reject(ident, Reject.MALFORMED, detail=str(exc)[:200])
            return
        session = self.sessions.get(ident)
        if session is not None:
            session.last_seen = now
        kind = type(req)
        if kind is Ping:
            self.reply(ident, Pong(req.nonce))
        elif kind is Signup:
            self._signup(ident, req)
        elif kind is Login:
            self._login(ident, req)
        elif session is None:
            self.reject(ident, Reject.NOT_LOGGED_IN)
        elif kind is PlaceOrder:
            self._forward(ident, session, req, validate.check_order(self.cfg, req))
        elif kind is CancelRequest:
            self._forward(ident, session, req, validate.check_cancel(req))
        elif kind is ReplaceRequest:
            self._forward(ident, session, req, validate.check_replace(self.cfg, req))
        elif kind is GetPositions:
            account = session.account
            self.reply(
                ident,
                Positions(
                    account,
                    self.view.cash.get(account, 0),
                    dict(self.view.positions.get(account, {})),
                    self.view.seq,
                ),
            )
        elif kind is GetOrders:
            self.reply(
                ident,
                Orders(session.account, self.view.open_orders(session.account), self.view.seq),
            )
        elif kind is GetFills:
            account = session.account
            fills = self.view.recent_fills(account, req.symbol, min(req.limit, FILLS_KEPT))
            self.reply(ident, Fills(account, fills, self.view.seq))
        elif kind is Logout:
            self._drop_session(ident)
            self.reply(ident, LoggedOut())

    def _signup(self, ident: bytes, req: Signup) -> None:
        if not ACCOUNT_NAME_RE.fullmatch(req.name):
            self.reject(ident, Reject.BAD_NAME, req.name[:40])
        elif not passwords.policy_ok(req.password):
            self.reject(ident, Reject.WEAK_PASSWORD, req.name)
        elif req.name in self.view.names:
            self.reject(ident, Reject.NAME_TAKEN, req.name)
        else:
            future = self.pool.submit(passwords.hash_password, req.password)
            self.hashing.append((future, ident, req))

    def _login(self, ident: bytes, req: Login) -> None:
        account = self.view.names.get(req.name)
        stored = self.view.hashes.get(account, passwords.DUMMY_HASH)
        if len(req.password) > passwords.MAX_PASSWORD:
            self.reject(ident, Reject.BAD_CREDENTIALS, req.name[:40])
            return
        future = self.pool.submit(passwords.verify, req.password, stored)
        self.hashing.append((future, ident, req))

    def _finish_hashing(self, now: float) -> None:
        still: list = []
        for future, ident, req in self.hashing:
            if not future.done():
                still.append((future, ident, req))
                continue
            if isinstance(req, Signup):
                key = ("signup", req.name)
                if key in self.inflight:
                    self.reject(ident, Reject.NAME_TAKEN, req.name)
                    continue
                cmd = CreateAccount(req.name, future.result())
                self.inflight[key] = (ident, cmd)
                self.outbox.append(cmd)
                continue
            account = self.view.names.get(req.name)
            if future.result() and account is not None:
                self._drop_session(ident)
                self.sessions[ident] = Session(account, req.name, now)
                self.by_account.setdefault(account, set()).add(ident)
                self.reply(ident, LoggedIn(account, req.name))
                self.log.info("login", account=account)
            else:
                self.reject(ident, Reject.BAD_CREDENTIALS, req.name[:40])
        self.hashing = still

    def _forward(self, ident: bytes, session: Session, req, code: int) -> None:
        ref = getattr(req, "cl_ord_id", "")
        if code:
            self.reject(ident, code, ref if validate.cl_ord_id_ok(ref) else "")
            return
        if len(self.inflight) >= MAX_INFLIGHT:
            self.reject(ident, Reject.BUSY, ref)
            return
        cmd = validate.to_command(session.account, req)
        key = (session.account, req.cl_ord_id)
        if key not in self.inflight:  # a repeat in flight is answered once, when committed
            self.inflight[key] = (ident, cmd)
            self.outbox.append(cmd)

    def _drop_session(self, ident: bytes) -> None:
        session = self.sessions.pop(ident, None)
        if session is not None:
            idents = self.by_account.get(session.account)
            if idents:
                idents.discard(ident)

    # -- matcher side ---------------------------------------------------------

    def _send_outbox(self) -> None:
        if not self.outbox:
            return
        commands, self.outbox = self.outbox, []
        if self.back is None:
            self._busy(commands, Reject.NOT_LEADER)
            return
        try:
            self.back.send(encode(CommandBatch(commands)), zmq.NOBLOCK)
        except zmq.Again:
            self._busy(commands, Reject.BUSY)

    def _busy(self, commands: list, code: int) -> None:
        """Commands the matcher did not take: their senders are told, and may resend."""
        for cmd in commands:
            key = (
                ("signup", cmd.name)
                if isinstance(cmd, CreateAccount)
                else (cmd.account, cmd.cl_ord_id)
            )
            entry = self.inflight.pop(key, None)
            if entry is not None:
                self.reject(entry[0], code, key[1])

    def _from_matcher(self) -> None:
        while True:
            try:
                payload = self.back.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = bus_decoder.decode(payload)
            except DecodeError:
                continue
            if isinstance(msg, MatcherBusy):
                self._busy(msg.commands, msg.code)

    def _on_status(self) -> None:
        """Follow the heartbeat service's word on who is primary; resend in-flight."""
        primary = current_primary(latest_status(self.status))
        if primary is not None:
            self._connect_primary(*primary)

    def _connect_primary(self, instance: str, epoch: int) -> None:
        endpoint = matcher_endpoints(self.cfg, instance)[0]
        if endpoint == self.primary and epoch == self.epoch:
            return
        if self.back is not None:
            self.back.close(0)
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.setsockopt(zmq.LINGER, 0)
        self.back.setsockopt(zmq.SNDHWM, 1_000)
        self.back.connect(endpoint)
        changed = self.primary is not None
        self.primary, self.epoch = endpoint, epoch
        self.log.info("primary", endpoint=endpoint, epoch=epoch, resend=len(self.inflight))
        # everything not yet seen committed goes again, in the order first sent (the
        # outbox is a subset of the in-flight table); repeats get their original answer
        self.outbox = [cmd for _, cmd in self.inflight.values()]
        if changed:
            for ident in list(self.sessions):
                self.reply(ident, Notice(f"matcher failover handled (epoch {epoch})"))

    def _committed(self, records: list[Record]) -> None:
        """Apply committed records to the view and send each account its reports, one
        frame per session for the whole drain (a Reports when there are several)."""
        outgoing: dict[bytes, list[Report]] = {}
        for record in records:
            self.view.apply(record)
            cmd = record.command
            if isinstance(cmd, CreateAccount):
                entry = self.inflight.pop(("signup", cmd.name), None)
                if entry is not None:
                    self.reply(entry[0], Report(record.seq, record.epoch, record.events))
                continue
            self.inflight.pop((cmd.account, cmd.cl_ord_id), None)
            by_account: dict[int, list] = {}
            for event in record.events:
                if type(event) is Fill:
                    by_account.setdefault(event.taker_account, []).append(event)
                    if event.maker_account != event.taker_account:
                        by_account.setdefault(event.maker_account, []).append(event)
                else:
                    by_account.setdefault(event.account, []).append(event)
            for account, events in by_account.items():
                idents = self.by_account.get(account)
                if idents:
                    report = Report(record.seq, record.epoch, events)
                    for ident in idents:
                        outgoing.setdefault(ident, []).append(report)
        for ident, reports in outgoing.items():
            try:
                message = reports[0] if len(reports) == 1 else Reports(reports)
                send_pair(self.front, ident, encode(message), NOBLOCK)
            except zmq.Again:
                self.log.warning("client_queue_full", reports=len(reports))

    # -- loop -----------------------------------------------------------------

    def _expire_sessions(self, now: float) -> None:
        for ident, session in list(self.sessions.items()):
            if now - session.last_seen > self.session_timeout:
                self._drop_session(ident)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        for record in self.follower.catch_up_patiently(lambda: self.running, self.log):
            self.view.apply(record)
        self.log.info("ready", seq=self.view.seq, accounts=len(self.view.names))
        next_expiry = 0.0
        poller = zmq.Poller()
        for sock in (self.front, self.follower.sub, self.status):
            poller.register(sock, zmq.POLLIN)
        polled_back = None  # the matcher socket the poller watches (a failover swaps it)
        tune_gc()
        try:
            while self.running:
                if self.back is not polled_back:
                    if polled_back is not None:
                        poller.unregister(polled_back)
                    if self.back is not None:
                        poller.register(self.back, zmq.POLLIN)
                    polled_back = self.back
                ready = dict(poller.poll(5 if self.hashing else 100))
                now = time.monotonic()
                if self.status in ready:
                    self._on_status()
                if self.front in ready:
                    for _ in range(DRAIN_FRAMES):
                        try:
                            frames = recv_frames(self.front)
                        except zmq.Again:
                            break
                        if len(frames) != 2:
                            self.reject(frames[0], Reject.MALFORMED, detail="one frame expected")
                            continue
                        self._handle(frames[0], frames[1], now)
                if self.hashing:
                    self._finish_hashing(now)
                self._send_outbox()
                if self.back is not None and self.back in ready:
                    self._from_matcher()
                if self.follower.sub in ready or self.follower.source_seq > self.view.seq:
                    self._committed(self.follower.drain())
                    if self.snapshots.due(self.view.seq):
                        self.snapshots.write(self.view.seq, self.view.snapshot())
                if self.beats.due():
                    self.beats.send("gateway", self.epoch, self.view.seq, self.follower.source_seq)
                if now >= next_expiry:
                    self._expire_sessions(now)
                    next_expiry = now + 1.0
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for sock in (self.front, self.back, self.status):
                if sock is not None:
                    sock.close(0)
            self.follower.close()
            self.beats.close()
        return 0
