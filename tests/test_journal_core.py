"""The journal's core without sockets: records in, what is stored, published and
answered out, through a real store in a temp directory and recording ports."""

from __future__ import annotations

import errno

import pytest

from services.common.bus import (
    Archived,
    Beat,
    Fence,
    FenceAck,
    ReadRange,
    Reconcile,
    Record,
    Reopen,
)
from services.common.codec import bus_decoder, encode, raw_records, records_decoder
from services.common.metrics import Metrics
from services.journal.core import RESUME_FREE_BYTES, JournalCore
from services.journal.joining import Joining
from services.journal.segment import JournalStore
from services.matcher.quorum import Quorum
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
        # following the primary of ``min_epoch``, as after its Reconcile
        self.core.reconciled = min_epoch

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


def test_a_fence_is_stored_before_it_is_answered_with_the_log_s_end_and_history(tmp_path):
    h = Harness(tmp_path)
    h.core.commit(batch(1, 2))
    reply, follow = h.core.request(Fence(2, "b"))
    assert h.epochs == [2] and h.core.min_epoch == 2 and follow is None
    assert bus_decoder.decode(reply) == FenceAck("journal", 2, 2, [(1, 1)], 0)
    reply, follow = h.core.request(Fence(1, "a"))  # an older epoch: told, nothing stored
    assert bus_decoder.decode(reply).epoch == 2 and follow is None
    assert h.epochs == [2]


def test_a_reconcile_names_the_matcher_to_follow_and_an_old_one_is_only_told(tmp_path):
    h = Harness(tmp_path)
    h.core.commit(batch(1, 2))
    reply, follow = h.core.request(Reconcile(2, "b", [(1, 1), (2, 3)]))
    assert follow == "b" and h.core.reconciled == 2 and h.epochs == [2]
    assert bus_decoder.decode(reply).reconciled == 2
    reply, follow = h.core.request(Reconcile(1, "a", [(1, 1)]))
    assert follow is None and h.core.reconciled == 2


def test_a_deposed_primary_s_records_are_refused_and_the_follower_sent_back(tmp_path):
    h = Harness(tmp_path, min_epoch=1)
    h.core.commit(batch(1, 2, epoch=1))
    h.core.request(Fence(2, "b"))  # a new primary fenced us; not yet reconciled
    h.core.commit(batch(3, 2, epoch=1))
    assert h.published == [[1, 2]] and h.rewound == [3]
    assert h.store.last_seq == 2
    h.core.request(Reconcile(2, "b", [(1, 1), (2, 3)]))
    h.core.commit(batch(3, 1, epoch=1) + batch(4, 1, epoch=2))  # adopted, then its own
    assert h.store.last_seq == 4 and h.published[-1] == [3, 4]


def test_one_of_several_publishes_only_up_to_the_primary_s_commit_position(tmp_path):
    h = Harness(tmp_path, solo=False, name="journal-b")
    h.core.request(Reconcile(1, "a", [(1, 1)]))
    h.core.commit(batch(1, 5))
    assert h.published == [] and h.store.durable_seq == 5
    assert h.core.beat() == Beat(0, 1, False, "journal-b", 1, 5)
    reply, _ = h.core.request(ReadRange(1, 10))  # readers get committed records only
    assert records_decoder.decode(reply) == []
    reply, _ = h.core.request(ReadRange(1, 10, durable=True))  # a new primary all of them
    assert len(records_decoder.decode(reply)) == 5
    h.core.release(3)
    assert h.published == [[1, 2, 3]] and h.core.visible == 3
    h.core.release(9)  # past what it holds: up to what it holds
    assert h.published == [[1, 2, 3], [4, 5]] and h.core.beat().seq == 5


def test_a_reconcile_cuts_a_deposed_epoch_s_uncommitted_tail(tmp_path):
    h = Harness(tmp_path, solo=False, name="journal-a")
    h.core.request(Reconcile(1, "a", [(1, 1)]))
    h.core.commit(batch(1, 6))
    h.core.release(4)  # 5 and 6 never reached a majority
    reply, follow = h.core.request(Reconcile(2, "b", [(1, 1), (2, 5)]))
    assert follow == "b" and h.store.last_seq == 4 and h.store.epochs == [(1, 1)]
    assert bus_decoder.decode(reply).last_seq == 4
    h.core.commit(batch(5, 2, epoch=2))
    assert h.store.epochs == [(1, 1), (2, 5)]
    # a primary whose log would cut committed records is refused (never happens)
    _, follow = h.core.request(Reconcile(3, "a", [(1, 1), (3, 2)]))
    assert follow is None and h.store.last_seq == 6


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
    assert h.core.beat() == Beat(2, 1, True, "journal", 1, 2)
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


def joining_beat(name: str, durable: int, joining: bool = False) -> Beat:
    return Beat(durable, 2, journal=name, reconciled=2, durable=durable, joining=joining)


def test_a_journal_that_started_empty_is_not_counted_until_it_holds_what_its_peers_hold(
    tmp_path,
):
    everyone = ["journal-a", "journal-b", "journal-c"]
    h = Harness(tmp_path, solo=False, name="journal-c", joining=Joining("journal-c", everyone))
    reply, _ = h.core.request(Fence(2, "a"))  # a fence is still stored ...
    assert h.epochs == [2] and bus_decoder.decode(reply).joining  # ... but said joining
    h.core.reconciled = 2  # following the new primary, as after its Reconcile
    assert h.core.beat().joining and h.core.service_beat()[0] == "joining"
    # one peer is not enough: the record a majority held may be on the other alone
    assert h.core.peer_beat(joining_beat("journal-b", 40)) is None
    assert h.core.peer_beat(joining_beat("journal-c", 90)) is None  # its own: ignored
    assert h.core.peer_beat(joining_beat("journal-a", 50)) is None  # target: 50
    h.core.commit(batch(1, 49))
    assert h.core.peer_beat(joining_beat("journal-a", 60)) is None  # 49 < 50
    h.core.commit(batch(50, 1))
    assert h.core.peer_beat(joining_beat("journal-b", 60)) == "caught-up"
    assert not bus_decoder.decode(h.core.request(Fence(3, "a"))[0]).joining
    assert h.core.peer_beat(joining_beat("journal-b", 70)) is None  # joined once


def test_a_joining_peer_is_no_evidence_but_a_majority_holding_nothing_is_a_new_cluster(
    tmp_path,
):
    everyone = ["journal-a", "journal-b", "journal-c"]
    h = Harness(tmp_path, solo=False, name="journal-c", joining=Joining("journal-c", everyone))
    # a peer that is refilling itself says nothing of what was committed
    assert h.core.peer_beat(joining_beat("journal-a", 5, joining=True)) is None
    assert h.core.peer_beat(joining_beat("journal-b", 7, joining=True)) is None
    assert h.core.joining is not None
    # this journal and another holding nothing: a majority, so nothing was committed
    assert h.core.peer_beat(joining_beat("journal-b", 0, joining=True)) == "new-cluster"


def test_a_new_primary_does_not_count_joining_journals_toward_its_majority():
    quorum = Quorum(["journal-a", "journal-b", "journal-c"])
    ack = FenceAck("journal-b", 3, 90, [(1, 1)], 0)
    empty = FenceAck("journal-c", 3, 0, [], 0, joining=True)
    assert not quorum.enough([ack, empty])
    assert quorum.enough([ack, FenceAck("journal-c", 3, 0, [], 0)])
