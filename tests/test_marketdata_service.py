"""The real marketdata process against a fake journal made of real ZeroMQ sockets.

The records are real: commands run through the matching engine. The fake journal
publishes them in batches on journal_pub and serves ReadRange on journal_read, as the
journal does; it can also leave a batch off the PUB, as a lossy network would. The
engine's own book is the truth every feed is compared with.
"""

from __future__ import annotations

import queue
import random
import signal
import threading
import time

import pytest
import zmq

from clients.client import snapshot
from clients.feed import BookSubscriber
from services.common.bus import TOPIC_BEAT, TOPIC_RECORDS, Beat, ReadRange, Record, Reopen
from services.common.codec import DecodeError, bus_decoder, encode, feed_decoder
from services.common.wire import (
    Bbo,
    Cancelled,
    CancelReason,
    CashAdjusted,
    FeedError,
    Fill,
    L2Update,
    Reject,
    Rested,
    Snapshot,
    SnapshotRequest,
    Trade,
    TradesRequest,
    TradingPause,
)
from services.marketdata.book import MarketData
from tests.mesh import Service, load, wait_for, write_config
from tests.test_marketdata_book import CMD, Flow

SYMBOLS = ("AAPL", "TSLA", "MSFT")
DEPTH = 5


class FakeJournal:
    """journal_pub + journal_read on a thread of their own (sockets stay on it)."""

    def __init__(self, cfg, beat_ms: int = 100) -> None:
        self.cfg = cfg
        self.records: list[Record] = []  # what is "committed": served on reads
        self.reads = 0
        self.beat_ms = beat_ms
        self._outbox: queue.Queue[list[Record]] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._bound.wait(5)

    def commit(self, records: list[Record], publish: bool = True) -> None:
        """Append a batch; publish it too unless the PUB is to 'lose' it."""
        with self._lock:
            self.records += records
        if publish:
            self._outbox.put(records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        ctx = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        router = ctx.socket(zmq.ROUTER)
        for sock in (pub, router):
            sock.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.bind(self.cfg.endpoints["journal_pub"])
        router.bind(self.cfg.endpoints["journal_read"])
        self._bound.set()
        beat_every = self.beat_ms / 1000
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                if router.poll(10):
                    self._answer(router)
                while True:
                    try:
                        batch = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    pub.send_multipart([TOPIC_RECORDS, encode(batch)])
                now = time.monotonic()
                if self.beat_ms and now >= next_beat:
                    next_beat = now + beat_every
                    with self._lock:
                        last = self.records[-1].seq if self.records else 0
                    pub.send_multipart([TOPIC_BEAT, encode(Beat(last, 1))])
        finally:
            pub.close(0)
            router.close(0)

    def _answer(self, router: zmq.Socket) -> None:
        while True:
            try:
                ident, payload = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                request = bus_decoder.decode(payload)
            except DecodeError:
                continue
            if isinstance(request, ReadRange):
                self.reads += 1
                with self._lock:
                    start = max(request.first, 1) - 1
                    chunk = self.records[start : start + request.count]
                router.send_multipart([ident, encode(chunk)])


def batches(records: list[Record], seed: int = 1) -> list[list[Record]]:
    """Records cut into batches of 1-25, as group commit would publish them."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(records):
        n = rng.randint(1, 25)
        out.append(records[i : i + n])
        i += n
    return out


@pytest.fixture
def world(short_home):
    """(config, fake journal, record flow, marketdata Service) with nothing started
    but the journal; the marketdata process is killed by PID afterwards."""
    path = write_config(short_home, marketdata={"depth": DEPTH})
    cfg = load(path, short_home)
    journal = FakeJournal(cfg)
    flow = Flow(cfg.symbols, cfg.risk, symbols=SYMBOLS, seed=11)
    journal.commit(flow.records)  # the accounts
    service = Service("marketdata", path, short_home)
    try:
        yield cfg, journal, flow, service
    finally:
        service.kill()
        journal.close()


def start(service: Service, cfg, seq: int = 0) -> None:
    service.start()

    def up() -> bool:
        assert service.alive(), f"marketdata exited:\n{service.log()[-3000:]}"
        return _answers(cfg, seq)

    try:
        wait_for(up, timeout=20, what=f"marketdata at record {seq}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.log()[-3000:]}") from None


def _answers(cfg, seq: int) -> bool:
    try:
        return snapshot(cfg.endpoints["marketdata_snapshot"], "AAPL", 0.2).journal_seq >= seq
    except Exception:
        return False


def subscriber(cfg, symbol: str, depth: int = DEPTH, **kw) -> BookSubscriber:
    return BookSubscriber(
        zmq.Context.instance(),
        cfg.endpoints["marketdata_pub"],
        cfg.endpoints["marketdata_snapshot"],
        symbol,
        depth,
        **kw,
    )


def wait_live(sub: BookSubscriber, push) -> None:
    """Until an update reaches ``sub`` through the PUB (its subscription is live)."""
    wait_for(lambda: (push(), sub.poll(50), sub.updates)[-1], timeout=10, what="a live feed")


def engine_top(flow: Flow, symbol: str) -> tuple[list, list]:
    book = flow.engine.books[symbol]
    return book.bids.depth(DEPTH), book.asks.depth(DEPTH)


def engine_full(flow: Flow, symbol: str) -> tuple[list, list]:
    book = flow.engine.books[symbol]
    return book.bids.depth(), book.asks.depth()


def full_book(cfg, symbol: str) -> tuple[list, list]:
    snap = snapshot(cfg.endpoints["marketdata_snapshot"], symbol)
    return [tuple(x) for x in snap.bids], [tuple(x) for x in snap.asks]


def in_step(sub: BookSubscriber, cfg, flow: Flow) -> None:
    """Until marketdata has applied every record and ``sub`` all it published; then
    the subscriber's top levels must be the engine's."""

    def caught_up() -> bool:
        sub.poll(20)
        snap = snapshot(cfg.endpoints["marketdata_snapshot"], sub.symbol)
        return snap.journal_seq == len(flow.records) and sub.seq == snap.seq

    wait_for(caught_up, what=f"the {sub.symbol} subscriber in step")
    book = flow.engine.books[sub.symbol]
    assert (sub.bids(), sub.asks()) == (book.bids.depth(sub.depth), book.asks.depth(sub.depth))


def test_feeds_match_the_engine_book_and_trades(world):
    cfg, journal, flow, service = world
    start(service, cfg, len(flow.records))
    subs = {s: subscriber(cfg, s, trades=True, bbo=True) for s in SYMBOLS}
    shallow = subscriber(cfg, "AAPL", depth=2)  # fewer levels than the feed keeps
    try:
        for sub in [*subs.values(), shallow]:
            wait_live(sub, lambda: journal.commit(flow.more(5)))
        base = {s: sub.resyncs for s, sub in subs.items()}
        live_from = len(flow.records)
        for batch in batches(flow.more(1_500)):
            journal.commit(batch)
        for sym, sub in subs.items():
            in_step(sub, cfg, flow)
            assert sub.resyncs == base[sym] and sub.updates > 50  # never lost one
            assert full_book(cfg, sym) == engine_full(flow, sym)
            # one trade per fill, in order, numbered 1, 2, 3, ... on its topic
            fills = [
                (e.trade_id, e.price, e.qty, e.side)
                for r in flow.records[live_from:]
                for e in r.events
                if isinstance(e, Fill) and e.symbol == sym
            ]
            assert len(fills) > 20
            trades = [t for t in sub.take_trades() if t.trade_id >= fills[0][0]]
            assert [(t.trade_id, t.price, t.qty, t.side) for t in trades] == fills
            assert all(b.seq == a.seq + 1 for a, b in zip(trades, trades[1:], strict=False))
            assert sub.trade_gaps == 0
            # the BBO feed's last word is the engine's best bid and offer
            bid, ask = engine_top(flow, sym)
            bbo = sub.last_bbo
            assert bbo is not None
            assert (bbo.bid_px, bbo.bid_qty) == (bid[0] if bid else (0, 0))
            assert (bbo.ask_px, bbo.ask_qty) == (ask[0] if ask else (0, 0))
            assert sub.best() == (bbo.bid_px, bbo.bid_qty, bbo.ask_px, bbo.ask_qty)
        in_step(shallow, cfg, flow)
        book = flow.engine.books["AAPL"]
        assert (shallow.bids(), shallow.asks()) == (book.bids.depth(2), book.asks.depth(2))
    finally:
        for sub in [*subs.values(), shallow]:
            sub.close()


def test_late_joiner_and_gapped_subscriber_end_equal(world):
    cfg, journal, flow, service = world
    start(service, cfg)
    early = subscriber(cfg, "AAPL", check_ms=0)
    gapped = subscriber(cfg, "AAPL", check_ms=0)  # only a gap can resync it
    late = None
    try:
        for sub in (early, gapped):
            wait_live(sub, lambda: journal.commit(flow.more(5)))
        early_base, gapped_base = early.resyncs, gapped.resyncs
        for batch in batches(flow.more(600), 2):
            journal.commit(batch)
        in_step(gapped, cfg, flow)
        late = subscriber(cfg, "AAPL")  # joins with a book built
        gapped.drop_next(7)  # loses seven updates at the start of the next burst
        for batch in batches(flow.more(600), 3):
            journal.commit(batch)
        for sub in (early, gapped, late):
            in_step(sub, cfg, flow)
        assert early.resyncs == early_base  # never lost anything
        assert gapped.resyncs == gapped_base + 1  # the gap, seen and mended once
        assert late.resyncs >= 1 and (late.bids() or late.asks())
    finally:
        for sub in (early, gapped, late):
            if sub is not None:
                sub.close()


def test_a_lost_tail_is_found_by_a_quiet_check(world):
    cfg, journal, flow, service = world
    start(service, cfg)
    sub = subscriber(cfg, "TSLA", check_ms=200)
    mirror = MarketData(cfg.symbols, DEPTH)  # what marketdata publishes
    try:
        wait_live(sub, lambda: journal.commit(flow.more(5)))
        journal.commit(flow.more(200))
        in_step(sub, cfg, flow)
        mirror.apply(flow.records)
        base = sub.resyncs
        tail = flow.more(100)
        lost = sum(1 for m in mirror.apply(tail) if isinstance(m, L2Update) and m.symbol == "TSLA")
        assert lost > 0
        sub.drop_next(lost)  # every update of the tail: no later one shows the gap
        journal.commit(tail)
        in_step(sub, cfg, flow)
        assert sub.resyncs >= base + 1 and sub.seq == mirror.books["TSLA"].l2_seq

    finally:
        sub.close()


def test_late_start_catches_up_from_the_read_endpoint_and_fills_gaps(world):
    cfg, journal, flow, service = world
    journal.commit(flow.more(800))  # published to nobody: only reads can deliver it
    start(service, cfg, len(flow.records))
    for sym in SYMBOLS:
        assert full_book(cfg, sym) == engine_full(flow, sym)
    sub = subscriber(cfg, "MSFT", check_ms=0)
    try:
        wait_live(sub, lambda: journal.commit(flow.more(5)))
        base, reads = sub.resyncs, journal.reads
        for n, batch in enumerate(batches(flow.more(500), 4)):
            journal.commit(batch, publish=n % 5 != 2)  # every fifth batch lost on the PUB
        in_step(sub, cfg, flow)
        assert journal.reads > reads  # the lost batches came from the read endpoint
        for sym in SYMBOLS:
            assert full_book(cfg, sym) == engine_full(flow, sym)
        assert sub.resyncs == base  # marketdata mended the gaps: its own feed had none
    finally:
        sub.close()


def test_restart_keeps_the_numbering_and_sigterm_is_clean(world):
    cfg, journal, flow, service = world
    start(service, cfg)
    sub = subscriber(cfg, "AAPL", check_ms=0)
    try:
        wait_live(sub, lambda: journal.commit(flow.more(5)))
        for batch in batches(flow.more(400), 5):
            journal.commit(batch)
        in_step(sub, cfg, flow)
        base, seq = sub.resyncs, sub.seq
        monitor = sub.sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        service.signal(signal.SIGTERM)
        assert service.proc.wait(5) == 0
        assert '"stopped"' in service.log()
        # the new process replays the journal in other batches, yet numbers alike: a
        # subscriber that lost nothing carries on without a resync
        start(service, cfg, len(flow.records))
        assert snapshot(cfg.endpoints["marketdata_snapshot"], "AAPL").seq == seq
        assert monitor.poll(10_000), "the subscriber did not reconnect"
        sub.sub.disable_monitor()
        monitor.close(0)
        # a SUB resends its subscriptions after a reconnect only when its owner calls
        # into it (ZeroMQ handles the reconnect's command there): a bot polls anyway
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            sub.poll(20)
        for batch in batches(flow.more(300), 6):
            journal.commit(batch)
        in_step(sub, cfg, flow)
        assert sub.seq > seq and sub.resyncs == base
    finally:
        sub.close()


def test_hostile_snapshot_requests_get_errors(world):
    """Junk is answered MALFORMED and an unknown symbol UNKNOWN_SYMBOL, never with an
    empty book; a frame past the size limit only costs its sender the connection."""
    cfg, journal, flow, service = world
    journal.commit(flow.more(50))
    start(service, cfg, len(flow.records))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cfg.endpoints["marketdata_snapshot"])
    try:
        junk = (
            b"",
            b"\xc1",
            encode([1, 2, 3]),
            encode(ReadRange(1, 5)),
            encode(Trade("A", 1, 1, 1, 1, 1)),
        )
        for frame in junk:
            sock.send(frame)
        answers = []
        for _ in junk:
            assert sock.poll(5_000), f"no answer after {answers}"
            answers.append(feed_decoder.decode(sock.recv()))
        assert [(type(a), a.code) for a in answers] == [(FeedError, Reject.MALFORMED)] * 5
        for request in (SnapshotRequest("NOPE"), TradesRequest("NOPE", 5)):
            sock.send(encode(request))
            assert sock.poll(5_000)
            assert feed_decoder.decode(sock.recv()) == FeedError(
                Reject.UNKNOWN_SYMBOL, "unknown symbol", "NOPE"
            )
        sock.send(b"x" * 10_000)  # past MAXMSGSIZE: ZeroMQ drops the connection
        assert not sock.poll(300)
        assert service.alive()
        assert snapshot(cfg.endpoints["marketdata_snapshot"], "AAPL").journal_seq == len(
            flow.records
        )
        # a subscriber to a made-up symbol stays unsynced and says why
        nope = subscriber(cfg, "NOPE", timeout_ms=500)
        try:
            assert nope.poll(0) == 0 and not nope.synced
            assert nope.error is not None and nope.error.code == Reject.UNKNOWN_SYMBOL
        finally:
            nope.close()
    finally:
        sock.close(0)


def test_subscriber_takes_only_its_symbols_updates(short_home):
    """A SUB subscription is a prefix ("L2.SPY" also matches "L2.SPYX"), and anything
    may arrive on a topic: the subscriber uses exactly its own, well-formed updates."""
    ctx = zmq.Context.instance()
    pub_ep, snap_ep = f"ipc://{short_home}/pub", f"ipc://{short_home}/snap"
    pub, router = ctx.socket(zmq.PUB), ctx.socket(zmq.ROUTER)
    for sock in (pub, router):
        sock.setsockopt(zmq.LINGER, 0)
    pub.bind(pub_ep)
    router.bind(snap_ep)
    snap = Snapshot("SPY", 3, 5, [(100, 1), (99, 2), (98, 3)], [(101, 4)], 10)

    def serve_one() -> None:
        if router.poll(5_000):
            ident, _ = router.recv_multipart()
            router.send_multipart([ident, encode(snap)])

    server = threading.Thread(target=serve_one)
    server.start()
    sub = BookSubscriber(ctx, pub_ep, snap_ep, "SPY", depth=2, check_ms=0)
    try:
        assert sub.poll(0) == 0 and sub.seq == 3 and sub.bids() == [(100, 1), (99, 2)]
        server.join()

        def send(topic: bytes, message) -> None:
            pub.send_multipart([topic, message if isinstance(message, bytes) else encode(message)])

        wait_for(
            lambda: (send(b"L2.SPY", L2Update("SPY", 4, [], [(101, 5)])), sub.poll(20))[1],
            what="a live feed",
        )
        send(b"L2.SPYX", L2Update("SPYX", 5, [(99, 0)], []))  # another symbol
        send(b"L2.SPY", Bbo("SPY", 5, 0, 0, 0, 0))  # the wrong message type
        send(b"L2.SPY", b"\xc1")  # not MessagePack
        send(b"T.SPY", Trade("SPY", 1, 1, 100, 1, 1))  # a feed it did not ask for
        pub.send(b"L2.SPY")  # one frame only
        send(b"L2.SPY", L2Update("SPY", 5, [(100, 0)], []))  # best bid leaves
        wait_for(lambda: (sub.poll(20), sub.seq == 5)[1], what="update 5")
        # 98 moves into the top 2 with no update of its own: it came with the snapshot
        assert sub.bids() == [(99, 2), (98, 3)] and sub.asks() == [(101, 5)]
        assert sub.resyncs == 1 and sub.take_trades() == [] and sub.last_bbo is None
    finally:
        sub.close()
        pub.close(0)
        router.close(0)


def test_a_volatility_pause_reaches_the_bbo_feed_and_snapshots(world):
    """Records with the pause, reopen and cash messages: marketdata carries on, a bbo
    with ``paused`` tells subscribers when the pause begins and ends, and a snapshot
    tells a late joiner."""
    cfg, journal, flow, service = world
    start(service, cfg, len(flow.records))
    price = cfg.symbols["AAPL"].reference

    def commit(command, *events) -> None:  # hand-made records, numbered after the flow's
        journal.commit([Record(len(journal.records) + 1, 1, command, list(events))])

    def add() -> None:
        commit(CMD, Rested(1, 1, "AAPL", 1, price, 1))

    sub = subscriber(cfg, "AAPL", bbo=True, check_ms=0)
    late = None
    try:
        wait_live(sub, add)
        # the record's bbo follows its L2 update on the wire: it may come a moment later
        wait_for(lambda: (sub.poll(20), sub.last_bbo)[1], what="the bbo")
        assert not sub.paused and not sub.last_bbo.paused
        commit(CMD, Cancelled(1, 2, "AAPL", 2, price, 5, CancelReason.VOLATILITY_PAUSE, False))
        commit(CMD, TradingPause("AAPL", True, price, price - 100, price + 100))
        commit(CMD, CashAdjusted(1, 1_000, 5_000))
        wait_for(lambda: (sub.poll(20), sub.paused)[1], what="the pause on the bbo feed")
        late = subscriber(cfg, "AAPL")  # no bbo feed: the snapshot says it
        wait_for(lambda: (late.poll(20), late.synced)[1], what="a late joiner")
        assert late.paused and snapshot(cfg.endpoints["marketdata_snapshot"], "AAPL").paused
        bids = sub.bids()
        commit(Reopen("AAPL"), TradingPause("AAPL", False, price, price - 100, price + 100))
        wait_for(lambda: (sub.poll(20), not sub.paused)[1], what="the reopening")
        assert not snapshot(cfg.endpoints["marketdata_snapshot"], "AAPL").paused
        assert sub.bids() == bids and service.alive()  # the pause moved no level
        add()
        wait_for(lambda: (sub.poll(20), sub.bids() != bids)[1], what="the feed after it")
    finally:
        sub.close()
        if late is not None:
            late.close()
