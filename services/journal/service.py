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

The decisions are ``core.py``'s; this is its node.
"""

from __future__ import annotations

import os
import time

import zmq

from services.common import curve, snapfile
from services.common.bus import TOPIC_BEAT, TOPIC_DURABLE, TOPIC_RECORDS
from services.common.codec import DecodeError, beat_decoder, encode
from services.common.config import Config, journals, matcher_endpoints, service_name
from services.common.frames import recv_frames, send_pair
from services.common.node import Node
from services.common.router import bus_messages
from services.journal.core import JournalCore
from services.journal.joining import Joining
from services.journal.peers import PeerFollower
from services.journal.segment import FILE_MODE, JournalStore, sync_dir

# while commits advance, a beat says how far at least this often: the primary matcher
# learns its journal lag from these beats alone, never from the records themselves
COMMIT_BEAT_S = 0.005


class Journal:
    def __init__(self, cfg: Config, log) -> None:
        self.cfg = cfg
        self.log = log
        directory = cfg.home / "journal"
        # how often a journal with a full disk tries to write again, and a backed-off
        # spare writer looks for room again
        retry_every = cfg.journal.disk_retry_ms / 1000
        store = JournalStore(
            directory,
            cfg.journal.segment_bytes,
            reserve_bytes=cfg.journal.disk_reserve_bytes,
            retry_s=retry_every,
        )
        if store.truncated:
            self.log.warning("torn_tail_dropped", detail=store.truncated)
        self.epoch_file = directory / "epoch"
        name = service_name(cfg, "journal")
        everyone = journals(cfg)
        # the other journals' range-read endpoints: a second source of committed records
        self.peers = [read for other, _, read in everyone if other != name]
        node = self.node = Node("journal", cfg, log)
        node.close_later(store.close)
        self.joining_file = directory / "joining"
        joining = None
        if len(everyone) > 1 and self._starts_joining(store):
            joining = Joining(name, [other for other, _, _ in everyone])
        self.core = JournalCore(
            store,
            self._write_epoch,
            max(self._read_epoch(), store.last_epoch),
            log,
            node.metrics,
            publish=self._publish,
            rewind=self._rewind,
            announce=self._announce,
            drain=self._drain,
            fsync=cfg.journal.fsync,
            sync_interval=cfg.journal.min_sync_interval_us / 1e6,
            retry_every=retry_every,
            covered=lambda: snapfile.covered_seq(cfg.home),
            name=name,
            solo=len(everyone) == 1,
            joining=joining,
            announce_durable=self._beat_soon,
        )
        self.pub = node.bind(zmq.PUB, cfg.endpoints["journal_pub"], SNDHWM=0)  # bounded
        # by the matcher's lag window
        self.router = node.bind(zmq.ROUTER, cfg.endpoints["journal_read"])
        self.follower: PeerFollower | None = None
        self.following_epoch = 0
        self.instance: str | None = None
        node.close_later(lambda: self.follower and self.follower.close())
        node.on(self.router, self._serve)
        node.step(self.core.maintain)
        self.beaten_at = 0.0  # when the last beat went out on the PUB
        self.pub_beat = node.every(cfg.timings.heartbeat_ms / 2000, self._pub_beat)
        node.beat_with(name, self.core.service_beat)
        if joining is not None:
            self.log.warning("joining", reason="started with an empty log")
            # the other journals' beats, until this one has caught up with them
            sub = self.peer_beats = node.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, TOPIC_BEAT)
            for other, pub, _ in everyone:
                if other != name:
                    curve.link(sub, pub)
            node.on(sub, self._peer_beats)
        # seconds between checks for segments to archive (0: keep everything here)
        if cfg.journal.archive_check_s:
            node.every(cfg.journal.archive_check_s, lambda _: self.core.archive())

    # -- joining --------------------------------------------------------------------

    def _starts_joining(self, store: JournalStore) -> bool:
        """Joining: marked so by an earlier start, or opening with nothing at all (a
        new journal, or one whose disk was wiped). The mark is on disk before the
        journal answers anyone, so a restart half way through refilling keeps it."""
        if self.joining_file.exists():
            return True
        if store.last_seq or self._read_epoch():
            return False
        fd = os.open(self.joining_file, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        sync_dir(self.joining_file.parent)
        return True

    def _peer_beats(self, now: float) -> None:
        sub, core = self.peer_beats, self.core
        while True:
            try:
                _, payload = recv_frames(sub)
            except zmq.Again:
                return
            try:
                why = core.peer_beat(beat_decoder.decode(payload))
            except DecodeError:
                continue
            if why is not None:
                self.joining_file.unlink(missing_ok=True)
                sync_dir(self.joining_file.parent)
                self.node.off(sub)
                sub.close(0)
                self.log.info("joined", reason=why, durable=core.store.durable_seq)
                self._pub_beat(now)  # say so at once
                return

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

    def _follow(self, instance: str, fresh: bool = False) -> None:
        """Follow matcher ``instance`` from the record after the last one on disk (a
        reconcile may have cut the log: then follow again from the new end)."""
        node, core = self.node, self.core
        next_seq = core.store.last_seq + 1
        if (
            not fresh
            and self.follower is not None
            and instance == self.instance
            and self.follower.next_seq == next_seq
        ):
            return
        if self.follower is not None:
            node.off(self.follower)
            self.follower.close()
        cmd_endpoint, pub_endpoint = matcher_endpoints(self.cfg, instance)
        self.follower = PeerFollower(node.ctx, pub_endpoint, cmd_endpoint, next_seq, self.peers)
        self.instance = instance
        node.follow(self.follower, self._take, when=lambda: not core.disk_full)
        node.on(self.follower.sub, self._discard, when=lambda: core.disk_full)
        self.log.info("following", matcher=instance, next_seq=next_seq)

    def _serve(self, now: float) -> None:
        router, core = self.router, self.core
        for ident, msg in bus_messages(router, limit=64):
            reply, follow = core.request(msg)
            if follow is not None:
                # a new reign: a new follower (the last one's source seq and commit
                # position were another primary's, even at the same instance)
                self._follow(follow, fresh=msg.epoch != self.following_epoch)
                self.following_epoch = msg.epoch
            if reply is not None:
                router.send_multipart([ident, reply])

    def _take(self, records) -> None:
        """Store what the primary published, then publish what it says is committed."""
        core = self.core
        core.commit(records)
        if not core.solo:
            core.release(self.follower.source_commit)

    # -- the core's ports -----------------------------------------------------------

    def _publish(self, batch: bytes) -> None:
        send_pair(self.pub, TOPIC_RECORDS, batch)
        # say how far soon: the primary's lag window reads it
        self.pub_beat.pull(self.beaten_at + COMMIT_BEAT_S)

    def _rewind(self, seq: int) -> None:
        follower = self.follower
        if follower is not None:
            follower.next_seq = seq
            if self.core.refusing:  # a deposed primary's: stop asking it for more
                follower.source_seq = min(follower.source_seq, seq - 1)

    def _drain(self):
        return None if self.follower is None else self.follower.drain()

    def _announce(self) -> None:
        """Tell the matcher (journal beat) and the heartbeat service (role) at once."""
        self._pub_beat(time.monotonic())
        self.node.beat_now()

    def _beat_soon(self) -> None:
        """One of several journals: the primary counts this sync toward its commit
        position, so say how far at once (on a topic only the matchers read)."""
        send_pair(self.pub, TOPIC_DURABLE, encode(self.core.beat()))

    def _pub_beat(self, now: float) -> None:
        send_pair(self.pub, TOPIC_BEAT, encode(self.core.beat()))
        self.beaten_at = now

    def _discard(self, now: float) -> None:
        """While the disk is full, what the matcher publishes is dropped unread (it is
        fetched again by range read on resuming): it must not pile up or spin the loop."""
        sub = self.follower.sub
        while True:
            try:
                sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def run(self) -> int:
        self.log.info("open", last_seq=self.core.store.last_seq, min_epoch=self.core.min_epoch)
        return self.node.run(50)
