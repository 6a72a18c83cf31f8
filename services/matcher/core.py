"""The matcher's decisions, apart from its sockets: command batches in, records out.

``MatcherCore`` wraps the engine (already pure) with what the service decides around
it: a standby replays committed records and checks each one's events; a primary
sequences command batches into records (or hands them back ``busy`` while the journal
lags a window or cannot write), serves retransmits from a bounded buffer, reopens
paused symbols when their pause is over, and says when a quiet standby should compare
its whole state with the primary's, and sequences what the scheduler decides
(``schedule.py``: the trading day's session moves and ends of day). The node reads
and writes the sockets.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from services.common.bus import (
    Beat,
    CommandBatch,
    Demote,
    Lead,
    MatcherBusy,
    Promote,
    ReadRange,
    Record,
    Reopen,
    StateInfo,
    StateQuery,
)
from services.common.codec import encode, join_batch
from services.common.metrics import Metrics
from services.common.wire import Reject
from services.matcher.engine import Engine
from services.matcher.quorum import Quorum
from services.matcher.schedule import Scheduler

MAX_TURN = 4_096  # commands per loop turn, so beats are never late (~20 ms of work)
VERIFY_EVERY_S = 1.0  # how often a quiet standby checks its state hash against the primary's


class Diverged(RuntimeError):
    """A replayed command gave other events than the journal holds: never continue."""


class MatcherCore:
    def __init__(
        self,
        engine: Engine,
        log,
        metrics: Metrics,
        window: int,
        retransmit: int,
        pause_s: float,
        clock: Callable[[], float] = time.monotonic,
        quorum: Quorum | None = None,
        scheduler: Scheduler | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self.wall = wall  # UNIX time, which the scheduler's clock reads
        self.quorum = quorum or Quorum(["journal"])
        self.log = log
        self.window = window
        self.pause_s = pause_s
        self.clock = clock
        self.role = "standby"
        # told that a long piece of work is under way (the matcher beats from it)
        self.progress: Callable[[], None] = lambda: None
        self.epoch = 0
        self.seq = 0  # last sequence number applied (standby) or published (primary)
        self.committed = 0
        # the newest published records, encoded, the last one being ``seq``; bytes, not
        # Records: each Record's event list is tracked by the garbage collector, and
        # 100,000 of them made young collections 13 ms pauses on the order path
        self.retransmit: deque[bytes] = deque(maxlen=retransmit)
        self.journal_full = False  # the journal's beats say it cannot write: refuse work
        self.paused_since: dict[str, float] = {}  # symbol -> when this primary saw it pause
        self.verified = 0  # the last seq at which the whole state matched the primary's
        self.applied_at = 0.0
        self.sequenced = metrics.counter("commands_sequenced", "commands given a seq")
        self.refused = metrics.counter("batches_busy", "command batches handed back busy")
        metrics.gauge(
            "commit_lag",
            "records published (primary) and not yet committed by the journal",
            lambda: self.seq - self.committed,
        )
        metrics.gauge(
            "primary", "1 while this matcher is the primary", lambda: int(self.role == "primary")
        )
        metrics.gauge(
            "journal_full",
            "1 while the journal says its disk is full",
            lambda: int(self.journal_full),
        )

    def beat(self) -> tuple[str, int, int, int]:
        return self.role, self.epoch, self.seq, self.committed

    # -- standby ------------------------------------------------------------------

    def restore(self, engine: Engine, seq: int, epoch: int) -> None:
        """Start from a snapshot's state at ``seq``."""
        self.engine, self.epoch = engine, epoch
        self.seq = self.committed = seq

    def apply_committed(self, records: Iterable[Record]) -> None:
        """Replay committed records, checking each gives exactly the journaled events."""
        apply = self.engine.apply
        applied = False
        for record in records:
            events = apply(record.command)
            if events != record.events:
                raise Diverged(
                    f"seq {record.seq}: replay gave {events!r}, journal {record.events!r}"
                )
            self.seq = self.committed = record.seq
            self.epoch = max(self.epoch, record.epoch)
            applied = True
        if applied:
            self.applied_at = self.clock()

    def should_verify(self, now: float) -> bool:
        """A standby with records not yet verified, quiet for half a verify interval:
        hashing the whole state costs tens of milliseconds with a large book, so it is
        done when quiet rather than at every record."""
        return (
            self.role == "standby"
            and self.seq > self.verified
            and now - self.applied_at > VERIFY_EVERY_S / 2
        )

    def check_state(self, info: object) -> None:
        """Compare the primary's answer to a state query with our own state: a
        difference at the same seq is Diverged; anything not comparable waits."""
        if not isinstance(info, StateInfo) or info.role != "primary" or info.seq != self.seq:
            return
        mine = self.engine.state_hash()
        if mine != info.state_hash:
            raise Diverged(f"seq {self.seq}: state hash {mine}, the primary's {info.state_hash}")
        self.verified = self.seq
        self.log.info("state_verified", seq=self.seq, state_hash=mine)

    # -- the heartbeat service's word --------------------------------------------------

    def control(self, msg: object) -> tuple[str, int] | None:
        """("promote", epoch) or ("demote", epoch) when ``msg`` says this matcher must
        change role; None when it does not apply to us."""
        if isinstance(msg, Promote) and self.role == "standby" and msg.epoch > self.epoch:
            return "promote", msg.epoch
        if isinstance(msg, Demote) and self.role == "primary" and msg.epoch > self.epoch:
            return "demote", msg.epoch
        return None

    def become_primary(
        self, epoch: int, adopted: list[bytes] = (), committed: int | None = None
    ) -> None:
        """Take over at ``epoch`` with the log as replayed; ``adopted``: the encoded
        records up to ``seq`` that came from the most complete journal, which the
        other journals may still need (the retransmit buffer serves them), and
        ``committed`` the commit position before them (replaying them does not
        commit them: only the journals' beats move it from here)."""
        self.epoch = epoch
        self.role = "primary"
        if committed is not None:
            self.committed = committed
        self.retransmit.clear()
        self.retransmit.extend(adopted)
        self.quorum.lead(epoch, self.seq + 1 if not self.quorum.solo else 0)

    def lead(self, instance: str) -> bytes | None:
        """A new primary's first record, with several journals (``bus.Lead``)."""
        if self.quorum.solo:
            return None
        self.seq += 1
        command = Lead(self.epoch, instance)
        return self._publish([Record(self.seq, self.epoch, command, self.engine.apply(command))])

    def superseded(self) -> bool:
        """A journal is fenced at a newer epoch: another primary reigns; step down."""
        return self.role == "primary" and self.quorum.newest_fence > self.epoch

    # -- primary --------------------------------------------------------------------

    def track(self, beat: Beat) -> bool:
        """A journal's beat: how far the journals hold this primary's log, and whether
        enough of them can write. True when the commit position moved."""
        quorum = self.quorum
        quorum.beat(beat)
        full = quorum.full()
        if full != self.journal_full:
            self.journal_full = full
            self.log.warning("journal_full" if full else "journal_writable")
        commit = quorum.commit()
        if commit > self.committed:
            self.committed = commit
            return True
        return False

    def serve(self, messages: Iterable[tuple[bytes, object]]) -> tuple[list, bytes | None]:
        """Sequence the command batches among ``messages`` and answer the rest: the
        (identity, frame) replies and the records' batch to publish (None: none).
        Stops taking messages past MAX_TURN commands, so beats are never late.

        While the journal lags by a full window, command batches are handed back to
        their gateway as "busy" instead of sequenced: backpressure, never unbounded
        memory. Retransmit requests are always served, so the journal can catch up."""
        apply_batch = self.engine.apply_batch
        epoch = self.epoch
        seq = self.seq
        records: list[Record] = []
        replies: list[tuple[bytes, bytes]] = []
        for ident, msg in messages:
            if isinstance(msg, ReadRange):
                replies.append((ident, self._read(msg)))
            elif isinstance(msg, StateQuery):
                info = StateInfo(self.role, self.epoch, seq, self.engine.state_hash())
                self.progress()  # hashing a deep state takes a while
                replies.append((ident, encode(info)))
            elif isinstance(msg, CommandBatch):
                if self.journal_full or seq - self.committed >= self.window:
                    code = Reject.JOURNAL_FULL if self.journal_full else Reject.BUSY
                    replies.append((ident, encode(MatcherBusy(msg.commands, code))))
                    self.refused.value += 1
                    continue
                commands = msg.commands
                for cmd, events in zip(commands, apply_batch(commands), strict=True):
                    seq += 1
                    records.append(Record(seq, epoch, cmd, events))
                if len(records) >= MAX_TURN:
                    break  # publish and beat before taking more
        if not records:
            return replies, None
        self.seq = seq
        self.sequenced.value += len(records)
        return replies, self._publish(records)

    def _read(self, request: ReadRange) -> bytes:
        """Retransmit from the bounded buffer, so the journal can fill a gap."""
        retransmit = self.retransmit
        base = self.seq - len(retransmit) + 1  # seq of the oldest record kept
        if request.first < base:
            return join_batch([])  # gone: the journals serve older records
        start = request.first - base
        stop = min(start + max(request.count, 0), len(retransmit))
        return join_batch([retransmit[i] for i in range(start, stop)])

    def _publish(self, records: list[Record]) -> bytes:
        self.progress()  # a long command's record takes a while to encode, too
        raws = [encode(record) for record in records]
        self.retransmit.extend(raws)
        return join_batch(raws)

    def reopen_due(self, now: float) -> bytes | None:
        """End volatility pauses that have lasted ``[risk] pause_ms``: the batch of
        Reopen records to publish, if any. The engine has no clock, so the primary
        sequences a Reopen, journaled like any command; a new primary starts the
        clock of a pause it inherits at its promotion."""
        paused = self.engine.paused
        if not paused and not self.paused_since:
            return None
        for symbol in [s for s in self.paused_since if s not in paused]:
            del self.paused_since[symbol]  # reopened (an operator's resume)
        due = []
        for symbol in sorted(paused):
            since = self.paused_since.setdefault(symbol, now)
            if now - since >= self.pause_s:
                due.append(symbol)
        if not due or self.journal_full:
            return None
        for symbol in due:
            del self.paused_since[symbol]
        self.log.info("reopened", symbols=due)
        return self.sequence([Reopen(symbol) for symbol in due])

    def sequence(self, commands: list) -> bytes | None:
        """A primary's own commands (Reopen, and the scheduler's SetSession and
        EndOfDay: the engine has no clock), sequenced and journaled like any other:
        the records' batch to publish, or None when there is nothing to do, this
        matcher is not the primary, or the journal cannot write (the caller tries
        again on its next tick; both commands are harmless to repeat)."""
        if not commands or self.role != "primary" or self.journal_full:
            return None
        records = []
        for command in commands:
            self.seq += 1
            records.append(Record(self.seq, self.epoch, command, self.engine.apply(command)))
        self.sequenced.value += len(records)
        return self._publish(records)

    def schedule_due(self) -> bytes | None:
        """The scheduler's commands for now (``schedule.py``), sequenced and applied
        like any command: the batch of records to publish, if any. Nothing while the
        journal cannot write (the decision waits, so nothing is skipped)."""
        scheduler = self.scheduler
        if scheduler is None or self.journal_full or self.role != "primary":
            return None
        engine = self.engine
        held = engine.halted | engine.paused
        commands = scheduler.decide(
            scheduler.now(self.wall()), engine.trading_date, engine.session_state, held
        )
        if commands:
            self.log.info("scheduled", commands=[repr(c) for c in commands])
        return self.sequence(commands)
