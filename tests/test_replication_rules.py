"""The pure rules of the replicated journal: where two logs agree (from their epoch
histories alone), and the primary's commit position (a majority, never below its
own first record)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.bus import Beat, FenceAck
from services.journal.history import agreement, cut, epoch_at, extend
from services.matcher.quorum import Quorum


def history_of(epochs: list[int]) -> list[tuple[int, int]]:
    """The history of a log whose record i+1 has epoch epochs[i]."""
    out: list[tuple[int, int]] = []
    for seq, epoch in enumerate(epochs, start=1):
        extend(out, epoch, seq)
    return out


# a leader's log, and a follower's: a prefix of it, then records of deposed epochs
# (older than the leader's next) that the leader never had
LOGS = (
    st.lists(st.integers(1, 4), max_size=30)
    .map(sorted)
    .flatmap(
        lambda leader: st.tuples(
            st.just(leader),
            st.integers(0, len(leader)),
            st.lists(st.integers(1, 5), max_size=10).map(sorted),
        )
    )
)


@given(LOGS)
def test_agreement_is_the_longest_common_prefix_by_epoch(logs):
    leader, keep, deposed = logs
    top = max(leader, default=0) + 1
    mine = leader[:keep] + [min(max(e, leader[keep - 1] if keep else 1), top - 1) for e in deposed]
    # a deposed record differs from the leader's record at the same seq by epoch
    # (one primary per epoch), unless it is the leader's own record
    theirs = history_of(leader) + [(top, len(leader) + 1)]
    expected = 0
    for seq, epoch in enumerate(mine, start=1):
        if seq > len(leader) or leader[seq - 1] != epoch:
            break
        expected = seq
    assert agreement(history_of(mine), len(mine), theirs) == expected


def test_epoch_at_and_cut():
    history = [(1, 1), (3, 10), (4, 20)]
    assert [epoch_at(history, s) for s in (1, 9, 10, 19, 25)] == [1, 1, 3, 3, 4]
    assert cut(history, 15) == [(1, 1), (3, 10)]
    assert agreement([(2, 5)], 8, [(1, 1), (2, 4)]) == 8  # archived records count


def beat(name: str, durable: int, reconciled: int, epoch: int = 0, full: bool = False):
    return Beat(durable, epoch or reconciled, full, name, reconciled, durable)


def test_the_commit_position_is_what_a_majority_of_matching_journals_hold():
    q = Quorum(["journal-a", "journal-b", "journal-c"])
    q.lead(epoch=2, floor=11)  # adopted up to 10, its Lead at 11
    q.beat(beat("journal-a", 12, 2))
    assert q.commit() == 0  # one of three
    q.beat(beat("journal-b", 10, 2))
    assert q.commit() == 0  # a majority holds 10, below the new primary's first record
    q.beat(beat("journal-c", 40, 1, epoch=2))  # fenced, not yet matched: not counted
    assert q.commit() == 0 and q.unmatched() == ["journal-c"]
    q.beat(beat("journal-b", 11, 2))
    assert q.commit() == 11
    q.beat(beat("journal-c", 30, 2))
    assert q.commit() == 12 and q.unmatched() == []


def test_too_few_writable_journals_refuse_work_and_a_newer_fence_deposes():
    q = Quorum(["journal-a", "journal-b", "journal-c"])
    q.lead(epoch=3, floor=1)
    q.beat(beat("journal-a", 5, 3, full=True))
    assert not q.full()
    q.beat(beat("journal-b", 5, 3, full=True))
    assert q.full()
    q.beat(beat("journal-c", 5, 0, epoch=4))
    assert q.newest_fence == 4


def test_the_most_complete_log_is_the_newest_last_epoch_then_the_longest():
    acks = [
        FenceAck("journal-a", 5, 120, [(1, 1), (3, 100)]),
        FenceAck("journal-b", 5, 130, [(1, 1), (2, 100)]),  # longer, but an older epoch
        FenceAck("journal-c", 5, 110, [(1, 1), (3, 100)]),
    ]
    assert Quorum.most_complete(acks).journal == "journal-a"
