"""The matcher service: the only writer of exchange state (docs/architecture.md, invariant 1).

Every matcher boots as a standby: it replays the committed journal into its engine and
keeps following it (a hot copy, checked record by record against the journaled events).
Only a Promote from the heartbeat service makes it primary: it fences the journal at the
new epoch, catches up to the journal's committed position, then binds its command and
event sockets and sequences commands in batches. A primary that hears it is demoted
exits, so supervisord restarts it as a standby that rebuilds from the journal.

The decisions are ``core.py``'s; this is its node.
"""

from __future__ import annotations

import time

import msgspec
import zmq

from services.common import curve, snapfile
from services.common.bus import TOPIC_BEAT, TOPIC_RECORDS, Beat, Fence, StateQuery
from services.common.codec import DecodeError, beat_decoder, bus_decoder, encode
from services.common.config import Config, matcher_endpoints
from services.common.frames import recv_frames, send_pair
from services.common.node import Node
from services.common.runtime import tune_gc
from services.common.stream import Follower
from services.matcher import snapshot
from services.matcher.core import VERIFY_EVERY_S, MatcherCore
from services.matcher.engine import Engine

DRAIN_FRAMES = 256  # command frames sequenced per publish


class Matcher:
    def __init__(self, cfg: Config, log, instance: str = "a") -> None:
        self.cfg = cfg
        self.instance = instance
        self.log = log = log.bind(instance=instance)
        node = self.node = Node(f"matcher-{instance}", cfg, log)
        timings = cfg.timings
        self.heartbeat_ms = timings.heartbeat_ms
        core = self.core = MatcherCore(
            Engine(cfg.symbols, cfg.risk),
            log,
            node.metrics,
            timings.journal_lag_window,
            timings.retransmit_buffer,
            cfg.risk.pause_ms / 1000,
        )
        self.follower = Follower(
            node.ctx, cfg.endpoints["journal_pub"], cfg.endpoints["journal_read"]
        )
        self.follower.probe_when_quiet = False  # the journal's beats say when to read
        node.close_later(self.follower.close)
        # a matcher follows the journal's beats, not its records: a standby reads what a
        # beat says is committed from the journal's range endpoint (``Follower._fill``),
        # one read per beat (every 5 ms while commits advance) instead of a wake-up per
        # commit (about 2,000 a second at 10,000 orders/s): 13-16 -> 9-11 us of CPU and
        # 0.25 -> 0.1 context switches per order; a primary needs only the beats' seq
        self.follower.sub.setsockopt(zmq.UNSUBSCRIBE, TOPIC_RECORDS)
        every = cfg.matcher.snapshot_every
        # even an idle-only writer is not free here (docs/performance.md, "Snapshots off the loop")
        share = cfg.matcher.snapshot_cpu_share
        self.snapshots = snapfile.Snapshots(cfg.home, "matcher", every, log, cpu_share=share)
        # standbys write snapshots, from a forked child that captures the state itself
        # (``Snapshots.fork_write``); the primary's loop stays on the order path
        schedule = node.snapshots(
            self.snapshots,
            lambda: core.seq,
            lambda: msgspec.msgpack.encode(snapshot.capture(core.engine, core.seq, core.epoch)),
            fork=True,
        )
        standby = lambda: core.role == "standby"  # noqa: E731
        primary = lambda: core.role == "primary"  # noqa: E731
        node.follow(self.follower, core.apply_committed, when=standby, after=schedule)
        node.on(self.follower.sub, self._track_commits, when=primary)
        beats = node.beat_with(f"matcher-{instance}", core.beat)
        node.on(beats.socket, self._control)
        node.every(VERIFY_EVERY_S, self._verify)
        self.router: zmq.Socket | None = None
        self.pub: zmq.Socket | None = None
        self.idle_beat = None

    # -- standby ------------------------------------------------------------

    def _verify(self, now: float) -> None:
        """Every record's events are checked as they are replayed; this checks the
        whole state too. When the stream has been quiet, ask the primary for its state
        hash, and if it stands at our seq, ours must be the same (Diverged otherwise).
        The primary hashes only when asked, and a standby only asks when quiet."""
        if not self.core.should_verify(now):
            return
        other = "b" if self.instance == "a" else "a"
        sock = self.node.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        curve.link(sock, matcher_endpoints(self.cfg, other)[0])
        try:
            sock.send(encode(StateQuery()), zmq.NOBLOCK)
            if not sock.poll(100):  # well inside the beat window: never look dead
                return  # no primary there right now
            info = bus_decoder.decode(sock.recv())
        except (zmq.Again, *DecodeError):
            return
        finally:
            sock.close(0)
        self.core.check_state(info)

    # -- promotion ----------------------------------------------------------

    def _promote(self, epoch: int) -> None:
        """Fence the journal at ``epoch``, replay up to what it committed, then serve."""
        core, node = self.core, self.node
        fence = node.ctx.socket(zmq.DEALER)
        fence.setsockopt(zmq.LINGER, 0)
        curve.link(fence, self.cfg.endpoints["journal_read"])
        fence.send(encode(Fence(epoch, self.instance)))
        if not fence.poll(2_000):
            fence.close(0)
            self.log.warning("fence_unanswered", epoch=epoch)
            return  # the heartbeat service will ask again
        committed = beat_decoder.decode(fence.recv()).seq
        fence.close(0)
        while core.seq < committed:
            records = self.follower.fetch(core.seq + 1, committed - core.seq)
            if not records:
                self.log.warning("catch_up_stalled", seq=core.seq, committed=committed)
                return
            core.apply_committed(records)
            self.follower.next_seq = core.seq + 1  # or a later drain re-applies them
        core.become_primary(epoch)
        cmd_endpoint, pub_endpoint = matcher_endpoints(self.cfg, self.instance)
        self.router = node.bind(zmq.ROUTER, cmd_endpoint, RCVHWM=10_000)
        # bounded instead by the journal lag window
        self.pub = node.bind(zmq.PUB, pub_endpoint, SNDHWM=0)
        node.on(self.router, self._serve)
        node.step(self._reopen)
        # idle, the primary says where it is on its PUB every half heartbeat
        self.idle_beat = node.every(self.heartbeat_ms / 2000, self._idle_beat)
        tune_gc()
        # no state hash here: at 300,000 client order ids it took 0.2 s of the failover
        self.log.info("promoted", epoch=epoch, seq=core.seq)
        node.beat_now()

    def _control(self, now: float) -> None:
        """Messages from the heartbeat service: promote or demote this matcher."""
        sock = self.node.beats.socket
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                decision = self.core.control(bus_decoder.decode(frame))
            except DecodeError:
                continue
            if decision is None:
                continue
            what, epoch = decision
            if what == "promote":
                self._promote(epoch)
            else:
                self.log.warning("demoted", epoch=self.core.epoch, new_epoch=epoch)
                self.node.stop()

    # -- primary ------------------------------------------------------------

    def _track_commits(self, now: float) -> None:
        """How far the journal has committed, from its beats."""
        sub, track = self.follower.sub, self.core.track
        while True:
            try:
                topic, payload = recv_frames(sub)
            except zmq.Again:
                return
            if topic == TOPIC_BEAT:
                track(beat_decoder.decode(payload))

    def _commands(self):
        """(identity, message) of up to DRAIN_FRAMES waiting frames, read as the core
        takes them (it stops past a turn's worth of commands)."""
        router, log = self.router, self.log
        for _ in range(DRAIN_FRAMES):
            try:
                frames = recv_frames(router)
            except zmq.Again:
                return
            if len(frames) != 2:  # not [identity, payload]
                continue
            ident, payload = frames
            try:
                msg = bus_decoder.decode(payload)
            except DecodeError:
                log.warning("bad_bus_frame", size=len(payload))
                continue
            yield ident, msg

    def _serve(self, now: float) -> None:
        """Sequence a batch of command frames and publish their records as one message."""
        replies, batch = self.core.serve(self._commands())
        if batch is not None:
            self._publish(batch)
        router = self.router
        for ident, frame in replies:
            send_pair(router, ident, frame)

    def _publish(self, batch: bytes) -> None:
        send_pair(self.pub, TOPIC_RECORDS, batch)
        self.idle_beat.postpone(time.monotonic())

    def _reopen(self, now: float) -> None:
        batch = self.core.reopen_due(now)
        if batch is not None:
            self._publish(batch)

    def _idle_beat(self, now: float) -> None:
        core = self.core
        send_pair(self.pub, TOPIC_BEAT, encode(Beat(core.seq, core.epoch)))

    # -- boot ---------------------------------------------------------------

    def _restore(self) -> None:
        """Start from the newest good snapshot, so boot replays only the journal's tail."""
        cfg = self.cfg
        found = self.snapshots.load(lambda data: snapshot.loads(data, cfg.symbols, cfg.risk))
        if found is None:
            return
        engine, seq, epoch = found
        self.core.restore(engine, seq, epoch)
        self.follower.next_seq = seq + 1
        self.follower.source_seq = max(self.follower.source_seq, seq)

    def run(self) -> int:
        core = self.core
        self.log.info("booting", role=core.role)
        self._restore()
        core.apply_committed(self.node.catch_up(self.follower))
        self.log.info("replayed", seq=core.seq, state_hash=core.engine.state_hash())
        return self.node.run(self.heartbeat_ms, gc=False)
