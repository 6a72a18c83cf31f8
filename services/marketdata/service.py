"""The marketdata service: public feeds and snapshots from the committed stream.

Only committed records are published (durable before visible). Each topic carries
its own sequence number so a subscriber can see a gap; the snapshot ROUTER gives the
full book with the L2 sequence it is valid at (the zguide's Clone pattern). One
thread does both, so a snapshot is always exactly at the last L2 message published.
"""

from __future__ import annotations

import signal

import zmq

from services.common import snapfile
from services.common.beats import BeatSender
from services.common.codec import DecodeError, encode, feed_decoder
from services.common.config import Config
from services.common.frames import send_pair
from services.common.protocol import (
    L2Update,
    Record,
    SnapshotRequest,
    Trade,
    TradesRequest,
    bbo_topic,
    l2_topic,
    trade_topic,
)
from services.common.runtime import tune_gc
from services.common.stream import Follower
from services.marketdata.book import FeedMessage, MarketData

PUB_HWM = 1_000_000  # a burst of a whole catch-up must not be dropped at our end
SNAPSHOTS_PER_TURN = 64  # snapshot requests answered before the feed gets a turn again
POLL_MS = 100


def topic_of(message: FeedMessage) -> bytes:
    if type(message) is L2Update:
        return l2_topic(message.symbol)
    if type(message) is Trade:
        return trade_topic(message.symbol)
    return bbo_topic(message.symbol)


class MarketDataService:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        depth = int(cfg.marketdata.get("depth", 10))
        every = int(cfg.marketdata.get("snapshot_every", 50_000))
        self.snapshots = snapfile.Snapshots(cfg.home, "marketdata", every, log)
        self.md = self.snapshots.load(
            lambda data: MarketData(cfg.symbols, depth).restore(data)
        ) or MarketData(cfg.symbols, depth)
        self.ctx = zmq.Context.instance()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        self.pub.bind(cfg.endpoints["marketdata_pub"])
        self.snap = self.ctx.socket(zmq.ROUTER)
        self.snap.setsockopt(zmq.LINGER, 0)
        self.snap.setsockopt(zmq.MAXMSGSIZE, 4096)  # a request is a symbol: refuse floods
        self.snap.bind(cfg.endpoints["marketdata_snapshot"])
        self.follower = Follower(
            self.ctx,
            cfg.endpoints["journal_pub"],
            cfg.endpoints["journal_read"],
            self.md.journal_seq + 1,
        )
        heartbeat_ms = cfg.timings.get("heartbeat_ms", 100)
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

    def answer_snapshots(self) -> None:
        for _ in range(SNAPSHOTS_PER_TURN):
            try:
                frames = self.snap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                request = feed_decoder.decode(frames[-1])
            except DecodeError:
                continue  # hostile or broken: no answer, the peer times out
            kind = type(request)
            if kind is SnapshotRequest:
                reply = encode(self.md.snapshot(request.symbol))
            elif kind is TradesRequest:
                reply = encode(self.md.recent_trades(request.symbol, request.limit))
            else:
                continue
            self.snap.send_multipart([*frames[:-1], reply])  # DEALER or REQ envelope

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
            self.log.info("stopped", seq=self.md.journal_seq)
        return 0
