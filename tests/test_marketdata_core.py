"""Marketdata's core without sockets: records in, feed messages out; a request's parts
in, the frames of its answer out."""

from __future__ import annotations

import pytest

from services.common.codec import encode, feed_decoder
from services.common.metrics import Metrics
from services.common.wire import (
    Bbo,
    Cancelled,
    CancelReason,
    FeedError,
    L2Update,
    RecentTrades,
    Reject,
    Rested,
    Snapshot,
    SnapshotRequest,
    Trade,
    TradesRequest,
    bbo_topic,
    l2_topic,
    trade_topic,
)
from services.marketdata.book import MarketData
from services.marketdata.core import RATE_TELL_S, MarketDataCore, topic_of
from services.marketdata.guard import PeerTable
from tests.fakes import Log
from tests.test_marketdata_book import BUY, SELL, Flow, rec, specs


def core(rate: float = 1_000, burst: float = 1_000) -> MarketDataCore:
    md = MarketData(specs(), depth=5, max_depth=50)
    return MarketDataCore(md, PeerTable(rate, burst, 100), Metrics("marketdata"), Log())


def answer(frames: list[bytes]):
    return feed_decoder.decode(frames[-1])


def test_records_in_feed_messages_out_with_their_topics_and_counts():
    c = core()
    out = c.records([rec(1, Rested(1, 10, "AAPL", BUY, 1_700_000, 5))])
    assert [type(m) for m in out] == [L2Update, Bbo]
    assert [topic_of(m) for m in out] == [l2_topic("AAPL"), bbo_topic("AAPL")]
    flow = Flow(specs())
    messages = c.records(flow.more(300)[3:])  # past the sign-ups; plenty of trades
    trades = [m for m in messages if type(m) is Trade]
    assert trades and all(topic_of(t) == trade_topic(t.symbol) for t in trades)
    assert c.md.journal_seq == flow.records[-1].seq
    assert c.published.value == len(out) + len(messages)


def test_replayed_records_build_the_books_but_publish_nothing():
    c = core()
    c.replay([rec(1, Rested(1, 10, "AAPL", SELL, 1_700_100, 5))])
    assert c.published.value == 0
    snap = answer(c.request([b"peer", encode(SnapshotRequest("AAPL"))], True, 0.0))
    assert type(snap) is Snapshot and snap.asks == [(1_700_100, 5)] and snap.journal_seq == 1


def test_a_book_that_goes_negative_is_logged_once_per_change():
    c = core()
    c.records([rec(1, Rested(1, 10, "AAPL", BUY, 1_700_000, 5))])
    c.records([rec(2, Cancelled(1, 10, "AAPL", BUY, 1_700_000, 9, CancelReason.USER, True))])
    assert [e for _, e, _ in c.log.lines] == ["book_anomaly"]
    c.records([])
    assert [e for _, e, _ in c.log.lines] == ["book_anomaly"]


def test_requests_are_answered_with_their_envelope_echoed():
    c = core()
    c.records([rec(1, Rested(1, 10, "AAPL", BUY, 1_700_000, 5))])
    frames = c.request([b"peer", b"", encode(SnapshotRequest("AAPL", 1))], True, 0.0)
    assert frames[:2] == [b"peer", b""]
    assert answer(frames).bids == [(1_700_000, 5)]
    trades = answer(c.request([b"peer", encode(TradesRequest("AAPL", 10))], True, 0.0))
    assert type(trades) is RecentTrades and trades.trades == []
    assert c.answered.value == 2


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        (b"\xc1", Reject.MALFORMED, "malformed"),
        (encode(Trade("AAPL", 1, 1, 1, 1, 1)), Reject.MALFORMED, "malformed"),
        (encode(SnapshotRequest("NOPE")), Reject.UNKNOWN_SYMBOL, "unknown"),
    ],
)
def test_what_cannot_be_answered_is_refused_and_counted(payload, code, reason):
    c = core()
    reply = answer(c.request([b"peer", payload], True, 0.0))
    assert type(reply) is FeedError and reply.code == code
    assert c.refused_counts()[reason] == 1


def test_a_request_over_the_limits_is_answered_to_its_routing_id_alone():
    c = core()
    frames = c.request([b"peer"], False, 0.0)
    assert frames[0] == b"peer" and len(frames) == 2
    assert answer(frames).code == Reject.MALFORMED
    assert c.refused_counts()["malformed"] == 1


def test_past_its_rate_a_peer_is_told_once_per_interval_and_the_rest_dropped():
    c = core(rate=1, burst=2)
    ask = [b"peer", encode(SnapshotRequest("AAPL"))]
    assert type(answer(c.request(ask, True, 0.0))) is Snapshot
    assert type(answer(c.request(ask, True, 0.0))) is Snapshot
    told = c.request(ask, True, 0.0)
    assert answer(told).code == Reject.RATE_LIMITED
    assert c.request(ask, True, RATE_TELL_S / 2) is None  # dropped unanswered
    assert c.request([b"other", ask[1]], True, 0.0) is not None  # its own bucket
    assert c.refused_counts()["rate"] == 2


def test_a_peer_whose_queue_was_full_is_not_served_for_a_while():
    c = core()
    ask = [b"slow", encode(SnapshotRequest("AAPL"))]
    c.unsent(b"slow", 0.0, gone=False)
    assert c.request(ask, True, 0.5) is None
    assert c.request(ask, True, 1.5) is not None  # stall_s (1 s) is over
    c.unsent(b"left", 2.0, gone=True)
    assert c.refused_counts() == {
        "rate": 0,
        "malformed": 0,
        "unknown": 0,
        "stalled": 2,
        "gone": 1,
    }


def test_refusals_are_logged_at_most_once_a_second_while_they_grow():
    c = core()
    c.unsent(b"x", 0.0, gone=True)
    c.log_refused(0.0)
    c.unsent(b"x", 0.1, gone=True)
    c.log_refused(0.5)  # within the second: not yet
    c.log_refused(1.1)
    c.log_refused(2.5)  # nothing new
    logged = [kw["gone"] for _, e, kw in c.log.lines if e == "snapshot_requests_refused"]
    assert logged == [1, 2]
