"""The journal's store when the disk misbehaves: syncs on reopening, undoing a failed
write, the spare writer's reserve, and private file modes."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from services.journal import segment, spare, tools
from services.journal.segment import JournalStore, segment_paths
from services.journal.spare import Spare
from tests.mesh import wait_for
from tests.test_journal_segment import fill, record


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in segment_paths(directory)}


class SyncRecorder:
    """Stands in for os.fsync / os.fdatasync: notes what each call synced, in order."""

    def __init__(self, monkeypatch, fail: bool = False) -> None:
        self.synced: list[str] = []
        self.fail = fail
        monkeypatch.setattr(os, "fsync", self)
        monkeypatch.setattr(os, "fdatasync", self)
        monkeypatch.setattr(segment, "sync_data", self)

    def __call__(self, fd: int) -> None:
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        self.synced.append(os.readlink(f"/proc/self/fd/{fd}"))


def crashed_journal(directory, last: int, torn: bytes = b"") -> int:
    """Records 1..``last`` written but never synced, as a journal killed between its
    write and its fdatasync leaves them (in the page cache), plus a torn write; the
    last segment's size without it."""
    store = JournalStore(directory, segment_bytes=4_000, preallocate=False)
    for seq in range(1, last + 1):
        store.append(seq, 1, record(seq))
    store.sync(fsync=False)
    path = segment_paths(directory)[-1]
    size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(torn)
    os.close(store._fd)  # abandoned, not closed: a close would sync
    return size


@pytest.mark.parametrize("torn", [b"", b"\x00\x00\x01\x00\x12\x34"])
def test_reopening_syncs_the_last_segment_and_directory_before_counting_it(
    tmp_path, monkeypatch, torn
):
    size = crashed_journal(tmp_path, 120, torn)
    last = segment_paths(tmp_path)[-1]
    recorder = SyncRecorder(monkeypatch)
    store = JournalStore(tmp_path, segment_bytes=4_000, preallocate=False)
    assert store.durable_seq == 120
    assert str(last) in recorder.synced and str(tmp_path) in recorder.synced
    assert last.stat().st_size == size  # the torn bytes, if any, were cut


def test_a_journal_that_cannot_sync_on_reopening_counts_nothing(tmp_path, monkeypatch):
    crashed_journal(tmp_path, 40)
    SyncRecorder(monkeypatch, fail=True)
    with pytest.raises(OSError):  # no store, so no committed position to report
        JournalStore(tmp_path, segment_bytes=4_000, preallocate=False)


def test_a_failed_write_is_undone_and_the_records_written_again(tmp_path, monkeypatch):
    store = JournalStore(tmp_path, segment_bytes=4_000, preallocate=False)
    fill(store, 1, 30)
    before = snapshot(tmp_path)
    real = os.pwrite

    def no_room(fd, data, offset):  # a short write, then the disk is full
        real(fd, bytes(data[:10]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", no_room)
    with pytest.raises(OSError):
        for seq in range(31, 81):  # past a roll: the batch spans two segments
            store.append(seq, 1, record(seq))
        store.sync()
    store.rollback()
    monkeypatch.undo()
    assert store.last_seq == store.durable_seq == 30
    assert snapshot(tmp_path) == before  # the short write is gone from the disk
    assert store.read(29, 10) == [record(29), record(30)]
    fill(store, 31, 80)  # the same records, fetched again, are stored once
    store.cache.clear()
    assert store.read(28, 100) == [record(s) for s in range(28, 81)]
    store.close()
    checked = tools.verify(tmp_path)
    assert checked["status"] == "ok" and checked["records"] == 80
    assert [r.seq for r in tools.records(tmp_path)] == list(range(1, 81))


def test_a_failed_sync_is_undone_and_nothing_is_read_from_the_page_cache(tmp_path, monkeypatch):
    store = JournalStore(tmp_path, segment_bytes=1 << 16)
    fill(store, 1, 5)
    wait_for(store.spare.ready, what="the spare segment")
    fill(store, 6, 10)  # now writing into a preallocated segment
    before = snapshot(tmp_path)

    def failed(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment, "sync_data", failed)
    for seq in range(11, 21):
        store.append(seq, 1, record(seq))
    with pytest.raises(OSError):
        store.sync()
    assert store.read(11, 5) == []  # appended, never synced: not served
    store.rollback()
    monkeypatch.undo()
    after = snapshot(tmp_path)
    assert after.keys() == before.keys()
    for name, data in after.items():  # cut to the synced entries (no zeros kept)
        assert before[name].startswith(data) and not any(before[name][len(data) :])
    assert store.last_seq == 10
    fill(store, 11, 20)
    store.close()
    assert [r.seq for r in tools.records(tmp_path)] == list(range(1, 21))


def test_journal_files_are_private(tmp_path):
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    legacy = old / segment.segment_name(1)
    legacy.write_bytes(b"")
    os.chmod(legacy, 0o644)
    store = JournalStore(old, segment_bytes=4_000, preallocate=False)
    assert mode(old) == 0o700 and mode(legacy) == 0o600  # tightened on opening
    store.close()

    new = tmp_path / "new" / "journal"
    store = JournalStore(new, segment_bytes=4_000)
    fill(store, 1, 200)
    wait_for(store.spare.ready, what="the spare segment")
    store.archive(100)
    store.close()
    assert mode(new) == 0o700 and mode(new / "archive") == 0o700
    files = segment_paths(new) + segment_paths(new / "archive") + [new / spare.READY]
    assert len(files) > 3 and {mode(p) for p in files} == {0o600}


class Free:
    """A filesystem's free space, as the test says."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)

    def __call__(self, directory) -> int:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def thread_errors(monkeypatch) -> list:
    errors: list = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    return errors


def test_no_spare_is_made_that_would_eat_the_reserve(tmp_path, monkeypatch):
    errors = thread_errors(monkeypatch)
    size, reserve = 1 << 20, 8 << 20
    free = Free(reserve + size - 1)  # one byte short
    made = Spare(tmp_path, size, reserve=reserve, retry_s=0.05, free=free)
    made.prepare()
    assert made._thread is None and "reserved" in made.deferred
    assert list(tmp_path.iterdir()) == []
    free.answers = [reserve + size]
    made.prepare()  # still backing off
    assert made._thread is None
    wait_for(lambda: made.prepare() or made.ready(), timeout=5, what="a spare")
    assert (tmp_path / spare.READY).stat().st_size == size and made.deferred is None
    made.close()
    assert errors == []


def test_a_spare_stops_when_the_disk_fills_while_it_is_made(tmp_path, monkeypatch):
    errors = thread_errors(monkeypatch)
    size, reserve = 1 << 20, 8 << 20
    free = Free(100 << 20, 100 << 20, reserve)  # room at first, then none
    made = Spare(tmp_path, size, reserve=reserve, retry_s=60, free=free)
    made.prepare()
    wait_for(lambda: not made._thread.is_alive(), timeout=5, what="the writer to stop")
    assert not made.ready() and "reserved" in made.deferred
    assert list(tmp_path.iterdir()) == []  # the partial spare is gone
    made.close()
    assert errors == []


def test_a_spare_that_cannot_be_written_is_dropped_not_fatal(tmp_path, monkeypatch):
    errors = thread_errors(monkeypatch)

    def enospc(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spare, "sync_data", enospc)
    made = Spare(tmp_path, 1 << 20, reserve=0, retry_s=60)
    made.prepare()
    wait_for(lambda: not made._thread.is_alive(), timeout=5, what="the writer to stop")
    assert not made.ready() and "No space left" in made.deferred
    assert list(tmp_path.iterdir()) == []
    made.prepare()  # backing off: no new attempt yet
    assert not made._thread.is_alive()
    made.close()
    assert errors == []
