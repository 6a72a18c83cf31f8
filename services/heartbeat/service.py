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

import time

import zmq

from services.common.bus import Promote
from services.common.codec import encode
from services.common.config import Config
from services.common.node import Node
from services.common.router import bus_messages
from services.heartbeat.elector import Elector
from services.heartbeat.epochfile import EpochFile


class Heartbeat:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        self.interval = cfg.timings.heartbeat_ms / 1000
        self.epochs = EpochFile(cfg.home / "heartbeat" / "epoch")
        issued = self.epochs.load()
        timeout = self.interval * cfg.timings.missed_beats
        self.elector = Elector(timeout, time.monotonic(), issued)
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
        for ident, msg in self.elector.decide(now):
            if isinstance(msg, Promote):
                try:
                    self.epochs.save(msg.epoch)  # on disk before anyone holds it
                except OSError as exc:
                    # unsent, the epoch is simply skipped: the next try takes a new one
                    self.log.error("epoch_not_stored", epoch=msg.epoch, error=str(exc))
                    continue
                pending = self.elector.pending
                self.log.info(
                    "promote",
                    matcher=pending.matcher,
                    epoch=msg.epoch,
                    seq=self.elector.services[pending.matcher].beat.seq,
                )
                self.promotions.inc()
            self.router.send_multipart([ident, encode(msg)])

    def _publish(self, now: float) -> None:
        self.elector.changed = False
        self.pub.send(encode(self.elector.status(now)))

    def run(self) -> int:
        return self.node.run(poll_ms=int(self.interval * 1000 / 2), gc=False)
