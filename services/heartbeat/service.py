"""The heartbeat service: watches every service and alone decides who is primary.

It is the third party the zguide's Binary Star needs to avoid split brain: matchers
never promote themselves. Every service beats here every heartbeat_ms; when no primary
matcher has beaten for ``missed_beats`` intervals, the most caught-up live standby is
promoted with a new epoch, and a matcher still acting as primary at an older epoch is
told to step down. The decisions are ``elector.py``'s; this is its node. Every epoch
it promotes with is first stored in ``$EXCHANGE_HOME/heartbeat/epoch``
(``epochfile.py``), so a restarted service never hands one out twice; the current
epoch comes back with the beats (the journal reports the highest it has fenced).
"""

from __future__ import annotations

import dataclasses
import time

import zmq

from services.common.bus import Promote
from services.common.codec import encode
from services.common.config import Config, etcd_endpoints, is_cluster, journals
from services.common.node import Node
from services.common.router import bus_messages
from services.heartbeat.elector import Elector
from services.heartbeat.epochfile import EpochFile
from services.heartbeat.etcd import Etcd
from services.heartbeat.leadership import EtcdLeadership, LocalLeadership

CLUSTER_GRACE_S = 1.5


class Heartbeat:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        self.interval = cfg.timings.heartbeat_ms / 1000
        members = etcd_endpoints(cfg)
        if members:  # a cluster: etcd decides which heartbeat service promotes
            etcd = Etcd(members, cfg.cluster.etcd_timeout_ms / 1000)
            self.leadership = EtcdLeadership(etcd, log)
        else:
            self.leadership = LocalLeadership(EpochFile(cfg.home / "heartbeat" / "epoch"))
        issued = self.leadership.issued()
        timeout = self.interval * cfg.timings.missed_beats
        # a cluster's heartbeat service hears services on other hosts, which find a
        # restarted one again within ZeroMQ's RECONNECT_IVL_MAX (services/common/main.py)
        grace = CLUSTER_GRACE_S if members else 0.0
        local = None
        if is_cluster(cfg):
            here = cfg.cluster.hosts[cfg.cluster.host].services
            local = frozenset(s for s in here if s.startswith("matcher"))
        self.elector = Elector(
            timeout, time.monotonic(), issued, grace, local, journals=len(journals(cfg))
        )
        node = self.node = Node("heartbeat", cfg, log)
        self.router = node.bind(zmq.ROUTER, cfg.endpoints["heartbeat"])
        self.pub = node.bind(zmq.PUB, cfg.endpoints["status_pub"])
        self.received = node.metrics.counter("messages_in", "bus messages received")
        self.promotions = node.metrics.counter("promotions", "Promotes sent")
        node.on(self.router, self._receive)
        node.step(self._decide)
        self.publisher = node.every(self.interval, self._publish)
        self.alive: dict[str, bool] = {}  # service -> alive at the last look
        self.log.info("started", promoted_before=issued)

    def _receive(self, now: float) -> None:
        router, elector = self.router, self.elector
        received = 0
        for ident, msg in bus_messages(router, limit=1_000):
            received += 1
            for to, reply in elector.receive(ident, msg, now):
                router.send_multipart([to, encode(reply)])
        self.received.inc(received)
        if elector.changed:
            self.publisher.fire_now()  # tell everyone this turn, not at the next tick

    def _watch(self, now: float) -> None:
        """Log each service that stops beating (a matcher's death, with its role and
        epoch) and each that beats again, so the log tells a failover's story."""
        for name, seen in self.elector.services.items():
            alive = self.elector.alive(seen, now)
            if alive != self.alive.get(name, True):
                beat = seen.beat
                self.log.warning(
                    "service_lost" if not alive else "service_back",
                    service=name,
                    role=beat.role,
                    pid=beat.pid,
                    epoch=beat.epoch,
                    seq=beat.seq,
                    current_epoch=self.elector.epoch,
                )
            self.alive[name] = alive

    def _decide(self, now: float) -> None:
        self._watch(now)
        elector = self.elector
        for ident, msg in elector.decide(now):
            if isinstance(msg, Promote):
                pending = elector.pending
                try:
                    # stored (or won in etcd) before anyone holds it
                    claim = self.leadership.claim(pending.matcher, msg.epoch, elector.highest - 1)
                except OSError as exc:
                    # unsent, the epoch is simply skipped: the next try takes a new one
                    self.log.error("epoch_not_stored", epoch=msg.epoch, error=str(exc))
                    continue
                if claim.outcome != "won":
                    # another heartbeat service promoted (or etcd is out of reach): give
                    # that promotion the time we would give one of our own
                    if claim.outcome == "wait":
                        elector.highest = max(elector.highest, claim.epoch)
                        elector.pending = dataclasses.replace(
                            pending, matcher=claim.matcher, epoch=claim.epoch
                        )
                        self.log.info(
                            "promotion_elsewhere", matcher=claim.matcher, epoch=claim.epoch
                        )
                    continue
                if claim.epoch != msg.epoch:
                    msg = Promote(claim.epoch)
                    elector.highest = max(elector.highest, claim.epoch)
                    elector.pending = pending = dataclasses.replace(pending, epoch=claim.epoch)
                self.log.info(
                    "promote",
                    matcher=pending.matcher,
                    epoch=msg.epoch,
                    seq=elector.services[pending.matcher].beat.seq,
                )
                self.promotions.inc()
            self.router.send_multipart([ident, encode(msg)])

    def _publish(self, now: float) -> None:
        self.elector.changed = False
        self.pub.send(encode(self.elector.status(now)))

    def run(self) -> int:
        return self.node.run(poll_ms=int(self.interval * 1000 / 2), gc=False)
