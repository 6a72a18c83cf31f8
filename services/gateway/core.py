"""The gateway's decisions, apart from its sockets.

``GatewayCore`` takes a client's frame (or an already decoded request) with the
connection's identity and the time, and committed records, and gives out replies
through its ``out`` port (``out(ident, frame)``: True if queued, False if the
client's queue is full, None if it is gone) and the commands to forward to the
primary matcher (``take_outbox``). It owns the sessions, the in-flight table, the
account view the answers come from, and the routing of each record's reports. The
slow password hashes run on the pool it is given (``submit``/``tend``/``shutdown``);
tests give it one that hashes at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from services.common import wire
from services.common.bus import Admin, CreateAccount, EndOfDay, MatcherBusy, Record, SetPassword
from services.common.codec import DecodeError, encode, request_decoder
from services.common.config import Config
from services.common.metrics import Metrics
from services.common.money import to_dollars
from services.common.trading_calendar import Calendar, Clock, date_int, from_int
from services.common.wire import (
    ACCOUNT_NAME_RE,
    FILLS_KEPT,
    NOTICE_FAILOVER,
    NOTICE_SESSION_ENDED,
    ORDERS_PAGE,
    REJECT_TEXT,
    AdminRequest,
    CancelRequest,
    ChangePassword,
    DayEnded,
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
    Rejected,
    ReplaceRequest,
    Report,
    Reports,
    RequestRejected,
    Resume,
    Signup,
)
from services.gateway import passwords, reports, validate
from services.gateway.accounts import AccountView
from services.gateway.security import FairShares
from services.gateway.sessions import Session, SessionTable

MAX_FRAME = 64 * 1024
DAY_COMMANDS = (EndOfDay, Admin)  # the commands that can end a trading day
SESSION_STATES = frozenset(wire.Session)
MAX_HASHING = 64  # password hashes queued for the pool; past it, BUSY
# fair shares of that queue: no name (an account under attack) may hold more than a
# quarter of it, no connection more than a few; past them, BUSY
HASHING_PER_NAME = MAX_HASHING // 4
HASHING_PER_CONNECTION = 4
# a client whose reply queue is full (it does not read) is choked: its requests are
# dropped unread for this long, or until a send to it goes through again
CHOKE_S = 1.0
CHOKE_LOG_S = 60.0  # a client choked again within this long is not logged again
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


def code_name(code: int) -> str:
    return Reject(code).name if code in Reject._value2member_map_ else str(code)


REJECT_LOG_PER_S = 50  # reject and failed log-in lines a second at most; then a count


class LogBudget:
    """At most ``per_s`` lines a second of one noisy kind (rejects, failed log-ins):
    enough to see who is refused and why, while a flood of bad requests cannot fill
    the disk; the lines left out are counted in one line the next second."""

    def __init__(self, log, per_s: int, clock: Callable[[], float]) -> None:
        self.log, self.per_s, self.clock = log, per_s, clock
        self.second = -1
        self.used = 0
        self.skipped = 0

    def warning(self, event: str, **fields) -> None:
        second = int(self.clock())
        if second != self.second:
            if self.skipped:
                self.log.warning("log_lines_skipped", lines=self.skipped, per_s=self.per_s)
            self.second, self.used, self.skipped = second, 0, 0
        if self.used < self.per_s:
            self.used += 1
            self.log.warning(event, **fields)
        else:
            self.skipped += 1


# -- the in-flight table ------------------------------------------------------------

SIGNUP = 0  # the account of a sign-up's key: it has none yet (the engine's convention)
Key = tuple[int, str]


def key_of(cmd) -> Key | None:
    """A command's in-flight key: (account, client order id), or (SIGNUP, name) for a
    sign-up; None for a command the matcher made itself (reopen), which nobody sent."""
    if type(cmd) is CreateAccount:
        return SIGNUP, cmd.name
    account = getattr(cmd, "account", None)
    return None if account is None else (account, cmd.cl_ord_id)


class InFlight:
    """Commands forwarded and not yet seen committed, by ``key_of``, in the order first
    sent: each with the connection to answer. Bounded in all and per account (a
    sign-up counts only in all)."""

    def __init__(self, limit: int, per_account: int) -> None:
        self.limit = limit
        self.per_account = per_account
        self.table: OrderedDict[Key, tuple[bytes, object]] = OrderedDict()
        self.held: dict[int, int] = {}  # account -> its commands in flight

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, key: Key) -> bool:
        return key in self.table

    def full(self) -> bool:
        return len(self.table) >= self.limit

    def account_full(self, account: int) -> bool:
        return self.held.get(account, 0) >= self.per_account

    def add(self, key: Key, ident: bytes, cmd) -> None:
        self.table[key] = (ident, cmd)
        account = key[0]
        if account != SIGNUP:
            self.held[account] = self.held.get(account, 0) + 1

    def take(self, key: Key) -> tuple[bytes, object] | None:
        """Drop a command from the table: (ident, command), or None."""
        entry = self.table.pop(key, None)
        account = key[0]
        if entry is not None and account != SIGNUP:
            left = self.held[account] - 1
            if left:
                self.held[account] = left
            else:
                del self.held[account]
        return entry

    def commands(self) -> list:
        """Every command in flight, in the order first sent."""
        return [cmd for _, cmd in self.table.values()]

    def disown(self, idents: set[bytes]) -> None:
        """Those connections lost the right to their commands' answers (the account's
        password changed under them): the commands stay in flight, answered to the
        account's sessions only. Rare, and bounded by the table's size."""
        for key, (ident, cmd) in self.table.items():
            if ident in idents:
                self.table[key] = (b"", cmd)

    def senders(self) -> set[bytes]:
        """The connections waiting for the answer to a command in flight."""
        return {ident for ident, _ in self.table.values()}


class GatewayCore:
    def __init__(
        self,
        cfg: Config,
        view: AccountView,
        pool,
        out: Callable[[bytes, bytes], bool | None],
        log,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        # the trading calendar, for an operator's end of day: the next trading date
        self.calendar = Calendar(cfg.schedule)
        self.exchange_clock = Clock(cfg.schedule)
        self.wall = time.time
        self.trading_date = 0  # the engine's, as the committed stream last said
        self.view = view
        self.pool = pool
        self.out = out
        self.log = log
        self.noisy = LogBudget(log, REJECT_LOG_PER_S, clock)
        limits = cfg.security
        self.sessions = SessionTable(limits, frozenset(limits.operators))
        self.session_timeout = 3 * cfg.timings.client_heartbeat_ms / 1000
        self.inflight = InFlight(cfg.gateway.max_in_flight, limits.max_in_flight_per_account)
        self.choked: dict[bytes, float] = {}  # client -> until when its requests drop
        self.choke_logged: dict[bytes, float] = {}  # client -> when its choke was logged
        # (future, connection, request, name): the name the hash is for
        self.hashing: list[tuple[Future, bytes, object, str]] = []
        self.hashing_shares = FairShares(MAX_HASHING, HASHING_PER_NAME, HASHING_PER_CONNECTION)
        self.outbox: list = []  # commands to forward at the end of this loop turn
        self.rate_dropped = metrics.counter(
            "requests_rate_dropped", "frames over a session's rate, dropped unanswered"
        )
        self.forwarded = metrics.counter("commands_forwarded", "commands sent to the matcher")
        self.reports_out = metrics.counter("reports_out", "reports sent to sessions")
        self.metrics = metrics
        self.rejects: dict[tuple[int, str], object] = {}  # (code, by) -> its counter
        metrics.gauge("in_flight", "commands awaiting their commit", lambda: len(self.inflight))
        metrics.gauge("sessions", "logged-in connections", lambda: len(self.sessions.by_ident))
        metrics.gauge("hashing_queue", "password hashes waiting", lambda: len(self.hashing))
        metrics.gauge("choked_clients", "clients not read for now", lambda: len(self.choked))

    # -- replies ------------------------------------------------------------------

    def reply(self, ident: bytes, message) -> None:
        self.reply_raw(ident, encode(message))

    def reply_raw(self, ident: bytes, frame: bytes) -> bool:
        """Send one frame to a client; False if it could not be queued."""
        sent = self.out(ident, frame)
        if sent:
            if self.choked:
                self.choked.pop(ident, None)  # it reads again
            return True
        if sent is False:  # its queue is full: it does not read
            self._choke(ident)
        return False

    def _choke(self, ident: bytes) -> None:
        now = self.clock()
        if ident not in self.choke_logged:
            session = self.sessions.get(ident)
            self.log.warning("client_choked", account=session.account if session else None)
            self.choke_logged[ident] = now
        self.choked[ident] = now + CHOKE_S

    def session_ended(self, ident: bytes, why: str) -> None:
        """Tell a connection its session is over (it would otherwise learn it only from
        a NOT_LOGGED_IN): log in, or resume while the token lives."""
        self.log.info("session_ended", why=why)  # at most once per session
        text = f"session ended: {why}; log in or resume to go on"
        self.reply(ident, Notice(text, NOTICE_SESSION_ENDED))

    def count_reject(self, code: int, by: str) -> None:
        counter = self.rejects.get((code, by))
        if counter is None:
            name = code_name(code)
            counter = self.rejects[(code, by)] = self.metrics.counter(
                "rejects", "requests refused, by code and by whom", {"code": name, "by": by}
            )
        counter.inc()

    def reject(
        self, ident: bytes, code: int, ref: str = "", detail: str = "", symbol: str = ""
    ) -> None:
        self.count_reject(code, "gateway")
        session = self.sessions.get(ident)
        self.noisy.warning(
            "reject",
            code=code_name(code),
            by="gateway",
            account=session.account if session else None,
            symbol=symbol[: validate.REF_CHARS],
            ref=ref,
        )
        text = REJECT_TEXT[code] + (f": {detail}" if detail else "")
        self.reply(ident, RequestRejected(code, text, ref))

    # -- requests -------------------------------------------------------------------

    def frame(self, frames: list[bytes], parts: int, now: float) -> None:
        """One message from a client: its first frames (identity, request) and how many
        it had. Everything that can be refused before decoding is refused here, so a
        flood costs a receive and a few table lookups per frame."""
        ident = frames[0]
        if self.choked and now < self.choked.get(ident, 0.0):
            return  # it does not read its answers: not worth making any
        if parts != 2:
            self.reject(ident, Reject.MALFORMED, detail="one frame expected")
            return
        payload = frames[1]
        if len(payload) > MAX_FRAME:  # MAXMSGSIZE drops these first; this is the backstop
            self.reject(ident, Reject.MALFORMED, detail=f"frame over {MAX_FRAME} bytes")
            return
        sessions = self.sessions
        session = sessions.get(ident)
        if session is None and not sessions.allow_anonymous(
            ident, now, payload.startswith(SESSION_TAGS, 1)
        ):
            self.reply_raw(ident, RATE_LIMITED_ANONYMOUS)
            return
        if session is not None:
            session.last_seen = now
            if not sessions.allow(session, now):
                # over its rate: at most one answer per RATE_TELL_S, the rest dropped
                # undecoded, so a flood costs a receive and two bucket checks a frame
                if now - session.told_limited >= RATE_TELL_S:
                    session.told_limited = now
                    self.reply_raw(ident, RATE_LIMITED_SESSION)
                self.rate_dropped.value += 1
                return
        try:
            req = request_decoder.decode(payload)
        except DecodeError as exc:
            ref = validate.readable_ref(payload)
            self.reject(ident, Reject.MALFORMED, ref, detail=str(exc)[:200])
            return
        self._dispatch(ident, req, session, now)

    def request(self, ident: bytes, req, now: float) -> None:
        """One decoded request from ``ident`` (past the frame and rate checks)."""
        session = self.sessions.get(ident)
        if session is not None:
            session.last_seen = now
        self._dispatch(ident, req, session, now)

    def _dispatch(self, ident: bytes, req, session: Session | None, now: float) -> None:
        kind = type(req)
        if kind is Ping:
            self.reply(ident, Pong(req.nonce, session is not None))
        elif kind is Signup:
            self._signup(ident, req, now)
        elif kind is Login:
            self._login(ident, req, now)
        elif kind is Resume:
            answer = self.sessions.resume(ident, req.token, now)
            if isinstance(answer, LoggedIn):
                self.reply(ident, answer)
            else:
                self.reject(ident, answer)
        elif session is None:
            ref = getattr(req, "cl_ord_id", "")
            self.reject(ident, Reject.NOT_LOGGED_IN, ref[: validate.REF_CHARS])
        elif kind is PlaceOrder:
            self._forward(ident, session, req, validate.check_order(self.cfg, req))
        elif kind is CancelRequest:
            self._forward(ident, session, req, validate.check_cancel(req))
        elif kind is ReplaceRequest:
            self._forward(ident, session, req, validate.check_replace(self.cfg, req))
        elif kind is GetPositions:
            account, view = session.account, self.view
            positions = dict(view.positions.get(account, {}))
            self.reply(ident, Positions(account, view.cash.get(account, 0), positions, view.seq))
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
            for other in self.sessions.log_out(ident):
                if other != ident:
                    self.session_ended(other, "logged out on another connection")
            self.reply(ident, LoggedOut())

    def _signup(self, ident: bytes, req: Signup, now: float) -> None:
        if not ACCOUNT_NAME_RE.fullmatch(req.name):
            self.reject(ident, Reject.BAD_NAME, req.name[:40])
        elif not passwords.policy_ok(req.password):
            self.reject(ident, Reject.WEAK_PASSWORD, req.name)
        elif req.name in self.view.names:
            self.reject(ident, Reject.NAME_TAKEN, req.name)
        elif self._hashing_room(ident, req.name, req.name):
            self._hash_later(ident, req, req.name, now, passwords.hash_password, req.password)

    def _hashing_room(self, ident: bytes, name: str, ref: str) -> bool:
        """Room in the hashing queue for one more of this connection's and this name's
        (each gets a fair share of it); if not, the sender is told BUSY."""
        if self.hashing_shares.room(ident, name):
            return True
        self.reject(ident, Reject.BUSY, ref)
        return False

    def _hash_later(self, ident: bytes, req, name: str, now: float, fn, *args) -> None:
        """Run a slow hash on the pool (after ``_hashing_room`` said yes)."""
        self.hashing.append((self.pool.submit(now, fn, *args), ident, req, name))
        self.hashing_shares.take(ident, name)

    def _guarded(self, ident: bytes, name: str, ref: str, now: float) -> bool:
        """The log-in guard lets this attempt be hashed now; if not, the sender is told
        TOO_MANY_ATTEMPTS with how long to wait."""
        wait = self.sessions.guard.check(ident, name, now)
        if wait > 0:
            self.noisy.warning("login_locked_out", name=name[: validate.REF_CHARS], wait_s=wait)
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
        self._hash_later(ident, req, req.name, now, passwords.verify, req.password, stored)

    def _change_password(self, ident: bytes, session, req: ChangePassword, now: float) -> None:
        ref = req.cl_ord_id
        if not validate.cl_ord_id_ok(ref):
            self.reject(ident, Reject.BAD_CL_ORD_ID, ref[: validate.REF_CHARS])
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
                now,
                passwords.change,
                req.old_password,
                stored,
                req.new_password,
            )

    def _admin(self, ident: bytes, session, req: AdminRequest) -> None:
        """Operators only; the names and symbols are resolved here, the rest is the
        engine's, sequenced and journaled like an order."""
        code, target, date = 0, 0, 0
        if not session.operator:
            code = Reject.NOT_AUTHORIZED
        elif req.action == "end_of_day":
            date = self.next_trading_date()
        elif req.action in ("kill", "unkill", "deposit"):
            target = self.view.names.get(req.account, 0)
            code = 0 if target else Reject.UNKNOWN_ACCOUNT
            if not code and req.action == "deposit":
                code = validate.check_amount(self.cfg, req.amount)
        elif req.symbol not in self.cfg.symbols:
            code = Reject.UNKNOWN_SYMBOL
        elif req.action == "reference" and not 0 < req.price <= validate.MAX_PRICE:
            code = Reject.BAD_PRICE
        elif req.action == "session" and req.state not in SESSION_STATES:
            code = Reject.MALFORMED
        cmd = Admin(
            session.account,
            req.cl_ord_id,
            req.action,
            req.symbol if req.action != "end_of_day" else "",
            target,
            req.price,
            req.amount if req.action == "deposit" else 0,
            state=req.state if req.action == "session" else 0,
            date=date,
        )
        self._forward(ident, session, req, code or validate.check_cl_ord_id(req), cmd)

    def next_trading_date(self) -> int:
        """The date an operator's end of day starts: the trading date after the
        engine's (as the committed stream last said; a gateway restarted from a
        snapshot may not have heard it) or after the calendar's today, the later."""
        calendar = self.calendar
        today = calendar.trading_date_at(self.exchange_clock.now(self.wall()))
        if self.trading_date:
            today = max(today, from_int(self.trading_date))
        return date_int(calendar.next_trading_date(today))

    def _day(self, record: Record) -> None:
        """Keep the engine's trading date from its DayEnded events."""
        for event in record.events:
            if type(event) is DayEnded:
                self.trading_date = event.next_date

    def finish_hashing(self, now: float) -> None:
        """Act on the password hashes the pool has finished: sign-ups go to the
        matcher, log-ins open a session, password changes go to the matcher."""
        still: list = []
        for entry in self.hashing:
            future, ident, req, name = entry
            if not future.done():
                still.append(entry)
                continue
            self.hashing_shares.give_back(ident, name)
            if isinstance(req, Signup):
                key = (SIGNUP, req.name)
                if key in self.inflight:
                    self.reject(ident, Reject.NAME_TAKEN, req.name)
                    continue
                cmd = CreateAccount(req.name, future.result())
                self.inflight.add(key, ident, cmd)
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
                self.noisy.warning("login_failed", name=req.name[: validate.REF_CHARS])
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
            symbol = getattr(req, "symbol", "")
            self.reject(ident, code, ref[: validate.REF_CHARS], self._detail(code, req), symbol)
            return
        inflight = self.inflight
        if inflight.full():
            self.reject(ident, Reject.BUSY, ref)
            return
        account = session.account
        key = (account, req.cl_ord_id)
        if key in inflight:  # a repeat in flight is answered once, when committed
            return
        if inflight.account_full(account):  # one account cannot fill the table
            self.reject(ident, Reject.TOO_MANY_IN_FLIGHT, ref)
            return
        cmd = cmd or validate.to_command(account, req)
        inflight.add(key, ident, cmd)
        self.outbox.append(cmd)

    def _detail(self, code: int, req) -> str:
        """The figures a trader needs to fix a refused order: the symbol's tick or lot,
        the size limit, the symbol asked for."""
        symbol = getattr(req, "symbol", "")
        spec = self.cfg.symbols.get(symbol)
        if code == Reject.UNKNOWN_SYMBOL and symbol:
            return f"{symbol[: validate.REF_CHARS]!r}"
        if code == Reject.MAX_ORDER_SIZE:
            return f"at most {self.cfg.risk.max_order_qty:,} shares"
        if code == Reject.MALFORMED and type(req) is AdminRequest:
            return "state: 1 closed, 2 pre-open, 3 continuous, 4 pre-close"
        if spec is None:
            return ""
        if code == Reject.BAD_PRICE and getattr(req, "ord_type", 1) != 1:
            return "a market order's price must be 0"
        if code == Reject.BAD_PRICE:
            return f"{symbol}'s tick is {to_dollars(spec.tick)}"
        if code == Reject.BAD_QTY:
            return f"{symbol}'s lot is {spec.lot:,} shares"
        return ""

    # -- the matcher side -------------------------------------------------------------

    def take_outbox(self) -> list:
        """The commands to forward now (the node sends them as one batch)."""
        commands, self.outbox = self.outbox, []
        self.forwarded.value += len(commands)
        return commands

    def busy(self, commands: list, code: int) -> None:
        """Commands the matcher did not take: their senders are told, and may resend."""
        for cmd in commands:
            key = key_of(cmd)
            entry = None if key is None else self.inflight.take(key)
            if entry is not None:
                self.reject(entry[0], code, key[1])

    def from_matcher(self, msg: object) -> None:
        if isinstance(msg, MatcherBusy):
            self.busy(msg.commands, msg.code)

    def new_primary(self, epoch: int, failover: bool) -> None:
        """A new primary matcher (at ``epoch``): everything not yet seen committed goes
        again, in the order first sent (the outbox is a subset of the in-flight table);
        repeats get their original answer. After a failover every session is told."""
        self.outbox = self.inflight.commands()
        if failover:
            for ident in list(self.sessions.by_ident):
                self.reply(
                    ident, Notice(f"matcher failover handled (epoch {epoch})", NOTICE_FAILOVER)
                )

    # -- the committed stream ---------------------------------------------------------

    def replay(self, records: list[Record]) -> None:
        """Records committed before this process started: the view only."""
        for record in records:
            self.view.apply(record)
            if type(record.command) in DAY_COMMANDS:
                self._day(record)

    def committed(self, records: list[Record]) -> None:
        """Apply committed records to the view and send each account its reports, one
        frame per session for the whole drain (a Reports when there are several)."""
        outgoing: dict[bytes, list[Report]] = {}
        view, inflight, by_account = self.view, self.inflight, self.sessions.by_account
        for record in records:
            view.apply(record)
            cmd = record.command
            if type(cmd) in DAY_COMMANDS:
                self._day(record)
            if record.events and type(record.events[0]) is Rejected:
                rejected = record.events[0]
                self.count_reject(rejected.code, "matcher")
                self.noisy.warning(
                    "reject",
                    code=code_name(rejected.code),
                    by="matcher",
                    account=rejected.account,
                    symbol=getattr(cmd, "symbol", ""),
                    ref=rejected.cl_ord_id,
                    seq=record.seq,
                )
            key = key_of(cmd)
            entry = None if key is None else inflight.take(key)
            if key is not None and key[0] == SIGNUP:  # the new account has no session yet
                if entry is not None:
                    self.reply(entry[0], Report(record.seq, record.epoch, record.events))
                continue
            if key is not None and record.events and type(record.events[0]) is PasswordChanged:
                ended = self.sessions.end_others(key[0], entry[0] if entry else None)
                for ident in ended:
                    self.session_ended(ident, "the account's password was changed")
                if ended:  # no answer to what they sent goes to them any more
                    inflight.disown(set(ended))
            routed = reports.route(record)
            for told, events in routed.items():
                idents = by_account.get(told)
                if idents:
                    report = Report(record.seq, record.epoch, events)
                    for ident in idents:
                        outgoing.setdefault(ident, []).append(report)
            if (
                entry is not None
                and entry[0]
                and entry[0] not in by_account.get(key[0], ())
                and entry[0] not in self.sessions.by_ident  # not since logged in elsewhere
            ):
                # its sender's session ended while it was in flight (a log-out on
                # another connection, a token expiring): the connection that asked
                # still gets its one answer
                events = routed.get(key[0])
                if events:
                    report = Report(record.seq, record.epoch, events)
                    outgoing.setdefault(entry[0], []).append(report)
        sent_reports = 0
        for ident, sent in outgoing.items():
            message = sent[0] if len(sent) == 1 else Reports(sent)
            if self.reply_raw(ident, encode(message)):
                sent_reports += len(sent)
            else:
                self.log.warning("reports_dropped", reports=len(sent))
        self.reports_out.value += sent_reports

    # -- housekeeping -----------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Silent sessions end, but not one waiting for the answer to a command in
        flight: across a failover or a partition that answer can take longer than
        the timeout, and the silence is the exchange's, not the client's (an owed
        answer counts as traffic). Chokes whose time is up are lifted (their requests
        count again) and forgotten for logging after CHOKE_LOG_S."""
        sessions = self.sessions
        for ident in self.inflight.senders():  # once a second, off the order path
            session = sessions.get(ident)
            if session is not None:
                session.last_seen = now
        for ident, why in sessions.expire(now, self.session_timeout):
            self.session_ended(ident, why)
        for ident in [i for i, until in self.choked.items() if until <= now]:
            del self.choked[ident]
        for ident in [i for i, at in self.choke_logged.items() if at + CHOKE_LOG_S <= now]:
            del self.choke_logged[ident]

    def poll_ms(self) -> int:
        """How long the loop may wait: briefly while hashes are under way."""
        return 5 if self.hashing else 100
