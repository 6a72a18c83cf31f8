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

import contextlib
import time

import msgspec
import zmq

from services.common import curve, snapfile
from services.common.bus import (
    TOPIC_BEAT,
    TOPIC_DURABLE,
    TOPIC_RECORDS,
    Beat,
    Fence,
    FenceAck,
    ReadRange,
    Reconcile,
    StateQuery,
)
from services.common.codec import (
    DecodeError,
    beat_decoder,
    bus_decoder,
    encode,
    raw_batch_decoder,
    record_decoder,
)
from services.common.config import Config, journals, matcher_endpoints
from services.common.frames import recv_frames, send_pair
from services.common.node import Node
from services.common.runtime import tune_gc
from services.common.stream import Follower
from services.common.trading_calendar import Calendar, Clock
from services.matcher import snapshot
from services.matcher.core import VERIFY_EVERY_S, MatcherCore
from services.matcher.engine import Engine
from services.matcher.quorum import Quorum
from services.matcher.schedule import Scheduler

DRAIN_FRAMES = 256  # command frames sequenced per publish
FENCE_WAIT_MS = 2_000  # a promotion waits this long for a majority of journals
ADOPT_CHUNK = 2_000  # records per read of the most complete journal's tail


class Matcher:
    def __init__(self, cfg: Config, log, instance: str = "a") -> None:
        self.cfg = cfg
        self.instance = instance
        self.log = log = log.bind(instance=instance)
        node = self.node = Node(f"matcher-{instance}", cfg, log)
        timings = cfg.timings
        self.heartbeat_ms = timings.heartbeat_ms
        # name -> range-read endpoint of every journal (one, or one per cluster host)
        self.journals = {name: read for name, _, read in journals(cfg)}
        core = self.core = MatcherCore(
            Engine(cfg.symbols, cfg.risk),
            log,
            node.metrics,
            timings.journal_lag_window,
            timings.retransmit_buffer,
            cfg.risk.pause_ms / 1000,
            quorum=Quorum(list(self.journals)),
            scheduler=Scheduler(Calendar(cfg.schedule), Clock(cfg.schedule), cfg.symbols),
        )
        # an end of day or an uncross over a deep book can outlast the heartbeat's
        # timeout: the engine calls this as it works, and the beats keep their time
        core.engine.progress = core.progress = node.beat_if_due
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
        node.follow(self.follower, core.apply_committed, when=standby, after=schedule)
        self.journal_beats: zmq.Socket | None = None  # a primary's (``_watch_journals``)
        beats = node.beat_with(f"matcher-{instance}", core.beat)
        for sock in beats.sockets:
            node.on(sock, self._control)
        node.every(VERIFY_EVERY_S, self._verify)
        self.links: dict[str, zmq.Socket] = {}  # journal name -> DEALER (reconciles)
        self.router: zmq.Socket | None = None
        self.pub: zmq.Socket | None = None
        self.idle_beat = None
        self.history: list[tuple[int, int]] = []  # (epoch, first seq) of our log

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
        """Fence the journals at ``epoch``; from a majority's answers adopt the most
        complete log (replaying what this standby has not applied, committed or not);
        then serve, and have every journal match its log to ours (``Reconcile``)."""
        core, node = self.core, self.node
        acks = self._fence_all(epoch)
        if acks is None:
            self.log.warning("fence_unanswered", epoch=epoch)
            return  # the heartbeat service will ask again, with a new epoch
        best = Quorum.most_complete(acks)
        if core.seq > best.last_seq:  # we applied a committed record no majority holds?
            self.log.error("log_behind_standby", seq=core.seq, best=best.journal,
                           last_seq=best.last_seq)  # fmt: skip
            self.node.stop()  # start again as a standby from the journal: never diverge
            return
        tail = self._fetch_tail(self.journals[best.journal], best.last_seq)
        if tail is None:  # nothing applied yet: still a clean standby
            self.log.warning("catch_up_stalled", seq=core.seq, upto=best.last_seq)
            return
        # the adopted records are not committed until a majority holds a record of this
        # epoch after them: the commit position stays where the journals put it
        committed = core.committed
        core.apply_committed([record_decoder.decode(raw) for raw in tail])
        self.follower.next_seq = core.seq + 1
        history = [(e, first) for e, first in best.epochs if first <= core.seq]
        core.become_primary(epoch, tail, committed)
        self._watch_journals()
        cmd_endpoint, pub_endpoint = matcher_endpoints(self.cfg, self.instance)
        self.router = node.bind(zmq.ROUTER, cmd_endpoint, RCVHWM=10_000)
        # bounded instead by the journal lag window
        self.pub = node.bind(zmq.PUB, pub_endpoint, SNDHWM=0)
        # idle, the primary says where it is on its PUB every half heartbeat
        self.idle_beat = node.every(self.heartbeat_ms / 2000, self._idle_beat)
        lead = core.lead(self.instance)
        if lead is not None:
            self._publish(lead)
        if not history or history[-1][0] != epoch:
            history.append((epoch, core.seq + (0 if lead is not None else 1)))
        self.history = history
        node.on(self.router, self._serve)
        node.step(self._reopen)
        node.every(self.heartbeat_ms / 1000, self._schedule)
        node.every(self.heartbeat_ms / 1000, self._reconcile)
        self._reconcile(0.0)
        tune_gc()
        # no state hash here: at 300,000 client order ids it took 0.2 s of the failover
        self.log.info("promoted", epoch=epoch, seq=core.seq, adopted_from=best.journal)
        node.beat_now()

    def _watch_journals(self) -> None:
        """From now on read every journal's beats: how far each holds our log (the
        commit position), and whether one is fenced at a newer epoch (then step
        down). The standby's follower of its journal is dropped: a socket in the
        poller that nobody reads would spin the loop."""
        node = self.node
        node.off(self.follower)
        self.follower.close()
        sub = self.journal_beats = node.socket(zmq.SUB, RCVHWM=10_000)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC_BEAT)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC_DURABLE)
        for _, pub, _ in journals(self.cfg):
            curve.link(sub, pub)
        node.on(sub, self._track_commits)

    def _link(self, name: str) -> zmq.Socket:
        sock = self.links.get(name)
        if sock is None:
            sock = self.links[name] = self.node.socket(zmq.DEALER)
            sock.setsockopt(zmq.SNDHWM, 100)
            curve.link(sock, self.journals[name])
        return sock

    def _fence_all(self, epoch: int) -> list[FenceAck] | None:
        """Fence every journal; the answers of a majority (and of any other that
        answers within a moment more), or None if no majority answered in time."""
        fences = {}
        for name, endpoint in self.journals.items():
            sock = fences[name] = self.node.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            curve.link(sock, endpoint)
            sock.send(encode(Fence(epoch, self.instance)))
        poller = zmq.Poller()
        for sock in fences.values():
            poller.register(sock, zmq.POLLIN)
        acks: dict[str, FenceAck] = {}
        quorum = self.core.quorum
        deadline = time.monotonic() + FENCE_WAIT_MS / 1000
        try:
            while len(acks) < len(fences):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # a promotion must not look like a dead matcher: beat while waiting
                self.node.beat_now()
                for sock, _ in poller.poll(min(left * 1000, self.heartbeat_ms / 2)):
                    try:
                        ack = bus_decoder.decode(sock.recv())
                    except DecodeError:
                        continue
                    if isinstance(ack, FenceAck) and ack.epoch == epoch:
                        acks[ack.journal] = ack
                if quorum.enough(acks.values()):  # the rest get a moment, then reconciles
                    deadline = min(deadline, time.monotonic() + 0.02)
        finally:
            for sock in fences.values():
                sock.close(0)
        return list(acks.values()) if quorum.enough(acks.values()) else None

    def _fetch_tail(self, endpoint: str, upto: int) -> list[bytes] | None:
        """The records after ours up to ``upto`` from the journal at ``endpoint``
        (committed or not: it holds the most complete log), encoded; None if that
        journal stopped answering. Fetched whole before any is applied, so a
        promotion given up leaves the standby as it was."""
        seq = self.core.seq
        raws: list[bytes] = []
        sock = self.node.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        curve.link(sock, endpoint)
        try:
            while seq < upto:
                self.node.beat_now()
                sock.send(encode(ReadRange(seq + 1, min(ADOPT_CHUNK, upto - seq), durable=True)))
                if not sock.poll(FENCE_WAIT_MS):
                    return None
                batch = [bytes(raw) for raw in raw_batch_decoder.decode(sock.recv())]
                batch = [raw for raw in batch if record_decoder.decode(raw).seq > seq]
                if not batch:
                    return None
                raws.extend(batch)
                seq = record_decoder.decode(batch[-1]).seq
        finally:
            sock.close(0)
        return raws

    def _reconcile(self, now: float) -> None:
        """Ask each journal not known to match our log to match it (one that was down
        or cut off hears this when it is back), without waiting for answers."""
        core = self.core
        message = encode(Reconcile(core.epoch, self.instance, self.history))
        for name in core.quorum.unmatched():
            sock = self._link(name)
            while sock.poll(0):
                sock.recv()  # earlier answers: the beats say the same
            with contextlib.suppress(zmq.Again):
                sock.send(message, zmq.NOBLOCK)

    def _control(self, now: float) -> None:
        """Messages from the heartbeat services: promote or demote this matcher."""
        for sock in self.node.beats.sockets:
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
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
                    return

    # -- primary ------------------------------------------------------------

    def _track_commits(self, now: float) -> None:
        """How far the journals hold our log, from their beats; with several, the
        commit position goes out at once (each journal publishes up to it)."""
        core = self.core
        sub, track = self.journal_beats, core.track
        moved = False
        while True:
            try:
                topic, payload = recv_frames(sub)
            except zmq.Again:
                break
            if topic in (TOPIC_BEAT, TOPIC_DURABLE):
                moved |= track(beat_decoder.decode(payload))
        if core.superseded():
            self.log.warning("superseded", epoch=core.epoch, fenced=core.quorum.newest_fence)
            self.node.stop()  # supervisord restarts it as a standby
        elif moved and not core.quorum.solo:
            self._idle_beat(now)

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
        self.node.beat_if_due()  # a long command's record took a while to send

    def _reopen(self, now: float) -> None:
        batch = self.core.reopen_due(now)
        if batch is not None:
            self._publish(batch)

    def _schedule(self, now: float) -> None:
        batch = self.core.schedule_due()
        if batch is not None:
            self._publish(batch)

    def _idle_beat(self, now: float) -> None:
        core = self.core
        send_pair(self.pub, TOPIC_BEAT, encode(Beat(core.seq, core.epoch, commit=core.committed)))

    # -- boot ---------------------------------------------------------------

    def _restore(self) -> None:
        """Start from the newest good snapshot, so boot replays only the journal's tail."""
        cfg = self.cfg
        found = self.snapshots.load(lambda data: snapshot.loads(data, cfg.symbols, cfg.risk))
        if found is None:
            return
        engine, seq, epoch = found
        engine.progress = self.node.beat_if_due
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
