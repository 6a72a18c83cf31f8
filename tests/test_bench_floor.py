"""The floors the benchmarks measure beside the exchange: the bare matching loop
(clients/bench/floor.py) matches by price and time like the engine, and the bare relay
(clients/bench/relay.py) answers every order sent through its three processes."""

from __future__ import annotations

import io

import zmq

from clients.bench import engine as engine_bench
from clients.bench import floor
from clients.bench.cluster import free_port
from clients.bench.flow import generate
from clients.bench.relay import Relay
from services.common.frames import recv_frames, send_frame
from services.common.wire import Accepted, PlaceOrder, Report, Reports, Side, encode, reply_decoder
from tests.test_seed_scenario import SCENARIO

BUY, SELL = int(Side.BUY), int(Side.SELL)


def test_bare_book_plays_the_seed_scenario():
    """Every row of the seed's matching scenario leaves the books its table shows."""
    book = floor.BareBook()
    for order_id, (_who, side, symbol, qty, price, after) in enumerate(SCENARIO, 1):
        book.add(order_id, symbol, BUY if side == "BUY" else SELL, price, qty, False)
        for sym, (bids, asks) in after.items():
            assert book.depth(sym, BUY) == bids, (order_id, sym)
            assert book.depth(sym, SELL) == asks, (order_id, sym)


def test_bare_book_price_time_priority_cancel_and_ioc():
    book = floor.BareBook()
    book.add(1, "X", SELL, 101, 5, False)
    book.add(2, "X", SELL, 100, 5, False)
    book.add(3, "X", SELL, 100, 5, False)
    book.cancel(2)  # a tombstone: skipped, never filled
    book.add(4, "X", BUY, 101, 7, True)  # 3 (oldest live at the best price), then 1
    assert book.trades == 2
    assert book.depth("X", SELL) == {101: 3}
    book.add(5, "X", BUY, 99, 4, True)  # crosses nothing; an IOC does not rest
    assert book.depth("X", BUY) == {}
    book.cancel(99)  # unknown: nothing happens
    book.add(6, "X", BUY, 102, 10, False)
    assert book.depth("X", SELL) == {} and book.depth("X", BUY) == {102: 7}


def test_ops_number_new_orders_as_the_engine_does():
    _, flow, generator = generate(2_000, seed=3)
    calls = floor.ops(flow)
    adds = [c for c in calls if c[0] == floor.ADD]
    assert len(calls) == len(flow) and adds[-1][1] == len(adds)
    assert generator.next_order - 1 == len(adds)  # the engine accepted every new order
    book = floor.BareBook()
    floor.replay(book, calls)
    assert book.trades > 0


def test_engine_bench_reports_the_bare_loop_beside_it():
    result = engine_bench.run(commands=5_000, repeat=2, progress=io.StringIO())
    assert len(result["runs_bare_commands_per_s"]) == 2
    assert result["bare_commands_per_s"] == max(result["runs_bare_commands_per_s"])
    assert result["engine_vs_bare"] > 0 and result["python_loop_ns"] > 0
    assert result["bare_trades"] > 0


def test_relay_answers_every_order(short_home):
    relay = Relay(short_home / "relay", f"tcp://127.0.0.1:{free_port()}", True, 500).start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(relay.front)
    try:
        for i in range(500):
            send_frame(sock, encode(PlaceOrder(f"t-{i}", "AAPL", BUY, 10 + i, 1_700_000)))
        acks = []
        while len(acks) < 500:
            assert sock.poll(10_000), f"{len(acks)} answers of 500"
            (frame,) = recv_frames(sock)
            reply = reply_decoder.decode(frame)
            reports = reply.reports if type(reply) is Reports else [reply]
            assert all(type(r) is Report for r in reports)
            acks += [e for r in reports for e in r.events if type(e) is Accepted]
        assert sorted(a.cl_ord_id for a in acks) == sorted(f"t-{i}" for i in range(500))
        assert len({a.order_id for a in acks}) == 500  # each numbered by the relay's matcher
        assert all(a.qty == 10 + int(a.cl_ord_id[2:]) for a in acks)
        journal = (short_home / "relay" / "relay.journal").read_bytes()
        assert b"t-499" in journal  # written (and synced) before it was answered
    finally:
        sock.close(0)
        relay.stop()
    assert all(proc.poll() is not None for proc in relay.procs)
