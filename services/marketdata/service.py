"""The marketdata service: public feeds and snapshots from the committed stream.

Only committed records are published (durable before visible). Each topic carries
its own sequence number so a subscriber can see a gap; the snapshot ROUTER gives the
book with the L2 sequence it is valid at (the zguide's Clone pattern). One
thread does both, so a snapshot is always exactly at the last L2 message published.

The decisions are ``core.py``'s; this is its node. Nobody outside may make this loop
do unbounded work or hold unbounded memory (docs/security.md): the PUB drops messages
for a subscriber that does not read past ``pub_hwm`` (the subscriber resynchronises
from a snapshot); the snapshot endpoint takes a request part by part and keeps only a
few small parts, and never waits on a peer that does not read its answers.
"""

from __future__ import annotations

import zmq

from services.common import snapfile
from services.common.bus import Record
from services.common.codec import encode
from services.common.config import Config, bind_endpoint, service_name
from services.common.frames import send_pair
from services.common.node import Node
from services.common.stream import Follower
from services.marketdata.book import MarketData
from services.marketdata.core import MAX_PARTS, MAX_REQUEST_BYTES, MarketDataCore, topic_of
from services.marketdata.guard import PeerTable

SNAPSHOTS_PER_TURN = 64  # snapshot requests answered before the feed gets a turn again
POLL_MS = 100
MAX_FRAME = 4096  # a request is a symbol and a number: ZeroMQ disconnects a bigger frame
STALL_S = 1.0  # a peer whose reply queue was full is not served for this long


class MarketDataService:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        conf = cfg.marketdata
        depth, max_depth = conf.depth, conf.snapshot_max_depth
        node = self.node = Node("marketdata", cfg, log)
        snapshots = snapfile.Snapshots(cfg.home, "marketdata", conf.snapshot_every, log)
        md = snapshots.load(
            lambda data: MarketData(cfg.symbols, depth, max_depth).restore(data)
        ) or MarketData(cfg.symbols, depth, max_depth)
        peers = PeerTable(conf.snapshot_rate, conf.snapshot_burst, conf.snapshot_peers, STALL_S)
        self.core = MarketDataCore(md, peers, node.metrics, log)
        self.md = md
        # per subscriber: past SNDHWM ZeroMQ drops that subscriber's messages (it sees a
        # gap and resyncs) instead of this process holding all it does not read
        self.pub = node.socket(zmq.PUB, SNDHWM=conf.pub_hwm)
        self.pub.bind(bind_endpoint(cfg, cfg.endpoints["marketdata_pub"]))
        # replies queued per peer; a send to a full queue fails at once (MANDATORY)
        # rather than being dropped unseen, so the peer can be marked as not reading
        self.snap = node.socket(
            zmq.ROUTER, MAXMSGSIZE=MAX_FRAME, SNDHWM=conf.snapshot_queue, ROUTER_MANDATORY=1
        )
        self.snap.bind(bind_endpoint(cfg, cfg.endpoints["marketdata_snapshot"]))
        self.follower = Follower(
            node.ctx,
            cfg.endpoints["journal_pub"],
            cfg.endpoints["journal_read"],
            md.journal_seq + 1,
        )
        node.close_later(self.follower.close)
        schedule = node.snapshots(snapshots, lambda: md.journal_seq, md.state)
        node.follow(self.follower, self.publish, after=schedule)
        node.on(self.snap, self.answer_snapshots)
        follower = self.follower
        node.beat_with(
            service_name(cfg, "marketdata"),
            lambda: ("marketdata", follower.source_epoch, md.journal_seq, follower.source_seq),
        )
        node.close_later(
            lambda: log.info("stopped", seq=md.journal_seq, refused=self.core.refused_counts())
        )

    def publish(self, records: list[Record]) -> None:
        pub = self.pub
        for message in self.core.records(records):
            send_pair(pub, topic_of(message), encode(message))

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

    def answer_snapshots(self, now: float) -> None:
        core = self.core
        for _ in range(SNAPSHOTS_PER_TURN):
            received = self._receive()
            if received is None:
                break
            frames = core.request(*received, now)
            if frames is not None:
                self._send(frames, now)
        core.log_refused(now)

    def _send(self, frames: list[bytes], now: float) -> None:
        """Send without waiting (the envelope is the DEALER's or REQ's, echoed)."""
        try:
            self.snap.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # its queue is full: it does not read
            self.core.unsent(frames[0], now, gone=False)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.core.unsent(frames[0], now, gone=True)  # it left before its answer

    def run(self) -> int:
        md = self.md
        self.core.replay(self.node.catch_up(self.follower))
        self.log.info("ready", seq=md.journal_seq, depth=md.depth)
        return self.node.run(POLL_MS)
