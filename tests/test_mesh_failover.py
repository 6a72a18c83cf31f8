"""A SIGKILLed primary matcher: the standby takes over and nothing acknowledged is lost."""

from __future__ import annotations

import signal
import time

from services.common.money import to_units
from services.common.wire import Accepted, PlaceOrder, Side
from services.journal import tools as journal_tools
from tests.mesh import Mesh, matcher_state, replay_journal, trader, wait_for

PASSWORD = "Secret.pw1"


def test_primary_killed_mid_stream_standby_takes_over(short_home):
    mesh = Mesh(short_home, standby=True, timings={"heartbeat_ms": 50, "missed_beats": 4})
    try:
        mesh.start()
        client = trader(mesh, "erin")
        wait_for(
            lambda: any(s.service == "matcher-b" and s.seq >= 1 for s in mesh.status().services),
            what="the standby to follow",
        )
        sent = []
        for i in range(200):
            side = Side.BUY if i % 2 else Side.SELL
            cl = f"f{i}"
            client.send(PlaceOrder(cl, "MSFT", side, 3, to_units("420.00") + (i % 5 - 2) * 100))
            sent.append(cl)
            if i == 100:
                (first,) = [s.service for s in mesh.status().services if s.role == "primary"]
                mesh[first].kill()
            time.sleep(0.002)
        acked: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while len(acked) < len(sent) and time.monotonic() < deadline:
            report = client.next_report(max(0.1, deadline - time.monotonic()))
            for event in report.events:
                original = getattr(event, "original", event)
                if isinstance(original, Accepted):
                    acked[original.cl_ord_id] = original.order_id
        assert set(acked) == set(sent)  # the gateway resent what the dead primary dropped
        assert len(set(acked.values())) == len(sent)  # each order once, one id each
        status = mesh.status()
        primary = [s for s in status.services if s.role == "primary" and s.alive]
        survivor = ({"matcher-a", "matcher-b"} - {first}).pop()
        assert [s.service for s in primary] == [survivor] and status.epoch == 2
        state = matcher_state(mesh.cfg, survivor.split("-")[1])
        replay = replay_journal(mesh)
        assert replay["mismatch"] is None
        assert (replay["last_seq"], replay["state_hash"]) == (state.seq, state.state_hash)
        client.close()
    finally:
        mesh.stop()


def test_stalled_primary_is_fenced_and_steps_down(short_home):
    """SIGSTOP the primary past the timeout: the standby takes over; on SIGCONT the old
    primary writes nothing (the journal follows the new epoch) and exits when told."""
    mesh = Mesh(short_home, standby=True, timings={"heartbeat_ms": 50, "missed_beats": 4})
    try:
        mesh.start()
        client = trader(mesh, "frank")
        client.place("MSFT", Side.BUY, 5, to_units("419.00"))
        (old,) = [s.service for s in mesh.status().services if s.role == "primary"]
        new = ({"matcher-a", "matcher-b"} - {old}).pop()
        mesh[old].signal(signal.SIGSTOP)
        wait_for(
            lambda: any(
                s.service == new and s.role == "primary" and s.epoch == 2
                for s in mesh.status().services
            ),
            what="the standby's promotion",
        )
        during = [
            client.place("MSFT", Side.SELL, 1, to_units("421.00") + i * 100) for i in range(10)
        ]
        mesh[old].signal(signal.SIGCONT)
        wait_for(lambda: not mesh[old].alive(), timeout=10, what="the old primary to step down")
        after = client.place("MSFT", Side.SELL, 1, to_units("430.00"))
        assert after.seq > max(r.seq for r in during)
        records = list(journal_tools.records(short_home / "journal"))
        epochs = [r.epoch for r in records]
        assert epochs == sorted(epochs) and epochs[-1] == 2  # nothing of epoch 1 after 2
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        state = matcher_state(mesh.cfg, new.split("-")[1])
        assert state.seq == records[-1].seq
        client.close()
    finally:
        mesh.stop()  # sends SIGCONT before SIGTERM


def test_standby_boots_from_a_snapshot_and_can_take_over(short_home):
    mesh = Mesh(
        short_home,
        standby=True,
        timings={"heartbeat_ms": 50, "missed_beats": 4},
        matcher={"snapshot_every": 40},
    )
    try:
        mesh.start()
        client = trader(mesh, "gina")
        for i in range(120):
            client.place("TSLA", Side.BUY, 1, to_units("159.00") - (i % 10) * 100)
        first = primary_name(mesh)
        standby = ({"matcher-a", "matcher-b"} - {first}).pop()
        wait_for(
            lambda: len(list((short_home / "snapshots" / "matcher").glob("*.snap"))) >= 2,
            what="the standby's snapshots",
        )
        mesh[standby].kill()
        mesh[standby].start()
        wait_for(lambda: "snapshot_loaded" in mesh[standby].log(), what="a boot from snapshot")
        wait_for(
            lambda: any(
                s.service == standby and s.role == "standby" and s.seq >= 121
                for s in mesh.status().services
            ),
            what="the tail replayed",
        )
        # once quiet, the standby compares its whole state with the primary's
        primary = matcher_state(mesh.cfg, first.split("-")[1])
        wait_for(
            lambda: f'"seq": {primary.seq}' in _verified_lines(mesh[standby].log()),
            what="the standby's state hash checked against the primary's",
        )
        assert primary.state_hash in _verified_lines(mesh[standby].log())
        mesh[first].kill()
        wait_for(lambda: primary_name(mesh) == standby, what="the promotion")
        after = client.place("TSLA", Side.SELL, 5, to_units("159.00"))
        assert after.ack.order_id == 121  # the snapshot carried the order counter on
        state = matcher_state(mesh.cfg, standby.split("-")[1])
        replayed = journal_tools.replay(short_home / "journal", mesh.cfg)
        assert (replayed["last_seq"], replayed["state_hash"]) == (state.seq, state.state_hash)
        client.close()
    finally:
        mesh.stop()


def primary_name(mesh: Mesh) -> str | None:
    status = mesh.status()
    return next(
        (
            s.service
            for s in status.services
            if s.role == "primary" and s.alive and s.epoch == status.epoch
        ),
        None,
    )


def test_heartbeat_restart_keeps_the_epoch_and_the_primary(short_home):
    mesh = Mesh(short_home, standby=True, timings={"heartbeat_ms": 50, "missed_beats": 4})
    try:
        mesh.start()
        client = trader(mesh, "hank")
        client.place("AAPL", Side.BUY, 1, to_units("169.00"))
        before = primary_name(mesh)
        mesh["heartbeat"].kill()
        # trading goes on meanwhile
        meanwhile = client.place("AAPL", Side.BUY, 1, to_units("168.00")).seq
        mesh["heartbeat"].start()
        wait_for(lambda: mesh.status() is not None and primary_name(mesh), what="status back")
        time.sleep(0.5)  # several timeouts: a confused heartbeat service would promote now
        status = mesh.status()
        assert status.epoch == 1 and primary_name(mesh) == before  # recovered, not re-elected
        # the same primary's log goes on: the next record (the first ones were the
        # scheduler's first trading date, the sign-up and the first order)
        assert client.place("AAPL", Side.BUY, 1, to_units("167.00")).seq == meanwhile + 1
        client.close()
    finally:
        mesh.stop()


def _verified_lines(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "state_verified" in line)
