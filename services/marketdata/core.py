"""Marketdata's decisions, apart from its sockets: committed records in, feed messages
out; a snapshot request's parts in, the frames of its answer out (or nothing).

Nobody outside may make the service do unbounded work or hold unbounded memory
(docs/security.md): each connection has a token bucket, one past its rate is told so
at most once per ``RATE_TELL_S`` (the rest is dropped unanswered, costing no send), a
request over the size limits is answered MALFORMED to its routing id alone, and a
peer whose reply queue was full is not served for a while (``unsent``).
"""

from __future__ import annotations

from collections.abc import Iterable

from services.common.bus import Record
from services.common.codec import DecodeError, encode, feed_decoder
from services.common.metrics import Metrics
from services.common.wire import (
    REJECT_TEXT,
    AuctionInfo,
    FeedError,
    L2Update,
    Reject,
    SessionState,
    SnapshotRequest,
    Trade,
    TradesRequest,
    auction_topic,
    bbo_topic,
    l2_topic,
    session_topic,
    trade_topic,
)
from services.marketdata.book import FeedMessage, MarketData
from services.marketdata.guard import PeerTable

MAX_PARTS = 8  # routing id, a few envelope frames (REQ, proxies) and the request
MAX_REQUEST_BYTES = 8192  # all parts kept; what is past either limit is read and dropped
REFUSED_LOG_S = 1.0  # while requests are being refused, one log line a second
RATE_TELL_S = 0.1  # past its rate a peer is told once per this, the rest dropped
REASONS = ("rate", "malformed", "unknown", "stalled", "gone")


def error(code: Reject, symbol: str = "", text: str = "") -> bytes:
    return encode(FeedError(int(code), text or REJECT_TEXT[code], symbol))


RATE_LIMITED = error(Reject.RATE_LIMITED)  # made once: a flood costs no encoding
TOO_BIG = error(Reject.MALFORMED, text=f"at most {MAX_PARTS} parts and {MAX_REQUEST_BYTES} bytes")
NOT_A_REQUEST = error(Reject.MALFORMED, text="not a snapshot_req or trades_req")


def topic_of(message: FeedMessage) -> bytes:
    if type(message) is L2Update:
        return l2_topic(message.symbol)
    kind = type(message)
    if kind is Trade:
        return trade_topic(message.symbol)
    if kind is SessionState:
        return session_topic(message.symbol)
    if kind is AuctionInfo:
        return auction_topic(message.symbol)
    return bbo_topic(message.symbol)


class MarketDataCore:
    def __init__(self, md: MarketData, peers: PeerTable, metrics: Metrics, log) -> None:
        self.md = md
        self.peers = peers
        self.log = log
        help_text = "snapshot requests not served, by reason"
        self.refused = {
            r: metrics.counter("snapshot_requests_refused", help_text, {"reason": r})
            for r in REASONS
        }
        self.answered = metrics.counter("snapshot_requests_answered", "snapshot requests served")
        self.published = metrics.counter("feed_messages", "feed messages published (every topic)")
        self.anomalies = 0
        self._refused_total, self._refused_at = 0, 0.0

    # -- the feed -------------------------------------------------------------------

    def records(self, records: Iterable[Record]) -> list[FeedMessage]:
        """The feed messages committed ``records`` make (publish with ``topic_of``)."""
        out = self.md.apply(records)
        self.published.inc(len(out))
        self._check_anomalies()
        return out

    def replay(self, records: Iterable[Record]) -> None:
        """Records published before this process started: the books and sequence
        numbers as they were, nothing to publish."""
        self.md.apply(records)
        self._check_anomalies()

    def _check_anomalies(self) -> None:
        """A removal bigger than its level means we misread the stream: say so loudly."""
        anomalies = self.md.anomalies()
        if anomalies != self.anomalies:
            self.log.error("book_anomaly", count=anomalies, seq=self.md.journal_seq)
            self.anomalies = anomalies

    # -- snapshot requests ------------------------------------------------------------

    def request(self, parts: list[bytes], within: bool, now: float) -> list[bytes] | None:
        """The frames answering one request (routing id first, the envelope echoed), or
        None to drop it unanswered. ``within``: it kept to the size limits (``parts``
        is then every part, else the routing id alone)."""
        ident, peers, refused = parts[0], self.peers, self.refused
        if peers.stalled(ident, now):
            refused["stalled"].value += 1
            return None
        if not peers.allow(ident, now):
            refused["rate"].value += 1
            if not peers.tell(ident, now, RATE_TELL_S):
                return None  # told already: dropped unanswered
            reply = RATE_LIMITED
        elif not within:
            refused["malformed"].value += 1
            reply = TOO_BIG
        else:
            reply = self._answer(parts[-1])
        return [*parts[:-1], reply] if within else [ident, reply]

    def _answer(self, request: bytes) -> bytes:
        """The encoded reply to one request's payload."""
        try:
            request = feed_decoder.decode(request)
        except DecodeError as exc:
            self.refused["malformed"].value += 1
            return error(Reject.MALFORMED, text=f"malformed: {str(exc)[:200]}")
        kind = type(request)
        if kind is SnapshotRequest:
            reply = self.md.snapshot(request.symbol, request.depth)
        elif kind is TradesRequest:
            reply = self.md.recent_trades(request.symbol, request.limit)
        else:
            self.refused["malformed"].value += 1
            return NOT_A_REQUEST
        if reply is None:  # never an empty book: the order entry says the same
            self.refused["unknown"].value += 1
            return error(Reject.UNKNOWN_SYMBOL, request.symbol)
        self.answered.value += 1
        return encode(reply)

    def unsent(self, ident: bytes, now: float, gone: bool) -> None:
        """An answer could not be queued: the peer left (``gone``), or its queue is full
        (it does not read: not served for a while)."""
        if gone:
            self.refused["gone"].value += 1
        else:
            self.refused["stalled"].value += 1
            self.peers.stall(ident, now)

    def refused_counts(self) -> dict[str, int]:
        return {reason: counter.value for reason, counter in self.refused.items()}

    def log_refused(self, now: float) -> None:
        """Requests not served, logged at most every REFUSED_LOG_S while they grow."""
        if now < self._refused_at:
            return
        counts = self.refused_counts()
        total = sum(counts.values())
        if total != self._refused_total:
            self._refused_total = total
            self._refused_at = now + REFUSED_LOG_S
            self.log.warning("snapshot_requests_refused", peers=len(self.peers), **counts)
