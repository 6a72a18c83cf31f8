"""Journal archiving: once every reader (matchers, gateway, marketdata) has a snapshot
past a segment, the journal moves it to journal/archive/; every reader then restarts
from its own snapshot plus the journal's tail, with nothing lost, and one that would
need the archived head is told so instead of building a wrong view."""

from __future__ import annotations

import random

import pytest
import zmq

from clients.client import snapshot
from services.common.stream import Follower, HistoryArchived
from services.journal.segment import segment_paths
from tests.mesh import Mesh, matcher_state, replay_journal, trader, wait_for
from tests.test_mesh_feed import flow

PASSWORD = "Secret.pw1"
SNAPSHOT_EVERY = 60


def primary_name(mesh: Mesh) -> str | None:
    status = mesh.status()
    for s in status.services if status else ():
        if s.role == "primary" and s.alive and s.epoch == status.epoch:
            return s.service
    return None


def test_archive_then_every_reader_restarts_from_its_snapshot(short_home):
    mesh = Mesh(
        short_home,
        standby=True,
        timings={"heartbeat_ms": 50, "missed_beats": 4},
        journal={"segment_bytes": 8_192, "archive_check_s": 0.2},
        # a snapshot child of this small state takes ~8 ms of CPU: at the default share
        # (2 %) the standby would write one every 0.4 s, too few for this short flow
        matcher={"snapshot_every": SNAPSHOT_EVERY, "snapshot_cpu_share": 1.0},
        gateway={"snapshot_every": SNAPSHOT_EVERY},
        marketdata={"snapshot_every": SNAPSHOT_EVERY},
    )
    journal = short_home / "journal"
    try:
        mesh.start()
        clients = [trader(mesh, name) for name in ("arc1", "arc2", "arc3")]
        rng = random.Random(11)
        flow(clients, rng, 400)
        wait_for(
            lambda: len(segment_paths(journal / "archive")) >= 2,
            timeout=20,
            what="segments archived",
        )
        first_kept = int(segment_paths(journal)[0].stem)
        assert first_kept > 1

        md = mesh.cfg.endpoints["marketdata_snapshot"]
        positions = [c.positions() for c in clients]
        book = snapshot(md, "AAPL")
        # a reader that would need the archived head is refused, loudly
        reader = Follower(
            zmq.Context.instance(),
            mesh.cfg.endpoints["journal_pub"],
            mesh.cfg.endpoints["journal_read"],
        )
        with pytest.raises(HistoryArchived, match="archived"):
            reader.catch_up()
        reader.close()

        # every reader restarts from its own snapshot plus the tail
        first = primary_name(mesh)
        standby = ({"matcher-a", "matcher-b"} - {first}).pop()
        for name in ("gateway", "marketdata", standby):
            mesh[name].kill()
            mesh[name].start()
        mesh.wait_ready()
        for name in ("gateway", "marketdata", standby):
            wait_for(lambda n=name: "snapshot_loaded" in mesh[n].log(), what=f"{name} snapshot")
        for client in clients:  # sessions died with the gateway: the SDK logs in again
            client.timeout = 20
        assert [c.positions().positions for c in clients] == [p.positions for p in positions]
        assert [c.positions().cash for c in clients] == [p.cash for p in positions]
        again = snapshot(md, "AAPL")
        assert (again.seq, again.bids, again.asks) == (book.seq, book.bids, book.asks)

        # and the standby that booted from its snapshot takes over the order flow
        wait_for(
            lambda: any(
                s.service == standby and s.role == "standby" and s.seq == s.committed
                for s in mesh.status().services
            ),
            what="the standby caught up",
        )
        mesh[first].kill()
        wait_for(lambda: primary_name(mesh) == standby, timeout=10, what="the promotion")
        flow(clients, rng, 100)
        live = matcher_state(mesh.cfg, standby.split("-")[1])
        replayed = replay_journal(mesh)  # from seq 1, through journal/archive/
        assert (replayed["last_seq"], replayed["state_hash"]) == (live.seq, live.state_hash)
        for client in clients:
            client.close()
    finally:
        mesh.stop()
