"""Who may ask the snapshot endpoint for how much: a token bucket per connection.

A ROUTER names each connection by its ZeroMQ routing id, so that is the key. The
table is bounded: past ``max_peers`` the least recently heard peer is forgotten (a
forgotten peer comes back with a full bucket, which costs the exchange at most one
burst). A peer whose reply queue was full is not served for ``stall_s``: building
answers nobody reads would cost the loop for nothing.
"""

from __future__ import annotations

from collections import OrderedDict

from services.common.bucket import TokenBucket


class Peer(TokenBucket):
    __slots__ = ("stalled_until", "told_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        super().__init__(rate, burst, now)
        self.stalled_until = 0.0
        self.told_at = -1.0  # when it was last answered RATE_LIMITED


class PeerTable:
    """``rate`` requests a second per peer on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float, max_peers: int, stall_s: float = 1.0) -> None:
        if rate <= 0 or burst < 1 or max_peers < 1:
            raise ValueError("snapshot_rate > 0, snapshot_burst >= 1 and snapshot_peers >= 1")
        self.rate = rate
        self.burst = burst
        self.max_peers = max_peers
        self.stall_s = stall_s
        self.peers: OrderedDict[bytes, Peer] = OrderedDict()

    def __len__(self) -> int:
        return len(self.peers)

    def _peer(self, ident: bytes, now: float) -> Peer:
        peers = self.peers
        peer = peers.get(ident)
        if peer is None:
            peer = peers[ident] = Peer(self.rate, self.burst, now)
            if len(peers) > self.max_peers:
                peers.popitem(last=False)
        else:
            peers.move_to_end(ident)
        return peer

    def allow(self, ident: bytes, now: float) -> bool:
        """Take one token from ``ident``'s bucket; False when it has none left."""
        return self._peer(ident, now).take(now)

    def tell(self, ident: bytes, now: float, every: float) -> bool:
        """True at most once per ``every`` seconds: whether an over-rate peer is told so
        this time (the rest of a flood is dropped unanswered, costing no send)."""
        peer = self._peer(ident, now)
        if now - peer.told_at < every:
            return False
        peer.told_at = now
        return True

    def stalled(self, ident: bytes, now: float) -> bool:
        peer = self.peers.get(ident)
        return peer is not None and now < peer.stalled_until

    def stall(self, ident: bytes, now: float) -> None:
        self._peer(ident, now).stalled_until = now + self.stall_s
