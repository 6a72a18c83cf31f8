"""A local copy of one symbol's public book, kept in step with the marketdata feed.

The zguide's Clone pattern: subscribe to the L2 topic first, then ask for a snapshot,
drop updates at or below the snapshot's sequence number and apply the rest in order.
PUB/SUB can drop messages, so a gap in the sequence numbers triggers a fresh snapshot
on its own; ``resyncs`` counts them.

    >>> book = BookSubscriber(ctx, "tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557", "AAPL")
    >>> book.poll(100)
    >>> book.bids()[:3]
"""

from __future__ import annotations

import time

import zmq

from services.common.codec import encode, feed_decoder
from services.common.protocol import L2Update, Snapshot, SnapshotRequest, l2_topic


class BookSubscriber:
    def __init__(
        self,
        ctx: zmq.Context,
        pub_endpoint: str,
        snapshot_endpoint: str,
        symbol: str,
        depth: int = 10,
        timeout_ms: int = 2_000,
    ) -> None:
        self.symbol = symbol
        self.depth = depth
        self.timeout_ms = timeout_ms
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, l2_topic(symbol))
        self.sub.connect(pub_endpoint)
        self._ctx = ctx
        self._snapshot_endpoint = snapshot_endpoint
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self.seq = 0
        self.synced = False
        self.resyncs = 0
        self._drop = 0

    def close(self) -> None:
        self.sub.close(0)

    def drop_next(self, count: int) -> None:
        """Discard the next ``count`` updates, as a lossy network would (for tests)."""
        self._drop += count

    def snapshot(self) -> Snapshot:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._snapshot_endpoint)
        try:
            sock.send(encode(SnapshotRequest(self.symbol)))
            if not sock.poll(self.timeout_ms):
                raise TimeoutError("marketdata did not answer the snapshot request")
            return feed_decoder.decode(sock.recv())
        finally:
            sock.close(0)

    def resync(self) -> None:
        snap = self.snapshot()
        self._bids = dict(snap.bids[: self.depth])
        self._asks = dict(snap.asks[: self.depth])
        self.seq = snap.seq
        self.synced = True
        self.resyncs += 1

    def _apply(self, update: L2Update) -> None:
        if update.seq <= self.seq:
            return  # already in the snapshot
        if update.seq != self.seq + 1:
            self.synced = False  # a gap: start again from a snapshot
            return
        for levels, changes in ((self._bids, update.bids), (self._asks, update.asks)):
            for price, size in changes:
                if size:
                    levels[price] = size
                else:
                    levels.pop(price, None)
        self.seq = update.seq

    def poll(self, timeout_ms: int = 0) -> int:
        """Apply every update that arrives within ``timeout_ms``; returns how many."""
        if not self.synced:
            self.resync()
        applied = 0
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            wait = max(0, int((deadline - time.monotonic()) * 1000))
            if not self.sub.poll(wait if applied == 0 else 0):
                return applied
            _, payload = self.sub.recv_multipart()
            if self._drop:
                self._drop -= 1
                continue
            self._apply(feed_decoder.decode(payload))
            applied += 1
            if not self.synced:
                self.resync()

    def bids(self) -> list[tuple[int, int]]:
        return sorted(self._bids.items(), reverse=True)[: self.depth]

    def asks(self) -> list[tuple[int, int]]:
        return sorted(self._asks.items())[: self.depth]
