"""The statements ledger and its files, from records made here (no processes).

The mesh test (test_mesh_statements.py) checks the same against a real journal."""

import csv
import itertools
import json
import random
import tomllib
import tracemalloc

from clients import cluster
from clients.bench.cluster import ROOT
from services.common import config, snapfile
from services.common.bus import EndOfDay, Lead, Record
from services.common.money import to_dollars
from services.common.wire import (
    AccountCreated,
    CashAdjusted,
    ClosePrice,
    DayEnded,
    Fill,
    Side,
)
from services.statements import files, spool
from services.statements.ledger import Ledger, Trade, carry_decoder
from tests.mesh import exchange_cli, write_config

REFS = {"AAPL": 1_700_000, "TSLA": 1_600_000}
OPEN = 1_000_000_000
DEPOSIT = 1_000


def journal() -> list[Record]:
    """Two days: alice buys from bob on day 1 and sells some back on day 2; bob gets a
    deposit on day 2; carol appears on day 2 and never trades."""
    seq = iter(range(1, 1_000))

    def rec(*events, command=None):
        return Record(next(seq), 1, command or Lead(1, "a"), list(events))

    return [
        rec(AccountCreated(1, "alice"), CashAdjusted(1, OPEN, OPEN)),
        rec(AccountCreated(2, "bob"), CashAdjusted(2, OPEN, OPEN)),
        rec(DayEnded(0, 20250102, []), command=EndOfDay(0, 20250102)),
        # alice (taker) buys 100 AAPL at 170.00 and 50 at 170.10 from bob's resting sells
        rec(
            Fill(1, "AAPL", Side.BUY, 1_700_000, 100, 1, 10, 50, 2, 11, 0),
            Fill(2, "AAPL", Side.BUY, 1_701_000, 50, 1, 10, 0, 2, 12, 0),
        ),
        rec(Fill(3, "TSLA", Side.SELL, 1_600_000, 10, 2, 13, 0, 1, 14, 0, True)),
        rec(
            DayEnded(20250102, 20250103, [ClosePrice("AAPL", 1_705_000), ClosePrice("TSLA", 0)]),
            command=EndOfDay(20250102, 20250103),
        ),
        rec(AccountCreated(3, "carol"), CashAdjusted(3, OPEN, OPEN)),
        rec(
            CashAdjusted(
                2, 5_000_000, OPEN + 5_000_000 + 1_700_000 * 100 + 1_701_000 * 50 + 1_600_000 * 10
            )
        ),  # fmt: skip
        rec(Fill(4, "AAPL", Side.SELL, 1_690_000, 40, 1, 15, 0, 2, 16, 0)),
        rec(
            DayEnded(20250103, 20250106, [ClosePrice("AAPL", 1_680_000), ClosePrice("TSLA", 0)]),
            command=EndOfDay(20250103, 20250106),
        ),
    ]


def run(records, where, ledger=None):
    """``where``: the ledger's spool directory (unless ``ledger`` is given)."""
    ledger = ledger or Ledger(REFS, spool.Spool(where))
    days = [d for d in (ledger.apply(r) for r in records) if d is not None]
    ledger.spool.close()  # the day under way's lines, for a reader
    return ledger, days


def trades(day, account):
    """An account's trades that day, read back from the day's spool."""
    lines = dict((a, list(items)) for a, items in spool.by_account(day.lines)).get(account, [])
    return [t for t in lines if type(t) is Trade]


def by_name(day):
    return {s.name: s for s in day.statements}


def test_a_day_adds_up_trades_positions_cash_and_pnl_at_the_close(tmp_path):
    _, (day1, day2) = run(journal(), tmp_path)
    assert (day1.trading_date, day1.next_date, day1.first_seq, day1.last_seq) == (
        20250102, 20250103, 4, 6)  # fmt: skip
    alice, bob = by_name(day1)["alice"], by_name(day1)["bob"]
    assert [(t.symbol, t.side, t.qty, t.maker) for t in trades(day1, 1)] == [
        ("AAPL", Side.BUY, 100, False), ("AAPL", Side.BUY, 50, False),
        ("TSLA", Side.BUY, 10, True)]  # fmt: skip
    aapl = alice.positions[0]
    assert (aapl.symbol, aapl.opening, aapl.bought, aapl.closing) == ("AAPL", 0, 150, 150)
    cost = 1_700_000 * 100 + 1_701_000 * 50
    assert aapl.pnl == 150 * 1_705_000 - cost
    tsla = alice.positions[1]  # no close today (0): marked at the previous, the reference
    assert (tsla.prev_close, tsla.close, tsla.pnl) == (1_600_000, 1_600_000, 0)
    assert alice.closing_cash == OPEN - cost - 1_600_000 * 10
    assert alice.opening_cash == OPEN
    assert alice.pnl + bob.pnl == 0
    assert alice.closing_equity - alice.opening_equity - alice.moved == alice.pnl
    # day 2: the carried position is marked from yesterday's close
    alice2, bob2, carol2 = (by_name(day2)[n] for n in ("alice", "bob", "carol"))
    aapl2 = alice2.positions[0]
    assert (aapl2.opening, aapl2.sold, aapl2.closing, aapl2.prev_close, aapl2.close) == (
        150, 40, 110, 1_705_000, 1_680_000)  # fmt: skip
    assert aapl2.pnl == 110 * 1_680_000 - 150 * 1_705_000 + 40 * 1_690_000
    assert bob2.moved == 5_000_000 and bob2.opening_cash == bob.closing_cash
    assert (
        carol2.trades == 0 and trades(day2, 3) == [] and carol2.positions == [] and carol2.pnl == 0
    )
    assert carol2.opening_cash == 0 and carol2.closing_cash == OPEN  # opened today
    assert sum(s.pnl for s in day2.statements) == 0


def test_a_restart_from_the_carry_gives_the_same_statements(tmp_path):
    records = journal()
    whole, days = run(records, tmp_path / "whole")
    cut = next(i for i, r in enumerate(records) if r.seq == 6) + 1  # after day 1 ended
    first, _ = run(records[:cut], tmp_path / "first")
    saved = first.snapshot()
    again = Ledger(REFS, spool.Spool(tmp_path / "again"), carry_decoder.decode(saved))
    restarted, later = run(records[cut:], None, again)
    assert later == days[1:]
    assert trades(later[0], 1) == trades(days[1], 1)
    assert restarted.snapshot() == whole.snapshot()


def test_files_are_whole_days_and_say_the_same_as_the_ledger(tmp_path):
    root = tmp_path / "statements"
    _, (day1, _) = run(journal(), root / ".spool")
    where = files.write_day(root, day1)
    assert where == root / "20250102"
    index = files.read_index(root, 20250102)
    assert [a["account"] for a in index["accounts"]] == ["alice", "bob"]
    assert index["pnl_total"] == "0.00"
    alice = files.read_statement(root, 20250102, "alice")
    assert alice["cash"]["closing"] == "72895.00"  # 100,000 - 17,000 - 8,505 - 1,600
    assert alice["positions"][0]["closing"] == 150 and alice["trades"][2]["liquidity"] == "maker"
    rows = list(csv.DictReader((where / "accounts" / "alice.csv").open()))
    assert [r["kind"] for r in rows] == ["trade"] * 3 + ["position"] * 2 + ["cash", "total"]
    assert rows[-1]["pnl"] == alice["pnl"]
    # written again (a restart that replays the day): replaced whole, nothing left over
    files.write_day(root, day1)
    assert sorted(p.name for p in root.iterdir()) == [".spool", "20250102"]
    assert json.loads((where / "accounts" / "alice.json").read_text()) == alice
    assert files.days(root) == [20250102]


def test_leftovers_of_a_crash_are_removed(tmp_path):
    root = tmp_path / "statements"
    (root / ".20250102.123.tmp" / "accounts").mkdir(parents=True)
    (root / "20250101").mkdir()
    files.remove_leftovers(root)
    assert [p.name for p in root.iterdir()] == ["20250101"]


def test_the_journal_keeps_what_the_writer_needs_once_it_runs_on_the_host(tmp_path):
    for service, seq in (("matcher", 900), ("gateway", 800), ("marketdata", 700)):
        snapfile.write(snapfile.directory(tmp_path, service), seq, b"x")
    assert snapfile.covered_seq(tmp_path) == 700  # no statements writer on this host
    where = snapfile.directory(tmp_path, "statements")
    where.mkdir(parents=True)
    assert snapfile.covered_seq(tmp_path) == 0  # it runs, and has not ended a day yet
    snapfile.write(where, 300, b"x")
    snapfile.write(where, 500, b"x")
    assert snapfile.covered_seq(tmp_path) == 300  # its oldest kept carry


def test_a_cluster_host_that_runs_the_writer_gets_its_program(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "etcd" / "data" / "member").mkdir(parents=True)  # nothing to ask etcd
    raw = tomllib.loads((ROOT / "config" / "cluster.example.toml").read_text())
    for name, runs in (("a", True), ("c", False)):
        monkeypatch.setenv("EXCHANGE_HOST", name)
        cfg = config.parse(raw, tmp_path)
        assert ("[program:statements]" in cluster.write_conf(cfg, tmp_path).read_text()) == runs
    assert "statements-c" not in cluster.local_services(cfg)


def test_exchange_statement_prints_the_latest_day_or_the_one_asked(tmp_path):
    root = tmp_path / "statements"
    _, (day1, day2) = run(journal(), root / ".spool")
    files.write_day(root, day1)
    files.write_day(root, day2)
    config_path = write_config(tmp_path, statements={"directory": str(root)})

    def cli(*args, **env):
        return exchange_cli("statement", *args, home=tmp_path, config_path=config_path, env=env)

    latest = cli("--json", EXCHANGE_USER="alice")
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["trading_date"] == 20250103
    day = json.loads(cli("--date", "2025-01-02", "--account", "bob", "--json").stdout)
    assert (day["trading_date"], day["account"]) == (20250102, "bob")
    text = cli("--account", "alice").stdout
    assert "statement of alice for trading day 20250103" in text and "AAPL" in text
    carol = cli("--account", "carol", "--date", "20250102")  # she opened on the 3rd
    assert carol.returncode == 1 and "no statement of carol" in carol.stderr
    nobody = cli(EXCHANGE_USER="", EXCHANGE_CREDENTIALS=str(tmp_path / "none"))
    assert nobody.returncode == 2
    bad = cli("--date", "Jan 2")
    assert bad.returncode == 2 and "YYYYMMDD" in bad.stderr


def busy_day(fills, accounts=4, made=None):
    """Records of a day ended: ``fills`` fills, account 1 in every one, deposits to
    account 2 now and then; the fills as (seq, trade id, taker, maker) in the journal's
    order appended to ``made``."""
    rnd = random.Random(fills)
    seq = itertools.count(1)

    def rec(*events, command=None):
        return Record(next(seq), 1, command or Lead(1, "a"), list(events))

    for account in range(1, accounts + 1):
        yield rec(AccountCreated(account, f"acct{account}"), CashAdjusted(account, OPEN, OPEN))
    yield rec(DayEnded(0, 20250102, []), command=EndOfDay(0, 20250102))
    for trade in range(1, fills + 1):
        if trade % 50 == 0:
            yield rec(CashAdjusted(2, DEPOSIT, OPEN + trade))
        other = rnd.randint(2, accounts)
        taker, maker = (1, other) if rnd.random() < 0.5 else (other, 1)
        fill = Fill(trade, rnd.choice(["AAPL", "TSLA"]), rnd.choice([Side.BUY, Side.SELL]),
                    rnd.randint(1_600_000, 1_700_000), rnd.randint(1, 100), taker, 2 * trade,
                    0, maker, 2 * trade + 1, 0)  # fmt: skip
        record = rec(fill)
        if made is not None:
            made.append((record.seq, trade, taker, maker))
        yield record
    yield rec(DayEnded(20250102, 20250103, [ClosePrice("AAPL", 1_650_000)]),
              command=EndOfDay(20250102, 20250103))  # fmt: skip


def test_a_day_larger_than_the_budget_gives_the_same_files(tmp_path):
    fills, made = 600, []  # 1,200+ lines: hundreds of runs of 5, merged in two levels
    _, (day,) = run(busy_day(fills, made=made), tmp_path / "spool")
    small = files.write_day(tmp_path / "small", day, budget=5)
    large = files.write_day(tmp_path / "large", day, budget=1_000_000)
    names = sorted(p.relative_to(large) for p in large.rglob("*"))
    assert names == sorted(p.relative_to(small) for p in small.rglob("*"))
    for name in names:
        if (large / name).is_file():
            assert (small / name).read_bytes() == (large / name).read_bytes(), name
    # account 1 is in every fill, far more lines than the budget: all its own, in order
    alice = json.loads((small / "accounts" / "acct1.json").read_text())
    assert [(t["seq"], t["trade_id"]) for t in alice["trades"]] == [
        (seq, trade) for seq, trade, _, _ in made
    ]
    bob = json.loads((small / "accounts" / "acct2.json").read_text())
    assert [m["amount"] for m in bob["cash_movements"]] == [to_dollars(DEPOSIT)] * (fills // 50)
    assert len(bob["trades"]) == sum(2 in (t, m) for _, _, t, m in made)
    rows = list(csv.DictReader((small / "accounts" / "acct2.csv").open()))
    assert [r["kind"] for r in rows].count("cash_movement") == fills // 50
    assert not (tmp_path / "spool" / f"{day.first_seq}.lines.runs").exists()  # runs removed


def test_the_spool_sorts_by_account_keeping_the_days_order(tmp_path):
    ledger, (day,) = run(busy_day(300), tmp_path)
    whole = day.lines.read_bytes().splitlines(keepends=True)
    by_account = sorted(whole, key=lambda line: line[: spool.KEY])  # stable
    assert list(spool.sorted_lines(day.lines, budget=7, fan_in=2)) == by_account
    assert list(spool.sorted_lines(day.lines, budget=len(whole) + 1)) == by_account


def test_the_ledger_keeps_totals_not_trades(tmp_path):
    """Memory does not grow with the day's fills: they go to the spool file."""
    ledger = Ledger(REFS, spool.Spool(tmp_path))
    records = busy_day(20_000, accounts=10)
    for record in itertools.islice(records, 1_000):
        ledger.apply(record)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for record in itertools.islice(records, 18_000):
            ledger.apply(record)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    ledger.spool.close()
    spooled = ledger.spool.path.read_bytes().count(b"\n")
    assert spooled > 2 * 17_000
    assert grown < spooled  # under a byte a line: keeping them would take ~100 bytes each
