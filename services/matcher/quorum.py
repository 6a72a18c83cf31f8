"""The primary's view of the journals: which hold its log, how far, and so what is
committed. Pure: fed the journals' beats and fence answers, no sockets.

A record is committed once a majority of the journals hold it on disk, counting only
journals whose log was matched to this primary's (reconciled at its epoch). A new
primary's commit position also never stops short of its own first record (``Lead``):
records it adopted from an earlier epoch are committed together with one of its own,
never by counting them alone (Raft's rule; without it, a log that held them on a
majority could still be replaced by another epoch's after a second failover).
"""

from __future__ import annotations

from services.common.bus import Beat, FenceAck


class Quorum:
    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.majority = len(self.names) // 2 + 1
        self.epoch = 0
        self.floor = 0  # the commit position counts only at or past this seq
        self.durable: dict[str, int] = {}  # journals reconciled at ``epoch``: last on disk
        self.disk_full: dict[str, bool] = {}
        self.reconciled: dict[str, int] = {}
        self.newest_fence = 0  # the highest epoch any journal says it is fenced at

    @property
    def solo(self) -> bool:
        return len(self.names) == 1

    def lead(self, epoch: int, floor: int) -> None:
        """This primary's reign began: count only journals that match its log, and
        nothing below ``floor`` (its first record)."""
        self.epoch, self.floor = epoch, floor
        self.durable.clear()

    def beat(self, beat: Beat) -> None:
        name = beat.journal
        if name not in self.names:
            return
        self.newest_fence = max(self.newest_fence, beat.epoch)
        self.disk_full[name] = beat.disk_full
        self.reconciled[name] = beat.reconciled
        if beat.reconciled == self.epoch and self.epoch:
            self.durable[name] = beat.durable
        else:
            self.durable.pop(name, None)

    def commit(self) -> int:
        """The highest seq a majority of matching journals hold (0: none yet)."""
        if len(self.durable) < self.majority:
            return 0
        position = sorted(self.durable.values(), reverse=True)[self.majority - 1]
        return position if position >= self.floor else 0

    def full(self) -> bool:
        """Too few journals can write to make a majority: refuse new work."""
        writable = sum(1 for name in self.names if not self.disk_full.get(name, False))
        return writable < self.majority

    def unmatched(self) -> list[str]:
        """Journals not (yet) known to match this primary's log: reconcile them."""
        return [n for n in self.names if self.reconciled.get(n) != self.epoch]

    def enough(self, acks) -> bool:
        """Whether fence answers make a majority: a journal that started empty and is
        still refilling (``joining``) does not count (services/journal/joining.py)."""
        return sum(1 for ack in acks if not ack.joining) >= self.majority

    @staticmethod
    def most_complete(acks: list[FenceAck]) -> FenceAck:
        """The log a new primary adopts: the newest last epoch, then the longest. It
        holds every committed record (a majority holds each, and the acks come from a
        majority)."""
        return max(acks, key=lambda a: (a.epochs[-1][0] if a.epochs else 0, a.last_seq))
