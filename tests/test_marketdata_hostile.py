"""Market data under hostile or careless readers: the real marketdata process, a fake
journal of real ZeroMQ sockets (tests/test_marketdata_service.py), peers on ipc.

ipc rather than tcp keeps what the kernel buffers per connection small, so what a
reader does not take shows up in marketdata's own memory, where the bounds apply.
Records here are written by hand: prices and sizes past 32 bits and many levels per
record make each feed message and snapshot large, so a burst is many megabytes
without many records.
"""

from __future__ import annotations

import json
import time

import pytest
import zmq

from services.common.bus import NewOrder, Record
from services.common.codec import encode, feed_decoder
from services.common.wire import (
    FeedError,
    Reject,
    Rested,
    Side,
    Snapshot,
    SnapshotRequest,
    TradesRequest,
)
from services.marketdata.guard import PeerTable
from tests.mesh import Service, load, wait_for, write_config
from tests.test_marketdata_service import FakeJournal, start, subscriber

BUY, SELL = int(Side.BUY), int(Side.SELL)
BIG = 1 << 40  # 9 bytes each on the wire
CMD = NewOrder(1, "c", "AAPL", BUY, 1, 100)
MB = 1 << 20


def vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status figure in bytes (VmRSS now, VmHWM the peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


class Records:
    """Numbered records for the fake journal."""

    def __init__(self, journal: FakeJournal) -> None:
        self.journal = journal
        self.seq = 0

    def commit(self, *event_lists: list) -> None:
        records = []
        for events in event_lists:
            self.seq += 1
            records.append(Record(self.seq, 1, CMD, events))
        self.journal.commit(records)


def levels(side: int, count: int, qty: int = BIG) -> list[Rested]:
    """``qty`` more at each of ``count`` prices of ``side``: one record that changes
    ``count`` levels (the same list serves many records: no memory per record here)."""
    return [Rested(1, 1, "AAPL", side, BIG + n, qty) for n in range(count)]


@pytest.fixture
def md(short_home):
    """A function starting marketdata with [marketdata] overrides and a fake journal
    (snapshot and feed endpoints on ipc); every process is killed by PID afterwards."""
    made: list = []

    def make(**marketdata):
        endpoints = {
            "marketdata_pub": f"ipc://{short_home}/run/md-pub",
            "marketdata_snapshot": f"ipc://{short_home}/run/md-snap",
        }
        path = write_config(short_home, marketdata=marketdata, endpoints=endpoints)
        cfg = load(path, short_home)
        journal = FakeJournal(cfg)
        service = Service("marketdata", path, short_home)
        made.extend((service, journal))
        start(service, cfg)
        return cfg, Records(journal), service

    yield make
    for thing in made:
        thing.kill() if isinstance(thing, Service) else thing.close()


def dealer(cfg, **options) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(cfg.endpoints["marketdata_snapshot"])
    return sock


def answers(sock: zmq.Socket, count: int, timeout: float = 5.0) -> list:
    out = []
    for _ in range(count):
        assert sock.poll(int(timeout * 1000)), f"{len(out)} answers of {count}"
        out.append(feed_decoder.decode(sock.recv()))
    return out


def ask(cfg, request, **options):
    """One request on a connection of its own (a fresh rate bucket), its answer."""
    sock = dealer(cfg, **options)
    try:
        sock.send(encode(request))
        return answers(sock, 1)[0]
    finally:
        sock.close(0)


def refused(service: Service) -> dict:
    """The last count of refused snapshot requests marketdata logged."""
    last: dict = {}
    for line in service.log().splitlines():
        if "snapshot_requests_refused" in line:
            last = json.loads(line)
    return last


def test_peer_table_limits_each_peer_and_forgets_the_oldest():
    table = PeerTable(rate=10, burst=3, max_peers=2, stall_s=1.0)
    assert [table.allow(b"a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert table.allow(b"a", 0.1)  # 0.1 s at 10/s: one token back
    assert not table.allow(b"a", 0.1)
    assert table.allow(b"b", 0.1)  # another peer has its own bucket
    table.allow(b"c", 0.2)  # a third: the least recently heard ("a") is forgotten
    assert len(table) == 2 and b"a" not in table.peers
    table.stall(b"b", 1.0)
    assert table.stalled(b"b", 1.5) and not table.stalled(b"b", 2.0)
    assert not table.stalled(b"never", 1.0)


def test_a_reader_that_stops_reading_is_dropped_not_buffered(md):
    """A subscriber that does not read loses messages at marketdata's PUB once
    ``pub_hwm`` of them wait for it, so marketdata's memory does not follow what it
    does not read; a subscriber beside it loses nothing; the stalled one resyncs
    from a snapshot when it reads again."""
    hwm, width, chunk, chunks = 200, 400, 50, 80
    cfg, records, service = md(depth=width, pub_hwm=hwm)
    fast = subscriber(cfg, "AAPL", depth=width, check_ms=0)
    slow = subscriber(cfg, "AAPL", depth=width, check_ms=200, rcvhwm=10)
    raw = zmq.Context.instance().socket(zmq.SUB)  # counts what reaches a reader that stalls
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.RCVHWM, 10)
    raw.setsockopt(zmq.SUBSCRIBE, b"L2.AAPL")
    raw.connect(cfg.endpoints["marketdata_pub"])
    wide = levels(BUY, width)

    def drain_raw(wait_ms: int = 0) -> int:
        got = 0
        while raw.poll(wait_ms):
            raw.recv_multipart()
            got += 1
        return got

    def burst(everyone_reads: bool) -> None:
        """``chunks`` batches of ``chunk`` records, each a message of ``width`` levels;
        the next batch only once the fast reader has every message of the last, so
        it never has more than one batch waiting for it."""
        for _ in range(chunks):
            target = fast.seq + chunk
            records.commit(*[wide] * chunk)
            wait_for(lambda t=target: (fast.poll(20), fast.seq >= t)[1], what="the fast reader")
            if everyone_reads:
                slow.poll(0)
                drain_raw()

    try:
        for sub in (fast, slow):
            wait_for(lambda s=sub: (records.commit(wide), s.poll(50), s.updates)[-1])
        wait_for(lambda: (records.commit(wide), raw.poll(50))[1], what="the raw reader")
        burst(everyone_reads=True)  # the same work with every reader keeping up
        wait_for(lambda: (slow.poll(20), slow.seq == fast.seq)[1], what="the slow reader")
        drain_raw()
        peak = vm(service.pid, "VmHWM")
        fast_resyncs, slow_resyncs, fast_updates = fast.resyncs, slow.resyncs, fast.updates
        burst(everyone_reads=False)
        published = chunks * chunk
        # each message is ~7.6 KB (ZeroMQ shares one copy among the readers): all kept
        # for the stalled readers they would come to 30 MB; bounded, to under 2
        grown = vm(service.pid, "VmHWM") - peak
        assert grown < 10 * MB, f"marketdata grew {grown / MB:.1f} MB"
        reached = drain_raw(200)  # what was queued for it at either end when it stalled
        assert 0 < reached <= hwm + 100 < published // 4
        assert fast.resyncs == fast_resyncs and fast.updates == fast_updates + published
        wait_for(
            lambda: (slow.poll(20), slow.synced and slow.seq == fast.seq)[1],
            what="the slow reader to resync",
        )
        assert slow.resyncs > slow_resyncs
        assert (slow.bids(), slow.asks()) == (fast.bids(), fast.asks())
        assert slow.bids()[0] == (BIG + width - 1, fast.bids()[0][1]) and not slow.asks()
    finally:
        fast.close()
        slow.close()
        raw.close(0)


def test_snapshot_endpoint_caps_depth_rate_and_request_size(md):
    cfg, records, service = md(depth=5, snapshot_max_depth=50, snapshot_rate=20, snapshot_burst=5)
    records.commit(levels(BUY, 80, 1) + [Rested(1, 2, "AAPL", SELL, BIG * 2, 7)])
    wait_for(lambda: ask(cfg, SnapshotRequest("AAPL")).journal_seq == records.seq)

    # depth: the cap by default, or what was asked for; the rest is counted
    whole = ask(cfg, SnapshotRequest("AAPL"))
    assert (len(whole.bids), whole.bids_omitted, whole.depth) == (50, 30, 5)
    assert whole.bids[0] == (BIG + 79, 1) and (whole.asks, whole.asks_omitted) == (
        [(BIG * 2, 7)],
        0,
    )
    ten = ask(cfg, SnapshotRequest("AAPL", 10))
    assert ten.bids == whole.bids[:10] and ten.bids_omitted == 70
    assert ask(cfg, SnapshotRequest("AAPL", 10**6)).bids == whole.bids
    # a REQ socket's envelope comes back with the answer
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(cfg.endpoints["marketdata_snapshot"])
    try:
        req.send(encode(TradesRequest("AAPL", 10**9)))
        assert answers(req, 1)[0].trades == []
    finally:
        req.close(0)

    # rate: a connection past its burst is told RATE_LIMITED (once per 0.1 s; the
    # rest of its flood is dropped unanswered), others are served
    greedy = dealer(cfg)
    try:
        for _ in range(40):
            greedy.send(encode(SnapshotRequest("AAPL", 1)))
        got = []
        while greedy.poll(500):
            got.append(feed_decoder.decode(greedy.recv()))
        served = sum(type(a) is Snapshot for a in got)
        limited = [a for a in got if type(a) is FeedError]
        assert 5 <= served <= 8 and 1 <= len(limited) <= 3, (served, len(limited))
        assert {(a.code, a.text) for a in limited} == {
            (Reject.RATE_LIMITED, "too many requests; slow down")
        }
        assert type(ask(cfg, SnapshotRequest("AAPL", 1))) is Snapshot  # another connection
        time.sleep(0.3)  # 20/s: a few tokens back
        greedy.send(encode(SnapshotRequest("AAPL", 1)))
        assert type(answers(greedy, 1)[0]) is Snapshot
    finally:
        greedy.close(0)

    # size: too many parts, or too many bytes in all, is refused without serving it
    for parts in ([b"p" * 100] * 50, [b"q" * 4000] * 3):
        sock = dealer(cfg)
        try:
            sock.send_multipart([*parts, encode(SnapshotRequest("AAPL"))])
            error = answers(sock, 1)[0]
            assert type(error) is FeedError and error.code == Reject.MALFORMED
            assert "parts" in error.text
        finally:
            sock.close(0)
    assert service.alive()

    # the counts are logged at most once a second, at a request: a quick run can end
    # before the rate refusals' line, so ask again (another connection) until it comes
    def rate_refusals_logged() -> bool:
        ask(cfg, SnapshotRequest("AAPL", 1))
        return refused(service).get("rate", 0) >= 30

    wait_for(rate_refusals_logged, timeout=10, interval=0.5, what="the refusals logged")
    assert refused(service)["rate"] >= 30


def test_a_peer_that_never_reads_its_snapshots_is_not_served(md):
    """Replies go out without waiting, at most ``snapshot_queue`` queued per peer; a peer
    that lets its queue fill is not served for a while, so its requests cost neither
    memory nor reply building; everyone else is served meanwhile."""
    queue, requests = 4, 3000
    cfg, records, service = md(snapshot_rate=100_000, snapshot_burst=100_000, snapshot_queue=queue)
    records.commit(levels(BUY, 1000) + levels(SELL, 1000))  # ~38 KB per snapshot
    wait_for(lambda: ask(cfg, SnapshotRequest("AAPL")).journal_seq == records.seq)
    for _ in range(20):  # the cost of building answers, before the peak is taken
        assert len(ask(cfg, SnapshotRequest("AAPL")).bids) == 1000
    peak = vm(service.pid, "VmHWM")
    hog = dealer(cfg, RCVHWM=1, SNDHWM=0)
    try:
        for _ in range(requests):
            hog.send(encode(SnapshotRequest("AAPL")))

        def hog_handled() -> bool:
            snap = ask(cfg, SnapshotRequest("AAPL"))  # served all along
            assert len(snap.bids) == 1000
            return refused(service).get("stalled", 0) >= requests - 100

        wait_for(hog_handled, timeout=20, interval=0.2, what="the hog's requests refused")
        # answered in full, the hog's requests would hold over 100 MB here
        grown = vm(service.pid, "VmHWM") - peak
        assert grown < 16 * MB, f"marketdata grew {grown / MB:.1f} MB"
        got = 0
        while hog.poll(200):
            assert len(feed_decoder.decode(hog.recv()).bids) == 1000
            got += 1
        assert 0 < got <= queue + 20
        time.sleep(1.1)  # the service's STALL_S: then it is served again
        hog.send(encode(SnapshotRequest("AAPL", 3)))
        assert len(answers(hog, 1)[0].bids) == 3
    finally:
        hog.close(0)
