"""The FIX 4.4 acceptor: FIX sessions over TCP, each a client of the native gateway.

Order entry goes to the gateway through one native session per FIX session
(``native.py``), so validation, rate limits, risk and exactly-once on ``cl_ord_id``
(the FIX ClOrdID) apply unchanged. Reports come from the journal's committed stream,
followed here as every reader of it follows it (``stream.Follower``, gaps filled from
the journal): nothing is reported that a crash could take back, a drop copy sees an
account's native orders too, and after a restart the service carries on from the
journal position stored with its sessions, so no report is missed or made twice.

One asyncio loop holds every decision; the follower's blocking socket work runs on a
thread that hands record batches to the loop. docs/fix.md has the rules of engagement.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from decimal import Decimal, InvalidOperation
from functools import partial

import zmq
import zmq.asyncio

from services.common.bus import TOPIC_BEAT
from services.common.codec import beat_decoder
from services.common.frames import recv_frames
from services.common.money import to_units
from services.common.stream import Follower, HistoryArchived
from services.common.wire import (
    CancelRequest,
    OrdType,
    PlaceOrder,
    Reject,
    ReplaceRequest,
    RequestRejected,
    Tif,
)
from services.fix import codec
from services.fix.codec import TooLarge, get
from services.fix.native import LoginRefused, NativeLink
from services.fix.orders import ORD_REJ_REASON, OTHER, Outgoing, Pending, reject_text
from services.fix.session import (
    BAD_FORMAT,
    REQUIRED_MISSING,
    VALUE_INCORRECT,
    Connection,
    session_kind,
)
from services.fix.store import DROP_COPY, ORDER_ENTRY, SessionState, Store
from services.gateway import reports

STORED_TYPES = frozenset("89j")  # sent again on a ResendRequest; the rest is gap-filled
READ_BYTES = 65_536
TICK_S = 0.5
# 0 Day, 1 GTC, 3 IOC, 4 FOK, 6 GTD (with 432 ExpireDate), 7 At the Close (on-close)
FIX_TIF = {
    "0": Tif.DAY,
    "1": Tif.GTC,
    "3": Tif.IOC,
    "4": Tif.FOK,
    "6": Tif.GTD,
    "7": Tif.CLOSE,
}
FIX_ORD_TYPE = {"1": OrdType.MARKET, "2": OrdType.LIMIT}
MAX_PENDING_PER_SESSION = 1_000  # forwarded requests awaiting an answer


class BadField(Exception):
    def __init__(self, tag: int, reason: int, text: str) -> None:
        super().__init__(text)
        self.tag, self.reason, self.text = tag, reason, text


def _qty(msg, tag: int) -> int:
    text = get(msg, tag)
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError):
        raise BadField(tag, BAD_FORMAT, f"tag {tag} is not a quantity") from None
    if value != value.to_integral_value() or not 0 < value < 2**62:
        raise BadField(tag, VALUE_INCORRECT, f"tag {tag} must be a positive whole number")
    return int(value)


def _price(msg, tag: int) -> int:
    try:
        return to_units(get(msg, tag))
    except (ValueError, ArithmeticError, TypeError):
        raise BadField(tag, BAD_FORMAT, f"tag {tag} is not a price") from None


def _need(msg, *tags: int) -> None:
    for tag in tags:
        if msg.get(tag) is None:
            raise BadField(tag, REQUIRED_MISSING, f"required tag {tag} missing")


class FixService:
    def __init__(self, cfg, log) -> None:
        self.cfg = cfg
        self.log = log
        self.store = Store(cfg.home, cfg.fix.store_kept)
        self.book = self.store.load_book(cfg.fix.orders_kept)
        self.sessions: dict[str, SessionState] = self.store.sessions()
        self.live: dict[str, Connection] = {}  # SenderCompID -> its logged-on connection
        self.links: dict[str, NativeLink] = {}  # SenderCompID -> its gateway session
        self.connections: set[Connection] = set()
        self.dirty: set[Connection] = set()  # connections with bytes to write
        self.dirty_sessions: set[str] = set()  # SenderCompIDs whose numbers changed
        self.zctx: zmq.asyncio.Context | None = None
        self.running = True

    # -- the store's port ---------------------------------------------------------------

    def save(self, state: SessionState) -> None:
        """Written with the turn's other changes, by ``flush``."""
        self.dirty_sessions.add(state.sender)

    def emit(
        self, state: SessionState, msg_type: str, fields: list, conn: Connection | None = None
    ):
        """Number, store (application messages) and queue one message of ``state``'s
        session; queued bytes are written by ``flush`` after the commit."""
        seq = state.next_out
        state.next_out += 1
        raw = codec.build(msg_type, self.cfg.fix.target_comp_id, state.sender, seq, fields)
        if msg_type in STORED_TYPES:
            self.store.add_message(state.sender, seq, raw)
        self.save(state)
        conn = conn or self.live.get(state.sender)
        if conn is not None and conn.state is state:
            self._queue(conn, raw)

    def _queue(self, conn: Connection, raw: bytes) -> None:
        conn.out.append(raw)
        conn.last_out = time.monotonic()
        self.dirty.add(conn)

    def flush(self) -> None:
        """Commit this turn's changes, then write what they queued."""
        store = self.store
        for sender in self.dirty_sessions:
            store.save_session(self.sessions[sender])
        self.dirty_sessions.clear()
        store.save_book(self.book)
        store.sync_pending(self.book)
        store.commit()
        for conn in self.dirty:
            if conn.out and not conn.writer.is_closing():
                conn.writer.write(b"".join(conn.out))
            conn.out.clear()
            if conn.closing and not conn.writer.is_closing():
                conn.writer.close()
        self.dirty.clear()

    # -- delivery -----------------------------------------------------------------------

    def deliver(self, out: Outgoing) -> None:
        """To the session that entered the order and to every drop copy of the account."""
        for state in self.sessions.values():
            if state.account != out.account:
                continue
            if state.kind == DROP_COPY or state.sender == out.owner:
                self.emit(state, out.msg_type, out.fields)

    async def committed(self, records: list) -> None:
        tracked = {state.account for state in self.sessions.values()}
        book, links = self.book, self.links.values()
        last = 0
        for record in records:
            last = record.seq
            for account, events in reports.route(record).items():
                if account not in tracked:
                    continue
                for event in events:
                    cl_ord_id = getattr(event, "cl_ord_id", "")
                    if cl_ord_id:
                        for link in links:
                            if link.account == account:
                                link.answered(cl_ord_id)
                for out in book.apply(record, account, events):
                    self.deliver(out)
        if last:
            self.store.set_journal_seq(last)
        self.flush()

    def _gateway_rejected(
        self, sender: str, cl_ord_id: str, reply: RequestRejected, request
    ) -> None:
        state = self.sessions.get(sender)
        if state is None:
            return
        kind = {PlaceOrder: "D", CancelRequest: "F", ReplaceRequest: "G"}.get(type(request), "D")
        pending = self.book.answer((state.account, cl_ord_id)) or Pending(sender, kind)
        self.deliver(self.book.gateway_reject(state.account, request, pending, reply.code, 0))
        self.flush()

    # -- sessions -------------------------------------------------------------------------

    async def logon(self, conn: Connection, msg) -> None:
        fix = self.cfg.fix
        sender = get(msg, 49) or ""
        existing = self.sessions.get(sender)

        def refuse(text: str) -> None:
            seq = existing.next_out if existing else 1
            conn.out.append(
                codec.build("5", fix.target_comp_id, sender or "UNKNOWN", seq, [(58, text)])
            )
            conn.closing = True
            self.dirty.add(conn)
            self.log.warning("fix_logon_refused", sender=sender, peer=conn.peer, reason=text)

        seq_text, hb = get(msg, 34) or "", get(msg, 108) or ""
        name, password = get(msg, 553), get(msg, 554)
        if not sender or get(msg, 56) != fix.target_comp_id:
            return refuse(f"SenderCompID required, TargetCompID must be {fix.target_comp_id}")
        if not seq_text.isdigit():
            return refuse("MsgSeqNum (34) missing")
        if not hb.isdigit() or not 1 <= int(hb) <= fix.max_heartbeat_s:
            return refuse(f"HeartBtInt (108) must be 1 to {fix.max_heartbeat_s}")
        if get(msg, 98) != "0":
            return refuse("EncryptMethod (98) must be 0")
        if not name or not password:
            return refuse("Username (553) and Password (554) required")
        kind = session_kind(msg)
        if existing is not None and existing.kind != kind:
            return refuse(f"session {sender} is a {existing.kind} session")
        if sender in self.live:
            return refuse(f"session {sender} is already logged on")
        link = NativeLink(
            self.zctx, self.cfg.endpoints["gateway"], partial(self._gateway_rejected, sender)
        )
        try:
            logged = await link.login(name, password)
        except LoginRefused as exc:
            await link.close()
            return refuse(f"logon refused: {exc.text}")
        existing = self.sessions.get(sender)
        problem = None
        if existing is not None and existing.account != logged.account:
            problem = f"SenderCompID {sender} belongs to another account"
        elif sender in self.live or conn.closing:
            problem = f"session {sender} is already logged on"
        elif kind == DROP_COPY:
            await link.close()
        if problem:
            await link.close()
            return refuse(problem)
        state = existing or SessionState(sender, logged.account, name, kind)
        self.sessions[sender] = state
        reset = get(msg, 141) == "Y"
        seq = int(seq_text)
        if reset:
            state.next_in = state.next_out = 1
            self.store.forget_messages(sender)
        if seq < state.next_in:
            if kind == ORDER_ENTRY:
                await link.close()
            return refuse(f"MsgSeqNum too low, expecting {state.next_in} but received {seq}")
        conn.state, conn.heartbeat_s = state, float(hb)
        self.live[sender] = conn
        if kind == ORDER_ENTRY:
            conn.link = self.links[sender] = link
        gap = seq > state.next_in
        if not gap:
            state.next_in = seq + 1
        self.save(state)
        conn.send("A", [(98, 0), (108, hb), (141, "Y" if reset else None)])
        if gap:
            conn.asked_from = state.next_in
            conn.send("2", [(7, state.next_in), (16, 0)])
        self.log.info("fix_logon", sender=sender, account=state.account, kind=kind, reset=reset)

    def resend(self, conn: Connection, first: int, upto: int) -> None:
        state, fix = conn.state, self.cfg.fix
        now = codec.utc_timestamp()

        def gap_fill(at: int, new: int) -> None:
            fields = [(123, "Y"), (36, new)]
            self._queue(
                conn, codec.build("4", fix.target_comp_id, state.sender, at, fields, None, now)
            )

        cursor = first
        for seq, raw in self.store.messages(state.sender, first, upto):
            if seq > cursor:
                gap_fill(cursor, seq)
            msg_type, body, sent = codec.fields_of(raw)
            self._queue(
                conn, codec.build(msg_type, fix.target_comp_id, state.sender, seq, body, None, sent)
            )
            cursor = seq + 1
        if cursor <= upto:
            gap_fill(cursor, upto + 1)

    # -- application messages ------------------------------------------------------------

    def application(self, conn: Connection, msg_type: str, msg, seq: int) -> None:
        try:
            if msg_type == "D":
                self._new_order(conn, msg)
            elif msg_type in "FG":
                self._cancel_replace(conn, msg_type, msg)
            else:
                self._status(conn, msg)
        except BadField as exc:
            conn.reject(seq, exc.reason, exc.text, tag=exc.tag, ref_type=msg_type)

    def _forward(self, conn: Connection, request, pending: Pending) -> None:
        state = conn.state
        if len(conn.link.inflight) >= MAX_PENDING_PER_SESSION:
            reply = RequestRejected(Reject.TOO_MANY_IN_FLIGHT, "", request.cl_ord_id)
            self.deliver(self.book.gateway_reject(state.account, request, pending, reply.code, 0))
            return
        self.book.expect((state.account, request.cl_ord_id), pending)
        conn.link.send(request)

    def _new_order(self, conn: Connection, msg) -> None:
        _need(msg, 11, 55, 54, 38, 40)
        side, ord_type = get(msg, 54), get(msg, 40)
        if side not in ("1", "2"):
            raise BadField(54, VALUE_INCORRECT, "Side (54) must be 1 (buy) or 2 (sell)")
        qty = _qty(msg, 38)
        cl_ord_id, symbol = get(msg, 11) or "", get(msg, 55) or ""
        tif = FIX_TIF.get(get(msg, 59) or "1")
        if ord_type == "1" and tif == Tif.GTC:  # a market order never carries over: IOC
            tif = Tif.IOC
        expire = get(msg, 432) or ""
        price = 0
        if ord_type == "2":
            _need(msg, 44)
            price = _price(msg, 44)
        request = PlaceOrder(
            cl_ord_id, symbol, int(side), qty, price,
            FIX_ORD_TYPE.get(ord_type, OrdType.LIMIT), tif or Tif.GTC,
            "6" in (get(msg, 18) or "").split(), 0,
            int(expire) if expire.isdigit() and len(expire) == 8 else 0,
        )  # fmt: skip
        problem = None
        if ord_type not in FIX_ORD_TYPE:
            problem = "OrdType (40) must be 1 (market) or 2 (limit)"
        elif tif is None:
            problem = "TimeInForce (59) must be 0, 1, 3, 4, 6 or 7"
        elif (tif == Tif.GTD) != bool(expire) or (expire and not request.expire_date):
            problem = "ExpireDate (432), YYYYMMDD, goes with TimeInForce (59) 6 (GTD) only"
        elif get(msg, 1) not in (None, conn.state.name):
            problem = "Account (1) is not this session's account"
        if problem is not None:
            fields = self.book.rejection(conn.state.account, request, Reject.MALFORMED, 0)
            fields = [(t, v) for t, v in fields if t not in (103, 58)]
            reason = 15 if "Account" in problem else 11
            fields += [(103, reason), (58, problem)]
            self.deliver(Outgoing(conn.state.account, conn.state.sender, "8", fields))
            return
        self._forward(conn, request, Pending(conn.state.sender, "D"))

    def _cancel_replace(self, conn: Connection, msg_type: str, msg) -> None:
        _need(msg, 11, 41, 55, 54)
        if msg_type == "G":
            _need(msg, 38, 40)
        state = conn.state
        cl_ord_id, orig = get(msg, 11) or "", get(msg, 41) or ""
        order_text = get(msg, 37) or ""
        order = None
        if order_text.isdigit():
            order = self.book.orders.get(int(order_text))
        if order is None or order.account != state.account:
            order = self.book.find(state.account, orig)
        pending = Pending(state.sender, msg_type, orig, order.order_id if order else 0)
        if order is None or not order.open:
            code = Reject.UNKNOWN_ORDER
        elif msg_type == "F":
            self._forward(conn, CancelRequest(cl_ord_id, order.order_id), pending)
            return
        else:
            qty = _qty(msg, 38) - order.cum_qty
            price = _price(msg, 44) if msg.get(44) is not None else order.price
            if qty > 0:
                self._forward(conn, ReplaceRequest(cl_ord_id, order.order_id, price, qty), pending)
                return
            code = Reject.BAD_QTY
        fields = self.book.cancel_reject(cl_ord_id, pending, msg_type, code, pending.order_id)
        self.deliver(Outgoing(state.account, state.sender, "9", fields))

    def _status(self, conn: Connection, msg) -> None:
        _need(msg, 11)
        state = conn.state
        order_text = get(msg, 37) or ""
        order_id = int(order_text) if order_text.isdigit() else 0
        fields = self.book.status(state.account, get(msg, 11) or "", order_id, 0)
        if fields is None:
            fields = [
                (37, order_text or "NONE"), (11, get(msg, 11)), (17, f"0-{self.book.exec_ids}"),
                (150, "I"), (39, "8"), (55, get(msg, 55)), (54, get(msg, 54)), (151, 0), (14, 0),
                (6, "0"), (103, ORD_REJ_REASON.get(Reject.UNKNOWN_ORDER, OTHER)),
                (58, reject_text(Reject.UNKNOWN_ORDER)),
            ]  # fmt: skip
        self.emit(state, "8", fields)

    # -- sockets ---------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*(writer.get_extra_info("peername") or ("?", "?"))[:2])
        if len(self.connections) >= self.cfg.fix.max_sessions or not self.running:
            writer.close()
            return
        conn = Connection(self, peer)
        conn.writer = writer
        self.connections.add(conn)
        try:
            while not conn.closing:
                timeout = self.cfg.fix.logon_timeout_s if conn.state is None else None
                data = await asyncio.wait_for(reader.read(READ_BYTES), timeout)
                if not data:
                    break
                try:
                    messages = conn.framer.feed(data)
                except TooLarge as exc:
                    conn.logout(str(exc))
                    messages = []
                for message in messages:
                    await conn.handle(message)
                    if conn.closing:
                        break
                self.flush()
        except (TimeoutError, ConnectionError, OSError):
            pass
        except Exception:  # a bug must cost this connection only, never the service
            self.log.exception("fix_connection_failed", peer=peer)
            conn.logout("internal error")
        finally:
            await self._drop(conn)

    async def _drop(self, conn: Connection) -> None:
        self.flush()
        self.connections.discard(conn)
        state = conn.state
        if state is not None and self.live.get(state.sender) is conn:
            del self.live[state.sender]
            link = self.links.pop(state.sender, None)
            if link is not None:
                await link.close()
        with contextlib.suppress(Exception):
            conn.writer.close()
            await asyncio.wait_for(conn.writer.wait_closed(), 1.0)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_silence(now)
            self.flush()

    def _follow(self, loop: asyncio.AbstractEventLoop, start: int) -> None:
        """The journal's committed stream, on its own thread: batches to the loop."""
        endpoints = self.cfg.endpoints
        ctx = zmq.Context.instance()
        follower = Follower(ctx, endpoints["journal_pub"], endpoints["journal_read"], start + 1)
        try:
            if start == 0:  # first start: report from the journal's present on
                present = None
                while self.running and present is None:
                    if follower.sub.poll(100):
                        topic, payload = recv_frames(follower.sub)
                        if topic == TOPIC_BEAT:  # records before it are in its seq
                            present = beat_decoder.decode(payload).seq
                if present is None:
                    return
                follower.next_seq = present + 1
                follower.source_seq = max(follower.source_seq, present)
                self.log.info("fix_follow_from", seq=follower.next_seq)
            loop.call_soon_threadsafe(self._positioned.set)
            while self.running:
                readable = follower.sub.poll(50)
                if not follower.due(bool(readable)):
                    continue
                try:
                    records = follower.drain()
                except HistoryArchived as exc:
                    # down longer than the journal keeps its history: report from the
                    # present on (docs/fix.md); the orders' state is still asked with H
                    self.log.error("fix_history_archived", error=str(exc))
                    follower.next_seq = follower.source_seq + 1
                    continue
                if records:
                    asyncio.run_coroutine_threadsafe(self.committed(records), loop).result()
        except Exception as exc:  # the loop must hear of it, or reports stop silently
            self.log.error("fix_follow_failed", error=str(exc))
            loop.call_soon_threadsafe(self._stop)
        finally:
            follower.close()

    def _stop(self) -> None:
        self.running = False
        self._stopped.set()

    async def main(self) -> int:
        fix = self.cfg.fix
        self.zctx = zmq.asyncio.Context()
        self._stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        self._positioned = asyncio.Event()
        start = self.store.journal_seq()
        follow = threading.Thread(target=self._follow, args=(loop, start), daemon=True)
        follow.start()
        # no session before the follower knows where it reads from: an order entered
        # meanwhile could fall before that point and never be reported
        stopped = asyncio.create_task(self._stopped.wait())
        await asyncio.wait(
            [asyncio.create_task(self._positioned.wait()), stopped],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._stopped.is_set():
            self.store.close()
            return 0
        server = await asyncio.start_server(self.serve, fix.host, fix.port, reuse_address=True)
        tick = asyncio.create_task(self._tick())
        self.log.info(
            "ready", host=fix.host, port=fix.port, sessions=len(self.sessions), journal_seq=start
        )
        await self._stopped.wait()
        server.close()
        tick.cancel()
        for conn in list(self.connections):
            conn.logout("the exchange's FIX service is stopping")
        self.flush()
        await asyncio.sleep(0.1)
        for conn in list(self.connections):
            await self._drop(conn)
        await asyncio.to_thread(follow.join, 2.0)
        self.store.close()
        self.zctx.term()
        return 0

    def run(self) -> int:
        return asyncio.run(self.main())
