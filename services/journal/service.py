"""The journal service: makes records durable, then makes them visible.

It follows the primary matcher's record stream (fetching any gap from the matcher's
retransmit buffer), appends every record it has drained, syncs once for all of them
(group commit), and only then republishes them as the committed stream that the
gateway, marketdata and standby matchers follow. It serves range reads of everything
committed, and it enforces fencing: after ``fence(epoch)`` it refuses any record of an
older epoch, so a stalled or returning old primary can never write (no split brain).

A full disk (or any failed write or sync) does not stop it: it undoes the batch it
could not store, says ``disk_full`` in its beats (the primary matcher then refuses new
commands) and ``disk-full`` as its role in ``exchange status``, keeps serving reads,
and tries again every ``[journal] disk_retry_ms``; the records it dropped are fetched
again from the matcher's retransmit buffer, as for any gap.
"""

from __future__ import annotations

import os
import signal
import time

import zmq

from services.common import curve, snapfile
from services.common.beats import BeatSender
from services.common.bus import TOPIC_BEAT, TOPIC_RECORDS, Archived, Beat, Fence, ReadRange
from services.common.codec import RawRecord, encode, join_batch, raw_records
from services.common.config import Config, matcher_endpoints
from services.common.frames import send_pair
from services.common.router import bus_messages
from services.common.runtime import tune_gc
from services.common.status import current_primary, latest_status, status_socket
from services.common.stream import Follower
from services.journal.segment import FILE_MODE, JournalStore, sync_dir
from services.journal.spare import free_bytes

MAX_READ = 5_000
# while commits advance, a beat says how far at least this often: the primary matcher
# learns its journal lag from these beats alone, never from the records themselves
COMMIT_BEAT_S = 0.005
# a journal whose disk filled tries again only with at least this much free: room for
# thousands of records, so an attempt that is bound to fail is not made every retry
RESUME_FREE_BYTES = 1 << 20


class Journal:
    def __init__(self, cfg: Config, log) -> None:
        self.cfg = cfg
        self.log = log
        self.fsync = cfg.journal.fsync
        directory = cfg.home / "journal"
        # how often a journal with a full disk tries to write again, and a backed-off
        # spare writer looks for room again
        self.retry_every = cfg.journal.disk_retry_ms / 1000
        self.store = JournalStore(
            directory,
            cfg.journal.segment_bytes,
            reserve_bytes=cfg.journal.disk_reserve_bytes,
            retry_s=self.retry_every,
        )
        if self.store.truncated:
            self.log.warning("torn_tail_dropped", detail=self.store.truncated)
        self.epoch_file = directory / "epoch"
        self.min_epoch = max(self._read_epoch(), self.store.last_epoch)
        self.ctx = zmq.Context.instance()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 0)  # bounded by the matcher's lag window
        curve.bind(self.pub, cfg.endpoints["journal_pub"])
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        curve.bind(self.router, cfg.endpoints["journal_read"])
        self.status = status_socket(self.ctx, cfg.endpoints["status_pub"])
        heartbeat_ms = cfg.timings.heartbeat_ms
        self.idle_beat = heartbeat_ms / 2000
        self.beats = BeatSender(self.ctx, cfg.endpoints["heartbeat"], "journal", heartbeat_ms)
        self.sync_interval = cfg.journal.min_sync_interval_us / 1e6
        self.next_sync = 0.0
        # seconds between checks for segments to archive (0: keep everything here)
        self.archive_every = cfg.journal.archive_check_s
        self.follower: Follower | None = None
        self.instance: str | None = None
        self.disk_full = False
        self.next_retry = 0.0  # monotonic: the next disk retry and spare check
        self.spare_deferred = False  # as last logged
        self.running = True

    # -- fencing ------------------------------------------------------------------

    def _read_epoch(self) -> int:
        try:
            return int(self.epoch_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_epoch(self, epoch: int) -> None:
        tmp = self.epoch_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, str(epoch).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.epoch_file)
        sync_dir(self.epoch_file.parent)  # the rename too, or a crash could undo the fence

    def _follow(self, instance: str) -> None:
        """Follow matcher ``instance`` from the record after the last one on disk."""
        if self.follower is not None and instance == self.instance:
            return
        if self.follower is not None:
            self.follower.close()
        cmd_endpoint, pub_endpoint = matcher_endpoints(self.cfg, instance)
        self.follower = Follower(
            self.ctx,
            pub_endpoint,
            cmd_endpoint,
            self.store.last_seq + 1,
            timeout_ms=200,
            decode=raw_records,
        )
        self.instance = instance
        self.log.info("following", matcher=instance, next_seq=self.store.last_seq + 1)

    def _fence(self, ident: bytes, fence: Fence) -> None:
        if fence.epoch > self.min_epoch:
            try:
                self._write_epoch(fence.epoch)
            except OSError as exc:
                # a fence that is not on disk could be forgotten by a restart, letting
                # the old primary write again: unanswered, the promotion is retried
                self.log.error("fence_not_stored", epoch=fence.epoch, error=str(exc))
                self._disk_failed(exc)
                return
            self.min_epoch = fence.epoch
            self.log.info("fenced", epoch=fence.epoch, matcher=fence.instance)
        if fence.epoch >= self.min_epoch:
            self._follow(fence.instance)
        self.router.send_multipart([ident, encode(self._beat())])

    def _beat(self) -> Beat:
        return Beat(self.store.durable_seq, self.min_epoch, self.disk_full)

    def _on_status(self) -> None:
        """A restarted journal learns the current primary from the heartbeat service."""
        primary = current_primary(latest_status(self.status))
        if primary is not None and primary[1] >= self.min_epoch:
            self._follow(primary[0])

    # -- committing -----------------------------------------------------------------

    def _append(self, records: list[RawRecord]) -> list[bytes]:
        """Append what is acceptable (buffered): the matcher's own bytes, stored and
        republished without decoding them again."""
        raws: list = []
        for record in records:
            if record.epoch < self.min_epoch:
                self.log.warning(
                    "refused_old_epoch",
                    seq=record.seq,
                    epoch=record.epoch,
                    min_epoch=self.min_epoch,
                )
                self.follower.next_seq = record.seq  # the fenced primary's seqs are void
                break
            self.store.append(record.seq, record.epoch, record.raw)
            raws.append(record.raw)
        return raws

    def _commit(self, records: list[RawRecord]) -> bool:
        """Append, sync once for all of it, then publish it as committed; False if the
        disk failed it (then nothing of it is stored or published).

        Syncs are paced: one starts at most every ``sync_interval`` seconds, and
        what arrives in between shares the next. On this project's VM the host does
        the guest's disk flushes; past about 2,000 a second it took the guest's CPUs
        away for ~10 ms at a time, and fewer, larger commits also cost every
        process downstream less per order (docs/performance.md, "How the order
        path is kept cheap")."""
        try:
            raws = self._append(records)
            if not raws:
                return True
            if self.fsync:
                wait = self.next_sync - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                    raws += self._append(self.follower.drain())
                self.next_sync = time.monotonic() + self.sync_interval
            self.store.sync(self.fsync)
        except OSError as exc:
            self._disk_failed(exc)
            return False
        send_pair(self.pub, TOPIC_RECORDS, join_batch(raws))
        return True

    # -- a full disk --------------------------------------------------------------

    def _disk_failed(self, exc: OSError) -> None:
        """A write or sync failed: forget the batch, refuse work, try again later."""
        self.store.rollback()  # raises only if even the undo fails: then stop
        if self.follower is not None:
            self.follower.next_seq = self.store.last_seq + 1  # fetched again on resuming
        if not self.disk_full:
            self.disk_full = True
            self.log.error(
                "disk_full",
                error=str(exc),
                errno=exc.errno,
                committed=self.store.last_seq,
                free_bytes=self._free(),
            )
            self._announce()
        self.next_retry = time.monotonic() + self.retry_every

    def _free(self) -> int:
        try:
            return free_bytes(self.store.directory)
        except OSError:
            return 0

    def _announce(self) -> None:
        """Tell the matcher (journal beat) and the heartbeat service (role) at once."""
        send_pair(self.pub, TOPIC_BEAT, encode(self._beat()))
        self.beats.send(*self._service_beat())

    def _service_beat(self) -> tuple[str, int, int, int]:
        committed = self.store.durable_seq
        return ("disk-full" if self.disk_full else "journal", self.min_epoch, committed, committed)

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

    def _discard(self) -> None:
        """While the disk is full, what the matcher publishes is dropped unread (it is
        fetched again by range read on resuming): it must not pile up or spin the loop."""
        sub = self.follower.sub
        while True:
            try:
                sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _retry(self) -> None:
        """With room again, write the records dropped (fetched again from the matcher)
        and, if that works, take new work again: a failure waits for the next retry."""
        free = self._free()
        if free < RESUME_FREE_BYTES:
            return
        if self.follower is not None and not self._commit(self.follower.drain()):
            return
        self.disk_full = False
        self.log.info("disk_writable", free_bytes=free, committed=self.store.last_seq)
        self._announce()

    def _archive(self) -> None:
        """Move segments that every reader has snapshotted past to journal/archive/."""
        try:
            moved = self.store.archive(snapfile.covered_seq(self.cfg.home))
        except OSError as exc:  # e.g. no room for archive/: the next check tries again
            self.log.warning("archive_failed", error=str(exc))
            return
        if moved:
            self.log.info(
                "archived", segments=[p.name for p in moved], first_seq=self.store.first_seq
            )

    def _serve(self) -> None:
        for ident, msg in bus_messages(self.router, limit=64):
            if isinstance(msg, ReadRange) and self.store.archived(msg.first):
                self.router.send_multipart([ident, encode(Archived(self.store.first_seq))])
            elif isinstance(msg, ReadRange):
                raws = self.store.read(msg.first, min(msg.count, MAX_READ))
                self.router.send_multipart([ident, join_batch(raws)])
            elif isinstance(msg, Fence):
                self._fence(ident, msg)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        self.log.info("open", last_seq=self.store.last_seq, min_epoch=self.min_epoch)
        last_beat = 0.0
        beaten_seq = -1  # last_seq the newest beat carried
        next_archive = 0.0
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.status, zmq.POLLIN)
        polled = None  # the follower's SUB the poller watches (following anew swaps it)
        tune_gc()
        try:
            while self.running:
                sub = self.follower.sub if self.follower is not None else None
                if sub is not polled:
                    if polled is not None:
                        poller.unregister(polled)
                    if sub is not None:
                        poller.register(sub, zmq.POLLIN)
                    polled = sub
                ready = dict(poller.poll(10 if self.follower else 50))
                if self.router in ready:
                    self._serve()
                if self.status in ready:
                    self._on_status()
                follower = self.follower
                if follower is None:
                    pass
                elif self.disk_full:
                    if follower.sub in ready:
                        self._discard()
                elif (
                    follower.sub in ready
                    or follower.source_seq >= follower.next_seq
                    or follower.quiet()
                ):
                    self._commit(follower.drain())
                now = time.monotonic()
                since = now - last_beat
                if since >= self.idle_beat or (
                    since >= COMMIT_BEAT_S and self.store.last_seq != beaten_seq
                ):
                    beat = self._beat()
                    beaten_seq = beat.seq
                    send_pair(self.pub, TOPIC_BEAT, encode(beat))
                    last_beat = now
                if self.beats.due():
                    self.beats.send(*self._service_beat())
                if now >= self.next_retry:
                    self.next_retry = now + self.retry_every
                    self._prepare_spare()
                    if self.disk_full:
                        self._retry()
                if self.archive_every and now >= next_archive:
                    self._archive()
                    next_archive = now + self.archive_every
        finally:
            self.store.close()
            for sock in (self.pub, self.router, self.status):
                sock.close(0)
            if self.follower is not None:
                self.follower.close()
            self.beats.close()
        return 0
