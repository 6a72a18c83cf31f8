"""The statements writer on a real mesh: days ended as the scheduler ends them, the
statements checked against the journal's records recomputed here independently, a
SIGKILL mid-day, a crash between a day's files and its carry, and `exchange statement`."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from clients.bench.days import DayEnder
from services.common import snapfile
from services.common.money import to_units
from services.common.wire import AccountCreated, CashAdjusted, DayEnded, Fill, Side
from services.journal import tools
from services.journal.segment import segment_paths
from tests.mesh import Service, exchange_cli, running, trader, wait_for
from tests.test_mesh_feed import flow

P = to_units
ENGINE = Path(__file__).resolve().parents[1] / "services" / "matcher" / "engine.py"
needs_end_of_day = pytest.mark.skipif(
    "EndOfDay" not in ENGINE.read_text(), reason="the engine has no end of day yet (i20-engine)"
)


def read(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def recompute(journal_dir, references) -> dict:
    """trading date -> account name -> figures, from the journal alone: a full replay
    that keeps each day's closing cash, positions and trades, and values the accounts
    at each day's closes (a different path from the ledger's)."""
    names, cash, held = {}, defaultdict(int), defaultdict(lambda: defaultdict(int))
    closes = dict(references)
    days, trades, moved = {}, defaultdict(int), defaultdict(int)

    def equity(account, marks):
        return cash[account] + sum(q * marks[s] for s, q in held[account].items())

    opening = {}
    for record in tools.records(journal_dir):
        for event in record.events:
            if type(event) is CashAdjusted:
                names.setdefault(event.account, f"#{event.account}")
                opening.setdefault(event.account, 0)  # opened today: nothing before
                cash[event.account] = event.cash
                moved[event.account] += event.amount
            elif type(event) is AccountCreated:
                names[event.account] = event.name
            elif type(event) is Fill:
                value = event.price * event.qty
                buyer, seller = (
                    (event.taker_account, event.maker_account)
                    if event.side == Side.BUY
                    else (event.maker_account, event.taker_account)
                )
                held[buyer][event.symbol] += event.qty
                held[seller][event.symbol] -= event.qty
                cash[buyer] -= value
                cash[seller] += value
                trades[buyer] += 1
                trades[seller] += 1
            elif type(event) is DayEnded:
                marks = dict(closes)
                marks.update({c.symbol: c.price for c in event.closes if c.price})
                if event.trading_date:
                    days[event.trading_date] = {
                        names[a]: {
                            "cash": cash[a],
                            "positions": {s: q for s, q in held[a].items() if q},
                            "trades": trades[a],
                            "pnl": equity(a, marks) - opening.get(a, 0) - moved[a],
                        }
                        for a in names
                    }
                closes = marks
                opening = {a: equity(a, marks) for a in names}
                trades, moved = defaultdict(int), defaultdict(int)
    return days


@needs_end_of_day
def test_statements_add_up_to_the_journal_across_a_kill_and_a_lost_day(short_home):
    with running(short_home) as mesh:
        writer = Service("statements", mesh.config_path, short_home).start()
        mesh.services["statements"] = writer
        root = mesh.cfg.statements.directory
        ender = DayEnder(mesh)
        try:
            ender.end_day()  # the first trading day begins
            alice, bob = trader(mesh, "alice"), trader(mesh, "bob")
            bob.place("AAPL", Side.SELL, 150, P("170.00"))
            alice.place("AAPL", Side.BUY, 100, P("170.00"))
            alice.place("TSLA", Side.SELL, 20, P("160.00"))
            bob.place("TSLA", Side.BUY, 20, P("160.00"))
            day1 = ender.end_day().trading_date
            index = f"{root}/{day1:08d}/index.json"
            wait_for(lambda: os.path.exists(index), 20, what="day 1's statements")
            # day 2: trades, then the writer is killed mid-day and restarted
            alice.place("AAPL", Side.BUY, 50, P("170.00"))  # the rest of bob's sell
            carol = trader(mesh, "carol")
            carol.place("TSLA", Side.SELL, 5, P("161.00"))
            writer.kill()
            writer.start()
            bob.place("TSLA", Side.BUY, 5, P("161.00"))
            day2 = ender.end_day().trading_date
            index2 = f"{root}/{day2:08d}/index.json"
            wait_for(lambda: os.path.exists(index2), 20, what="day 2's statements")
            # it resumed from day 1's carry, not from seq 1
            loaded = [
                json.loads(line) for line in writer.log().splitlines() if "carry_loaded" in line
            ]
            assert loaded and loaded[-1]["trading_date"] == day2
            # a crash after day 2's files but before its carry: both gone, it rewrites them
            first = read(f"{root}/{day2:08d}/accounts/alice.json")
            writer.stop()
            carries = snapfile.directory(short_home, "statements")
            newest = snapfile.newest_first(carries)[0][1]
            newest.unlink()
            shutil.rmtree(f"{root}/{day2:08d}")
            writer.start()
            wait_for(lambda: os.path.exists(index2), 20, what="day 2 written again")
            again = read(f"{root}/{day2:08d}/accounts/alice.json")
            assert again == first
            # the ended days' spools are gone: only the day under way's lines are kept
            under_way = f"{read(index2)['last_seq'] + 1}.lines"
            spooled = lambda: os.listdir(f"{root}/.spool") == [under_way]  # noqa: E731
            wait_for(spooled, 20, what="only the day under way's spool")
        finally:
            ender.close()
        journal = short_home / "journal"
        references = {s: spec.reference for s, spec in mesh.cfg.symbols.items()}
        expected = recompute(journal, references)
        assert set(expected) >= {day1, day2}
        for date in (day1, day2):
            index = read(f"{root}/{date:08d}/index.json")
            assert index["pnl_total"] == "0.00"
            shown = {a["account"] for a in index["accounts"]}
            assert shown == set(expected[date])
            for name, want in expected[date].items():
                got = read(f"{root}/{date:08d}/accounts/{name}.json")
                assert to_units(got["cash"]["closing"]) == want["cash"], (date, name)
                assert {p["symbol"]: p["closing"] for p in got["positions"] if p["closing"]} == (
                    want["positions"]
                )
                assert len(got["trades"]) == want["trades"]
                assert to_units(got["pnl"]) == want["pnl"], (date, name)
        assert expected[day1]["alice"]["positions"] == {"AAPL": 100, "TSLA": -20}
        assert expected[day2]["alice"]["positions"] == {"AAPL": 150, "TSLA": -20}
        # `exchange statement`: the latest day by default, or the one asked for
        run = lambda *a, **env: exchange_cli(  # noqa: E731
            "statement", *a, home=short_home, config_path=mesh.config_path, env=env
        )
        latest = run("--json", EXCHANGE_USER="alice")
        assert latest.returncode == 0, latest.stderr
        assert json.loads(latest.stdout)["trading_date"] == day2
        older = run("--date", str(day1), "--account", "bob", "--json")
        assert json.loads(older.stdout)["account"] == "bob"
        text = run("--account", "alice")
        assert "AAPL" in text.stdout and "P&L" in text.stdout
        missing = run("--account", "nobody")
        assert missing.returncode == 1 and "no statement of nobody" in missing.stderr


def test_a_writer_added_after_the_journal_archived_its_head_starts_from_the_gateway(
    short_home,
):
    every = {"snapshot_every": 60}
    with running(
        short_home,
        standby=True,  # the standby writes the matcher's snapshots
        journal={"segment_bytes": 8_192, "archive_check_s": 0.2},
        matcher={**every, "snapshot_cpu_share": 1.0},
        gateway=every,
        marketdata=every,
    ) as mesh:
        clients = [trader(mesh, name) for name in ("arc1", "arc2", "arc3")]
        flow(clients, random.Random(5), 400)
        journal = short_home / "journal"
        wait_for(lambda: len(segment_paths(journal / "archive")) >= 2, 20, what="archiving")
        writer = Service("statements", mesh.config_path, short_home).start()
        mesh.services["statements"] = writer

        def caught_up():
            rows = {s.service: s for s in mesh.status().services if s.alive}
            return "statements" in rows and rows["statements"].seq == rows["journal"].seq

        wait_for(caught_up, 20, what="the writer to follow from the gateway's snapshot")
        assert "seeded_from_gateway_snapshot" in writer.log()
        if "EndOfDay" not in ENGINE.read_text():
            return
        ender = DayEnder(mesh)
        try:
            ender.end_day()
            date = ender.end_day().trading_date
        finally:
            ender.close()
        root = mesh.cfg.statements.directory
        wait_for(lambda: os.path.exists(f"{root}/{date:08d}/index.json"), 20, what="statements")
        for client, name in zip(clients, ("arc1", "arc2", "arc3"), strict=True):
            held = client.positions()
            got = read(f"{root}/{date:08d}/accounts/{name}.json")
            assert to_units(got["cash"]["closing"]) == held.cash
            closing = {p["symbol"]: p["closing"] for p in got["positions"] if p["closing"]}
            assert closing == {s: q for s, q in held.positions.items() if q}
