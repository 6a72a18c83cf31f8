"""The heartbeat service: watches every service and alone decides who is primary.

It is the third party the zguide's Binary Star needs to avoid split brain: matchers
never promote themselves. Every service beats here every heartbeat_ms; when no primary
matcher has beaten for ``missed_beats`` intervals, the most caught-up live standby is
promoted with a new epoch, and a matcher still acting as primary at an older epoch is
told to step down. The decisions are ``elector.py``'s; this is the socket loop around
them. Every epoch it promotes with is first stored in ``$EXCHANGE_HOME/heartbeat/epoch``
(``epochfile.py``), so a restarted service never hands one out twice; the current
epoch comes back with the beats (the journal reports the highest it has fenced).
"""

from __future__ import annotations

import signal
import time

import zmq

from services.common import curve
from services.common.bus import Promote, ServiceBeat, StatusRequest
from services.common.codec import encode
from services.common.config import Config
from services.common.router import bus_messages
from services.heartbeat.elector import Elector
from services.heartbeat.epochfile import EpochFile


class Heartbeat:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        self.interval = cfg.timings.heartbeat_ms / 1000
        timeout = self.interval * cfg.timings.missed_beats
        self.epochs = EpochFile(cfg.home / "heartbeat" / "epoch")
        issued = self.epochs.load()
        self.elector = Elector(timeout, time.monotonic(), issued)
        self.ctx = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        curve.bind(self.router, cfg.endpoints["heartbeat"])
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        curve.bind(self.pub, cfg.endpoints["status_pub"])
        self.changed = False
        self.running = True
        self.log.info("started", promoted_before=issued)

    def _receive(self, now: float) -> None:
        for ident, msg in bus_messages(self.router, limit=1_000):
            if isinstance(msg, ServiceBeat):
                if self.elector.observe(ident, msg, now):
                    self.changed = True  # tell everyone now, not at the next tick
            elif isinstance(msg, StatusRequest):
                self.router.send_multipart([ident, encode(self.elector.status(now))])

    def _decide(self, now: float) -> None:
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
            self.router.send_multipart([ident, encode(msg)])

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        next_publish = 0.0
        try:
            while self.running:
                self.router.poll(int(self.interval * 1000 / 2))
                now = time.monotonic()
                self._receive(now)
                self._decide(now)
                if now >= next_publish or self.changed:
                    self.changed = False
                    self.pub.send(encode(self.elector.status(now)))
                    next_publish = now + self.interval
        finally:
            self.router.close(0)
            self.pub.close(0)
        return 0
