"""Durable before visible, and a journal crash that loses nothing acknowledged."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import zmq

from clients.client import Client, NoAnswer
from services.common.bus import NewOrder
from services.common.money import to_units
from services.common.wire import Accepted, PlaceOrder, Reject, Side
from services.journal import tools as journal_tools
from tests.mesh import exchange_cli, matcher_state, replay_journal, trader, wait_for

PASSWORD = "Secret.pw1"


def feed_socket(mesh) -> zmq.Socket:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(mesh.cfg.endpoints["marketdata_pub"])
    return sub


def acks(client: Client, count: int, timeout: float = 20.0) -> list:
    """The first ``count`` accepted events, in arrival order."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count:
        report = client.next_report(max(0.1, deadline - time.monotonic()))
        out += [(report.seq, e) for e in report.events if isinstance(e, Accepted)]
    return out


def test_nothing_is_visible_until_the_journal_has_it(mesh):
    client = trader(mesh, "alice")
    feed = feed_socket(mesh)
    time.sleep(0.3)  # let the SUB connect
    try:
        mesh["journal"].signal(signal.SIGSTOP)
        sent = [f"o{i}" for i in range(20)]
        for i, cl in enumerate(sent):
            client.send(PlaceOrder(cl, "AAPL", Side.BUY, 10, to_units("169.00") - i * 100))
        try:
            report = client.next_report(1.5)
            raise AssertionError(f"acknowledged while the journal was stopped: {report}")
        except NoAnswer:
            pass
        assert not feed.poll(200), "a feed message went out before the journal had it"
        mesh["journal"].signal(signal.SIGCONT)
        got = acks(client, len(sent))
        assert [e.cl_ord_id for _, e in got] == sent  # all acknowledged, in order
        seqs = [s for s, _ in got]
        assert seqs == sorted(seqs)
        assert feed.poll(5_000), "the feed resumed after the journal did"
    finally:
        mesh["journal"].signal(signal.SIGCONT)
        feed.close(0)
        client.close()


def test_journal_sigkill_loses_no_acknowledged_order(mesh):
    client = trader(mesh, "bob")
    other = trader(mesh, "carol")
    acked: list = []
    try:
        for i in range(300):
            side = Side.BUY if i % 2 else Side.SELL
            price = to_units("160.00") + (i % 7 - 3) * 100
            (client if i % 3 else other).send(PlaceOrder(f"k{i}", "TSLA", side, 5, price))
            if i == 150:
                mesh["journal"].kill()
                mesh["journal"].start()
        for c in (client, other):
            acked += [e for _, e in acks(c, 200 if c is client else 100, timeout=30)]
        assert len({(e.account, e.cl_ord_id) for e in acked}) == 300
        state = matcher_state(mesh.cfg)
        journal_dir = str(mesh.home / "journal")
        wait_for(
            lambda: (
                json.loads(
                    exchange_cli(
                        "journal",
                        "verify",
                        journal_dir,
                        "--json",
                        home=mesh.home,
                        config_path=mesh.config_path,
                    ).stdout
                    or "{}"
                ).get("last_seq", 0)
                >= state.seq
            ),
            what="the journal to commit everything",
        )
        replayed = replay_journal(mesh)
        assert replayed["last_seq"] == state.seq
        assert replayed["state_hash"] == state.state_hash
        journaled = Counter(
            (r.command.account, r.command.cl_ord_id)
            for r in journal_tools.records(mesh.home / "journal")
            if isinstance(r.command, NewOrder)
        )
        # every acknowledged order is in the journal exactly once
        assert all(journaled[(e.account, e.cl_ord_id)] == 1 for e in acked)
    finally:
        client.close()
        other.close()


def test_matcher_says_busy_when_the_journal_lags_a_window(short_home):
    from tests.mesh import Mesh

    mesh = Mesh(
        short_home, timings={"heartbeat_ms": 50, "missed_beats": 40, "journal_lag_window": 10}
    )
    try:
        mesh.start()
        client = trader(mesh, "dave")
        mesh["journal"].signal(signal.SIGSTOP)
        for i in range(40):
            client.send(PlaceOrder(f"w{i}", "AAPL", Side.BUY, 1, to_units("169.00")))
            time.sleep(0.005)
        busy = []
        deadline = time.monotonic() + 5
        while len(busy) < 30 and time.monotonic() < deadline:
            try:
                reply = client.next_notice(0.5)
            except NoAnswer:
                break
            busy.append(reply)
        assert busy and all(r.code == Reject.BUSY for r in busy)
        mesh["journal"].signal(signal.SIGCONT)
        accepted = acks(client, 40 - len(busy))  # everything not refused is acknowledged
        assert {e.cl_ord_id for _, e in accepted}.isdisjoint({r.ref for r in busy})
        assert len(accepted) + len(busy) == 40
    finally:
        mesh["journal"].signal(signal.SIGCONT)
        mesh.stop()
