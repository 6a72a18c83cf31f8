"""The marketdata service: public feeds and snapshots from the committed stream.

Only committed records are published (durable before visible). Each topic carries
its own sequence number so a subscriber can see a gap; the snapshot endpoint gives
the full book with the L2 sequence it is valid at (the zguide's Clone pattern).
"""

from __future__ import annotations

import signal

import zmq

from services.common.beats import BeatSender
from services.common.codec import DecodeError, encode, feed_decoder
from services.common.config import Config
from services.common.protocol import (
    L2Update,
    SnapshotRequest,
    Trade,
    bbo_topic,
    l2_topic,
    trade_topic,
)
from services.common.stream import Follower
from services.marketdata.book import MarketData


def topic_of(message) -> bytes:
    if isinstance(message, L2Update):
        return l2_topic(message.symbol)
    if isinstance(message, Trade):
        return trade_topic(message.symbol)
    return bbo_topic(message.symbol)


class MarketDataService:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        self.md = MarketData(cfg.symbols, int(cfg.marketdata.get("depth", 10)))
        self.ctx = zmq.Context.instance()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 1_000_000)
        self.pub.bind(cfg.endpoints["marketdata_pub"])
        self.snap = self.ctx.socket(zmq.ROUTER)
        self.snap.setsockopt(zmq.LINGER, 0)
        self.snap.setsockopt(zmq.MAXMSGSIZE, 4096)
        self.snap.bind(cfg.endpoints["marketdata_snapshot"])
        self.follower = Follower(
            self.ctx, cfg.endpoints["journal_pub"], cfg.endpoints["journal_read"]
        )
        heartbeat_ms = cfg.timings.get("heartbeat_ms", 100)
        self.beats = BeatSender(self.ctx, cfg.endpoints["heartbeat"], "marketdata", heartbeat_ms)
        self.running = True

    def _publish(self, records) -> None:
        for message in self.md.apply(records):
            self.pub.send_multipart([topic_of(message), encode(message)])

    def _snapshots(self) -> None:
        for _ in range(64):
            try:
                frames = self.snap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                request = feed_decoder.decode(frames[-1])
            except DecodeError:
                continue
            if isinstance(request, SnapshotRequest):
                self.snap.send_multipart([*frames[:-1], encode(self.md.snapshot(request.symbol))])

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        history = self.follower.catch_up_patiently(lambda: self.running, self.log)
        self.md.apply(history)  # build the books, publish nothing
        self.log.info("ready", seq=self.md.journal_seq)
        try:
            while self.running:
                poller = zmq.Poller()
                poller.register(self.follower.sub, zmq.POLLIN)
                poller.register(self.snap, zmq.POLLIN)
                ready = dict(poller.poll(100))
                if self.follower.sub in ready or self.follower.source_seq >= self.follower.next_seq:
                    self._publish(self.follower.drain())
                if self.snap in ready:
                    self._snapshots()
                if self.beats.due():
                    seq = self.md.journal_seq
                    self.beats.send(
                        "marketdata", self.follower.source_epoch, seq, self.follower.source_seq
                    )
        finally:
            for sock in (self.pub, self.snap):
                sock.close(0)
            self.follower.close()
            self.beats.close()
        return 0
