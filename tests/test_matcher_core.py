"""The matcher's core without sockets: command batches in, records out; the standby's
replay and verification; the reopen timer; role changes."""

from __future__ import annotations

import pytest

from services.common.bus import (
    Beat,
    CommandBatch,
    CreateAccount,
    Demote,
    EndOfDay,
    MatcherBusy,
    NewOrder,
    Promote,
    ReadRange,
    Record,
    Reopen,
    SetSession,
    StateInfo,
    StateQuery,
)
from services.common.codec import bus_decoder, records_decoder
from services.common.config import RiskLimits, SymbolSpec
from services.common.metrics import Metrics
from services.common.money import to_units
from services.common.wire import Accepted, AuctionDone, Reject, Session, Side, TradingPause
from services.matcher.core import MAX_TURN, Diverged, MatcherCore
from services.matcher.engine import Engine
from tests.fakes import Log

D = to_units
AAPL = SymbolSpec("AAPL", tick=100, lot=1, reference=D(100), band_bps=1000, dynamic_band_bps=500)
PAUSE_S = 5.0


def engine() -> Engine:
    return Engine({"AAPL": AAPL}, RiskLimits())


def core(window: int = 1_000, clock=lambda: 0.0) -> MatcherCore:
    return MatcherCore(engine(), Log(), Metrics("matcher-a"), window, 10_000, PAUSE_S, clock)


def primary(window: int = 1_000) -> MatcherCore:
    c = core(window)
    c.become_primary(1)
    return c


def order(account: int, cl_ord_id: str, side=Side.BUY, qty: int = 10, price: int = D(100)):
    return NewOrder(account, cl_ord_id, "AAPL", side, qty, price)


SIGNUPS = CommandBatch([CreateAccount("ann", "h"), CreateAccount("bob", "h")])


def published(batch: bytes) -> list[Record]:
    return records_decoder.decode(batch)


def test_a_command_batch_becomes_records_with_the_next_seqs_and_the_epoch():
    c = primary()
    replies, batch = c.serve([(b"gw", SIGNUPS), (b"gw", CommandBatch([order(1, "o1")]))])
    assert replies == []
    records = published(batch)
    assert [(r.seq, r.epoch) for r in records] == [(1, 1), (2, 1), (3, 1)]
    assert type(records[2].events[0]) is Accepted
    assert c.seq == 3 and c.sequenced.value == 3
    # what was published is kept for retransmits, and read back by range
    [(to, frame)] = c.serve([(b"journal", ReadRange(2, 5))])[0]
    assert to == b"journal" and [r.seq for r in published(frame)] == [2, 3]


def test_a_state_query_is_answered_with_the_state_hash():
    c = primary()
    c.serve([(b"gw", SIGNUPS)])
    [(to, frame)] = c.serve([(b"standby", StateQuery())])[0]
    assert bus_decoder.decode(frame) == StateInfo("primary", 1, 2, c.engine.state_hash())


def test_batches_are_handed_back_busy_while_the_journal_lags_a_window_or_is_full():
    c = primary(window=2)
    c.serve([(b"gw", SIGNUPS)])
    [(to, frame)] = c.serve([(b"gw", CommandBatch([order(1, "o1")]))])[0]
    busy = bus_decoder.decode(frame)
    assert to == b"gw" and isinstance(busy, MatcherBusy) and busy.code == Reject.BUSY
    assert busy.commands == [order(1, "o1")] and c.seq == 2
    c.track(Beat(2, 1, journal="journal", reconciled=1, durable=2))  # the journal caught up
    assert c.serve([(b"gw", CommandBatch([order(1, "o1")]))])[1] is not None
    c.track(Beat(3, 1, True, "journal", 1, 3))
    assert c.journal_full and c.log.events == ["journal_full"]
    [(_, frame)] = c.serve([(b"gw", CommandBatch([order(1, "o2")]))])[0]
    assert bus_decoder.decode(frame).code == Reject.JOURNAL_FULL
    assert c.refused.value == 2


def test_a_turn_stops_taking_frames_past_max_turn_commands():
    c = primary(window=10 * MAX_TURN)
    c.serve([(b"gw", SIGNUPS)])
    big = CommandBatch([order(1, f"o{i}") for i in range(MAX_TURN)])
    frames = iter([(b"gw", big), (b"gw", CommandBatch([order(1, "late")]))])
    _, batch = c.serve(frames)
    assert len(published(batch)) == MAX_TURN
    assert next(frames)[1].commands[0].cl_ord_id == "late"  # left for the next turn


def test_a_paused_symbol_is_reopened_after_the_pause():
    c = primary()
    c.serve([(b"gw", CommandBatch([CreateAccount(n, "h") for n in ("a", "b", "c")]))])
    pause = [order(1, "s1", Side.SELL, 10, D(103)), order(1, "s2", Side.SELL, 10, D(108))]
    pause.append(order(2, "b1", Side.BUY, 30, D(109)))
    c.serve([(b"gw", CommandBatch(pause))])
    assert c.engine.paused == {"AAPL"}
    assert c.reopen_due(10.0) is None  # the pause starts now for this primary
    assert c.reopen_due(10.0 + PAUSE_S / 2) is None
    c.journal_full = True
    assert c.reopen_due(10.0 + PAUSE_S) is None  # not while the journal cannot write
    c.journal_full = False
    [record] = published(c.reopen_due(10.0 + PAUSE_S))
    assert record.command == Reopen("AAPL") and record.seq == c.seq == 7
    assert type(record.events[0]) is TradingPause and not record.events[0].paused
    assert not c.engine.paused and c.reopen_due(100.0) is None


def test_the_primary_sequences_the_trading_day_s_commands_and_a_standby_follows():
    """SetSession and EndOfDay come from the primary's own scheduler (the engine has
    no clock): journaled like any command, so a standby replays them to the same state."""
    source = primary()
    _, batch = source.serve([(b"gw", SIGNUPS)])
    records = published(batch)
    day = [EndOfDay(0, 20260105), SetSession("AAPL", Session.PRE_OPEN)]
    records += published(source.sequence(day))
    _, batch = source.serve([(b"gw", CommandBatch([order(1, "o1"), order(2, "o2", Side.SELL)]))])
    records += published(batch)
    records += published(source.sequence([SetSession("AAPL", Session.CONTINUOUS)]))
    assert [r.seq for r in records] == list(range(1, 8))
    assert type(records[-1].events[0]) is AuctionDone and records[-1].events[0].matched == 10
    source.journal_full = True
    assert source.sequence([EndOfDay(20260105, 20260106)]) is None  # not while it cannot write
    standby = core()
    standby.apply_committed(records)
    assert standby.engine.state_hash() == source.engine.state_hash()
    assert standby.engine.session_state("AAPL") == Session.CONTINUOUS
    assert standby.sequence([EndOfDay(20260105, 20260106)]) is None  # only a primary


def test_a_standby_replays_committed_records_and_stops_at_a_divergence():
    source = primary()
    _, batch = source.serve([(b"gw", SIGNUPS), (b"gw", CommandBatch([order(1, "o1")]))])
    records = published(batch)
    now = [5.0]
    standby = core(clock=lambda: now[0])
    standby.apply_committed(records)
    assert standby.seq == standby.committed == 3 and standby.epoch == 1
    assert standby.engine.state_hash() == source.engine.state_hash()
    assert standby.applied_at == 5.0
    wrong = Record(4, 1, order(1, "o2"), [])
    with pytest.raises(Diverged):
        standby.apply_committed([wrong])


def test_a_quiet_standby_verifies_its_whole_state_against_the_primary():
    source = primary()
    _, batch = source.serve([(b"gw", SIGNUPS)])
    standby = core()
    standby.apply_committed(published(batch))
    assert not standby.should_verify(0.2)  # records just applied: not quiet yet
    assert standby.should_verify(1.0)
    info = StateInfo("primary", 1, 2, source.engine.state_hash())
    standby.check_state(StateInfo("primary", 1, 3, "other"))  # not at our seq: later
    standby.check_state(StateInfo("standby", 1, 2, "other"))  # not the primary
    assert standby.verified == 0
    standby.check_state(info)
    assert standby.verified == 2 and not standby.should_verify(5.0)
    with pytest.raises(Diverged):
        standby.seq = 3
        standby.check_state(StateInfo("primary", 1, 3, "other"))


def test_promotions_and_demotions_that_apply_to_this_matcher():
    c = core()
    c.epoch = 2
    assert c.control(Promote(2)) is None  # not above what we have seen
    assert c.control(Promote(3)) == ("promote", 3)
    assert c.control(Demote(3)) is None  # a standby has nothing to step down from
    c.become_primary(3)
    assert c.beat() == ("primary", 3, 0, 0)
    assert c.control(Promote(4)) is None
    assert c.control(Demote(3)) is None
    assert c.control(Demote(4)) == ("demote", 4)


def test_a_new_primary_commits_an_adopted_tail_only_with_a_record_of_its_own():
    """Replaying the most complete journal's uncommitted tail does not commit it: the
    commit position moves only when a majority of matching journals hold the new
    primary's Lead record after it."""
    from services.matcher.quorum import Quorum

    old = core()
    old.become_primary(1)
    batch = old.serve([(b"gw", SIGNUPS)])[1]
    tail = records_decoder.decode(batch)  # seq 1 and 2, never committed
    c = MatcherCore(
        engine(), Log(), Metrics("matcher-b"), 1_000, 100, PAUSE_S,
        quorum=Quorum(["journal-a", "journal-b", "journal-c"]),
    )  # fmt: skip
    c.apply_committed(tail)  # the adopted tail, replayed
    assert c.committed == 2  # as a standby's replay would count it
    c.become_primary(2, [], committed=0)
    assert c.committed == 0
    c.lead("b")
    assert c.seq == 3
    assert not c.track(Beat(0, 2, journal="journal-a", reconciled=2, durable=3))
    assert c.committed == 0  # one journal of three
    assert c.track(Beat(0, 2, journal="journal-b", reconciled=2, durable=3))
    assert c.committed == 3
