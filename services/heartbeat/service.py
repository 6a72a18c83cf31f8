"""The heartbeat service: watches every service and alone decides who is primary.

It is the third party the zguide's Binary Star needs to avoid split brain: matchers
never promote themselves. Every service beats here every heartbeat_ms; when no primary
matcher has beaten for ``missed_beats`` intervals, the most caught-up live standby is
promoted with epoch + 1, and a matcher still acting as primary at an older epoch is
told to step down. The epoch is recovered from the beats (the journal reports the
highest epoch it has fenced or committed), so a restart of this service loses nothing.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import zmq

from services.common import curve
from services.common.codec import encode
from services.common.config import Config
from services.common.protocol import (
    Demote,
    Promote,
    ServiceBeat,
    ServiceState,
    Status,
    StatusRequest,
)
from services.common.router import bus_messages


@dataclass
class Seen:
    ident: bytes
    beat: ServiceBeat
    at: float  # monotonic seconds


class Heartbeat:
    def __init__(self, cfg: Config, log) -> None:
        self.log = log
        self.interval = cfg.timings.get("heartbeat_ms", 100) / 1000
        self.timeout = self.interval * cfg.timings.get("missed_beats", 3)
        self.ctx = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        curve.bind(self.router, cfg.endpoints["heartbeat"])
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        curve.bind(self.pub, cfg.endpoints["status_pub"])
        self.services: dict[str, Seen] = {}
        self.epoch = 0
        self.started = time.monotonic()
        self.pending: tuple[str, int, float] | None = None  # (matcher, epoch, deadline)
        self.changed = False
        self.running = True

    def alive(self, seen: Seen, now: float) -> bool:
        return now - seen.at <= self.timeout

    def status(self, now: float) -> Status:
        return Status(
            self.epoch,
            [
                ServiceState(
                    name,
                    s.beat.role,
                    s.beat.pid,
                    s.beat.epoch,
                    s.beat.seq,
                    s.beat.committed,
                    int((now - s.at) * 1000),
                    self.alive(s, now),
                )
                for name, s in sorted(self.services.items())
            ],
        )

    def _receive(self, now: float) -> None:
        for ident, msg in bus_messages(self.router, limit=1_000):
            if isinstance(msg, ServiceBeat):
                previous = self.services.get(msg.service)
                if previous is None or previous.beat.role != msg.role:
                    self.changed = True  # tell everyone now, not at the next tick
                self.services[msg.service] = Seen(ident, msg, now)
                if msg.epoch > self.epoch and (msg.role == "primary" or msg.service == "journal"):
                    self.epoch = msg.epoch
            elif isinstance(msg, StatusRequest):
                self.router.send_multipart([ident, encode(self.status(now))])

    def _decide(self, now: float) -> None:
        """Promote a standby when no primary of the current epoch is alive; demote stale
        primaries. Waits one timeout after start so beats (and the epoch) can arrive."""
        if now - self.started < self.timeout:
            return
        matchers = {
            name: s
            for name, s in self.services.items()
            if name.startswith("matcher") and self.alive(s, now)
        }
        for _name, seen in matchers.items():
            if seen.beat.role == "primary" and seen.beat.epoch < self.epoch:
                self.router.send_multipart([seen.ident, encode(Demote(self.epoch))])
        if any(s.beat.role == "primary" and s.beat.epoch == self.epoch for s in matchers.values()):
            self.pending = None
            return
        if self.pending and now < self.pending[2]:
            return
        standbys = [(s.beat.seq, name) for name, s in matchers.items() if s.beat.role == "standby"]
        if not standbys or "journal" not in self.services:
            return
        _, chosen = min((-seq, name) for seq, name in standbys)  # most caught up, then a < b
        epoch = self.epoch + 1
        self.router.send_multipart([matchers[chosen].ident, encode(Promote(epoch))])
        self.pending = (chosen, epoch, now + max(2.0, 4 * self.timeout))
        self.log.info("promote", matcher=chosen, epoch=epoch, seq=matchers[chosen].beat.seq)

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
                    self.pub.send(encode(self.status(now)))
                    next_publish = now + self.interval
        finally:
            self.router.close(0)
            self.pub.close(0)
        return 0
