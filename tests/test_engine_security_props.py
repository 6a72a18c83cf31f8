"""Random streams of orders mixed with operators' actions and password changes, over a
few accounts and a handful of client order ids (so ids are reused across request
kinds): every record decodes as the journal's readers decode it, a snapshot taken
anywhere restores to the same state and the same answers, replay is identical, and
halts and kill switches hold."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import config
from services.common.bus import (
    Admin,
    CancelOrder,
    CreateAccount,
    NewOrder,
    ReplaceOrder,
    SetPassword,
)
from services.common.codec import encode, record_decoder
from services.common.wire import Accepted, AccountBlocked, ReferenceSet, SymbolHalted
from services.matcher import snapshot
from services.matcher.engine import Engine

CFG = config.load()
ACCOUNTS = (1, 2, 3)
OPERATOR = 3
IDS = st.sampled_from(["a", "b", "c", "d"])
SYMBOLS = st.sampled_from(["AAPL", "TSLA", "NOPE"])
PRICES = st.sampled_from([1_690_000, 1_700_000, 1_710_000, 1_600_000, 2_000_000, 1])

commands = st.one_of(
    st.builds(
        NewOrder,
        st.sampled_from(ACCOUNTS),
        IDS,
        SYMBOLS,
        st.sampled_from([1, 2]),
        st.sampled_from([1, 5, 10]),
        PRICES,
    ),
    st.builds(CancelOrder, st.sampled_from(ACCOUNTS), IDS, st.integers(1, 12)),
    st.builds(
        ReplaceOrder,
        st.sampled_from(ACCOUNTS),
        IDS,
        st.integers(1, 12),
        PRICES,
        st.sampled_from([1, 5, 20]),
    ),
    st.builds(SetPassword, st.sampled_from(ACCOUNTS), IDS, st.just("scrypt$x")),
    st.builds(
        Admin,
        st.just(OPERATOR),
        IDS,
        st.sampled_from(["halt", "resume", "reference", "kill", "unkill"]),
        SYMBOLS,
        st.sampled_from([1, 2, 9]),
        PRICES,
    ),
)


def fresh() -> Engine:
    engine = Engine(CFG.symbols, CFG.risk)
    for name in ("alice", "bob", "ops"):
        engine.apply(CreateAccount(name, "hash"))
    return engine


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, min_size=1, max_size=60), st.integers(0, 60))
def test_mixed_streams_decode_snapshot_and_replay(cmds, cut):
    from services.common.bus import Record

    engine = fresh()
    log: list[tuple[object, list]] = []
    halted: set[str] = set()
    blocked: set[int] = set()
    restored = None
    for seq, cmd in enumerate(cmds, 1):
        if seq == cut:  # a snapshot here must carry on exactly like the live engine
            snap = snapshot.capture(engine, seq - 1, 1)
            again = msgspec_roundtrip(snap)
            restored = snapshot.restore(again, CFG.symbols, CFG.risk)
            assert restored.state_hash() == engine.state_hash()
        events = engine.apply(cmd)
        if restored is not None:
            assert restored.apply(cmd) == events
        record = record_decoder.decode(encode(Record(seq, 1, cmd, events)))
        assert record.events == events and record.command == cmd
        log.append((cmd, events))
        for e in events:
            if type(e) is SymbolHalted:
                (halted.add if e.halted else halted.discard)(e.symbol)
            elif type(e) is AccountBlocked:
                (blocked.add if e.blocked else blocked.discard)(e.account)
                if e.blocked:
                    assert not any(o.account == e.account for o in engine.orders.values())
            elif type(e) is ReferenceSet:
                assert e.band_lo <= e.price <= e.band_hi
        if type(cmd) is NewOrder and any(type(e) is Accepted for e in events):
            assert cmd.symbol not in halted and cmd.account not in blocked, events
    assert engine.halted == halted
    assert {a for a, acct in engine.accounts.items() if acct.blocked} == blocked
    if restored is not None:
        assert restored.state_hash() == engine.state_hash()
    replayed = fresh()
    for cmd, events in log:
        assert replayed.apply(cmd) == events
    assert replayed.state_hash() == engine.state_hash()


def msgspec_roundtrip(snap):
    """Through the bytes a snapshot file holds."""
    import msgspec

    return msgspec.msgpack.decode(msgspec.msgpack.encode(snap), type=snapshot.Snapshot)
