"""Who is primary: the heartbeat service's decisions, apart from its sockets.

``Elector`` is fed the beats the services send and asked, now and then, what to send
back (promotions and demotions); it keeps no clock and touches no socket, so tests
drive it beat by beat. An epoch names one primary's reign, so no two Promotes ever
carry the same one: a new promotion's epoch is above every epoch seen in any beat and
every epoch ever promoted, persisted ones included (the service stores each before it
sends it, ``epochfile.py``), whether the promotion before it took or not.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.bus import (
    Bus,
    Demote,
    Promote,
    ServiceBeat,
    ServiceState,
    Status,
    StatusRequest,
)


@dataclass
class Seen:
    ident: bytes
    beat: ServiceBeat
    at: float  # monotonic seconds
    since: float = 0.0  # when it took its current role (or first beat)


@dataclass(frozen=True)
class Pending:
    matcher: str
    epoch: int
    deadline: float  # monotonic seconds: past it, a new promotion (a new epoch)


class Elector:
    def __init__(
        self,
        timeout: float,
        started: float,
        issued: int = 0,
        grace: float = 0.0,
        local: frozenset[str] | None = None,
        journals: int = 1,
    ) -> None:
        self.timeout = timeout  # seconds without a beat before a service counts as dead
        self.started = started
        # seconds after start before promoting anyone: long enough to hear every
        # service, those on other hosts included (ZeroMQ reconnects within 0.5 s)
        self.grace = max(grace, timeout)
        # the matchers this heartbeat service may promote (None: any): in a cluster,
        # those on its own host, so the services of one host never race another's
        self.local = local
        # a promotion needs a majority of the journals live, as seen from here: a
        # heartbeat service that hears fewer is the one cut off (or just reconnected),
        # and the primary it cannot hear may well be alive
        self.majority = journals // 2 + 1
        self.waited = 0  # the last fenced epoch whose promotion was given its time
        self.reigned = 0  # the highest epoch a primary has beaten with
        self.services: dict[str, Seen] = {}
        self.epoch = 0  # the current epoch: the highest a primary or the journal reported
        self.highest = issued  # the highest epoch seen anywhere or ever promoted
        self.pending: Pending | None = None
        self.changed = False  # a service appeared or changed role: publish the status now

    def alive(self, seen: Seen, now: float) -> bool:
        return now - seen.at <= self.timeout

    def observe(self, ident: bytes, beat: ServiceBeat, now: float) -> bool:
        """Take a beat; True when a service appeared or changed role (publish now)."""
        previous = self.services.get(beat.service)
        same_role = previous is not None and previous.beat.role == beat.role
        since = previous.since if same_role and previous.beat.pid == beat.pid else now
        self.services[beat.service] = Seen(ident, beat, now, since)
        self.highest = max(self.highest, beat.epoch)
        if beat.role == "primary":
            self.reigned = max(self.reigned, beat.epoch)
        fencer = beat.role == "primary" or beat.service.startswith("journal")
        if beat.epoch > self.epoch and fencer:
            self.epoch = beat.epoch
        return previous is None or previous.beat.role != beat.role

    def receive(self, ident: bytes, msg: object, now: float) -> list[tuple[bytes, Bus]]:
        """Take one message from ``ident``: a beat is observed, a status request answered."""
        if isinstance(msg, ServiceBeat):
            if self.observe(ident, msg, now):
                self.changed = True
        elif isinstance(msg, StatusRequest):
            return [(ident, self.status(now))]
        return []

    def decide(self, now: float) -> list[tuple[bytes, Bus]]:
        """(identity, message) pairs to send: demote primaries of an older epoch, and
        promote the most caught-up live standby when no primary of the current epoch
        lives and no promotion is under way. Waits one timeout after start, so beats
        (and the epoch) can arrive. The caller must store a Promote's epoch durably
        before sending it."""
        out: list[tuple[bytes, Bus]] = []
        if now - self.started < self.grace:
            return out
        matchers = {
            name: s
            for name, s in self.services.items()
            if name.startswith("matcher") and self.alive(s, now)
        }
        primaries = [s.beat.epoch for s in matchers.values() if s.beat.role == "primary"]
        for seen in matchers.values():
            if seen.beat.role == "primary" and seen.beat.epoch < self.epoch:
                out.append((seen.ident, Demote(self.epoch)))
        if self.pending is not None:
            # only a primary at the promised epoch (or later) ends a promotion: a late
            # beat from the old primary must not, or its epoch could be promised again
            if any(epoch >= self.pending.epoch for epoch in primaries):
                self.pending = None
                return out
            if now < self.pending.deadline:
                return out
            self.pending = None  # it did not take: the next try gets a new epoch
        if self.epoch in primaries:
            return out
        deadline = now + max(2.0, 4 * self.timeout)
        if self.local is not None and self.epoch > max(self.reigned, self.waited):
            # one of several heartbeat services: a journal is fenced at an epoch no
            # primary has held yet, so another's promotion is under way; give it its
            # time first
            self.waited = self.epoch
            self.pending = Pending("", self.epoch, deadline)
            return out
        # a standby that has stood for a timeout first (one restarted a moment ago,
        # often the old primary itself, is the less proven), then the most caught up
        standbys = [
            (now - s.since < self.timeout, -s.beat.seq, name)
            for name, s in matchers.items()
            if s.beat.role == "standby"
        ]
        live_journals = sum(
            1
            for name, s in self.services.items()
            if name.startswith("journal") and self.alive(s, now)
        )
        if not standbys or live_journals < self.majority:
            return out
        *_, chosen = min(standbys)
        if self.local is not None and chosen not in self.local:
            return out  # its own host's heartbeat service promotes it
        self.highest += 1
        self.pending = Pending(chosen, self.highest, deadline)
        out.append((matchers[chosen].ident, Promote(self.highest)))
        return out

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
                    s.beat.host,
                )
                for name, s in sorted(self.services.items())
            ],
        )
