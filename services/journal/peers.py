"""Following the primary matcher, with the other journals as a second source.

The primary keeps only a bounded retransmit buffer, so a journal that was down for
long, or whose disk was wiped, or that joined after a failover, needs records the
primary no longer holds (or, a new primary, never published). Those are committed, so
any other journal serves them: the follower asks the primary first and then each peer,
and only for records the primary says exist.
"""

from __future__ import annotations

import zmq

from services.common import curve
from services.common.bus import ReadRange
from services.common.codec import DecodeError, encode, raw_records
from services.common.stream import Follower, Sequenced

PEER_TIMEOUT_MS = 200


class PeerFollower(Follower):
    def __init__(self, ctx: zmq.Context, pub: str, read: str, next_seq: int, peers: list[str]):
        super().__init__(ctx, pub, read, next_seq, timeout_ms=200, decode=raw_records)
        self._peers = {endpoint: self._dealer(endpoint) for endpoint in peers}

    def _dealer(self, endpoint: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        curve.link(sock, endpoint)
        return sock

    def close(self) -> None:
        super().close()
        for sock in self._peers.values():
            sock.close(0)

    def fetch(self, first: int, count: int) -> list[Sequenced] | None:
        records = super().fetch(first, count)
        if records or first > self.source_seq:
            return records
        for endpoint in list(self._peers):
            got = self._ask(endpoint, first, count)
            if got:
                return got
        return records

    def _ask(self, endpoint: str, first: int, count: int) -> list[Sequenced]:
        sock = self._peers[endpoint]
        sock.send(encode(ReadRange(first, count)))
        if not sock.poll(PEER_TIMEOUT_MS):
            sock.close(0)  # a late answer must not be taken for the next one's
            self._peers[endpoint] = self._dealer(endpoint)
            return []
        try:
            return [r for r in raw_records(sock.recv()) if r.seq >= first]
        except DecodeError:  # Archived: that peer cannot help
            return []
