"""A local copy of one symbol's public book, kept in step with the marketdata feed.

The zguide's Clone pattern: subscribe to the L2 topic first, then ask for a snapshot,
drop updates at or below the snapshot's sequence number and apply the rest in order.
PUB/SUB drops messages under bursts (docs/performance.md), so a gap in the sequence numbers
triggers a fresh snapshot on its own; ``resyncs`` counts every snapshot taken,
the first one included. A loss at the very end of a burst shows no gap until the
next update, so a subscriber that has heard nothing for ``check_ms`` compares its
sequence number with a snapshot's (asked for without blocking) and resyncs if it is
behind.

A subscriber that does not read for a while loses messages at marketdata's end
(``[marketdata] pub_hwm`` per subscriber) or at its own (``rcvhwm``): it sees the gap,
or the quiet check does, and resyncs the same way. A snapshot the service refuses (an
unknown symbol, say) leaves the book unsynced with the reason in ``error``, and the
next attempt waits ``timeout_ms``. ``paused`` says whether the symbol is in a volatility
pause: from each snapshot, and (with ``bbo``) from the BBO feed as soon as it changes.

The trading day (with ``session``, the default): ``state`` is the symbol's session
state (a ``Session``), ``trading_date`` its trading date, ``indicative`` the auction's
indicative result in a call period ((price, matched, imbalance, imbalance_side); price
0: nothing would execute) and ``auction`` the last uncross's result (an ``AuctionInfo``
with ``final`` set), from each snapshot and then from the ``S.`` and ``A.`` topics.
Those messages carry the journal sequence number of their change: one a snapshot
already holds is passed over, and each is whole on its own (a lost one needs no
repair: the next, or the quiet check's snapshot, sets it right).

Call ``poll`` often: besides taking messages, it is where ZeroMQ gets to resend the
subscription after a reconnect (a restarted marketdata), and where checks complete.

Several marketdata services (lists of feed and snapshot endpoints, in the same order):
the subscriber follows one at a time. When its snapshot endpoint does not answer (a
resync, or the quiet check) or its feed's connection drops, it moves to the next and
resynchronises from that one's snapshot. Every service numbers each topic the same
way (the numbers come from the committed stream), so no trade is taken twice.

    book = BookSubscriber(ctx, "tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557", "AAPL")
    while True:
        book.poll(100)
        best_bids = book.bids()[:3]
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from clients.core import Rotation, endpoint_list
from services.common.wire import (
    AuctionInfo,
    Bbo,
    DecodeError,
    FeedError,
    L2Update,
    Session,
    SessionState,
    Snapshot,
    SnapshotRequest,
    Trade,
    auction_topic,
    bbo_topic,
    encode,
    feed_decoder,
    l2_topic,
    session_topic,
    trade_topic,
)

MAX_BATCH = 10_000  # messages taken per poll, so a flood cannot starve the caller
# one typed decoder per topic: a message of another type on a topic fails to decode
L2_DECODER = msgspec.msgpack.Decoder(L2Update)
TRADE_DECODER = msgspec.msgpack.Decoder(Trade)
BBO_DECODER = msgspec.msgpack.Decoder(Bbo)
SESSION_DECODER = msgspec.msgpack.Decoder(SessionState)
AUCTION_DECODER = msgspec.msgpack.Decoder(AuctionInfo)
NO_AUCTION = (0, 0, 0, 0)
CALLS = (Session.PRE_OPEN, Session.PRE_CLOSE)


class BookSubscriber:
    """Top ``depth`` levels of ``symbol``; with ``trades`` / ``bbo`` also those feeds.

    ``poll`` never raises when marketdata is away: the book just stays unsynced
    (``synced`` False) and the next poll asks for a snapshot again (of the next
    marketdata, given several: ``markets.moves`` counts the moves)."""

    def __init__(
        self,
        ctx: zmq.Context,
        pub_endpoint: str | Sequence[str],
        snapshot_endpoint: str | Sequence[str],
        symbol: str,
        depth: int = 10,
        *,
        trades: bool = False,
        bbo: bool = False,
        session: bool = True,
        timeout_ms: int = 2_000,
        check_ms: int = 1_000,
        max_trades: int = 10_000,
        rcvhwm: int = 100_000,
    ) -> None:
        self.symbol = symbol
        self.depth = depth
        self.timeout_ms = timeout_ms
        self.check_ms = check_ms  # 0: never check a quiet feed against a snapshot
        self._ctx = ctx
        pubs, snapshots = endpoint_list(pub_endpoint), endpoint_list(snapshot_endpoint)
        if len(pubs) != len(snapshots):
            raise ValueError("one snapshot endpoint per feed endpoint")
        self.markets = Rotation(list(zip(pubs, snapshots, strict=True)))
        self._l2 = l2_topic(symbol)
        self._trade = trade_topic(symbol)
        self._bbo = bbo_topic(symbol)
        self._session = session_topic(symbol)
        self._auction = auction_topic(symbol)
        # the L2 topic first: subscribed before any snapshot is asked for
        self._topics = [self._l2]
        if trades:
            self._topics.append(self._trade)
        if bbo:
            self._topics.append(self._bbo)
        if session:
            self._topics += [self._session, self._auction]
        self._rcvhwm = rcvhwm
        self._monitor: zmq.Socket | None = None  # several services: a dropped feed moves
        self._connect()
        self._bids: dict[int, int] = {}  # the service's top snapshot.depth levels
        self._asks: dict[int, int] = {}
        self.seq = 0  # L2 sequence number the book is at
        self.journal_seq = 0  # committed record of the last snapshot
        self.synced = False
        self.resyncs = 0
        self.updates = 0  # L2 updates applied from the feed (not from snapshots)
        self.trades: deque[Trade] = deque(maxlen=max_trades)
        self.trade_seq = 0
        self.trade_gaps = 0  # trades lost: the trade feed has no replay, only a count
        self.last_bbo: Bbo | None = None
        self.paused = False  # a volatility pause, as of the last snapshot or bbo
        self.state = Session.CONTINUOUS  # the session state, as of the last snapshot or S.
        self.trading_date = 0
        self.indicative = NO_AUCTION  # in a call: price, matched, imbalance, its side
        self.auction: AuctionInfo | None = None  # the last uncross's result
        self._day_seq = 0  # journal seq of the last session fact taken
        self._drop = 0
        self._heard = time.monotonic()  # last L2 message or snapshot
        self._probe: zmq.Socket | None = None  # a quiet-feed check awaiting its answer
        self._probe_seq = 0
        self._probe_until = 0.0
        self._feed_depth = 0  # levels the feed keeps, from the last snapshot (0: not known)
        self.error: FeedError | None = None  # the last refusal from the snapshot endpoint
        self._retry_at = 0.0  # no snapshot asked before this after a refusal

    def _connect(self) -> None:
        """Subscribe to the marketdata service in use."""
        pub, self._snapshot_endpoint = self.markets.current
        self.sub = self._ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, self._rcvhwm)
        for topic in self._topics:
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        if self.markets.several:
            self._monitor = self.sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.sub.connect(pub)

    def _disconnect(self) -> None:
        if self._monitor is not None:
            self.sub.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        self.sub.close(0)

    def _silent(self) -> None:
        """The service in use did not answer for a snapshot: with another to go to,
        move there, unsynced (the next poll resyncs from its snapshot)."""
        if not self.markets.several:
            return
        self._drop_probe()
        self._disconnect()
        self.markets.move()
        self._connect()
        self.synced = False
        self._retry_at = 0.0
        self._heard = time.monotonic()

    def _dropped(self) -> bool:
        """Whether the feed's connection dropped (watched with several services)."""
        dropped = False
        while self._monitor is not None and self._monitor.poll(0):
            dropped |= recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED
        return dropped

    def close(self) -> None:
        self._drop_probe()
        self._disconnect()

    def drop_next(self, count: int) -> None:
        """Discard the next ``count`` L2 updates, as a lossy network would (for tests)."""
        self._drop += count

    # -- snapshots ------------------------------------------------------------

    def _ask(self) -> zmq.Socket:
        """A fresh socket per request, so a late answer is never taken for a later one."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._snapshot_endpoint)
        # only the levels the feed keeps are needed (all the service sends until known)
        sock.send(encode(SnapshotRequest(self.symbol, self._feed_depth)))
        return sock

    def _answer(self, sock: zmq.Socket) -> Snapshot | None:
        try:
            snap = feed_decoder.decode(sock.recv(zmq.NOBLOCK))
        except (zmq.Again, *DecodeError):
            return None
        finally:
            sock.close(0)
        if type(snap) is FeedError:
            self.error = snap
            self._retry_at = time.monotonic() + self.timeout_ms / 1000
            return None
        if type(snap) is not Snapshot or snap.symbol != self.symbol:
            return None
        self.error = None
        return snap

    def request_snapshot(self) -> Snapshot | None:
        """The full book from the snapshot endpoint; None if it did not answer in time."""
        sock = self._ask()
        if not sock.poll(self.timeout_ms):
            sock.close(0)
            return None
        return self._answer(sock)

    def resync(self) -> bool:
        """Start again from a snapshot; False if marketdata did not answer.

        Updates already queued here were published before the snapshot is taken, so
        they are all at or below its sequence number: dropped before asking."""
        self._drop_probe()
        self._receive(discard_l2=True)
        if time.monotonic() < self._retry_at:  # refused a moment ago: do not hammer
            self.synced = False
            return False
        sock = self._ask()
        if not sock.poll(self.timeout_ms):
            sock.close(0)
            self.synced = False
            self._silent()
            return False
        snap = self._answer(sock)
        if snap is None:
            self.synced = False
            return False
        self._install(snap)
        return True

    def _install(self, snap: Snapshot) -> None:
        # keep as many levels as the feed maintains, whatever depth was asked for: a
        # level below our depth moves up without an update when a better one leaves
        self._bids = dict(snap.bids[: snap.depth])
        self._asks = dict(snap.asks[: snap.depth])
        self._feed_depth = snap.depth
        self.paused = snap.paused
        if snap.journal_seq >= self._day_seq:
            self.state = Session(snap.state)
            self.trading_date = snap.trading_date
            self.indicative = tuple(snap.indicative)
            self._day_seq = snap.journal_seq
        self.seq = snap.seq
        self.journal_seq = snap.journal_seq
        self.synced = True
        self.resyncs += 1
        self._heard = time.monotonic()

    def _check(self) -> None:
        """When the feed has been quiet, ask for a snapshot without waiting for it, and
        on a later poll see whether an update was lost at the tail of the stream."""
        now = time.monotonic()
        probe = self._probe
        if probe is None:
            if now - self._heard > self.check_ms / 1000:
                self._probe = self._ask()
                self._probe_seq = self.seq
                self._probe_until = now + self.timeout_ms / 1000
            return
        if probe.poll(0):
            snap = self._answer(probe)
        elif now < self._probe_until:
            return
        else:  # no answer: ask again after the next quiet spell, or of the next service
            self._silent()
            snap = None
        self._drop_probe()
        self._heard = now
        if snap is None:
            return
        if snap.seq < self._probe_seq:  # marketdata's numbering went back: a new history
            self._install(snap)
        elif snap.seq > self.seq:
            self._receive()  # updates that were still in flight when it answered
            if self.seq < snap.seq:
                self._install(snap)

    def _drop_probe(self) -> None:
        if self._probe is not None:
            self._probe.close(0)
            self._probe = None

    # -- the feed -------------------------------------------------------------

    def _receive(self, discard_l2: bool = False) -> int:
        """Take what is queued without waiting; returns the messages used."""
        used = 0
        recv = self.sub.recv_multipart
        for _ in range(MAX_BATCH):
            try:
                topic, payload = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except ValueError:  # not two frames: not a feed message
                continue
            if topic == self._l2:  # exact: a SUB prefix also matches longer symbols
                self._heard = time.monotonic()
                if discard_l2:
                    continue
                if self._drop:
                    self._drop -= 1
                    continue
                handle, decode = self._on_l2, L2_DECODER.decode
            elif topic == self._trade:
                handle, decode = self._on_trade, TRADE_DECODER.decode
            elif topic == self._bbo:
                handle, decode = self._on_bbo, BBO_DECODER.decode
            elif topic == self._session:
                handle, decode = self._on_session, SESSION_DECODER.decode
            elif topic == self._auction:
                handle, decode = self._on_auction, AUCTION_DECODER.decode
            else:
                continue
            try:
                message = decode(payload)
            except DecodeError:  # broken, or not the topic's message type
                continue
            used += handle(message)
        return used

    def _on_l2(self, update: L2Update) -> int:
        if not self.synced or update.seq <= self.seq:
            return 0  # already in the snapshot (or waiting for one)
        if update.seq != self.seq + 1:
            self.resync()  # a gap: start again from a snapshot
            return 1
        for levels, changes in ((self._bids, update.bids), (self._asks, update.asks)):
            for price, size in changes:
                if size:
                    levels[price] = size
                else:
                    levels.pop(price, None)
        self.seq = update.seq
        self.updates += 1
        return 1

    def _on_trade(self, trade: Trade) -> int:
        if trade.seq <= self.trade_seq:
            return 0
        if self.trade_seq and trade.seq != self.trade_seq + 1:
            self.trade_gaps += trade.seq - self.trade_seq - 1
        self.trade_seq = trade.seq
        self.trades.append(trade)
        return 1

    def _on_bbo(self, bbo: Bbo) -> int:
        """A BBO is complete on its own: a lost one needs no repair, only order matters."""
        if self.last_bbo is not None and bbo.seq <= self.last_bbo.seq:
            return 0
        self.last_bbo = bbo
        self.paused = bbo.paused
        return 1

    def _on_session(self, message: SessionState) -> int:
        if message.seq < self._day_seq:
            return 0  # a snapshot taken since holds it, or newer
        self._day_seq = message.seq
        self.state = Session(message.state)
        self.trading_date = message.trading_date
        if self.state not in CALLS:
            self.indicative = NO_AUCTION
        return 1

    def _on_auction(self, message: AuctionInfo) -> int:
        if message.seq < self._day_seq:
            return 0
        self._day_seq = message.seq
        numbers = (message.price, message.matched, message.imbalance, message.imbalance_side)
        if message.final:
            self.auction = message
            self.indicative = NO_AUCTION
        else:
            self.indicative = numbers
        return 1

    @property
    def in_call(self) -> bool:
        """In a call period (pre-open or pre-close): orders rest without matching."""
        return self.state in CALLS

    def poll(self, timeout_ms: int = 0) -> int:
        """Take every message that has arrived, waiting up to ``timeout_ms`` for the
        first; returns how many changed something (L2 updates, trades, BBOs, session
        states and auctions)."""
        if self._dropped():
            self._silent()
        if not self.synced and not self.resync():
            return 0
        used = self._receive()
        if not used and timeout_ms > 0 and self.sub.poll(timeout_ms):
            used = self._receive()
        if not self.synced:
            self.resync()
        elif self.check_ms:
            self._check()
        return used

    # -- the book -------------------------------------------------------------

    def bids(self) -> list[tuple[int, int]]:
        """(price, size) best first, at most ``depth`` levels."""
        return sorted(self._bids.items(), reverse=True)[: self.depth]

    def asks(self) -> list[tuple[int, int]]:
        return sorted(self._asks.items())[: self.depth]

    def best(self) -> tuple[int, int, int, int]:
        """(bid_px, bid_qty, ask_px, ask_qty) from the local book; zeros when empty."""
        bid = max(self._bids) if self._bids else 0
        ask = min(self._asks) if self._asks else 0
        return bid, self._bids.get(bid, 0), ask, self._asks.get(ask, 0)

    def take_trades(self) -> list[Trade]:
        """Trades received since the last call, oldest first."""
        out = list(self.trades)
        self.trades.clear()
        return out
