"""Which part of two journals' logs agree, from their epoch histories alone.

A log's history lists (epoch, first seq) for every epoch that wrote into it, oldest
first. One primary writes each epoch, and a journal appends records of an epoch only
after matching its log to that primary's (``Reconcile``), so two logs that hold a
record of the same epoch at the same seq hold the same records up to it (Raft's log
matching property). Comparing the histories therefore finds the last seq on which
two logs agree without reading a record: the shape of Kafka's leader-epoch check.
"""

from __future__ import annotations

from bisect import bisect_right

History = list[tuple[int, int]]  # (epoch, first seq), ascending in both


def epoch_at(history: History, seq: int) -> int | None:
    """The epoch of record ``seq`` in a log with this history (None: before its start)."""
    i = bisect_right([first for _, first in history], seq)
    return history[i - 1][0] if i else None


def agreement(mine: History, my_last: int, theirs: History) -> int:
    """The last seq up to which a log (``mine``, ending at ``my_last``) matches the log
    with history ``theirs``, whose last epoch is still open. Records below both
    histories' starts (archived ones) are committed and count as matching."""
    starts = sorted({first for _, first in mine} | {first for _, first in theirs})
    for first in starts:
        if first > my_last:
            break
        a, b = epoch_at(mine, first), epoch_at(theirs, first)
        if a is not None and b is not None and a != b:
            return first - 1
    return my_last


def extend(history: History, epoch: int, seq: int) -> None:
    """Note record ``seq`` of ``epoch`` appended to the log with ``history``."""
    if not history or history[-1][0] != epoch:
        history.append((epoch, seq))


def cut(history: History, last_seq: int) -> History:
    """The history of the same log cut after ``last_seq``."""
    return [(epoch, first) for epoch, first in history if first <= last_seq]
