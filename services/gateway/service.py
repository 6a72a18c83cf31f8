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
from concurrent.futures import Future

import zmq

from services.common import curve, snapfile
from services.common.beats import BeatSender
from services.common.bus import Admin, CommandBatch, CreateAccount, MatcherBusy, Record, SetPassword
from services.common.codec import DecodeError, bus_decoder, encode, request_decoder
from services.common.config import Config, matcher_endpoints
from services.common.frames import NOBLOCK, recv_bounded, send_pair
from services.common.runtime import tune_gc
from services.common.status import current_primary, latest_status, status_socket
from services.common.stream import Follower
from services.common.wire import (
    ACCOUNT_NAME_RE,
    FILLS_KEPT,
    ORDERS_PAGE,
    REJECT_TEXT,
    AdminRequest,
    CancelRequest,
    ChangePassword,
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
    PasswordChanged,
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
    Signup,
)
from services.gateway import passwords, reports, validate
from services.gateway.accounts import AccountView
from services.gateway.hashpool import HashPool
from services.gateway.security import FairShares
from services.gateway.sessions import SessionTable

DRAIN_FRAMES = 512
MAX_INFLIGHT = 20_000
MAX_FRAME = 64 * 1024
MAX_HASHING = 64  # password hashes queued for the pool; past it, BUSY
# fair shares of that queue: no name (an account under attack) may hold more than a
# quarter of it, no connection more than a few; past them, BUSY
HASHING_PER_NAME = MAX_HASHING // 4
HASHING_PER_CONNECTION = 4
# a client whose reply queue is full (it does not read) is choked: its requests are
# dropped unread for this long, or until a send to it goes through again
CHOKE_S = 1.0
CHOKE_LOG_S = 60.0  # a client choked again within this long is not logged again
# a message's frames kept (identity, request); more are received one by one and dropped
FRAMES_KEPT = 2
# the message tags of requests a connection needs to get a session: before log-in
# they draw on a bucket of their own (msgpack: a short array, then the tag as a
# short string), found without decoding
SESSION_TAGS = (b"\xa5login", b"\xa6signup", b"\xa6resume", b"\xa4ping")
# the answer to a connection not logged in past its rate: made once, so refusing a
# flood costs a receive and a send per frame, no decoding and no encoding
PAGE_COST = 100  # orders in an `orders` answer that cost as much as one request
RATE_TELL_S = 0.1
RATE_LIMITED_SESSION = encode(
    RequestRejected(
        Reject.RATE_LIMITED,
        REJECT_TEXT[Reject.RATE_LIMITED]
        + f": requests past the rate are dropped unanswered, told once per {RATE_TELL_S} s",
    )
)
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
        limits = cfg.security
        # per peer: a client that does not read cannot make us queue without bound
        self.front.setsockopt(zmq.SNDHWM, limits.client_sndhwm)
        self.front.setsockopt(zmq.RCVHWM, 100_000)
        # a send to a full queue raises EAGAIN (the peer is then choked) instead of
        # being dropped without a word; to a peer gone, EHOSTUNREACH
        self.front.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # clients must hold an authorized key when CURVE is on (docs/security.md)
        self.auth = curve.serve(self.ctx, self.front, cfg) if curve.enabled(cfg) else None
        self.front.bind(cfg.endpoints["gateway"])
        self.back: zmq.Socket | None = None
        self.primary: str | None = None  # endpoint of the primary matcher
        self.epoch = 0
        self.status = status_socket(self.ctx, cfg.endpoints["status_pub"])
        every = cfg.gateway.snapshot_every
        self.snapshots = snapfile.Snapshots(cfg.home, "gateway", every, log)
        self.view = self.snapshots.load(AccountView.restore) or AccountView()
        self.follower = Follower(
            self.ctx,
            cfg.endpoints["journal_pub"],
            cfg.endpoints["journal_read"],
            self.view.seq + 1,
        )
        heartbeat_ms = cfg.timings.heartbeat_ms
        self.beats = BeatSender(self.ctx, cfg.endpoints["heartbeat"], "gateway", heartbeat_ms)
        client_beat = cfg.timings.client_heartbeat_ms / 1000
        self.session_timeout = 3 * client_beat
        # how often silent sessions are looked for: a session goes between three and
        # four client heartbeats after it fell silent (at most a second late)
        self.expiry_every = min(1.0, client_beat)
        self.sessions = SessionTable(limits, frozenset(cfg.security.operators))
        self.inflight: OrderedDict[tuple, tuple[bytes, object]] = OrderedDict()
        self.max_inflight = cfg.gateway.max_in_flight
        self.account_inflight: dict[int, int] = {}  # account -> its commands in flight
        self.max_account_inflight = limits.max_in_flight_per_account
        self.choked: dict[bytes, float] = {}  # client -> until when its requests drop
        self.choke_logged: dict[bytes, float] = {}  # client -> when its choke was logged
        self.pool = HashPool()
        # (future, connection, request, name): the name the hash is for
        self.hashing: list[tuple[Future, bytes, object, str]] = []
        self.hashing_shares = FairShares(MAX_HASHING, HASHING_PER_NAME, HASHING_PER_CONNECTION)
        self.outbox: list = []  # commands to forward at the end of this loop turn
        self.rate_dropped = 0  # frames over a session's rate, dropped unanswered
        self.running = True

    # -- replies --------------------------------------------------------------

    def reply(self, ident: bytes, message) -> None:
        self.reply_raw(ident, encode(message))

    def reply_raw(self, ident: bytes, frame: bytes) -> bool:
        """Send one frame to a client; False if it could not be queued."""
        try:
            send_pair(self.front, ident, frame, NOBLOCK)
        except zmq.Again:  # its queue is full: it does not read
            self._choke(ident)
            return False
        except zmq.ZMQError:  # EHOSTUNREACH: the connection is gone
            return False
        if self.choked:
            self.choked.pop(ident, None)  # it reads again
        return True

    def _choke(self, ident: bytes) -> None:
        now = time.monotonic()
        if ident not in self.choke_logged:
            session = self.sessions.get(ident)
            self.log.warning("client_choked", account=session.account if session else None)
            self.choke_logged[ident] = now
        self.choked[ident] = now + CHOKE_S

    def reject(self, ident: bytes, code: int, ref: str = "", detail: str = "") -> None:
        text = REJECT_TEXT[code] + (f": {detail}" if detail else "")
        self.reply(ident, RequestRejected(code, text, ref))

    # -- requests -------------------------------------------------------------

    def _handle(self, ident: bytes, payload: bytes, now: float) -> None:
        if len(payload) > MAX_FRAME:  # MAXMSGSIZE drops these first; this is the backstop
            self.reject(ident, Reject.MALFORMED, detail=f"frame over {MAX_FRAME} bytes")
            return
        session = self.sessions.get(ident)
        if session is None and not self.sessions.allow_anonymous(
            ident, now, payload.startswith(SESSION_TAGS, 1)
        ):
            self.reply_raw(ident, RATE_LIMITED_ANONYMOUS)
            return
        if session is not None:
            session.last_seen = now
            if not self.sessions.allow(session, now):
                # over its rate: at most one answer per RATE_TELL_S, the rest dropped
                # undecoded, so a flood costs a receive and two bucket checks a frame
                if now - session.told_limited >= RATE_TELL_S:
                    session.told_limited = now
                    self.reply_raw(ident, RATE_LIMITED_SESSION)
                self.rate_dropped += 1
                return
        try:
            req = request_decoder.decode(payload)
        except DecodeError as exc:
            self.reject(ident, Reject.MALFORMED, detail=str(exc)[:200])
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
        elif kind is GetOrders:  # in pages by order id, so an answer stays small
            limit = min(max(req.limit, 1), ORDERS_PAGE)
            page = self.view.open_orders(session.account, req.after, limit + 1)
            more = len(page) > limit
            self.reply(ident, Orders(session.account, page[:limit], self.view.seq, more))
            # a page costs its size: each PAGE_COST orders counts as one more request
            session.bucket.tokens -= len(page) // PAGE_COST
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
        elif self._hashing_room(ident, req.name, req.name):
            self._hash_later(ident, req, req.name, passwords.hash_password, req.password)

    def _hashing_room(self, ident: bytes, name: str, ref: str) -> bool:
        """Room in the hashing queue for one more of this connection's and this name's
        (each gets a fair share of it); if not, the sender is told BUSY."""
        if self.hashing_shares.room(ident, name):
            return True
        self.reject(ident, Reject.BUSY, ref)
        return False

    def _hash_later(self, ident: bytes, req, name: str, fn, *args) -> None:
        """Run a slow hash on the pool (after ``_hashing_room`` said yes)."""
        self.hashing.append((self.pool.submit(time.monotonic(), fn, *args), ident, req, name))
        self.hashing_shares.take(ident, name)

    def _guarded(self, ident: bytes, name: str, ref: str, now: float) -> bool:
        """The log-in guard lets this attempt be hashed now; if not, the sender is told
        TOO_MANY_ATTEMPTS with how long to wait."""
        wait = self.sessions.guard.check(ident, name, now)
        if wait > 0:
            self.reject(ident, Reject.TOO_MANY_ATTEMPTS, ref, f"retry in {wait:.1f} s")
            return False
        return True

    def _login(self, ident: bytes, req: Login, now: float) -> None:
        # cheap checks first: a name that cannot exist or an over-long password is
        # refused before it touches the guard's tables or the hashing queue
        if not ACCOUNT_NAME_RE.fullmatch(req.name) or len(req.password) > passwords.MAX_PASSWORD:
            self.reject(ident, Reject.BAD_CREDENTIALS, req.name[:40])
            return
        if not self._hashing_room(ident, req.name, req.name) or not self._guarded(
            ident, req.name, req.name, now
        ):
            return
        account = self.view.names.get(req.name)
        stored = self.view.hashes.get(account, passwords.DUMMY_HASH)
        self._hash_later(ident, req, req.name, passwords.verify, req.password, stored)

    def _change_password(self, ident: bytes, session, req: ChangePassword, now: float) -> None:
        ref = req.cl_ord_id
        if not validate.cl_ord_id_ok(ref):
            self.reject(ident, Reject.BAD_CL_ORD_ID)
        elif not passwords.policy_ok(req.new_password):
            self.reject(ident, Reject.WEAK_PASSWORD, ref)
        elif len(req.old_password) > passwords.MAX_PASSWORD:
            self.reject(ident, Reject.BAD_CREDENTIALS, ref)
        elif self._hashing_room(ident, session.name, ref) and self._guarded(
            ident, session.name, ref, now
        ):
            stored = self.view.hashes.get(session.account, passwords.DUMMY_HASH)
            self._hash_later(
                ident,
                req,
                session.name,
                passwords.change,
                req.old_password,
                stored,
                req.new_password,
            )

    def _admin(self, ident: bytes, session, req: AdminRequest) -> None:
        """Operators only; the names and symbols are resolved here, the rest is the
        engine's, sequenced and journaled like an order."""
        code, target = 0, 0
        if not session.operator:
            code = Reject.NOT_AUTHORIZED
        elif req.action in ("kill", "unkill", "deposit"):
            target = self.view.names.get(req.account, 0)
            code = 0 if target else Reject.UNKNOWN_ACCOUNT
            if not code and req.action == "deposit":
                code = validate.check_amount(self.cfg, req.amount)
        elif req.symbol not in self.cfg.symbols:
            code = Reject.UNKNOWN_SYMBOL
        elif req.action == "reference" and not 0 < req.price <= validate.MAX_PRICE:
            code = Reject.BAD_PRICE
        cmd = Admin(
            session.account,
            req.cl_ord_id,
            req.action,
            req.symbol,
            target,
            req.price,
            req.amount if req.action == "deposit" else 0,
        )
        self._forward(ident, session, req, code or validate.check_cl_ord_id(req), cmd)

    def _finish_hashing(self, now: float) -> None:
        still: list = []
        for entry in self.hashing:
            future, ident, req, name = entry
            if not future.done():
                still.append(entry)
                continue
            self.hashing_shares.give_back(ident, name)
            if isinstance(req, Signup):
                key = ("signup", req.name)
                if key in self.inflight:
                    self.reject(ident, Reject.NAME_TAKEN, req.name)
                    continue
                cmd = CreateAccount(req.name, future.result())
                self.inflight[key] = (ident, cmd)
                self.outbox.append(cmd)
                continue
            guard = self.sessions.guard
            if isinstance(req, ChangePassword):
                session = self.sessions.get(ident)
                new_hash = future.result()
                if not new_hash:
                    guard.failed(ident, name, now)
                if session is None:
                    self.reject(ident, Reject.NOT_LOGGED_IN, req.cl_ord_id)
                elif not new_hash:
                    self.reject(ident, Reject.BAD_CREDENTIALS, req.cl_ord_id)
                else:
                    cmd = SetPassword(session.account, req.cl_ord_id, new_hash)
                    self._forward(ident, session, req, 0, cmd)
                continue
            account = self.view.names.get(req.name)
            if not (future.result() and account is not None):
                guard.failed(ident, req.name, now)
                self.reject(ident, Reject.BAD_CREDENTIALS, req.name[:40])
                continue
            guard.succeeded(ident, req.name)
            answer = self.sessions.open(ident, account, req.name, now)
            if isinstance(answer, LoggedIn):
                self.reply(ident, answer)
                self.log.info("login", account=account, operator=answer.operator)
            else:
                self.reject(ident, answer, req.name[:40])
        self.hashing = still
        self.pool.tend(now, len(still))

    def _forward(self, ident: bytes, session, req, code: int, cmd=None) -> None:
        """Sequence ``cmd`` (by default the order command ``req`` makes) unless ``code``
        rejects it; a repeat of an id still in flight is answered once, when committed."""
        ref = getattr(req, "cl_ord_id", "")
        if code:
            self.reject(ident, code, ref if validate.cl_ord_id_ok(ref) else "")
            return
        if len(self.inflight) >= self.max_inflight:
            self.reject(ident, Reject.BUSY, ref)
            return
        account = session.account
        key = (account, req.cl_ord_id)
        if key in self.inflight:  # a repeat in flight is answered once, when committed
            return
        held = self.account_inflight.get(account, 0)
        if held >= self.max_account_inflight:  # one account cannot fill the table
            self.reject(ident, Reject.TOO_MANY_IN_FLIGHT, ref)
            return
        self.account_inflight[account] = held + 1
        cmd = cmd or validate.to_command(account, req)
        self.inflight[key] = (ident, cmd)
        self.outbox.append(cmd)

    def _take_inflight(self, key: tuple):
        """Drop a command from the in-flight table: (ident, command), or None."""
        entry = self.inflight.pop(key, None)
        if entry is not None and type(key[0]) is int:  # not a sign-up
            left = self.account_inflight[key[0]] - 1
            if left:
                self.account_inflight[key[0]] = left
            else:
                del self.account_inflight[key[0]]
        return entry

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
            entry = self._take_inflight(key)
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
            if type(cmd) is CreateAccount:
                entry = self.inflight.pop(("signup", cmd.name), None)
                if entry is not None:
                    self.reply(entry[0], Report(record.seq, record.epoch, record.events))
                continue
            # a command the matcher made itself (reopen) has no sender to answer
            account = getattr(cmd, "account", None)
            entry = None if account is None else self._take_inflight((account, cmd.cl_ord_id))
            if record.events and type(record.events[0]) is PasswordChanged:
                self.sessions.end_others(account, entry[0] if entry else None)
            for told, events in reports.route(record).items():
                idents = self.sessions.by_account.get(told)
                if idents:
                    report = Report(record.seq, record.epoch, events)
                    for ident in idents:
                        outgoing.setdefault(ident, []).append(report)
        for ident, sent in outgoing.items():
            message = sent[0] if len(sent) == 1 else Reports(sent)
            if not self.reply_raw(ident, encode(message)):
                self.log.warning("reports_dropped", reports=len(sent))

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
                            frames, parts = recv_bounded(self.front, FRAMES_KEPT)
                        except zmq.Again:
                            break
                        ident = frames[0]
                        if self.choked and now < self.choked.get(ident, 0.0):
                            continue  # it does not read its answers: not worth making any
                        if parts != 2:
                            self.reject(ident, Reject.MALFORMED, detail="one frame expected")
                            continue
                        self._handle(ident, frames[1], now)
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
                    for ident in [i for i, until in self.choked.items() if until <= now]:
                        del self.choked[ident]  # its time is up: its requests count again
                    for ident in [
                        i for i, at in self.choke_logged.items() if at + CHOKE_LOG_S <= now
                    ]:
                        del self.choke_logged[ident]
                    if self.auth is not None and now >= next_keys:
                        curve.reload(self.auth, self.cfg)  # keys added since take effect
                        next_keys = now + 5.0
                    next_expiry = now + self.expiry_every
        finally:
            self.pool.shutdown()
            for sock in (self.front, self.back, self.status):
                if sock is not None:
                    sock.close(0)
            if self.auth is not None:
                self.auth.stop()
            self.follower.close()
            self.beats.close()
            self.snapshots.close()
        return 0
