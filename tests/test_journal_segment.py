"""The journal's segment files: append, reopen, roll over, torn tails, corruption."""

from __future__ import annotations

import shutil

import pytest

from services.common.bus import NewOrder, Record
from services.common.codec import encode, record_decoder
from services.common.wire import Accepted, Side
from services.journal import tools
from services.journal.segment import (
    HEADER,
    CorruptJournal,
    JournalStore,
    read_entries,
    segment_paths,
)
from tests.mesh import wait_for


def record(seq: int, epoch: int = 1) -> bytes:
    cmd = NewOrder(1, f"c{seq}", "AAPL", Side.BUY, 10, 1_700_000)
    return encode(Record(seq, epoch, cmd, [Accepted(1, f"c{seq}", seq, "AAPL", 1, 1_700_000, 10)]))


def fill(store: JournalStore, first: int, last: int, epoch: int = 1) -> None:
    for seq in range(first, last + 1):
        store.append(seq, epoch, record(seq, epoch))
    store.sync()


def test_append_reopen_and_read_ranges(tmp_path):
    store = JournalStore(tmp_path, segment_bytes=4_000)
    fill(store, 1, 200)
    store.close()
    assert len(segment_paths(tmp_path)) > 1  # rolled over
    store = JournalStore(tmp_path, segment_bytes=4_000)
    assert store.last_seq == 200 and store.truncated is None
    store.cache.clear()  # force reads from disk
    got = [record_decoder.decode(raw).seq for raw in store.read(57, 30)]
    assert got == list(range(57, 87))
    assert store.read(199, 10) == [record(199), record(200)]
    assert store.read(201, 5) == [] and store.read(0, 5) == []
    fill(store, 201, 210)  # appending continues after reopening
    assert tools.verify(tmp_path)["ok"] and tools.verify(tmp_path)["last_seq"] == 210


@pytest.mark.parametrize("tail", [b"\x00\x01", b"\x00\x00\x01\x00\x12\x34\x56\x78abc"])
def test_torn_tail_is_truncated_on_open(tmp_path, tail):
    store = JournalStore(tmp_path, preallocate=False)
    fill(store, 1, 20)
    store.close()
    (last,) = segment_paths(tmp_path)
    size = last.stat().st_size
    with last.open("ab") as fh:
        fh.write(tail)  # a write cut short by a crash
    checked = tools.verify(tmp_path)  # usable as it is: opening drops the torn tail
    assert checked["ok"] and checked["status"] == "torn-tail"
    assert checked["torn_tail"]["offset"] == size and checked["last_seq"] == 20
    store = JournalStore(tmp_path)
    assert store.last_seq == 20 and store.truncated
    assert last.stat().st_size == size
    fill(store, 21, 25)
    assert tools.verify(tmp_path)["status"] == "ok"


def test_corruption_inside_is_detected(tmp_path):
    store = JournalStore(tmp_path, segment_bytes=2_000)
    fill(store, 1, 60)
    store.close()
    first = segment_paths(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[40] ^= 0xFF  # flip a byte inside a record of a full segment
    first.write_bytes(bytes(data))
    result = tools.verify(tmp_path)
    assert not result["ok"] and "bad CRC" in result["errors"][0]
    with pytest.raises(CorruptJournal):
        JournalStore(tmp_path)


def test_sequence_gap_is_refused(tmp_path):
    store = JournalStore(tmp_path)
    fill(store, 1, 5)
    with pytest.raises(ValueError):
        store.append(7, 1, record(7))


def test_archive_moves_whole_segments_below_the_mark(tmp_path):
    store = JournalStore(tmp_path, segment_bytes=4_000, preallocate=False)  # fixed rolls
    fill(store, 1, 300)
    firsts = [int(p.stem) for p in segment_paths(tmp_path)]
    assert len(firsts) >= 4
    assert store.archive(firsts[1] - 2) == []  # the first segment still holds a needed seq
    moved = store.archive(firsts[2] + 5)  # covers the first two segments, not the third
    assert [int(p.stem) for p in moved] == firsts[:2]
    assert [int(p.stem) for p in segment_paths(tmp_path / "archive")] == firsts[:2]
    assert store.first_seq == firsts[2]
    assert store.archived(firsts[2] - 1) and not store.archived(firsts[2])
    store.cache.clear()  # reads from disk still work from the first kept record on
    got = [record_decoder.decode(raw).seq for raw in store.read(firsts[2], 40)]
    assert got == list(range(firsts[2], firsts[2] + 40))
    assert store.archive(10**9) and len(segment_paths(tmp_path)) == 1  # the current stays
    fill(store, 301, 310)
    store.close()
    reopened = JournalStore(tmp_path, segment_bytes=4_000, preallocate=False)
    assert reopened.first_seq == int(segment_paths(tmp_path)[0].stem)
    assert reopened.last_seq == 310
    # the offline tools still see the whole history, archive included
    checked = tools.verify(tmp_path)
    assert checked["ok"] and (checked["first_seq"], checked["last_seq"]) == (1, 310)
    assert [r.seq for r in tools.records(tmp_path)] == list(range(1, 311))


def test_preallocated_segments_survive_a_crash_and_end_cut_to_their_records(tmp_path):
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    store = JournalStore(live, segment_bytes=1 << 16)
    fill(store, 1, 3)  # the first segment is a plain file: no spare was ready yet
    wait_for(store.spare.ready, what="the spare segment")
    fill(store, 4, 50)  # the spare takes over at once, named by its first record
    first, spare_seg = segment_paths(live)
    assert int(spare_seg.stem) == 4 and first.stat().st_size < spare_seg.stat().st_size
    assert spare_seg.stat().st_size == 1 << 16  # zeros past the last record
    crashed.mkdir()
    for path in (first, spare_seg):  # the segments as a SIGKILL would leave them
        shutil.copy(path, crashed / path.name)
    assert tools.verify(crashed)["ok"] and tools.verify(crashed)["last_seq"] == 50
    store.close()

    reopened = JournalStore(crashed, segment_bytes=1 << 16)
    assert reopened.last_seq == 50 and reopened.truncated is None
    reopened.cache.clear()
    assert [record_decoder.decode(r).seq for r in reopened.read(45, 10)] == list(range(45, 51))
    fill(reopened, 51, 60)  # appends go on after the last record, not after the zeros
    reopened.close()
    checked = tools.verify(crashed)
    assert checked["ok"] and (checked["first_seq"], checked["last_seq"]) == (1, 60)
    for path in segment_paths(crashed):  # closed: every segment holds records only
        entries = list(read_entries(path))
        end = entries[-1].offset + HEADER.size + len(entries[-1].payload)
        assert path.stat().st_size == end
