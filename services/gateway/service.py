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

import zmq

from services.common import curve, snapfile
from services.common.beats import BeatSender
from services.common.codec import DecodeError, bus_decoder, encode, request_decoder
from services.common.config import Config, matcher_endpoints
from services.common.frames import NOBLOCK, recv_frames, send_pair
from services.common.protocol import (
    ACCOUNT_NAME_RE,
    FILLS_KEPT,
    REJECT_TEXT,
    Admin,
    AdminRequest,
    CancelRequest,
    ChangePassword,
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
    PasswordChanged,
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
    Resume,
    SetPassword,
    Signup,
)
from services.common.runtime import tune_gc
from services.common.status import current_primary, latest_status, status_socket
from services.common.stream import Follower
from services.gateway import passwords, validate
from services.gateway.accounts import AccountView
from services.gateway.sessions import Limits, SessionTable

DRAIN_FRAMES = 512
MAX_INFLIGHT = 20_000
MAX_FRAME = 64 * 1024
MAX_HASHING = 64  # password hashes queued for the pool; past it, BUSY
# the answer to a connection not logged in past its rate: made once, so refusing a
# flood costs a receive and a send per frame, no decoding and no encoding
RATE_LIMITED_ANONYMOUS = encode(
    RequestRejected(Reject.RATE_LIMITED, REJECT_TEXT[Reject.RATE_LIMITED] + ": not logged in")
)


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
        # clients must hold an authorized key when CURVE is on (docs/security.md)
        self.auth = curve.serve(self.ctx, self.front, cfg) if curve.enabled(cfg) else None
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
        client_beat = cfg.timings.get("client_heartbeat_ms", 1_000) / 1000
        self.session_timeout = 3 * client_beat
        # how often silent sessions are looked for: a session goes between three and
        # four client heartbeats after it fell silent (at most a second late)
        self.expiry_every = min(1.0, client_beat)
        security = cfg.security
        self.sessions = SessionTable(
            Limits.from_config(security), frozenset(security.get("operators", ()))
        )
        self.inflight: OrderedDict[tuple, tuple[bytes, object]] = OrderedDict()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="passwords")
        self.hashing: list[tuple[Future, bytes, object]] = []
        self.outbox: list = []  # commands to forward at the end of this loop turn
        self.running = True

    # -- replies --------------------------------------------------------------

    def reply(self, ident: bytes, message) -> None:
        self.reply_raw(ident, encode(message))

    def reply_raw(self, ident: bytes, frame: bytes) -> None:
        try:
            send_pair(self.front, ident, frame, NOBLOCK)
        except zmq.Again:
            self.log.warning("client_queue_full")  # a client that does not read

    def reject(self, ident: bytes, code: int, ref: str = "", detail: str = "") -> None:
        text = REJECT_TEXT[code] + (f": {detail}" if detail else "")
        self.reply(ident, RequestRejected(code, text, ref))

    # -- requests -------------------------------------------------------------

    def _handle(self, ident: bytes, payload: bytes, now: float) -> None:
        if len(payload) > MAX_FRAME:  # MAXMSGSIZE drops these first; this is the backstop
            self.reject(ident, Reject.MALFORMED, detail=f"frame over {MAX_FRAME} bytes")
            return
        session = self.sessions.get(ident)
        if session is None and not self.sessions.allow_anonymous(ident, now):
            self.reply_raw(ident, RATE_LIMITED_ANONYMOUS)
            return
        try:
            req = request_decoder.decode(payload)
        except DecodeError as exc:
            self.reject(ident, Reject.MALFORMED, detail=str(exc)[:200])
            return
        if session is not None:
            session.last_seen = now
            if not self.sessions.allow(session, now):
                ref = getattr(req, "cl_ord_id", "")
                self.reject(ident, Reject.RATE_LIMITED, ref if validate.cl_ord_id_ok(ref) else "")
                return
        kind = type(req)
        if kind is Ping:
            self.reply(ident, Pong(req.nonce))
        elif kind is Signup:
            self._signup(ident, req)
        elif kind is Login:
            self._login(ident, req, now)
        elif kind is Resume:
            answer = self.sessions.resume(ident, req.token, now)
            if isinstance(answer, LoggedIn):
                self.reply(ident, answer)
            else:
                self.reject(ident, answer)
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
        elif kind is ChangePassword:
            self._change_password(ident, session, req, now)
        elif kind is AdminRequest:
            self._admin(ident, session, req)
        elif kind is Logout:
            self.sessions.log_out(ident)
            self.reply(ident, LoggedOut())

    def _signup(self, ident: bytes, req: Signup) -> None:
        if not ACCOUNT_NAME_RE.fullmatch(req.name):
            self.reject(ident, Reject.BAD_NAME, req.name[:40])
        elif not passwords.policy_ok(req.password):
            self.reject(ident, Reject.WEAK_PASSWORD, req.name)
        elif req.name in self.view.names:
            self.reject(ident, Reject.NAME_TAKEN, req.name)
        else:
            self._hash_later(ident, req, passwords.hash_password, req.password)

    def _hash_later(self, ident: bytes, req, fn, *args) -> None:
        """Run a slow hash on the pool; a bounded queue, so a flood gets BUSY."""
        if len(self.hashing) >= MAX_HASHING:
            self.reject(ident, Reject.BUSY, getattr(req, "cl_ord_id", ""))
            return
        self.hashing.append((self.pool.submit(fn, *args), ident, req))

    def _login(self, ident: bytes, req: Login, now: float) -> None:
        if not self.sessions.guard.allowed(req.name, now):
            self.reject(ident, Reject.TOO_MANY_ATTEMPTS, req.name[:40])
            return
        account = self.view.names.get(req.name)
        stored = self.view.hashes.get(account, passwords.DUMMY_HASH)
        if len(req.password) > passwords.MAX_PASSWORD:
            self.reject(ident, Reject.BAD_CREDENTIALS, req.name[:40])
            return
        self._hash_later(ident, req, passwords.verify, req.password, stored)

    def _change_password(self, ident: bytes, session, req: ChangePassword, now: float) -> None:
        if not validate.cl_ord_id_ok(req.cl_ord_id):
            self.reject(ident, Reject.BAD_CL_ORD_ID)
        elif not passwords.policy_ok(req.new_password):
            self.reject(ident, Reject.WEAK_PASSWORD, req.cl_ord_id)
        elif not self.sessions.guard.allowed(session.name, now):
            self.reject(ident, Reject.TOO_MANY_ATTEMPTS, req.cl_ord_id)
        elif len(req.old_password) > passwords.MAX_PASSWORD:
            self.reject(ident, Reject.BAD_CREDENTIALS, req.cl_ord_id)
        else:
            stored = self.view.hashes.get(session.account, passwords.DUMMY_HASH)
            self._hash_later(
                ident, req, passwords.change, req.old_password, stored, req.new_password
            )

    def _admin(self, ident: bytes, session, req: AdminRequest) -> None:
        """Operators only; the names and symbols are resolved here, the rest is the
        engine's, sequenced and journaled like an order."""
        code, target = 0, 0
        if not session.operator:
            code = Reject.NOT_AUTHORIZED
        elif req.action in ("kill", "unkill"):
            target = self.view.names.get(req.account, 0)
            code = 0 if target else Reject.UNKNOWN_ACCOUNT
        elif req.symbol not in self.cfg.symbols:
            code = Reject.UNKNOWN_SYMBOL
        elif req.action == "reference" and not 0 < req.price <= validate.MAX_PRICE:
            code = Reject.BAD_PRICE
        cmd = Admin(session.account, req.cl_ord_id, req.action, req.symbol, target, req.price)
        self._forward(ident, session, req, code or validate.check_cl_ord_id(req), cmd)

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
            if isinstance(req, ChangePassword):
                session = self.sessions.get(ident)
                new_hash = future.result()
                if session is None:
                    self.reject(ident, Reject.NOT_LOGGED_IN, req.cl_ord_id)
                elif not new_hash:
                    self.sessions.guard.failed(session.name, now)
                    self.reject(ident, Reject.BAD_CREDENTIALS, req.cl_ord_id)
                else:
                    cmd = SetPassword(session.account, req.cl_ord_id, new_hash)
                    self._forward(ident, session, req, 0, cmd)
                continue
            account = self.view.names.get(req.name)
            if not (future.result() and account is not None):
                self.sessions.guard.failed(req.name, now)
                self.reject(ident, Reject.BAD_CREDENTIALS, req.name[:40])
                continue
            self.sessions.guard.succeeded(req.name)
            answer = self.sessions.open(ident, account, req.name, now)
            if isinstance(answer, LoggedIn):
                self.reply(ident, answer)
                self.log.info("login", account=account, operator=answer.operator)
            else:
                self.reject(ident, answer, req.name[:40])
        self.hashing = still

    def _forward(self, ident: bytes, session, req, code: int, cmd=None) -> None:
        """Sequence ``cmd`` (by default the order command ``req`` makes) unless ``code``
        rejects it; a repeat of an id still in flight is answered once, when committed."""
        ref = getattr(req, "cl_ord_id", "")
        if code:
            self.reject(ident, code, ref if validate.cl_ord_id_ok(ref) else "")
            return
        if len(self.inflight) >= MAX_INFLIGHT:
            self.reject(ident, Reject.BUSY, ref)
            return
        cmd = cmd or validate.to_command(session.account, req)
        key = (session.account, req.cl_ord_id)
        if key not in self.inflight:  # a repeat in flight is answered once, when committed
            self.inflight[key] = (ident, cmd)
            self.outbox.append(cmd)

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
        curve.link(self.back, endpoint)
        changed = self.primary is not None
        self.primary, self.epoch = endpoint, epoch
        self.log.info("primary", endpoint=endpoint, epoch=epoch, resend=len(self.inflight))
        # everything not yet seen committed goes again, in the order first sent (the
        # outbox is a subset of the in-flight table); repeats get their original answer
        self.outbox = [cmd for _, cmd in self.inflight.values()]
        if changed:
            for ident in list(self.sessions.by_ident):
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
            entry = self.inflight.pop((cmd.account, cmd.cl_ord_id), None)
            by_account: dict[int, list] = {}
            for event in record.events:
                if type(event) is Fill:
                    by_account.setdefault(event.taker_account, []).append(event)
                    if event.maker_account != event.taker_account:
                        by_account.setdefault(event.maker_account, []).append(event)
                else:  # an operator's symbol events go to the operator
                    by_account.setdefault(getattr(event, "account", cmd.account), []).append(event)
            if type(cmd) is Admin:  # the operator sees everything the action did
                by_account[cmd.account] = list(record.events)
            if type(record.events[0]) is PasswordChanged:  # end every other session
                self.sessions.end_others(cmd.account, entry[0] if entry else None)
            for account, events in by_account.items():
                idents = self.sessions.by_account.get(account)
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
        self.sessions.expire(now, self.session_timeout)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        for record in self.follower.catch_up_patiently(lambda: self.running, self.log):
            self.view.apply(record)
        self.log.info("ready", seq=self.view.seq, accounts=len(self.view.names))
        for name in sorted(self.sessions.operators - self.view.names.keys()):
            # whoever signs this name up first becomes an operator: create it before
            # listing it (docs/security.md)
            self.log.warning("operator_unclaimed", name=name)
        next_expiry = next_keys = 0.0
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
                    if self.auth is not None and now >= next_keys:
                        curve.reload(self.auth, self.cfg)  # keys added since take effect
                        next_keys = now + 5.0
                    next_expiry = now + self.expiry_every
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for sock in (self.front, self.back, self.status):
                if sock is not None:
                    sock.close(0)
            if self.auth is not None:
                self.auth.stop()
            self.follower.close()
            self.beats.close()
            self.snapshots.close()
        return 0
