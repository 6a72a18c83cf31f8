"""When a journal that started with an empty log may count in a fence majority again.

A journal's vote in a new primary's fence says "the committed records are in my log or
in another answerer's". A journal whose disk was wiped breaks that: it once held, and
reported durable, records it no longer has, and a committed record may have been on
it and on just one other journal. Counted in a fence majority while it refills, it
could let a new primary adopt a log that lacks that record. (Raft has the same rule:
a member that lost its disk rejoins as a new member, not as the voter it was.)

So a journal that opens with nothing (no record, no stored fence) is *joining*, and
stays so across restarts (a marker file), until either

- **the cluster is new**: a majority of the journals, itself included, hold no record,
  so nothing was ever committed (a commit needs a majority to hold it; only a second
  journal that lost its disk, or was down since the cluster began, could fool this:
  that is two failures at once, past what three journals tolerate); or
- **it caught up**: it heard the beats of enough journals that are not joining
  themselves (``n - majority + 1``: every majority it may have been part of has
  another member among them) and holds, durable, as much as the most complete of them
  held when first heard.

While joining it stores fences (an old primary must still be refused) and follows the
primary as any journal does (its durable position counts toward the commit position:
its log is a contiguous prefix of the primary's), but its fence answers say
``joining`` and a new primary does not count them toward the majority it needs.
Pure: fed beats, no sockets.
"""

from __future__ import annotations

from services.common.bus import Beat


class Joining:
    def __init__(self, name: str, everyone: list[str]) -> None:
        self.name = name
        self.others = {n for n in everyone if n != name}
        self.majority = len(everyone) // 2 + 1
        self.need = len(everyone) - self.majority + 1
        self.heard: dict[str, int] = {}  # journal not joining -> its durable when first heard
        self.empty: set[str] = set()  # journals whose last beat said they hold nothing
        self.target: int | None = None  # what to hold before counting again

    def beat(self, beat: Beat) -> None:
        """A peer journal's beat (a matcher's, or our own, is ignored)."""
        name = beat.journal
        if name not in self.others:
            return
        if beat.durable == 0:
            self.empty.add(name)
        else:
            self.empty.discard(name)
        if not beat.joining and name not in self.heard:
            self.heard[name] = beat.durable
            if len(self.heard) >= self.need and self.target is None:
                self.target = max(self.heard.values())

    def joined(self, durable: int) -> str | None:
        """Why this journal may count again (``new-cluster`` or ``caught-up``), given
        the last record it holds on disk; None: not yet."""
        if durable == 0 and len(self.empty) + 1 >= self.majority:
            return "new-cluster"
        if self.target is not None and durable >= self.target:
            return "caught-up"
        return None
