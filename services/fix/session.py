"""The FIX 4.4 session layer for one TCP connection, without the socket.

``Connection.handle`` takes each whole message ``codec.Framer`` checked and decides:
Logon (A) with Username/Password, Heartbeat (0), TestRequest (1), ResendRequest (2),
Reject (3), SequenceReset (4), Logout (5), sequence numbers, then the application
messages (D, F, G, H) it hands to the service (``FixService``). What it sends goes
through ``service.emit``, which numbers, stores and queues it; the service writes
queued bytes only after the store committed them.
"""

from __future__ import annotations

import time

import simplefix

from services.common.bucket import TokenBucket
from services.fix.codec import BEGIN_STRING, Framer, get
from services.fix.store import DROP_COPY, ORDER_ENTRY, SessionState

# SessionRejectReason (373)
INVALID_TAG, REQUIRED_MISSING, VALUE_INCORRECT, BAD_FORMAT, COMPID_PROBLEM = 0, 1, 5, 6, 9
ADMIN_TYPES = frozenset("012345A")
APP_TYPES = frozenset("DFGH")
DROP_COPY_SUB_ID = "DROPCOPY"  # TargetSubID (57) on a Logon that asks for a drop copy
# BusinessRejectReason (380)
UNSUPPORTED_TYPE, NOT_AUTHORIZED = 3, 6


class Connection:
    def __init__(self, service, peer: str) -> None:
        cfg = service.cfg.fix
        self.service = service
        self.peer = peer
        self.framer = Framer(cfg.max_message_bytes)
        self.bucket = TokenBucket(cfg.message_rate, 2 * cfg.message_rate, time.monotonic())
        self.state: SessionState | None = None
        self.out: list[bytes] = []  # bytes to write once the store has committed them
        self.closing = False  # write what is queued, then close
        self.heartbeat_s = 30.0
        self.last_in = self.last_out = time.monotonic()
        self.test_sent = 0.0  # when our TestRequest went out, unanswered
        self.asked_from = 0  # a ResendRequest we sent from this MsgSeqNum, not yet filled
        self.link = None  # the NativeLink (order-entry sessions)

    # -- sending ----------------------------------------------------------------------

    def send(self, msg_type: str, fields: list) -> None:
        self.service.emit(self.state, msg_type, fields, self)

    def logout(self, text: str) -> None:
        """Logout (5) with a reason, then close once it is written."""
        if self.state is not None:
            self.send("5", [(58, text)])
        self.closing = True

    def reject(
        self, ref_seq: int | None, reason: int, text: str, tag: int | None = None, ref_type=None
    ):
        self.send("3", [(45, ref_seq), (371, tag), (372, ref_type), (373, reason), (58, text)])

    # -- receiving ----------------------------------------------------------------------

    async def handle(self, msg: simplefix.FixMessage) -> None:
        if self.closing:
            return
        now = time.monotonic()
        self.last_in, self.test_sent = now, 0.0
        if not self.bucket.take(now):
            sender = self.state.sender if self.state else None
            self.service.log.warning("fix_flood", peer=self.peer, sender=sender)
            self.logout("message rate exceeded")
            return
        msg_type = get(msg, 35)
        if get(msg, 8) != BEGIN_STRING.decode():
            self.logout("BeginString must be FIX.4.4")
            return
        if self.state is None:
            if msg_type != "A":  # the first message must be a Logon: drop the connection
                self.closing = True
                return
            await self.service.logon(self, msg)
            return
        seq_text = get(msg, 34)
        if seq_text is None or not seq_text.isdigit():
            self.logout("MsgSeqNum (34) missing or not a number")
            return
        seq = int(seq_text)
        if get(msg, 49) != self.state.sender or get(msg, 56) != self.service.cfg.fix.target_comp_id:
            self.reject(seq, COMPID_PROBLEM, "CompID problem", ref_type=msg_type)
            self.logout("SenderCompID or TargetCompID does not match the session")
            return
        if msg_type is None:
            self.reject(seq, REQUIRED_MISSING, "MsgType (35) missing", tag=35)
            return
        if msg_type == "4" and get(msg, 123) != "Y":  # reset mode: any MsgSeqNum
            self._sequence_reset(msg, seq)
            return
        expected = self.state.next_in
        if seq > expected:
            if msg_type == "2":
                self.resend(msg, seq)
            if msg_type == "5":
                self.logout("logged out")
                return
            if self.asked_from != expected:
                self.asked_from = expected
                self.send("2", [(7, expected), (16, 0)])
            return
        if seq < expected:
            if get(msg, 43) == "Y":
                return  # a duplicate we already had
            self.logout(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            return
        if self.asked_from and seq >= self.asked_from:
            self.asked_from = 0
        self.state.next_in = seq + 1
        self.service.save(self.state)
        if get(msg, 52) is None:
            self.reject(
                seq, REQUIRED_MISSING, "SendingTime (52) missing", tag=52, ref_type=msg_type
            )
            return
        await self._dispatch(msg_type, msg, seq)

    async def _dispatch(self, msg_type: str, msg, seq: int) -> None:
        if msg_type == "0":
            return
        if msg_type == "1":
            test_id = get(msg, 112)
            if test_id is None:
                self.reject(seq, REQUIRED_MISSING, "TestReqID (112) missing", tag=112, ref_type="1")
            else:
                self.send("0", [(112, test_id)])
        elif msg_type == "2":
            self.resend(msg, seq)
        elif msg_type == "3":
            self.service.log.info(
                "fix_reject_received", sender=self.state.sender, text=get(msg, 58)
            )
        elif msg_type == "4":
            self._sequence_reset(msg, seq)
        elif msg_type == "5":
            self.logout("logged out")
        elif msg_type == "A":
            self.reject(seq, VALUE_INCORRECT, "already logged on", ref_type="A")
        elif msg_type in APP_TYPES:
            if self.state.kind == DROP_COPY:
                self.business_reject(
                    seq, msg_type, NOT_AUTHORIZED, "a drop-copy session only receives"
                )
            else:
                self.service.application(self, msg_type, msg, seq)
        else:
            self.business_reject(
                seq, msg_type, UNSUPPORTED_TYPE, f"MsgType {msg_type} not supported"
            )

    def business_reject(self, seq: int, msg_type: str, reason: int, text: str, ref_id=None) -> None:
        self.send("j", [(45, seq), (372, msg_type), (379, ref_id), (380, reason), (58, text)])

    def _sequence_reset(self, msg, seq: int) -> None:
        new = get(msg, 36)
        if new is None or not new.isdigit():
            self.reject(seq, REQUIRED_MISSING, "NewSeqNo (36) missing", tag=36, ref_type="4")
            return
        if int(new) < self.state.next_in:
            self.reject(
                seq, VALUE_INCORRECT, "NewSeqNo below the expected MsgSeqNum", tag=36, ref_type="4"
            )
            return
        self.state.next_in = int(new)
        self.service.save(self.state)

    def resend(self, msg, seq: int) -> None:
        """Answer a ResendRequest from the store: application messages again with
        PossDupFlag, every run of others (session messages, or older than the store
        keeps) as one SequenceReset-GapFill."""
        begin, end = get(msg, 7), get(msg, 16)
        if begin is None or end is None or not begin.isdigit() or not end.isdigit():
            self.reject(
                seq, REQUIRED_MISSING, "BeginSeqNo (7) and EndSeqNo (16) required", ref_type="2"
            )
            return
        last = self.state.next_out - 1
        first, upto = int(begin), int(end) or last
        upto = min(upto, last)
        self.service.resend(self, max(first, 1), upto)

    def check_silence(self, now: float) -> None:
        """Heartbeats both ways: ours when we said nothing for HeartBtInt; a
        TestRequest when they did not; Logout after another interval of silence."""
        if self.state is None or self.closing:
            return
        if now - self.last_out >= self.heartbeat_s:
            self.send("0", [])
        silent = now - self.last_in
        if self.test_sent and now - self.test_sent > self.heartbeat_s:
            self.logout("no answer to TestRequest")
        elif not self.test_sent and silent > self.heartbeat_s * 1.2:
            self.test_sent = now
            self.send("1", [(112, f"T{int(now)}")])


def session_kind(logon: simplefix.FixMessage) -> str:
    return DROP_COPY if get(logon, 57) == DROP_COPY_SUB_ID else ORDER_ENTRY
