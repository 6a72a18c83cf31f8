"""The service runtime (services/common/node.py) and its metrics registry, on inproc
sockets: handlers per readiness, steps in order, timers, the follower's drain rule,
beats, the snapshot schedule, and a clean stop."""

from __future__ import annotations

import dataclasses
import signal
import time

import pytest
import zmq

from services.common import config
from services.common.bus import ServiceBeat
from services.common.codec import bus_decoder
from services.common.metrics import Metrics
from services.common.node import Node, SnapshotSchedule
from tests.fakes import Log


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.term()


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    """Node.run takes SIGTERM and SIGINT; pytest keeps its own after each test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def node(ctx, **endpoints) -> Node:
    cfg = config.load(None)
    cfg = dataclasses.replace(cfg, endpoints=dataclasses.replace(cfg.endpoints, **endpoints))
    return Node("test", cfg, Log(), ctx)


def pair(n: Node, name: str) -> tuple[zmq.Socket, zmq.Socket]:
    """(a PULL the node owns, a PUSH to write to it)."""
    pull = n.socket(zmq.PULL)
    pull.bind(f"inproc://{name}")
    push = n.ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"inproc://{name}")
    n.close_later(lambda: push.close(0))
    return pull, push


def test_handlers_run_per_readiness_in_registration_order_then_timers(ctx):
    n = node(ctx)
    a, to_a = pair(n, "a")
    b, to_b = pair(n, "b")
    seen: list = []

    def drain(sock, name):
        def handler(now):
            got = []
            while True:
                try:
                    got.append(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
            seen.append((name, got))

        return handler

    n.on(b, drain(b, "b"))
    n.step(lambda now: seen.append("step"))
    n.on(a, drain(a, "a"))
    n.step(lambda now: n.stop() if len(seen) > 3 else None)
    n.every(60, lambda now: seen.append("timer"))
    for frame in (b"1", b"2", b"3"):
        to_a.send(frame)
    to_b.send(b"x")
    time.sleep(0.05)
    assert n.run(poll_ms=1_000) == 0
    # one handler call drained each socket's three frames; steps in order; then timers
    assert seen[:4] == [("b", [b"x"]), "step", ("a", [b"1", b"2", b"3"]), "timer"]
    assert a.closed and b.closed  # closed with the node


def test_a_timer_cuts_the_poll_and_can_be_brought_forward(ctx):
    n = node(ctx)
    fired: list[float] = []
    start = time.monotonic()
    timer = n.every(0.02, lambda now: fired.append(now), start=start + 0.02)
    n.step(lambda now: n.stop() if len(fired) >= 3 else None)
    n.run(poll_ms=10_000)  # would wait 10 s a turn without the timer
    assert len(fired) == 3 and fired[-1] - start < 2.0
    assert fired[1] - fired[0] >= 0.019
    timer.next = time.monotonic() + 60
    timer.pull(5.0)
    assert timer.next == 5.0
    timer.postpone(10.0)
    assert timer.next == 10.02
    timer.fire_now()
    assert timer.next == 0.0


class FakeFollower:
    """The two things the runtime asks of a follower: whether to drain, and drain."""

    def __init__(self, sub: zmq.Socket, behind: bool) -> None:
        self.sub = sub
        self.behind = behind  # as if a beat had said the source is ahead
        self.asked: list[bool] = []

    def due(self, readable: bool) -> bool:
        self.asked.append(readable)
        return readable or self.behind

    def drain(self) -> list:
        self.behind = False
        return ["record"]


def test_a_follower_is_drained_when_it_says_so_then_the_schedule_runs(ctx):
    n = node(ctx)
    sub, _ = pair(n, "feed")
    follower = FakeFollower(sub, behind=True)
    got, after = [], []
    n.follow(follower, got.append, after=lambda: after.append(len(got)))
    n.step(lambda now: n.stop())
    n.run(poll_ms=0)
    assert follower.asked == [False]  # nothing readable, but behind: drained
    assert got == [["record"]] and after == [1]


def test_steps_with_a_condition_and_steps_removed(ctx):
    n = node(ctx)
    sock, push = pair(n, "x")
    calls: list[str] = []
    on = n.on(sock, lambda now: calls.append("read"), when=lambda: False)
    n.step(lambda now: calls.append("turn"))
    n.step(lambda now: n.stop())
    push.send(b"1")
    time.sleep(0.05)
    n.run(poll_ms=0)
    assert calls == ["turn"]  # readable, but its condition said no
    n.off(on)
    assert sock not in n._watched


def test_beats_go_on_the_runtime_timer_and_at_once_when_asked(ctx):
    heartbeat = ctx.socket(zmq.ROUTER)
    heartbeat.bind("inproc://heartbeat")
    try:
        n = node(ctx, heartbeat="inproc://heartbeat")
        state = ["standby"]
        n.beat_with("svc", lambda: (state[0], 1, 2, 3))
        turns = []

        def promote(now: float) -> None:
            turns.append(now)
            if len(turns) == 2:  # the first turn's timer beat as a standby
                state[0] = "primary"
                n.beat_now()
                n.stop()

        n.step(promote)
        n.run(poll_ms=0)
        beats = []
        while heartbeat.poll(500) and len(beats) < 2:
            beats.append(bus_decoder.decode(heartbeat.recv_multipart()[1]))
        assert [(b.service, b.role, b.seq) for b in beats] == [
            ("svc", "standby", 2),
            ("svc", "primary", 2),
        ]
        assert all(isinstance(b, ServiceBeat) for b in beats)
    finally:
        heartbeat.close(0)


def test_sigterm_ends_the_loop_after_its_turn(ctx):
    n = node(ctx)
    closed = []
    n.close_later(lambda: closed.append(True))
    n.step(lambda now: signal.raise_signal(signal.SIGTERM))
    assert n.run(poll_ms=0) == 0
    assert not n.running and closed == [True]


class FakeSnapshots:
    def __init__(self, every: int) -> None:
        self.every = every
        self.last = 0
        self.written: list[tuple[int, bytes]] = []

    def due(self, seq: int) -> bool:
        return seq - self.last >= self.every

    def write(self, seq: int, data: bytes) -> None:
        self.last = seq
        self.written.append((seq, data))


def test_the_snapshot_schedule_writes_when_due():
    snapshots = FakeSnapshots(every=10)
    seq = [5]
    schedule = SnapshotSchedule(snapshots, lambda: seq[0], lambda: f"at {seq[0]}".encode())
    schedule()
    seq[0] = 12
    schedule()
    seq[0] = 15
    schedule()
    assert snapshots.written == [(12, b"at 12")]


def test_metrics_counters_histograms_and_snapshot():
    metrics = Metrics("svc")
    orders = metrics.counter("orders_in", "orders received")
    assert metrics.counter("orders_in") is orders
    orders.inc()
    orders.inc(4)
    busy = metrics.counter("rejects", "by code", {"code": "BUSY"})
    busy.inc()
    assert metrics.counter("rejects", labels={"code": "FULL"}) is not busy
    fsync = metrics.histogram("fsync_seconds", buckets=(0.001, 0.01))
    for value in (0.0005, 0.001, 0.005, 3.0):
        fsync.observe(value)
    snap = metrics.snapshot()
    assert snap["orders_in"] == 5
    assert snap['rejects{code="BUSY"}'] == 1 and snap['rejects{code="FULL"}'] == 0
    assert snap["fsync_seconds"]["count"] == 4
    assert snap["fsync_seconds"]["buckets"] == {0.001: 2, 0.01: 3, float("inf"): 4}
    assert snap["fsync_seconds"]["sum"] == pytest.approx(3.0065)
    assert [s.kind for s in metrics.series()] == ["counter", "counter", "counter", "histogram"]
    with pytest.raises(ValueError):
        metrics.histogram("orders_in")
