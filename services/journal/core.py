"""The journal's decisions, apart from its sockets: for each input, what to write,
when to sync, what to publish as committed and what to answer.

``JournalCore`` is given the store (segment files), the way to make a fence durable,
and four ports to its node: ``publish`` (a committed batch), ``rewind`` (the record
the follower must read next), ``announce`` (say the disk state now, to the matcher and
the heartbeat service) and ``drain`` (what the matcher has published since, or None
while none is followed). Tests give it a store in a temp directory and recording ports.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from services.common.bus import Archived, Beat, Fence, FenceAck, ReadRange, Reconcile
from services.common.codec import RawRecord, encode, join_batch
from services.common.metrics import Metrics
from services.journal.history import agreement
from services.journal.joining import Joining
from services.journal.segment import JournalStore
from services.journal.spare import free_bytes

MAX_READ = 5_000
# a journal whose disk filled tries again only with at least this much free: room for
# thousands of records, so an attempt that is bound to fail is not made every retry
RESUME_FREE_BYTES = 1 << 20


class JournalCore:
    def __init__(
        self,
        store: JournalStore,
        write_epoch: Callable[[int], None],
        min_epoch: int,
        log,
        metrics: Metrics,
        *,
        publish: Callable[[bytes], None],
        rewind: Callable[[int], None],
        announce: Callable[[], None],
        announce_durable: Callable[[], None] = lambda: None,
        drain: Callable[[], list | None],
        fsync: bool = True,
        sync_interval: float = 0.0,
        retry_every: float = 1.0,
        covered: Callable[[], int] = lambda: 0,
        name: str = "journal",
        solo: bool = True,
        joining: Joining | None = None,
        free: Callable[[Path], int] = free_bytes,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.write_epoch = write_epoch
        self.min_epoch = min_epoch
        self.log = log
        self.publish = publish
        self.rewind = rewind
        self.announce = announce
        self.announce_durable = announce_durable  # one of several: beat the primary now
        self.drain = drain
        self.fsync = fsync
        self.sync_interval = sync_interval
        self.next_sync = 0.0
        self.retry_every = retry_every
        self.next_retry = 0.0  # the next disk retry and spare check
        self.covered = covered  # the last seq every reader has a snapshot past
        self.free = free
        self.clock = clock
        self.sleep = sleep
        self.disk_full = False
        self.spare_deferred = False  # as last logged
        self.name = name
        # alone, a journal commits what it syncs; one of several publishes a record
        # only once the primary says a majority holds it (its commit position)
        self.solo = solo
        # started with an empty log, one of several: not counted in a fence majority
        # until it caught up (services/journal/joining.py)
        self.joining = joining
        self.reconciled = 0  # the epoch whose primary's log this one was matched to
        self.refusing = False  # a deposed primary's records are being refused (logged)
        self.commit_seen = 0  # the commit position that primary announced
        self.visible = store.durable_seq if solo else 0  # published as committed
        self.held: deque[RawRecord] = deque()  # synced, awaiting the commit position
        self.committed = metrics.counter("records_committed", "records made durable")
        self.commits = metrics.counter("commits", "group commits (one sync each)")
        self.sync_seconds = metrics.histogram("fsync_seconds", "time in one commit's sync")
        metrics.gauge("disk_full", "1 while the journal cannot write", lambda: int(self.disk_full))
        metrics.gauge("durable_seq", "last record made durable", lambda: self.store.durable_seq)
        metrics.gauge("committed_seq", "last record published as committed", lambda: self.visible)

    # -- reads and fences -----------------------------------------------------------

    def request(self, msg: object) -> tuple[bytes | None, str | None]:
        """The answer to a range read, a fence or a reconcile (None: none), and the
        matcher to follow from now on (None: no change)."""
        store = self.store
        if isinstance(msg, ReadRange):
            if store.archived(msg.first):
                return encode(Archived(store.first_seq)), None
            top = store.durable_seq if msg.durable else self.visible
            count = min(msg.count, MAX_READ, top - msg.first + 1)
            return join_batch(store.read(msg.first, count)), None
        if isinstance(msg, Fence):
            return (encode(self.ack()) if self._fence(msg.epoch) else None), None
        if isinstance(msg, Reconcile):
            return self._reconcile(msg)
        return None, None

    def ack(self) -> FenceAck:
        store = self.store
        return FenceAck(
            self.name,
            self.min_epoch,
            store.durable_seq,
            list(store.epochs),
            self.reconciled,
            self.joining is not None,
        )

    def _fence(self, epoch: int) -> bool:
        """Refuse records of epochs below ``epoch`` from now on; False if that could
        not be stored (unanswered, the new primary asks again)."""
        if epoch > self.min_epoch:
            try:
                self.write_epoch(epoch)
            except OSError as exc:
                # a fence that is not on disk could be forgotten by a restart, letting
                # the old primary write again
                self.log.error("fence_not_stored", epoch=epoch, error=str(exc))
                self.disk_failed(exc)
                return False
            self.min_epoch = epoch
            self.reconciled = 0
            self.log.info("fenced", epoch=epoch)
        return True

    def _reconcile(self, msg: Reconcile) -> tuple[bytes | None, str | None]:
        """Match this log to the primary's (cut records of a deposed epoch it does not
        hold), then follow that primary from the new end."""
        if msg.epoch < self.min_epoch or not self._fence(msg.epoch):
            return encode(self.ack()), None
        store = self.store
        keep = agreement(store.epochs, store.last_seq, msg.epochs)
        if keep < store.last_seq:
            if keep < self.visible:  # never happens unless the protocol is broken
                self.log.critical(
                    "reconcile_refused", keep=keep, committed=self.visible, epoch=msg.epoch
                )
                return encode(self.ack()), None
            self.log.warning(
                "truncated", after=keep, dropped=store.last_seq - keep, epoch=msg.epoch
            )
            # a cut that fails half way leaves memory and disk apart: let it raise, so
            # the journal stops and opens again from what is on disk
            store.truncate(keep)
            while self.held and self.held[-1].seq > keep:
                self.held.pop()
        if self.reconciled != msg.epoch:
            self.reconciled = msg.epoch
            self.commit_seen = 0  # a new primary's commit position comes with its beats
            self.log.info("reconciled", epoch=msg.epoch, last_seq=store.last_seq)
        return encode(self.ack()), msg.instance

    def beat(self) -> Beat:
        store = self.store
        return Beat(
            self.visible,
            self.min_epoch,
            self.disk_full,
            self.name,
            self.reconciled,
            store.durable_seq,
            joining=self.joining is not None,
        )

    def peer_beat(self, beat: Beat) -> str | None:
        """Another journal's beat, while this one is joining: why it now counts again
        (then it is no longer joining), or None."""
        joining = self.joining
        if joining is None:
            return None
        joining.beat(beat)
        why = joining.joined(self.store.durable_seq)
        if why is not None:
            self.joining = None
        return why

    def service_beat(self) -> tuple[str, int, int, int]:
        role = "disk-full" if self.disk_full else "joining" if self.joining else "journal"
        return (role, self.min_epoch, self.store.durable_seq, self.visible)

    # -- committing -------------------------------------------------------------------

    def _append(self, records: list[RawRecord]) -> list[RawRecord]:
        """Append what is acceptable (buffered): the matcher's own bytes, stored and
        republished without decoding them again. Only while this log matches the
        newest fenced epoch's primary's (reconciled at it): its records may be of any
        epoch up to its own (the ones it adopted), but a deposed primary's records,
        arriving after a newer fence, are refused."""
        if records and self.reconciled != self.min_epoch:
            if not self.refusing:
                self.refusing = True
                self.log.warning(
                    "refused_old_epoch",
                    seq=records[0].seq,
                    epoch=records[0].epoch,
                    min_epoch=self.min_epoch,
                )
            self.rewind(records[0].seq)  # the fenced primary's seqs are void
            return []
        self.refusing = False
        raws: list = []
        for record in records:
            self.store.append(record.seq, record.epoch, record.raw)
            raws.append(record)
        return raws

    def commit(self, records: list[RawRecord]) -> bool:
        """Append, sync once for all of it, then publish it as committed; False if the
        disk failed it (then nothing of it is stored or published).

        Syncs are paced: one starts at most every ``sync_interval`` seconds, and
        what arrives in between (``drain()`` after the wait) shares the next. On this project's
        VM the host does the guest's disk flushes; past about 2,000 a second it took
        the guest's CPUs away for ~10 ms at a time, and fewer, larger commits also cost
        every process downstream less per order (docs/performance.md, "How the order
        path is kept cheap")."""
        clock = self.clock
        try:
            raws = self._append(records)
            if not raws:
                return True
            if self.fsync:
                wait = self.next_sync - clock()
                if wait > 0:
                    self.sleep(wait)
                    raws += self._append(self.drain() or [])
                self.next_sync = clock() + self.sync_interval
            started = clock()
            self.store.sync(self.fsync)
            self.sync_seconds.observe(clock() - started)
        except OSError as exc:
            self.disk_failed(exc)
            return False
        self.commits.value += 1
        self.committed.value += len(raws)
        if self.solo:
            self.visible = self.store.durable_seq
            self.publish(join_batch([record.raw for record in raws]))
        else:
            self.held.extend(raws)
            self.release(self.commit_seen)
            self.announce_durable()
        return True

    def release(self, commit: int) -> None:
        """Publish as committed what the primary says a majority holds (``commit``)."""
        if commit > self.commit_seen:
            self.commit_seen = commit
        top = min(self.commit_seen, self.store.durable_seq)
        if top <= self.visible or not self.reconciled:
            return
        held, out = self.held, []
        while held and held[0].seq <= top:
            out.append(held.popleft().raw)
        self.visible = top
        if out:
            self.publish(join_batch(out))

    # -- a full disk --------------------------------------------------------------------

    def disk_failed(self, exc: OSError) -> None:
        """A write or sync failed: forget the batch, refuse work, try again later."""
        self.store.rollback()  # raises only if even the undo fails: then stop
        self.rewind(self.store.last_seq + 1)  # fetched again on resuming
        if not self.disk_full:
            self.disk_full = True
            self.log.error(
                "disk_full",
                error=str(exc),
                errno=exc.errno,
                committed=self.store.last_seq,
                free_bytes=self._free(),
            )
            self.announce()
        self.next_retry = self.clock() + self.retry_every

    def _free(self) -> int:
        try:
            return self.free(self.store.directory)
        except OSError:
            return 0

    def maintain(self, now: float) -> None:
        """Every ``retry_every``: let a spare writer that backed off try again, and with
        a full disk, try writing again."""
        if now < self.next_retry:
            return
        self.next_retry = now + self.retry_every
        self._prepare_spare()
        if self.disk_full:
            self._retry()

    def _prepare_spare(self) -> None:
        """Let a spare writer that backed off (no room above the reserve) try again."""
        spare = self.store.spare
        if spare is None:
            return
        spare.prepare()
        deferred = spare.deferred is not None
        if deferred != self.spare_deferred:  # said once per change, not every retry
            self.spare_deferred = deferred
            if deferred:
                self.log.warning("spare_deferred", reason=spare.deferred)
            else:
                self.log.info("spare_resumed")

    def _retry(self) -> None:
        """With room again, write the records dropped (fetched again from the matcher)
        and, if that works, take new work again: a failure waits for the next retry."""
        free = self._free()
        if free < RESUME_FREE_BYTES:
            return
        records = self.drain()
        if records is not None and not self.commit(records):
            return
        self.disk_full = False
        self.log.info("disk_writable", free_bytes=free, committed=self.store.last_seq)
        self.announce()

    def archive(self) -> None:
        """Move segments that every reader has snapshotted past to journal/archive/."""
        try:
            moved = self.store.archive(self.covered())
        except OSError as exc:  # e.g. no room for archive/: the next check tries again
            self.log.warning("archive_failed", error=str(exc))
            return
        if moved:
            self.log.info(
                "archived", segments=[p.name for p in moved], first_seq=self.store.first_seq
            )
