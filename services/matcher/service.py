"""The matcher service: the only writer of exchange state (docs/architecture.md, invariant 1).

Every matcher boots as a standby: it replays the committed journal into its engine and
keeps following it (a hot copy, checked record by record against the journaled events).
Only a Promote from the heartbeat service makes it primary: it fences the journal at the
new epoch, catches up to the journal's committed position, then binds its command and
event sockets and sequences commands in batches. A primary that hears it is demoted
exits, so supervisord restarts it as a standby that rebuilds from the journal.
"""

from __future__ import annotations

import signal
import time
from collections import deque

import msgspec
import zmq

from services.common import curve, snapfile
from services.common.beats import BeatSender
from services.common.bus import (
    TOPIC_BEAT,
    TOPIC_RECORDS,
    Beat,
    CommandBatch,
    Demote,
    Fence,
    MatcherBusy,
    Promote,
    ReadRange,
    Record,
    Reopen,
    StateInfo,
    StateQuery,
)
from services.common.codec import (
    DecodeError,
    beat_decoder,
    bus_decoder,
    encode,
    join_batch,
)
from services.common.config import Config, matcher_endpoints
from services.common.frames import recv_frames, send_pair
from services.common.runtime import tune_gc
from services.common.stream import Follower
from services.common.wire import Reject
from services.matcher import snapshot
from services.matcher.engine import Engine

DRAIN_FRAMES = 256  # command frames sequenced per publish
MAX_TURN = 4_096  # commands per loop turn, so beats are never late (~20 ms of work)


class Diverged(RuntimeError):
    """A replayed command gave other events than the journal holds: never continue."""


VERIFY_EVERY_S = 1.0  # how often a quiet standby checks its state hash against the primary's


class Matcher:
    def __init__(self, cfg: Config, log, instance: str = "a") -> None:
        self.cfg = cfg
        self.instance = instance
        self.log = log.bind(instance=instance)
        self.ctx = zmq.Context.instance()
        self.engine = Engine(cfg.symbols, cfg.risk)
        timings = cfg.timings
        self.heartbeat_ms = timings.heartbeat_ms
        self.window = timings.journal_lag_window
        # the newest published records, encoded, the last one being ``seq``; bytes, not
        # Records: each Record's event list is tracked by the garbage collector, and
        # 100,000 of them made young collections 13 ms pauses on the order path
        self.retransmit: deque[bytes] = deque(maxlen=timings.retransmit_buffer)
        self.follower = Follower(
            self.ctx, cfg.endpoints["journal_pub"], cfg.endpoints["journal_read"]
        )
        # a matcher follows the journal's beats, not its records: a standby reads what a
        # beat says is committed from the journal's range endpoint (``Follower._fill``),
        # one read per beat (every 5 ms while commits advance) instead of a wake-up per
        # commit (about 2,000 a second at 10,000 orders/s): 13-16 -> 9-11 us of CPU and
        # 0.25 -> 0.1 context switches per order; a primary needs only the beats' seq
        self.follower.sub.setsockopt(zmq.UNSUBSCRIBE, TOPIC_RECORDS)
        self.beats = BeatSender(
            self.ctx, cfg.endpoints["heartbeat"], f"matcher-{instance}", self.heartbeat_ms
        )
        self.role = "standby"
        self.epoch = 0
        self.seq = 0  # last sequence number applied (standby) or published (primary)
        self.committed = 0
        self.router: zmq.Socket | None = None
        self.pub: zmq.Socket | None = None
        self.last_publish = 0.0
        every = cfg.matcher.snapshot_every
        # even an idle-only writer is not free here (docs/performance.md, "Snapshots off the loop")
        share = cfg.matcher.snapshot_cpu_share
        self.snapshots = snapfile.Snapshots(cfg.home, "matcher", every, self.log, cpu_share=share)
        self.running = True
        self._pollers: dict[tuple, zmq.Poller] = {}
        self.verified = 0  # the last seq at which the whole state matched the primary's
        self._next_verify = 0.0
        self._applied_at = 0.0
        self.journal_full = False  # the journal's beats say it cannot write: refuse work
        self.pause_s = cfg.risk.pause_ms / 1000
        self.paused_since: dict[str, float] = {}  # symbol -> when this primary saw it pause

    # -- standby ------------------------------------------------------------

    def _apply_committed(self, records: list[Record]) -> None:
        apply = self.engine.apply
        for record in records:
            events = apply(record.command)
            if events != record.events:
                raise Diverged(
                    f"seq {record.seq}: replay gave {events!r}, journal {record.events!r}"
                )
            self.seq = self.committed = record.seq
            self.epoch = max(self.epoch, record.epoch)
        if records:
            self._applied_at = time.monotonic()

    def _poller(self, *socks: zmq.Socket) -> zmq.Poller:
        """One poller per set of sockets (a role), built once: this runs every turn."""
        poller = self._pollers.get(socks)
        if poller is None:
            poller = self._pollers[socks] = zmq.Poller()
            for sock in socks:
                poller.register(sock, zmq.POLLIN)
        return poller

    def _standby_step(self) -> None:
        poller = self._poller(self.follower.sub, self.beats.socket)
        ready = dict(poller.poll(self.heartbeat_ms))
        if self.follower.sub in ready or self.follower.source_seq > self.seq:
            self._apply_committed(self.follower.drain())
            self._maybe_snapshot()
        if self.beats.socket in ready:
            self._control()
        now = time.monotonic()
        if now >= self._next_verify:
            self._next_verify = now + VERIFY_EVERY_S
            if self.seq > self.verified and now - self._applied_at > VERIFY_EVERY_S / 2:
                self._verify_with_primary()

    def _verify_with_primary(self) -> None:
        """Every record's events are checked as they are replayed; this checks the
        whole state too. When the stream has been quiet, ask the primary for its state
        hash, and if it stands at our seq, ours must be the same (Diverged otherwise).
        The primary hashes only when asked, and a standby only asks when quiet."""
        other = "b" if self.instance == "a" else "a"
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        curve.link(sock, matcher_endpoints(self.cfg, other)[0])
        try:
            sock.send(encode(StateQuery()), zmq.NOBLOCK)
            if not sock.poll(300):
                return  # no primary there right now
            info = bus_decoder.decode(sock.recv())
        except (zmq.Again, *DecodeError):
            return
        finally:
            sock.close(0)
        if not isinstance(info, StateInfo) or info.role != "primary" or info.seq != self.seq:
            return  # not comparable: try again when quiet next
        mine = self.engine.state_hash()
        if mine != info.state_hash:
            raise Diverged(f"seq {self.seq}: state hash {mine}, the primary's {info.state_hash}")
        self.verified = self.seq
        self.log.info("state_verified", seq=self.seq, state_hash=mine)

    # -- promotion ----------------------------------------------------------

    def _promote(self, epoch: int) -> None:
        """Fence the journal at ``epoch``, replay up to what it committed, then serve."""
        fence = self.ctx.socket(zmq.DEALER)
        fence.setsockopt(zmq.LINGER, 0)
        curve.link(fence, self.cfg.endpoints["journal_read"])
        fence.send(encode(Fence(epoch, self.instance)))
        if not fence.poll(2_000):
            fence.close(0)
            self.log.warning("fence_unanswered", epoch=epoch)
            return  # the heartbeat service will ask again
        committed = beat_decoder.decode(fence.recv()).seq
        fence.close(0)
        while self.seq < committed:
            records = self.follower.fetch(self.seq + 1, committed - self.seq)
            if not records:
                self.log.warning("catch_up_stalled", seq=self.seq, committed=committed)
                return
            self._apply_committed(records)
        self.epoch = epoch
        self.role = "primary"
        self.retransmit.clear()
        cmd_endpoint, pub_endpoint = matcher_endpoints(self.cfg, self.instance)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVHWM, 10_000)
        curve.bind(self.router, cmd_endpoint)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 0)  # bounded instead by the journal lag window
        curve.bind(self.pub, pub_endpoint)
        tune_gc()
        # no state hash here: at 300,000 client order ids it took 0.2 s of the failover
        self.log.info("promoted", epoch=epoch, seq=self.seq)
        self.beats.send(self.role, self.epoch, self.seq, self.committed)

    def _control(self) -> None:
        """Messages from the heartbeat service: promote or demote this matcher."""
        while True:
            try:
                frame = self.beats.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = bus_decoder.decode(frame)
            except DecodeError:
                continue
            if isinstance(msg, Promote) and self.role == "standby" and msg.epoch > self.epoch:
                self._promote(msg.epoch)
            elif isinstance(msg, Demote) and self.role == "primary" and msg.epoch > self.epoch:
                self.log.warning("demoted", epoch=self.epoch, new_epoch=msg.epoch)
                self.running = False

    # -- primary ------------------------------------------------------------

    def _track_commits(self) -> None:
        """How far the journal has committed, from its beats."""
        sub = self.follower.sub
        while True:
            try:
                topic, payload = recv_frames(sub)
            except zmq.Again:
                return
            if topic != TOPIC_BEAT:
                continue
            beat = beat_decoder.decode(payload)
            if beat.seq > self.committed:
                self.committed = beat.seq
            if beat.disk_full != self.journal_full:
                self.journal_full = beat.disk_full
                self.log.warning("journal_full" if beat.disk_full else "journal_writable")

    def _serve_read(self, ident: bytes, request: ReadRange) -> None:
        """Retransmit from the bounded buffer, so the journal can fill a gap."""
        base = self.seq - len(self.retransmit) + 1  # seq of the oldest record kept
        start = max(request.first - base, 0)
        stop = min(start + max(request.count, 0), len(self.retransmit))
        raws = [self.retransmit[i] for i in range(start, stop)]
        self.router.send_multipart([ident, join_batch(raws)])

    def _primary_step(self) -> None:
        poller = self._poller(self.router, self.follower.sub, self.beats.socket)
        ready = dict(poller.poll(self.heartbeat_ms))
        if self.follower.sub in ready:
            self._track_commits()
        if self.beats.socket in ready:
            self._control()
        if self.router in ready:
            self._serve()
        now = time.monotonic()
        if self.engine.paused or self.paused_since:
            self._reopen_due(now)
        if now - self.last_publish >= self.heartbeat_ms / 2000:  # idle: say where we are
            self.pub.send_multipart([TOPIC_BEAT, encode(Beat(self.seq, self.epoch))])
            self.last_publish = now

    def _serve(self) -> None:
        """Sequence a batch of command frames and publish their records as one message.

        While the journal lags by a full window, command batches are handed back to
        their gateway as "busy" instead of sequenced: backpressure, never unbounded
        memory. Retransmit requests are always served, so the journal can catch up."""
        router = self.router
        apply_batch = self.engine.apply_batch
        epoch = self.epoch
        seq = self.seq
        records: list[Record] = []
        for _ in range(DRAIN_FRAMES):
            try:
                frames = recv_frames(router)
            except zmq.Again:
                break
            if len(frames) != 2:  # not [identity, payload]
                continue
            ident, payload = frames
            try:
                msg = bus_decoder.decode(payload)
            except DecodeError:
                self.log.warning("bad_bus_frame", size=len(payload))
                continue
            if isinstance(msg, ReadRange):
                self._serve_read(ident, msg)
            elif isinstance(msg, StateQuery):
                info = StateInfo(self.role, self.epoch, seq, self.engine.state_hash())
                router.send_multipart([ident, encode(info)])
            elif isinstance(msg, CommandBatch):
                if self.journal_full or seq - self.committed >= self.window:
                    code = Reject.JOURNAL_FULL if self.journal_full else Reject.BUSY
                    router.send_multipart([ident, encode(MatcherBusy(msg.commands, code))])
                    continue
                commands = msg.commands
                for cmd, events in zip(commands, apply_batch(commands), strict=True):
                    seq += 1
                    records.append(Record(seq, epoch, cmd, events))
                if len(records) >= MAX_TURN:
                    break  # publish and beat before taking more
        if records:
            self.seq = seq
            self._publish(records)

    def _publish(self, records: list[Record]) -> None:
        raws = [encode(record) for record in records]
        self.retransmit.extend(raws)
        send_pair(self.pub, TOPIC_RECORDS, join_batch(raws))
        self.last_publish = time.monotonic()

    def _reopen_due(self, now: float) -> None:
        """End volatility pauses that have lasted ``[risk] pause_ms``. The engine has no
        clock, so the primary sequences a Reopen, journaled like any command; a new
        primary starts the clock of a pause it inherits at its promotion."""
        paused = self.engine.paused
        for symbol in [s for s in self.paused_since if s not in paused]:
            del self.paused_since[symbol]  # reopened (an operator's resume)
        due = []
        for symbol in sorted(paused):
            since = self.paused_since.setdefault(symbol, now)
            if now - since >= self.pause_s:
                due.append(symbol)
        if not due or self.journal_full:
            return
        records = []
        for symbol in due:
            self.seq += 1
            records.append(
                Record(self.seq, self.epoch, Reopen(symbol), self.engine.apply(Reopen(symbol)))
            )
            del self.paused_since[symbol]
        self._publish(records)
        self.log.info("reopened", symbols=due)

    # -- loop ---------------------------------------------------------------

    def _restore(self) -> None:
        """Start from the newest good snapshot, so boot replays only the journal's tail."""
        cfg = self.cfg
        found = self.snapshots.load(lambda data: snapshot.loads(data, cfg.symbols, cfg.risk))
        if found is None:
            return
        self.engine, seq, self.epoch = found
        self.seq = self.committed = seq
        self.follower.next_seq = seq + 1
        self.follower.source_seq = max(self.follower.source_seq, seq)

    def _maybe_snapshot(self) -> None:
        """Standbys write snapshots, from a forked child (``Snapshots.fork_write``);
        the primary's loop stays on the order path."""
        if self.snapshots.due(self.seq):
            engine, seq, epoch = self.engine, self.seq, self.epoch
            self.snapshots.fork_write(
                seq, lambda: msgspec.msgpack.encode(snapshot.capture(engine, seq, epoch))
            )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        self.log.info("booting", role=self.role)
        self._restore()
        self._apply_committed(self.follower.catch_up_patiently(lambda: self.running, self.log))
        self.log.info("replayed", seq=self.seq, state_hash=self.engine.state_hash())
        try:
            while self.running:
                if self.role == "primary":
                    self._primary_step()
                else:
                    self._standby_step()
                if self.beats.due():
                    self.beats.send(self.role, self.epoch, self.seq, self.committed)
                    self.snapshots.writing()  # reap a writer forked before a promotion
        finally:
            self.close()
        return 0

    def close(self) -> None:
        for sock in (self.router, self.pub):
            if sock is not None:
                sock.close(0)
        self.follower.close()
        self.beats.close()
        self.snapshots.close()
