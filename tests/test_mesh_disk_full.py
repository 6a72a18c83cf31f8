"""The journal's disk fills up: the journal stays up and says so, traders are told
JOURNAL_FULL, and once there is room again it resumes by itself, losing nothing that
was acknowledged and storing nothing twice. The journal runs on a small tmpfs of its
own, filled by the test."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import zmq

from clients.client import ExchangeError, NoAnswer
from services.common.bus import TOPIC_BEAT, NewOrder
from services.common.codec import beat_decoder
from services.common.frames import recv_frames
from services.common.money import to_units
from services.common.wire import Accepted, Reject, Side
from services.journal import tools as journal_tools
from services.journal.segment import segment_paths
from tests.mesh import FAST_TIMINGS, Mesh, exchange_cli, replay_journal, trader, wait_for

DISK_BYTES = 8 << 20
PRICE = to_units("165.00")


@pytest.fixture
def small_disk(short_home):
    """``short_home/journal`` on a tmpfs of DISK_BYTES (mode 0755: the journal must
    make it private itself)."""
    journal = short_home / "journal"
    journal.mkdir()
    try:
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs", str(journal)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:  # no mount command here
        pytest.skip(f"needs mount(8) to give the journal a small tmpfs: {exc}")
    if mount.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs for the journal: {mount.stderr.strip()}")
    try:
        yield journal
    finally:
        subprocess.run(["umount", "--lazy", str(journal)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = 1 << 20
    try:
        while chunk:
            try:
                os.write(fd, b"\xff" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return path


class JournalBeats:
    """The journal's beats on its PUB socket, as the primary matcher hears them."""

    def __init__(self, mesh: Mesh) -> None:
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, TOPIC_BEAT)
        self.sub.connect(mesh.cfg.endpoints["journal_pub"])

    def latest(self):
        beat = None
        while self.sub.poll(0):
            topic, payload = recv_frames(self.sub)
            if topic == TOPIC_BEAT:
                beat = beat_decoder.decode(payload)
        return beat

    def says(self, disk_full: bool, timeout: float = 10.0):
        def check():
            self.sub.poll(50)
            beat = self.latest()
            return beat if beat is not None and beat.disk_full == disk_full else None

        return wait_for(check, timeout, 0, f"a journal beat with disk_full={disk_full}")

    def close(self) -> None:
        self.sub.close(0)


def journal_role(mesh: Mesh) -> str | None:
    status = mesh.status()
    roles = {s.service: s.role for s in status.services if s.alive} if status else {}
    return roles.get("journal")


def acknowledged(client, cl_ord_id: str, timeout: float = 15.0) -> bool:
    """Wait for the report accepting ``cl_ord_id`` (an order sent earlier)."""
    for report in list(client.reports):
        if any(isinstance(e, Accepted) and e.cl_ord_id == cl_ord_id for e in report.events):
            return True
    wait_for(
        lambda: any(
            isinstance(e, Accepted) and e.cl_ord_id == cl_ord_id
            for e in client.next_report(timeout).events
        ),
        timeout,
        0,
        f"the acknowledgement of {cl_ord_id}",
    )
    return True


def test_a_full_disk_pauses_the_journal_without_losing_anything(short_home, small_disk):
    # a reserve above the disk's size: the spare writer must never make a spare here
    mesh = Mesh(
        short_home,
        timings=FAST_TIMINGS,
        journal={"disk_reserve_bytes": 64 << 20, "disk_retry_ms": 200},
    )
    beats = None
    try:
        mesh.start()
        journal = mesh["journal"]
        pid = journal.pid
        alice = trader(mesh, "alice")
        acked = []
        for i in range(10):
            alice.place("AAPL", Side.BUY, 1, PRICE, cl_ord_id=f"before{i}")
            acked.append(f"before{i}")
        beats = JournalBeats(mesh)
        assert beats.says(disk_full=False).seq > 0

        filler = fill(small_disk)
        in_flight = None  # the order whose record the journal could not store
        for i in range(500):  # the journal's last page may hold a few more records
            try:
                alice.place("AAPL", Side.BUY, 1, PRICE, cl_ord_id=f"full{i}", timeout=1.0)
            except NoAnswer:
                in_flight = f"full{i}"
                break
            acked.append(f"full{i}")
        assert in_flight is not None, "the journal kept acknowledging on a full disk"
        beats.says(disk_full=True)
        wait_for(lambda: journal_role(mesh) == "disk-full", what="status to say disk-full")
        shown = exchange_cli("status", home=short_home, config_path=mesh.config_path)
        assert "JOURNAL DISK FULL" in shown.stdout and "disk-full" in shown.stdout, shown.stdout
        as_json = exchange_cli("status", "--json", home=short_home, config_path=mesh.config_path)
        assert json.loads(as_json.stdout)["disk_full"] is True
        with pytest.raises(ExchangeError) as refused:  # new work is refused, and said why
            alice.place("AAPL", Side.BUY, 1, PRICE, cl_ord_id="refused")
        assert refused.value.code == Reject.JOURNAL_FULL
        time.sleep(1.0)  # five of its retries: it stays up and full, no crash, no restart
        beats.says(disk_full=True)
        assert journal.alive() and journal.pid == pid
        assert journal.log().count('"event": "disk_full"') == 1
        assert "Traceback" not in journal.log()
        assert not (small_disk / "spare.ready").exists()
        assert '"spare_deferred"' in journal.log()

        filler.unlink()
        beats.says(disk_full=False)
        wait_for(lambda: journal_role(mesh) == "journal", what="status to say journal again")
        assert acknowledged(alice, in_flight)  # held by the gateway, stored after all
        acked.append(in_flight)
        alice.place("AAPL", Side.BUY, 1, PRICE, cl_ord_id="after")
        acked.append("after")
        assert journal.alive() and journal.pid == pid
        alice.close()
    finally:
        if beats is not None:
            beats.close()
        mesh.stop()

    verify = exchange_cli(
        "journal", "verify", str(small_disk), home=short_home, config_path=mesh.config_path
    )
    assert verify.returncode == 0 and verify.stdout.startswith("OK:"), verify.stdout
    assert "torn" not in verify.stdout
    replay_journal(mesh)  # and every record's events are what its command gives
    journaled = Counter(
        r.command.cl_ord_id
        for r in journal_tools.records(small_disk)
        if isinstance(r.command, NewOrder)
    )
    assert all(journaled[cl] == 1 for cl in acked), journaled  # each exactly once
    assert "refused" not in journaled
    assert stat.S_IMODE(small_disk.stat().st_mode) == 0o700
    files = segment_paths(small_disk) + [small_disk / "epoch"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
