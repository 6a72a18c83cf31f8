"""The marketdata service: public feeds and snapshots from the committed stream.

Only committed records are published (durable before visible). Each topic carries
its own sequence number so a subscriber can see a gap; the snapshot ROUTER gives the
book with the L2 sequence it is valid at (the zguide's Clone pattern). One
thread does both, so a snapshot is always exactly at the last L2 message published.

Nobody outside may make this loop do unbounded work or hold unbounded memory
(docs/security.md): the PUB drops messages for a subscriber that does not read past
``pub_hwm`` (the subscriber resynchronises from a snapshot); the snapshot endpoint
takes a request part by part and keeps only a few small parts, rate-limits each
connection, sends at most ``snapshot_max_depth`` levels per side, and never waits on
a peer that does not read its answers.
"""

from __future__ import annotations

import signal
import time

import zmq

from services.common import snapfile
from services.common.beats import BeatSender
from services.common.bus import Record
from services.common.codec import DecodeError, encode, feed_decoder
from services.common.config import Config
from services.common.frames import send_pair
from services.common.runtime import tune_gc
from services.common.stream import Follower
from services.common.wire import (
    REJECT_TEXT,
    FeedError,
    L2Update,
    Reject,
    SnapshotRequest,
    Trade,
    TradesRequest,
    bbo_topic,
    l2_topic,
    trade_topic,
)
from services.marketdata.book import FeedMessage, MarketData
from services.marketdata.guard import PeerTable

SNAPSHOTS_PER_TURN = 64  # snapshot requests answered before the feed gets a turn again
POLL_MS = 100
MAX_FRAME = 4096  # a request is a symbol and a number: ZeroMQ disconnects a bigger frame
MAX_PARTS = 8  # routing id, a few envelope frames (REQ, proxies) and the request
MAX_REQUEST_BYTES = 8192  # all parts kept; what is past either limit is read and dropped
STALL_S = 1.0  # a peer whose reply queue was full is not served for this long
REFUSED_LOG_S = 1.0  # while requests are being refused, one log line a second


def error(code: Reject, symbol: str = "", text: str = "") -> bytes:
    return encode(FeedError(int(code), text or REJECT_TEXT[code], symbol))


RATE_LIMITED = error(Reject.RATE_LIMITED)  # made once: a flood costs no encoding
RATE_TELL_S = 0.1  # past its rate a peer is told once per this, the rest dropped
TOO_BIG = error(Reject.MALFORMED, text=f"at most {MAX_PARTS} parts and {MAX_REQUEST_BYTES} bytes")
NOT_A_REQUEST = error(Reject.MALFORMED, text="not a snapshot_req or trades_req")


def topic_of(message: FeedMessage) -> bytes:
    if type(message) is L2Update:
        return l2_topic(message.symbol)
    if type(message) is Trade:
        return trade_topic(message.symbol)
    return bbo_topic(message.symbol)


class MarketDataService:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        conf = cfg.marketdata
        depth, max_depth = conf.depth, conf.snapshot_max_depth
        self.snapshots = snapfile.Snapshots(cfg.home, "marketdata", conf.snapshot_every, log)
        self.md = self.snapshots.load(
            lambda data: MarketData(cfg.symbols, depth, max_depth).restore(data)
        ) or MarketData(cfg.symbols, depth, max_depth)
        self.peers = PeerTable(
            conf.snapshot_rate, conf.snapshot_burst, conf.snapshot_peers, STALL_S
        )
        self.refused = {"rate": 0, "malformed": 0, "unknown": 0, "stalled": 0, "gone": 0}
        self._refused_total, self._refused_at = 0, 0.0
        self.ctx = zmq.Context.instance()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        # per subscriber: past it ZeroMQ drops that subscriber's messages (it sees a gap
        # and resyncs) instead of this process holding all it does not read
        self.pub.setsockopt(zmq.SNDHWM, conf.pub_hwm)
        self.pub.bind(cfg.endpoints["marketdata_pub"])
        self.snap = self.ctx.socket(zmq.ROUTER)
        self.snap.setsockopt(zmq.LINGER, 0)
        self.snap.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        # replies queued per peer; a send to a full queue fails at once (MANDATORY)
        # rather than being dropped unseen, so the peer can be marked as not reading
        self.snap.setsockopt(zmq.SNDHWM, conf.snapshot_queue)
        self.snap.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.snap.bind(cfg.endpoints["marketdata_snapshot"])
        self.follower = Follower(
            self.ctx,
            cfg.endpoints["journal_pub"],
            cfg.endpoints["journal_read"],
            self.md.journal_seq + 1,
        )
        heartbeat_ms = cfg.timings.heartbeat_ms
        self.beats = BeatSender(self.ctx, cfg.endpoints["heartbeat"], "marketdata", heartbeat_ms)
        self.anomalies = 0
        self.running = True

    def _stop(self, *_) -> None:
        self.running = False

    def publish(self, records: list[Record]) -> None:
        pub = self.pub
        for message in self.md.apply(records):
            send_pair(pub, topic_of(message), encode(message))
        self._check_anomalies()

    def _check_anomalies(self) -> None:
        """A removal bigger than its level means we misread the stream: say so loudly."""
        anomalies = self.md.anomalies()
        if anomalies != self.anomalies:
            self.log.error("book_anomaly", count=anomalies, seq=self.md.journal_seq)
            self.anomalies = anomalies

    def _receive(self) -> tuple[list[bytes], bool] | None:
        """One request's parts (routing id first) and whether it kept to the limits;
        None when nothing waits. ZeroMQ hands over a message only once all its parts
        have arrived, so the parts after the first are read without waiting; those
        past the limits are read and dropped, never gathered."""
        sock = self.snap
        try:
            part = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        parts, size, within = [part], len(part), True
        while sock.rcvmore:
            try:
                part = sock.recv(zmq.NOBLOCK)
            except zmq.Again:  # cannot happen (see above); never wait here if it does
                return parts, False
            size += len(part)
            if within and (len(parts) == MAX_PARTS or size > MAX_REQUEST_BYTES):
                within = False
                del parts[1:]  # the answer goes to the routing id alone
            if within:
                parts.append(part)
        return parts, within and len(parts) > 1

    def _answer(self, request: bytes) -> bytes:
        """The encoded reply to one request's payload."""
        try:
            request = feed_decoder.decode(request)
        except DecodeError as exc:
            self.refused["malformed"] += 1
            return error(Reject.MALFORMED, text=f"malformed: {str(exc)[:200]}")
        kind = type(request)
        if kind is SnapshotRequest:
            reply = self.md.snapshot(request.symbol, request.depth)
        elif kind is TradesRequest:
            reply = self.md.recent_trades(request.symbol, request.limit)
        else:
            self.refused["malformed"] += 1
            return NOT_A_REQUEST
        if reply is None:  # never an empty book: the order entry says the same
            self.refused["unknown"] += 1
            return error(Reject.UNKNOWN_SYMBOL, request.symbol)
        return encode(reply)

    def answer_snapshots(self) -> None:
        peers, refused = self.peers, self.refused
        for _ in range(SNAPSHOTS_PER_TURN):
            received = self._receive()
            if received is None:
                return
            parts, within = received
            ident, now = parts[0], time.monotonic()
            if peers.stalled(ident, now):
                refused["stalled"] += 1
                continue
            if not peers.allow(ident, now):
                refused["rate"] += 1
                if not peers.tell(ident, now, RATE_TELL_S):
                    continue  # told already: dropped unanswered
                reply = RATE_LIMITED
            elif not within:
                refused["malformed"] += 1
                reply = TOO_BIG
            else:
                reply = self._answer(parts[-1])
            self._send([*parts[:-1], reply] if within else [ident, reply], ident, now)

    def _send(self, frames: list[bytes], ident: bytes, now: float) -> None:
        """Send without waiting (the envelope is the DEALER's or REQ's, echoed)."""
        try:
            self.snap.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # its queue is full: it does not read, stop serving it a while
            self.refused["stalled"] += 1
            self.peers.stall(ident, now)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.refused["gone"] += 1  # it left before its answer was ready

    def _log_refused(self) -> None:
        """Requests not served, logged at most every REFUSED_LOG_S while they grow."""
        now = time.monotonic()
        if now < self._refused_at:
            return
        total = sum(self.refused.values())
        if total != self._refused_total:
            self._refused_total = total
            self._refused_at = now + REFUSED_LOG_S
            self.log.warning("snapshot_requests_refused", peers=len(self.peers), **self.refused)

    def _feed_due(self, ready: dict) -> bool:
        follower = self.follower
        return (
            follower.sub in ready
            or follower.source_seq >= follower.next_seq  # a beat said we are behind
            or follower.quiet()  # nothing heard: ask the journal, it may be a lost tail
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        history = self.follower.catch_up_patiently(lambda: self.running, self.log)
        self.md.apply(history)  # the books and sequence numbers as published before us
        self._check_anomalies()
        tune_gc()
        self.log.info("ready", seq=self.md.journal_seq, depth=self.md.depth)
        poller = zmq.Poller()
        poller.register(self.follower.sub, zmq.POLLIN)
        poller.register(self.snap, zmq.POLLIN)
        try:
            while self.running:
                ready = dict(poller.poll(POLL_MS))
                if self._feed_due(ready):
                    self.publish(self.follower.drain())
                    if self.snapshots.due(self.md.journal_seq):
                        self.snapshots.write(self.md.journal_seq, self.md.state())
                if self.snap in ready:
                    self.answer_snapshots()
                    self._log_refused()
                if self.beats.due():
                    self.beats.send(
                        "marketdata",
                        self.follower.source_epoch,
                        self.md.journal_seq,
                        self.follower.source_seq,
                    )
        finally:
            for sock in (self.pub, self.snap):
                sock.close(0)
            self.follower.close()
            self.beats.close()
            self.snapshots.close()
            self.log.info("stopped", seq=self.md.journal_seq, refused=self.refused)
        return 0
