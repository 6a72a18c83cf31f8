"""A restarted heartbeat service promotes above every epoch it ever promised, even one
whose matcher never reported back: the epoch is on disk before the Promote leaves."""

from __future__ import annotations

import os
import stat
import time

import zmq

from services.common.bus import Promote, ServiceBeat
from services.common.codec import bus_decoder, encode
from tests.mesh import FAST_TIMINGS, Mesh, matcher_state, trader, wait_for


def roles(mesh) -> dict[str, tuple[str, int, bool]]:
    status = mesh.status()
    return {s.service: (s.role, s.epoch, s.alive) for s in status.services} if status else {}


def test_a_restarted_heartbeat_service_never_reuses_a_promised_epoch(short_home):
    mesh = Mesh(short_home, standby=True, timings=FAST_TIMINGS)
    fake = zmq.Context.instance().socket(zmq.DEALER)
    fake.setsockopt(zmq.LINGER, 0)
    try:
        mesh.start()
        wait_for(
            lambda: (
                sorted(r[0] for n, r in roles(mesh).items() if n.startswith("matcher"))
                == ["primary", "standby"]
            ),
            what="a primary and a standby",
        )
        current = roles(mesh)
        (first,) = [n for n, r in current.items() if r[0] == "primary"]
        (second,) = [n for n, r in current.items() if r[0] == "standby"]
        assert current[first][1] == 1
        # a matcher that takes a promotion and is never heard of again: it claims to
        # be the most caught-up standby, so the next promotion goes to it
        fake.connect(mesh.cfg.endpoints["heartbeat"])
        beat = encode(ServiceBeat("matcher-z", "standby", os.getpid(), 1, 10**9, 0))
        fake.send(beat)
        wait_for(lambda: "matcher-z" in roles(mesh), what="the heartbeat to hear matcher-z")
        # a standby heard for less than a timeout is passed over for one that has stood
        # longer (the elector's rule), so z beats on for more than one before the kill
        stood = (
            time.monotonic()
            + 2 * FAST_TIMINGS["missed_beats"] * FAST_TIMINGS["heartbeat_ms"] / 1000
        )
        while time.monotonic() < stood:
            fake.send(beat)
            time.sleep(0.02)
        mesh[first].kill()
        promised = None
        deadline = time.monotonic() + 10
        while promised is None:
            assert time.monotonic() < deadline, "matcher-z was not promoted"
            fake.send(beat)
            if fake.poll(20):
                msg = bus_decoder.decode(fake.recv())
                promised = msg.epoch if isinstance(msg, Promote) else None
        mesh["heartbeat"].kill()  # before matcher-z could ever report the epoch
        fake.close(0)
        assert promised == 2
        stored = short_home / "heartbeat" / "epoch"
        assert int(stored.read_text()) == 2
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700

        mesh["heartbeat"].start()
        # the beats alone say epoch 1 (the journal was fenced at 1): a service that
        # trusted them would promise 2 again
        wait_for(
            lambda: roles(mesh).get(second, ("", 0, False))[0] == "primary",
            timeout=15,
            what=f"{second} to be promoted",
        )
        assert roles(mesh)[second][1] == 3
        assert int(stored.read_text()) == 3
        instance = second.split("-")[1]
        assert matcher_state(mesh.cfg, instance).epoch == 3
        client = trader(mesh, "hana")  # the mesh trades at the new epoch
        client.close()
    finally:
        fake.close(0)
        mesh.stop()
