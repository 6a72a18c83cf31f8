"""A day's statements on disk: JSON and CSV per account plus an index, written whole.

Layout, under the statements directory (``[statements] directory``)::

    20250102/index.json             the day: its records, closes, every account's totals
    20250102/accounts/alice.json    one account's statement
    20250102/accounts/alice.csv     the same as rows

A day is written into a temporary directory (each file synced), which is then renamed
into place and its parent synced: a reader, or a restart after a crash, sees a whole
day or none of it, never half a statement. Writing a day that exists replaces it
whole. Money is in dollars as decimal strings ("170.50"), sizes in shares.

The trades and cash movements come from the day's spool (``spool.py``) account by
account and are streamed into that account's two files, so no account's lines are held
in memory whatever their number.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from services.common.money import to_dollars
from services.common.wire import Side
from services.journal.segment import sync_dir
from services.statements import spool
from services.statements.ledger import DayStatements, Movement, Statement, Trade

INDEX = "index.json"
ACCOUNTS = "accounts"
TEMP = ".tmp"
OLD = ".old"
CSV_COLUMNS = (
    "trading_date", "account", "kind", "seq", "trade_id", "symbol", "side", "qty", "price",
    "value", "order_id", "liquidity", "auction", "opening", "bought", "sold", "closing",
    "prev_close", "close", "pnl",
)  # fmt: skip


def day_name(date: int) -> str:
    return f"{date:08d}"


def _side(side: int) -> str:
    return "buy" if side == Side.BUY else "sell"


def _trade_json(t: Trade) -> dict:
    return {
        "seq": t.seq,
        "trade_id": t.trade_id,
        "symbol": t.symbol,
        "side": _side(t.side),
        "qty": t.qty,
        "price": to_dollars(t.price),
        "value": to_dollars(t.price * t.qty),
        "order_id": t.order_id,
        "liquidity": "maker" if t.maker else "taker",
        "auction": t.auction,
    }


def _totals_json(s: Statement) -> dict:
    """What follows the trades and cash movements in an account's JSON."""
    return {
        "positions": [
            {
                "symbol": p.symbol,
                "opening": p.opening,
                "bought": p.bought,
                "sold": p.sold,
                "closing": p.closing,
                "bought_value": to_dollars(p.bought_value),
                "sold_value": to_dollars(p.sold_value),
                "prev_close": to_dollars(p.prev_close),
                "close": to_dollars(p.close),
                "opening_value": to_dollars(p.opening_value),
                "closing_value": to_dollars(p.closing_value),
                "pnl": to_dollars(p.pnl),
            }
            for p in s.positions
        ],
        "cash": {
            "opening": to_dollars(s.opening_cash),
            "bought": to_dollars(s.bought_value),
            "sold": to_dollars(s.sold_value),
            "movements": to_dollars(s.moved),
            "closing": to_dollars(s.closing_cash),
        },
        "equity": {
            "opening": to_dollars(s.opening_equity),
            "closing": to_dollars(s.closing_equity),
        },
        "pnl": to_dollars(s.pnl),
    }


class _JsonList:
    """One top-level list of an account's JSON written item by item, laid out as
    ``json.dumps(..., indent=1)`` lays it out (the items hold no newline)."""

    def __init__(self, out: TextIO, key: str) -> None:
        self.out, self.key, self.count = out, key, 0
        out.write(f",\n {json.dumps(key)}: [")

    def add(self, item: dict) -> None:
        self.out.write(",\n  " if self.count else "\n  ")
        self.out.write(json.dumps(item, indent=1).replace("\n", "\n  "))
        self.count += 1

    def close(self) -> None:
        self.out.write("\n ]" if self.count else "]")


def _trade_row(t: Trade) -> dict:
    return {
        "kind": "trade", "seq": t.seq, "trade_id": t.trade_id, "symbol": t.symbol,
        "side": _side(t.side), "qty": t.qty, "price": to_dollars(t.price),
        "value": to_dollars(t.price * t.qty), "order_id": t.order_id,
        "liquidity": "maker" if t.maker else "taker", "auction": int(t.auction),
    }  # fmt: skip


def _totals_rows(s: Statement) -> list[dict]:
    """The position, cash and total rows that end an account's CSV."""
    rows = [
        {
            "kind": "position", "symbol": p.symbol, "opening": p.opening,
            "bought": p.bought, "sold": p.sold, "closing": p.closing,
            "prev_close": to_dollars(p.prev_close), "close": to_dollars(p.close),
            "pnl": to_dollars(p.pnl),
        }
        for p in s.positions
    ]  # fmt: skip
    rows.append(
        {
            "kind": "cash", "opening": to_dollars(s.opening_cash),
            "bought": to_dollars(s.bought_value), "sold": to_dollars(s.sold_value),
            "value": to_dollars(s.moved), "closing": to_dollars(s.closing_cash),
        }
    )  # fmt: skip
    rows.append(
        {"kind": "total", "opening": to_dollars(s.opening_equity),
         "closing": to_dollars(s.closing_equity), "pnl": to_dollars(s.pnl)}
    )  # fmt: skip
    return rows


def write_statement(
    folder: Path, s: Statement, day: DayStatements, lines: Iterable[Trade | Movement]
) -> None:
    """An account's JSON and CSV, from its lines (its trades, then its cash movements,
    each in the day's order) streamed into both files: no account's lines are held.

    The CSV has one row per trade, cash movement and position, then the cash and total
    rows; ``kind`` says which columns a row fills."""
    json_path, csv_path = folder / f"{s.name}.json", folder / f"{s.name}.csv"
    with json_path.open("w", encoding="utf-8") as js, csv_path.open("w", encoding="utf-8") as cs:
        head = {
            "trading_date": s.trading_date,
            "account": s.name,
            "account_id": s.account,
            "first_seq": day.first_seq,
            "last_seq": day.last_seq,
        }
        js.write(json.dumps(head, indent=1)[:-2])  # without its closing "\n}"
        rows = csv.DictWriter(cs, CSV_COLUMNS, lineterminator="\n")
        rows.writeheader()
        base = {"trading_date": s.trading_date, "account": s.name}
        items = _JsonList(js, "trades")
        for line in lines:
            if type(line) is Trade:
                items.add(_trade_json(line))
                rows.writerow(base | _trade_row(line))
                continue
            if items.key == "trades":  # the movements follow the trades
                items.close()
                items = _JsonList(js, "cash_movements")
            amount, cash = to_dollars(line.amount), to_dollars(line.cash)
            items.add({"seq": line.seq, "amount": amount, "cash": cash})
            rows.writerow(base | {"kind": "cash_movement", "seq": line.seq, "value": amount,
                                  "closing": cash})  # fmt: skip
        if items.key == "trades":
            items.close()
            items = _JsonList(js, "cash_movements")
        items.close()
        js.write(",\n" + json.dumps(_totals_json(s), indent=1)[2:] + "\n")
        rows.writerows(base | row for row in _totals_rows(s))
        for fh in (js, cs):
            fh.flush()
            os.fsync(fh.fileno())
    json_path.chmod(0o600)
    csv_path.chmod(0o600)


def index_json(day: DayStatements) -> dict:
    return {
        "trading_date": day.trading_date,
        "next_date": day.next_date,
        "first_seq": day.first_seq,
        "last_seq": day.last_seq,
        "closes": {s: to_dollars(p) for s, p in sorted(day.closes.items())},
        "prev_closes": {s: to_dollars(p) for s, p in sorted(day.prev_closes.items())},
        "accounts": [
            {
                "account": s.name,
                "account_id": s.account,
                "trades": s.trades,
                "pnl": to_dollars(s.pnl),
                "closing_equity": to_dollars(s.closing_equity),
                "json": f"{ACCOUNTS}/{s.name}.json",
                "csv": f"{ACCOUNTS}/{s.name}.csv",
            }
            for s in day.statements
        ],
        # every trade has a buyer and a seller: the accounts' P&L sums to zero
        "pnl_total": to_dollars(sum(s.pnl for s in day.statements)),
    }


def _write(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o600)


def remove_leftovers(root: Path) -> None:
    """Temporary and replaced days a crash left behind (``.DATE.PID.tmp``/``.old``)."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith(".") and path.name.endswith((TEMP, OLD)):
            shutil.rmtree(path, ignore_errors=True)


def write_day(root: Path, day: DayStatements, budget: int = spool.LINES_IN_MEMORY) -> Path:
    """Write ``day`` under ``root`` whole (see the module's docstring); its directory.
    The day's lines come from its spool, sorted holding ``budget`` lines at most."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = day_name(day.trading_date)
    tmp = root / f".{name}.{os.getpid()}{TEMP}"
    shutil.rmtree(tmp, ignore_errors=True)
    accounts = tmp / ACCOUNTS
    accounts.mkdir(mode=0o700, parents=True)
    groups = spool.by_account(day.lines, budget) if day.lines else iter(())
    group = next(groups, None)
    for s in day.statements:  # in account order, as the groups come
        lines = ()
        if group is not None and group[0] == s.account:
            lines, group = group[1], None
        write_statement(accounts, s, day, lines)
        if group is None:
            group = next(groups, None)
    _write(tmp / INDEX, json.dumps(index_json(day), indent=1) + "\n")
    sync_dir(accounts)
    sync_dir(tmp)
    final = root / name
    old = root / f".{name}.{os.getpid()}{OLD}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    sync_dir(root)
    shutil.rmtree(old, ignore_errors=True)
    return final


# -- reading (the `exchange statement` command) -------------------------------------


def days(root: Path) -> list[int]:
    """Every trading date with statements under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and len(p.name) == 8)


def read_statement(root: Path, date: int, account: str) -> dict | None:
    path = root / day_name(date) / ACCOUNTS / f"{account}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def read_index(root: Path, date: int) -> dict | None:
    try:
        return json.loads((root / day_name(date) / INDEX).read_text())
    except FileNotFoundError:
        return None
