"""Engine snapshots restore to the same state hash and behave identically afterwards."""

from __future__ import annotations

import os
import random
import time

import msgspec

from clients.bench.flow import BENCH_RISK, bench_symbols, generate
from services.common import snapfile
from services.matcher import snapshot
from services.matcher.engine import Engine
from tests.mesh import wait_for


def test_snapshot_restores_exactly_and_continues_identically(tmp_path):
    setup, flow, _ = generate(6_000, seed=5, symbols=3, accounts=6)
    symbols = bench_symbols(3)
    engine = Engine(symbols, BENCH_RISK)
    for cmd in setup + flow[:4_000]:
        engine.apply(cmd)
    path = snapshot.write(tmp_path, snapshot.capture(engine, seq=4_006, epoch=2))
    restored, seq, epoch = snapshot.newest(tmp_path, symbols, BENCH_RISK)
    assert (seq, epoch) == (4_006, 2) and path.exists()
    assert restored.state_hash() == engine.state_hash()
    for cmd in flow[4_000:]:  # the same commands give the same events on both
        assert msgspec.msgpack.encode(restored.apply(cmd)) == msgspec.msgpack.encode(
            engine.apply(cmd)
        )
    assert restored.state_hash() == engine.state_hash()
    # repeats of old client order ids are still answered from the restored table
    old = random.Random(1).choice(flow[:4_000])
    assert type(restored.apply(old)[0]).__name__ == "Duplicate"


def test_damaged_snapshot_falls_back_to_an_older_one(tmp_path):
    symbols = bench_symbols(2)
    engine = Engine(symbols, BENCH_RISK)
    snapshot.write(tmp_path, snapshot.capture(engine, seq=1, epoch=1))
    newer = snapshot.write(tmp_path, snapshot.capture(engine, seq=2, epoch=1))
    newer.write_bytes(newer.read_bytes()[:-5])  # torn
    _, seq, _ = snapshot.newest(tmp_path, symbols, BENCH_RISK)
    assert seq == 1


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def info(self, event: str, **kw) -> None:
        self.events.append((event, kw))

    error = warning = info


def test_forked_writer_writes_the_state_at_the_fork_and_paces_the_next(tmp_path):
    symbols = bench_symbols(2)
    engine = Engine(symbols, BENCH_RISK)
    setup, flow, _ = generate(2_000, seed=3, symbols=2, accounts=4)
    for cmd in setup + flow[:1_000]:
        engine.apply(cmd)
    expected = engine.state_hash()
    log = _Log()
    where = snapfile.directory(tmp_path, "matcher")

    def produce(seq):
        return lambda: msgspec.msgpack.encode(snapshot.capture(engine, seq, 1))

    frugal = snapfile.Snapshots(tmp_path, "matcher", every=10, log=log, cpu_share=1e-6)
    assert frugal.due(10)
    frugal.fork_write(10, produce(10))
    for cmd in flow[1_000:]:  # the parent moves on; the child has the state at the fork
        engine.apply(cmd)
    assert engine.state_hash() != expected
    wait_for(lambda: not frugal.writing(), what="the writer to finish")
    ((event, fields),) = log.events
    assert event == "snapshot_written" and fields["seq"] == 10 and fields["cpu_s"] > 0
    restored, seq, _ = snapshot.newest(where, symbols, BENCH_RISK)
    assert seq == 10 and restored.state_hash() == expected
    # the next writer waits for the last one's CPU time / cpu_share: ages here...
    assert not frugal.due(1_000)
    # ... and about the child's own CPU time when the whole of a CPU may go to them
    generous = snapfile.Snapshots(tmp_path, "matcher", every=10, log=log, cpu_share=1.0)
    generous.fork_write(20, produce(20))
    wait_for(lambda: not generous.writing(), what="the second writer to finish")
    cpu = log.events[-1][1]["cpu_s"]
    wait_for(lambda: generous.due(1_000), timeout=5 + 2 * cpu, what="the next one to be due")


def test_stop_kills_a_forked_writer_and_its_temp_file_goes_at_the_next_start(tmp_path):
    log = _Log()
    snaps = snapfile.Snapshots(tmp_path, "matcher", every=1, log=log)
    where = snapfile.directory(tmp_path, "matcher")
    where.mkdir(parents=True)
    mine = where / f"{7:020d}.{os.getpid()}.tmp"  # a live writer's: kept
    mine.write_bytes(b"x")
    gone = where / f"{6:020d}.999999999.tmp"  # no such process: removed
    gone.write_bytes(b"x")

    def forever():
        time.sleep(60)
        return b""

    snaps.fork_write(5, forever)
    started = time.monotonic()
    snaps.close()  # a stop does not wait for the writer
    assert time.monotonic() - started < 5 and not snaps.writing()
    assert log.events[-1][0] == "snapshot_failed"
    snapfile.Snapshots(tmp_path, "matcher", every=1, log=log)
    assert mine.exists() and not gone.exists()
