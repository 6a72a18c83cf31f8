"""The gateway: the exchange's front door for traders and bots.

It owns sessions, validates every frame (hostile input is normal), hashes and checks
passwords on worker threads, forwards commands to the primary matcher in batches, and
answers users only from the committed stream, so nothing it says can be undone.
Commands it forwarded but has not yet seen committed stay in an in-flight table; when
the heartbeat service names a new primary they are all sent again, and the matcher's
exactly-once table turns repeats into the original answers.

The decisions are ``core.py``'s; this is its node: the client ROUTER drained once
per turn, the outbox sent as one batch to the matcher, the committed stream followed.
"""

from __future__ import annotations

import zmq

from services.common import curve, snapfile
from services.common.bus import CommandBatch
from services.common.codec import DecodeError, bus_decoder, encode
from services.common.config import Config, bind_endpoint, matcher_endpoints, service_name
from services.common.frames import NOBLOCK, recv_bounded, send_pair
from services.common.node import Node
from services.common.status import current_primary, latest_status, status_socket
from services.common.stream import Follower
from services.common.wire import Reject
from services.gateway.accounts import AccountView
from services.gateway.core import MAX_FRAME, GatewayCore
from services.gateway.hashpool import HashPool

__all__ = ["MAX_FRAME", "Gateway"]

DRAIN_FRAMES = 512
# a message's frames kept (identity, request); more are received one by one and dropped
FRAMES_KEPT = 2
KEYS_RELOAD_S = 5.0  # client keys added with `exchange keys` take effect within this


class Gateway:
    def __init__(self, cfg: Config, log) -> None:
        self.cfg = cfg
        self.log = log
        node = self.node = Node("gateway", cfg, log)
        limits = cfg.security
        # per peer: a client that does not read cannot make us queue without bound; a
        # send to a full queue raises EAGAIN (the peer is then choked) instead of being
        # dropped without a word; to a peer gone, EHOSTUNREACH
        self.front = node.socket(
            zmq.ROUTER,
            MAXMSGSIZE=MAX_FRAME,
            SNDHWM=limits.client_sndhwm,
            RCVHWM=100_000,
            ROUTER_MANDATORY=1,
        )
        # clients must hold an authorized key when CURVE is on (docs/security.md)
        self.auth = curve.serve(node.ctx, self.front, cfg) if curve.enabled(cfg) else None
        self.front.bind(bind_endpoint(cfg, cfg.endpoints["gateway"]))
        if self.auth is not None:
            node.close_later(self.auth.stop)
        self.back: zmq.Socket | None = None
        self.primary: str | None = None  # endpoint of the primary matcher
        self.epoch = 0
        self.status = status_socket(node.ctx, cfg.endpoints["status_pub"])
        node.close_later(lambda: self.status.close(0))
        node.close_later(lambda: self.back is not None and self.back.close(0))
        snapshots = snapfile.Snapshots(cfg.home, "gateway", cfg.gateway.snapshot_every, log)
        view = snapshots.load(AccountView.restore) or AccountView()
        self.pool = HashPool()
        node.close_later(self.pool.shutdown)
        self.core = core = GatewayCore(cfg, view, self.pool, self._send, log, node.metrics)
        self.follower = Follower(
            node.ctx, cfg.endpoints["journal_pub"], cfg.endpoints["journal_read"], view.seq + 1
        )
        self.follower.probe_when_quiet = False  # the journal's beats say when to read
        node.close_later(self.follower.close)
        self.received = node.metrics.counter("requests_in", "client frames received")
        node.on(self.status, self._on_status)
        node.on(self.front, self._drain_front)
        node.step(self._forward)
        node.step(self._from_matcher)
        schedule = node.snapshots(snapshots, lambda: view.seq, view.snapshot)
        node.follow(self.follower, core.committed, after=schedule)
        follower = self.follower
        node.beat_with(
            service_name(cfg, "gateway"),
            lambda: ("gateway", self.epoch, view.seq, follower.source_seq),
        )
        # a session goes between three and four client heartbeats after it fell silent
        # (at most a second late)
        node.every(min(1.0, cfg.timings.client_heartbeat_ms / 1000), core.expire)
        if self.auth is not None:
            node.every(KEYS_RELOAD_S, lambda _: curve.reload(self.auth, cfg))

    # -- the core's port ----------------------------------------------------------

    def _send(self, ident: bytes, frame: bytes) -> bool | None:
        """One frame to a client without waiting: True if queued, False if its queue
        is full (it does not read), None if it is gone."""
        try:
            send_pair(self.front, ident, frame, NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError:  # EHOSTUNREACH
            return None
        return True

    # -- steps ----------------------------------------------------------------------

    def _drain_front(self, now: float) -> None:
        front, frame = self.front, self.core.frame
        received = 0
        for _ in range(DRAIN_FRAMES):
            try:
                frames, parts = recv_bounded(front, FRAMES_KEPT)
            except zmq.Again:
                break
            frame(frames, parts, now)
            received += 1
        self.received.value += received

    def _forward(self, now: float) -> None:
        """Finish the hashes that are done, then send this turn's commands as one batch."""
        core = self.core
        if core.hashing:
            core.finish_hashing(now)
        if not core.outbox:
            return
        commands = core.take_outbox()
        if self.back is None:
            core.busy(commands, Reject.NOT_LEADER)
            return
        try:
            self.back.send(encode(CommandBatch(commands)), zmq.NOBLOCK)
        except zmq.Again:
            core.busy(commands, Reject.BUSY)

    def _from_matcher(self, now: float) -> None:
        back = self.back
        if back is None or back not in self.node.ready:
            return
        while True:
            try:
                payload = back.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = bus_decoder.decode(payload)
            except DecodeError:
                continue
            self.core.from_matcher(msg)

    def _on_status(self, now: float) -> None:
        """Follow the heartbeat service's word on who is primary; resend in-flight."""
        primary = current_primary(latest_status(self.status))
        if primary is not None:
            self._connect_primary(*primary)

    def _connect_primary(self, instance: str, epoch: int) -> None:
        endpoint = matcher_endpoints(self.cfg, instance)[0]
        if endpoint == self.primary and epoch == self.epoch:
            return
        node = self.node
        if self.back is not None:
            node.unwatch(self.back)
            self.back.close(0)
        self.back = node.ctx.socket(zmq.DEALER)
        self.back.setsockopt(zmq.LINGER, 0)
        self.back.setsockopt(zmq.SNDHWM, 1_000)
        curve.link(self.back, endpoint)
        node.watch(self.back)
        failover = self.primary is not None
        self.primary, self.epoch = endpoint, epoch
        self.log.info("primary", endpoint=endpoint, epoch=epoch, resend=len(self.core.inflight))
        self.core.new_primary(epoch, failover)

    def run(self) -> int:
        core = self.core
        core.replay(self.node.catch_up(self.follower))
        view = core.view
        self.log.info("ready", seq=view.seq, accounts=len(view.names))
        for name in sorted(core.sessions.operators - view.names.keys()):
            # whoever signs this name up first becomes an operator: create it before
            # listing it (docs/security.md)
            self.log.warning("operator_unclaimed", name=name)
        return self.node.run(core.poll_ms)
