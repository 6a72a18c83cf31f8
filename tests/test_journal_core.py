"""The journal's core without sockets: records in, what is stored, published and
answered out, through a real store in a temp directory and recording ports."""

from __future__ import annotations

import errno

import pytest

from services.common.bus import Archived, Beat, Fence, ReadRange, Record, Reopen
from services.common.codec import beat_decoder, bus_decoder, encode, raw_records, records_decoder
from services.common.metrics import Metrics
from services.journal.core import RESUME_FREE_BYTES, JournalCore
from services.journal.segment import JournalStore
from tests.fakes import Log


def batch(first: int, count: int, epoch: int = 1):
    """Records ``first`` .. as the journal's follower yields them (heads decoded)."""
    records = [Record(seq, epoch, Reopen("AAPL"), []) for seq in range(first, first + count)]
    return raw_records(encode(records))


class Harness:
    def __init__(self, tmp_path, min_epoch: int = 1, fsync: bool = False, **kw) -> None:
        self.store = JournalStore(tmp_path, segment_bytes=1 << 16, preallocate=False)
        self.published: list[list[int]] = []
        self.rewound: list[int] = []
        self.announced = 0
        self.epochs: list[int] = []
        self.pending: list = []  # what the follower would drain next
        self.slept: list[float] = []
        self.now = 100.0
        self.free = RESUME_FREE_BYTES
        self.core = JournalCore(
            self.store,
            self.epochs.append,
            min_epoch,
            Log(),
            Metrics("journal"),
            publish=lambda data: self.published.append(
                [r.seq for r in records_decoder.decode(data)]
            ),
            rewind=self.rewound.append,
            announce=self._announce,
            drain=self._drain,
            fsync=fsync,
            clock=lambda: self.now,
            sleep=self.slept.append,
            free=lambda _: self.free,
            **kw,
        )

    def _announce(self) -> None:
        self.announced += 1

    def _drain(self):
        out, self.pending = self.pending, []
        return out


def test_records_are_stored_synced_then_published_as_one_batch(tmp_path):
    h = Harness(tmp_path)
    assert h.core.commit(batch(1, 3))
    assert h.published == [[1, 2, 3]]
    assert h.store.durable_seq == 3
    assert h.core.committed.value == 3 and h.core.commits.value == 1
    assert h.core.sync_seconds.count == 1
    assert h.core.commit([])  # nothing: nothing published
    assert h.published == [[1, 2, 3]]


def test_reads_answer_what_is_committed_and_say_when_it_is_archived(tmp_path):
    h = Harness(tmp_path)
    h.core.commit(batch(1, 5))
    reply, follow = h.core.request(ReadRange(2, 2))
    assert [r.seq for r in records_decoder.decode(reply)] == [2, 3] and follow is None
    h.store.first_seq = 3  # as if 1 and 2 were archived
    reply, _ = h.core.request(ReadRange(1, 10))
    assert bus_decoder.decode(reply) == Archived(3)
    assert h.core.request(Beat(1, 1)) == (None, None)  # not a request: unanswered


def test_syncs_are_paced_and_what_arrives_meanwhile_shares_the_next(tmp_path):
    h = Harness(tmp_path, fsync=True, sync_interval=0.0005)
    h.core.commit(batch(1, 1))
    assert h.slept == []  # the first sync goes at once
    h.now += 0.0002
    h.pending = batch(3, 2)
    h.core.commit(batch(2, 1))
    assert h.slept == [pytest.approx(0.0003)]
    assert h.published == [[1], [2, 3, 4]]


def test_a_fence_is_stored_before_it_is_answered_and_names_the_matcher_to_follow(tmp_path):
    h = Harness(tmp_path)
    h.core.commit(batch(1, 2))
    reply, follow = h.core.request(Fence(2, "b"))
    assert h.epochs == [2] and h.core.min_epoch == 2
    assert beat_decoder.decode(reply) == Beat(2, 2, False) and follow == "b"
    reply, follow = h.core.request(Fence(1, "a"))  # an older epoch: told, not followed
    assert beat_decoder.decode(reply) == Beat(2, 2, False) and follow is None
    assert h.epochs == [2]


def test_records_of_a_fenced_epoch_are_refused_and_the_follower_sent_back(tmp_path):
    h = Harness(tmp_path, min_epoch=2)
    h.core.commit(batch(1, 2, epoch=2) + batch(3, 2, epoch=1))
    assert h.published == [[1, 2]] and h.rewound == [3]
    assert h.store.last_seq == 2


def test_the_primary_is_followed_unless_fenced_out(tmp_path):
    h = Harness(tmp_path, min_epoch=3)
    assert h.core.primary(("b", 3)) == "b"
    assert h.core.primary(("a", 2)) is None
    assert h.core.primary(None) is None


def test_a_fence_that_cannot_be_stored_is_not_answered_and_fills_the_disk(tmp_path):
    h = Harness(tmp_path)

    def no_room(epoch):
        raise OSError(errno.ENOSPC, "no room")

    h.core.write_epoch = no_room
    assert h.core.request(Fence(5, "b")) == (None, None)
    assert h.core.disk_full and h.core.min_epoch == 1 and h.announced == 1
    assert h.core.service_beat()[0] == "disk-full"


def test_a_full_disk_drops_the_batch_then_writes_it_again_when_there_is_room(tmp_path, monkeypatch):
    h = Harness(tmp_path)
    h.core.commit(batch(1, 2))
    real_sync = h.store.sync

    def full(fsync=True):
        raise OSError(errno.ENOSPC, "no room")

    monkeypatch.setattr(h.store, "sync", full)
    assert not h.core.commit(batch(3, 2))
    assert h.core.disk_full and h.announced == 1
    assert h.rewound == [3] and h.store.last_seq == 2  # fetched again on resuming
    assert h.core.beat() == Beat(2, 1, True)
    assert not h.core.commit(batch(3, 2))  # still full: announced once
    assert h.announced == 1

    monkeypatch.setattr(h.store, "sync", real_sync)
    h.free = RESUME_FREE_BYTES - 1
    h.now += 10
    h.pending = batch(3, 3)
    h.core.maintain(h.now)  # too little room yet: nothing tried
    assert h.core.disk_full and h.pending
    h.free = RESUME_FREE_BYTES
    h.core.maintain(h.now + 0.1)  # not a retry interval later yet
    assert h.core.disk_full
    h.core.maintain(h.now + h.core.retry_every)
    assert not h.core.disk_full and h.announced == 2
    assert h.published == [[1, 2], [3, 4, 5]]
    assert h.core.service_beat() == ("journal", 1, 5, 5)


def test_archiving_moves_nothing_until_every_reader_has_a_snapshot(tmp_path):
    h = Harness(tmp_path, covered=lambda: 0)
    h.core.commit(batch(1, 3))
    h.core.archive()
    assert h.store.first_seq == 1 and h.core.log.events == []
