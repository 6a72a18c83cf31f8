"""One runtime for every service: its sockets, loop, timers, beats, signals and snapshots.

A service is a core (its decisions, no sockets) plus a node: the node's sockets are
registered here with the handler that reads each, and ``Node.run`` is the loop every
service shares. A turn polls the registered sockets once, then runs the steps in the
order they were registered (a socket's handler only when it is readable, a follower's
when ``Follower.due`` says so, a plain step every turn), then whatever timers are due.
Handlers are called once per readiness and drain their socket themselves, so the
runtime adds nothing per message on the order path.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable

import zmq

from services.common import curve, exporter
from services.common.beats import BeatSender
from services.common.config import Config, bind_endpoint, heartbeats
from services.common.metrics import Metrics
from services.common.runtime import tune_gc
from services.common.snapfile import Snapshots
from services.common.stream import Follower, Sequenced

monotonic = time.monotonic

ON, FOLLOW, ALWAYS = range(3)


class Timer:
    """``fn(now)`` every ``interval`` seconds, first at ``next`` (monotonic)."""

    __slots__ = ("fn", "interval", "next", "node")

    def __init__(
        self, fn: Callable[[float], None], interval: float, start: float, node: Node
    ) -> None:
        self.fn = fn
        self.interval = interval
        self.next = start
        self.node = node  # whose poll a timer brought forward must cut
        if start < node.soonest:
            node.soonest = start

    def fire_now(self) -> None:
        """Run at the end of this turn (or the next one)."""
        self.pull(0.0)

    def postpone(self, now: float) -> None:
        """Next run a whole interval after ``now`` (it was just done another way)."""
        self.next = now + self.interval

    def pull(self, at: float) -> None:
        """Run no later than ``at``."""
        if at < self.next:
            self.next = at
            if at < self.node.soonest:
                self.node.soonest = at


class Step:
    __slots__ = ("kind", "sock", "fn", "follower", "when", "after", "live")

    def __init__(self, kind, sock, fn, follower=None, when=None, after=None) -> None:
        self.kind = kind
        self.sock = sock
        self.fn = fn
        self.follower = follower
        self.when = when  # an extra condition, asked every turn (a role, a mode)
        self.after = after  # run after a follower's records were handled
        self.live = True


class SnapshotSchedule:
    """Snapshot ``state()`` at ``seq()`` whenever ``snapshots`` says one is due:
    written by a thread, or from a forked child (``fork``) that calls ``state`` itself."""

    def __init__(
        self,
        snapshots: Snapshots,
        seq: Callable[[], int],
        state: Callable[[], bytes],
        fork: bool = False,
    ) -> None:
        self.snapshots = snapshots
        self.seq = seq
        self.state = state
        self.fork = fork
        self.timing = None  # a histogram, once the node follows with this schedule

    def __call__(self) -> None:
        seq = self.seq()
        if self.snapshots.due(seq):
            began = monotonic()
            if self.fork:
                self.snapshots.fork_write(seq, self.state)
            else:
                self.snapshots.write(seq, self.state())
            if self.timing is not None:
                self.timing.observe(monotonic() - began)


class Node:
    def __init__(self, name: str, cfg: Config, log, ctx: zmq.Context | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.log = log
        self.ctx = ctx or zmq.Context.instance()
        self.metrics = Metrics(name)
        self.running = True
        self.ready: dict = {}  # this turn's poll result: socket -> events
        self.turning = False  # in ``run``'s loop (a boot's replay does not beat)
        self.soonest = math.inf  # when the next timer is due (monotonic)
        self.beats: BeatSender | None = None
        self._poller = zmq.Poller()
        self._watched: dict[zmq.Socket, int] = {}
        self._steps: list[Step] = []
        self._turn: tuple[Step, ...] = ()
        self._timers: list[Timer] = []
        self._closers: list[Callable[[], object]] = []
        self._beat_state: Callable[[], tuple] | None = None
        self._beat_timer: Timer | None = None
        self._signals = False

    # -- sockets ------------------------------------------------------------------

    def socket(self, kind: int, **options: int) -> zmq.Socket:
        """A socket (LINGER 0, then ``options`` by zmq name: ``SNDHWM=10``) closed with
        the node."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        self.close_later(lambda: sock.close(0))
        return sock

    def bind(self, kind: int, endpoint: str, **options: int) -> zmq.Socket:
        """A socket bound to a mesh endpoint (CURVE on ``tcp://``, ``curve.bind``)."""
        sock = self.socket(kind, **options)
        curve.bind(sock, bind_endpoint(self.cfg, endpoint))
        return sock

    def link(self, kind: int, endpoint: str, **options: int) -> zmq.Socket:
        """A socket connected to a mesh endpoint (``curve.link``)."""
        sock = self.socket(kind, **options)
        curve.link(sock, endpoint)
        return sock

    def close_later(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` when the node stops, after what was registered before it."""
        self._closers.append(fn)

    def watch(self, sock: zmq.Socket) -> None:
        """Poll ``sock`` (its readiness is ``readable(sock)``) without a handler of its own."""
        count = self._watched.get(sock, 0)
        if not count:
            self._poller.register(sock, zmq.POLLIN)
        self._watched[sock] = count + 1

    def unwatch(self, sock: zmq.Socket) -> None:
        count = self._watched.get(sock, 0)
        if count <= 1:
            self._watched.pop(sock, None)
            if count:
                self._poller.unregister(sock)
        else:
            self._watched[sock] = count - 1

    def readable(self, sock: zmq.Socket | None) -> bool:
        return sock in self.ready

    # -- steps ----------------------------------------------------------------------

    def _add(self, step: Step) -> Step:
        if step.sock is not None:
            self.watch(step.sock)
        self._steps.append(step)
        self._turn = tuple(self._steps)
        return step

    def on(self, sock: zmq.Socket, fn: Callable[[float], None], when=None) -> Step:
        """``fn(now)`` in each turn that finds ``sock`` readable (and ``when()``)."""
        return self._add(Step(ON, sock, fn, when=when))

    def follow(
        self,
        follower: Follower,
        fn: Callable[[list[Sequenced]], None],
        when=None,
        after: Callable[[], None] | None = None,
    ) -> Step:
        """``fn(follower.drain())`` in each turn ``follower.due`` says to (and ``when()``),
        then ``after()`` (a ``SnapshotSchedule``)."""
        metrics = self.metrics
        metrics.gauge(
            "follower_lag",
            "records the source has that this service has not applied yet",
            lambda: max(0, follower.source_seq - follower.next_seq + 1),
        )
        metrics.gauge(
            "follower_gap_reads",
            "range reads made to fill gaps the feed left",
            lambda: follower.gap_reads,
            counter=True,
        )
        if after is not None and isinstance(after, SnapshotSchedule):
            after.timing = metrics.histogram(
                "snapshot_loop_seconds", "loop time spent starting or writing a snapshot"
            )
        return self._add(Step(FOLLOW, follower.sub, fn, follower, when, after))

    def step(self, fn: Callable[[float], None], when=None) -> Step:
        """``fn(now)`` every turn (and ``when()``), in registration order."""
        return self._add(Step(ALWAYS, None, fn, when=when))

    def off(self, target) -> None:
        """Remove every step of ``target`` (a socket, a follower or a Step); a follower's
        steps include any registered on its SUB socket, so none is left polling a
        socket the caller is about to close."""
        sub = getattr(target, "sub", None)
        kept = []
        for step in self._steps:
            if (
                target is step
                or target is step.sock
                or target is step.follower
                or (sub is not None and step.sock is sub)
            ):
                step.live = False
                if step.sock is not None:
                    self.unwatch(step.sock)
            else:
                kept.append(step)
        self._steps = kept
        self._turn = tuple(kept)

    def every(self, seconds: float, fn: Callable[[float], None], start: float = 0.0) -> Timer:
        """``fn(now)`` every ``seconds``, first at ``start`` (monotonic; 0: the first turn)."""
        timer = Timer(fn, seconds, start, self)
        self._timers.append(timer)
        return timer

    # -- beats to the heartbeat service, snapshots ------------------------------------

    def beat_with(self, service: str, state: Callable[[], tuple]) -> BeatSender:
        """Beat to the heartbeat service every ``heartbeat_ms``: ``state()`` gives
        (role, epoch, seq, committed)."""
        cfg = self.cfg
        self.beats = BeatSender(self.ctx, heartbeats(cfg), service, cfg.cluster.host)
        self.close_later(self.beats.close)
        self._beat_state = state
        self._beat_timer = self.every(self.cfg.timings.heartbeat_ms / 1000, self._beat)
        return self.beats

    def _beat(self, now: float = 0.0) -> None:
        self.beats.send(*self._beat_state())

    def beat_if_due(self) -> None:
        """Beat if one is due: called from inside a long piece of work (the engine's
        ``progress``), so the heartbeat service hears a busy service on time."""
        timer = self._beat_timer
        if self.turning and timer is not None and monotonic() >= timer.next:
            # from inside the engine's command: whatever the socket says must not stop
            # it half way (a beat lost is harmless; the loop's timer beats again)
            with contextlib.suppress(zmq.ZMQError):
                self.beat_now()

    def beat_now(self) -> None:
        """Beat at once (a role changed), and the next a whole interval later."""
        self._beat()
        self._beat_timer.postpone(monotonic())

    def snapshots(
        self,
        snapshots: Snapshots,
        seq: Callable[[], int],
        state: Callable[[], bytes],
        fork: bool = False,
    ) -> SnapshotSchedule:
        """The schedule of ``snapshots`` (pass it as a follower's ``after``); the
        writer is waited for (or a forked one stopped) when the node stops."""
        self.close_later(snapshots.close)
        if fork:  # reap a finished child even while no records come (a primary's)
            self.every(self.cfg.timings.heartbeat_ms / 1000, lambda _: snapshots.writing())
        return SnapshotSchedule(snapshots, seq, state, fork)

    # -- signals and the loop ---------------------------------------------------------

    def stop(self, *_) -> None:
        self.running = False

    def handle_signals(self) -> None:
        """SIGTERM (supervisord, the tests) and SIGINT end the loop after its turn."""
        if not self._signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            self._signals = True

    def catch_up(self, follower: Follower) -> list[Sequenced]:
        """Everything the follower's source has, asking again until it answers (at boot
        it may still be starting) or the node is stopped."""
        self.handle_signals()
        return follower.catch_up_patiently(lambda: self.running, self.log)

    def run(self, poll_ms: int | Callable[[], int] = 100, gc: bool = True) -> int:
        """Turn until stopped; then close everything registered. ``poll_ms`` (or a
        function giving it each turn) is the longest wait; a timer due sooner cuts it."""
        self.handle_signals()
        port = self.cfg.metrics.ports.get(self.name, 0)
        try:
            server = exporter.serve(self.metrics, self.name, port, self.cfg.metrics.host)
        except (OSError, OverflowError, ValueError) as exc:  # a bad port: never fatal
            server = None
            self.log.warning("metrics_not_served", port=port, error=str(exc))
        if server is not None:
            self.close_later(server.shutdown)
        if gc:
            tune_gc()
        poll = self._poller.poll
        timers = self._timers
        dynamic = callable(poll_ms)
        self.turning = True
        try:
            while self.running:
                wait = poll_ms() if dynamic else poll_ms
                ahead = (self.soonest - monotonic()) * 1000
                if ahead < wait:
                    wait = math.ceil(ahead) if ahead > 0 else 0
                self.ready = ready = dict(poll(wait))
                now = monotonic()
                for step in self._turn:
                    kind = step.kind
                    if kind == ON and step.sock not in ready:
                        continue
                    when = step.when
                    if (when is not None and not when()) or not step.live:
                        continue
                    if kind == FOLLOW:
                        follower = step.follower
                        if follower.due(step.sock in ready):
                            step.fn(follower.drain())
                            if step.after is not None:
                                step.after()
                    else:
                        step.fn(now)
                # what is due runs; the soonest of what is left bounds the next poll
                # (a timer a callback brings forward lowers it too, via Timer.pull)
                self.soonest = math.inf
                for timer in timers:
                    if now >= timer.next:
                        timer.next = now + timer.interval
                        timer.fn(now)
                    if timer.next < self.soonest:
                        self.soonest = timer.next
        finally:
            self.close()
        return 0

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for fn in closers:
            fn()
