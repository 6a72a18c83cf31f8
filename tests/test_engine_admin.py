"""Operators' commands in the pure engine: halt and resume a symbol, set a reference
price, the per-account kill switch, and a password change, each exactly-once and each
carried through a snapshot."""

from __future__ import annotations

import pytest

from services.common.bus import Admin, ReplaceOrder, SetPassword
from services.common.wire import (
    AccountBlocked,
    AdminDone,
    Cancelled,
    CancelReason,
    Duplicate,
    PasswordChanged,
    ReferenceSet,
    Reject,
    Rejected,
    SymbolHalted,
)
from services.matcher import snapshot
from tests.test_engine_rejects import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    SELL,
    D,
    apply_ok,
    make_engine,
    order,
    rest,
)

OPERATOR = CAROL


@pytest.fixture
def engine(cfg):
    return make_engine(cfg)


def admin(cl: str, action: str, **kw) -> Admin:
    return Admin(OPERATOR, cl, action, **kw)


def code_of(events) -> int:
    assert isinstance(events[0], Rejected), events
    return events[0].code


def test_halt_blocks_new_orders_but_allows_cuts_and_cancels(engine):
    resting = rest(engine, ALICE, "a1", BUY, 100, D("169.00"))
    assert engine.apply(admin("h1", "halt", symbol="AAPL")) == [
        AdminDone(OPERATOR, "h1", "halt"),
        SymbolHalted("AAPL", True),
    ]
    assert code_of(engine.apply(order(BOB, "b1", SELL, 10, D("169.00")))) == Reject.SYMBOL_HALTED
    apply_ok(engine, order(BOB, "b2", SELL, 10, D("160.00"), symbol="TSLA"))  # others trade
    moved = engine.apply(ReplaceOrder(ALICE, "a2", resting, D("169.50"), 100))
    assert code_of(moved) == Reject.SYMBOL_HALTED
    apply_ok(engine, ReplaceOrder(ALICE, "a3", resting, D("169.00"), 40))  # a size cut
    assert engine.apply(admin("h1", "halt", symbol="AAPL"))[0] == Duplicate(
        OPERATOR, "h1", AdminDone(OPERATOR, "h1", "halt")
    )
    assert engine.apply(admin("h2", "resume", symbol="AAPL"))[1] == SymbolHalted("AAPL", False)
    apply_ok(engine, order(BOB, "b3", SELL, 40, D("169.00")))  # trades again
    assert code_of(engine.apply(admin("h3", "halt", symbol="NOPE"))) == Reject.UNKNOWN_SYMBOL


def test_reference_price_moves_the_band(engine):
    far = order(ALICE, "a1", BUY, 10, D("200.00"))
    assert code_of(engine.apply(far)) == Reject.PRICE_BAND  # 170 +- 10%
    events = engine.apply(admin("r1", "reference", symbol="AAPL", price=D("200.00")))
    assert events[1] == ReferenceSet("AAPL", D("200.00"), D("180.00"), D("220.00"))
    apply_ok(engine, order(ALICE, "a2", BUY, 10, D("200.00")))
    bad = admin("r2", "reference", symbol="AAPL", price=D("200.005"))
    assert code_of(engine.apply(bad)) == Reject.BAD_PRICE


def test_kill_switch_cancels_everything_and_blocks_until_unkilled(engine, tmp_path, cfg):
    ids = [rest(engine, ALICE, f"a{i}", BUY, 10, D("169.00") - i * 100) for i in range(3)]
    ids.append(rest(engine, ALICE, "t1", SELL, 5, D("161.00"), symbol="TSLA"))
    other = rest(engine, BOB, "b1", BUY, 10, D("168.00"))
    events = engine.apply(admin("k1", "kill", target=ALICE))
    assert events[0] == AdminDone(OPERATOR, "k1", "kill")
    cancelled = [e for e in events if isinstance(e, Cancelled)]
    assert [e.order_id for e in cancelled] == ids
    assert {e.reason for e in cancelled} == {CancelReason.KILL_SWITCH}
    assert events[-1] == AccountBlocked(ALICE, True, 4)
    assert engine.accounts[ALICE].open_orders == 0
    assert list(engine.orders) == [other]
    blocked = engine.apply(order(ALICE, "a9", BUY, 1, D("169.00")))
    assert code_of(blocked) == Reject.ACCOUNT_BLOCKED
    # the block survives a snapshot, and so does a halt
    engine.apply(admin("h1", "halt", symbol="TSLA"))
    path = snapshot.write(tmp_path, snapshot.capture(engine, seq=20, epoch=1))
    restored, _, _ = snapshot.newest(tmp_path, cfg.symbols, cfg.risk)
    assert path.exists() and restored.state_hash() == engine.state_hash()
    again = restored.apply(order(ALICE, "a10", BUY, 1, D("169.00")))
    assert code_of(again) == Reject.ACCOUNT_BLOCKED
    assert code_of(restored.apply(order(BOB, "b9", BUY, 1, D("160.00"), symbol="TSLA"))) == (
        Reject.SYMBOL_HALTED
    )
    assert restored.apply(admin("k2", "unkill", target=ALICE))[1] == AccountBlocked(ALICE, False, 0)
    apply_ok(restored, order(ALICE, "a11", BUY, 1, D("169.00")))
    assert code_of(restored.apply(admin("k3", "kill", target=99))) == Reject.UNKNOWN_ACCOUNT


def test_password_change_is_journaled_state(engine):
    before = engine.state_hash()
    assert engine.apply(SetPassword(ALICE, "p1", "scrypt$new")) == [PasswordChanged(ALICE, "p1")]
    assert engine.accounts[ALICE].password_hash == "scrypt$new"
    assert engine.state_hash() != before
    assert isinstance(engine.apply(SetPassword(ALICE, "p1", "scrypt$other"))[0], Duplicate)
    assert engine.accounts[ALICE].password_hash == "scrypt$new"


def test_an_id_reused_across_request_kinds_is_a_duplicate_that_decodes(engine):
    """Client order ids are one space per account: an order repeating a password
    change's or an operator action's id (or the other way round) is a duplicate, and
    its record must decode in every service (the whole-path fuzz test found one that
    did not: the journal kept it and no follower could read it)."""
    from services.common.bus import CancelOrder, Record
    from services.common.codec import encode, record_decoder

    resting = rest(engine, ALICE, "a0", BUY, 10, D("169.00"))
    firsts = [
        SetPassword(ALICE, "p1", "scrypt$new"),
        admin("x1", "halt", symbol="TSLA"),
        order(ALICE, "o1", BUY, 10, D("168.00")),
    ]
    repeats = [
        lambda cl, acct: order(acct, cl, BUY, 1, D("169.00")),
        lambda cl, acct: CancelOrder(acct, cl, resting),
        lambda cl, acct: ReplaceOrder(acct, cl, resting, D("169.00"), 5),
        lambda cl, acct: SetPassword(acct, cl, "scrypt$other"),
        lambda cl, acct: admin(cl, "resume", symbol="TSLA"),
    ]
    seq = 0
    for first in firsts:
        events = engine.apply(first)
        seq += 1
        assert record_decoder.decode(encode(Record(seq, 1, first, events))).events == events
        for make in repeats:
            again = make(first.cl_ord_id, first.account)
            if type(again) is Admin and first.account != OPERATOR:
                continue  # (only operators send admin commands)
            events = engine.apply(again)
            seq += 1
            assert events == [Duplicate(first.account, first.cl_ord_id, events[0].original)]
            record = record_decoder.decode(encode(Record(seq, 1, again, events)))
            assert record.events == events
