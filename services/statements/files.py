"""A day's statements on disk: JSON and CSV per account plus an index, written whole.

Layout, under the statements directory (``[statements] directory``)::

    20250102/index.json             the day: its records, closes, every account's totals
    20250102/accounts/alice.json    one account's statement
    20250102/accounts/alice.csv     the same as rows

A day is written into a temporary directory (each file synced), which is then renamed
into place and its parent synced: a reader, or a restart after a crash, sees a whole
day or none of it, never half a statement. Writing a day that exists replaces it
whole. Money is in dollars as decimal strings ("170.50"), sizes in shares.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

from services.common.money import to_dollars
from services.common.wire import Side
from services.journal.segment import sync_dir
from services.statements.ledger import DayStatements, Statement

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


def statement_json(s: Statement, day: DayStatements) -> dict:
    return {
        "trading_date": s.trading_date,
        "account": s.name,
        "account_id": s.account,
        "first_seq": day.first_seq,
        "last_seq": day.last_seq,
        "trades": [
            {
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
            for t in s.trades
        ],
        "cash_movements": [
            {"seq": m.seq, "amount": to_dollars(m.amount), "cash": to_dollars(m.cash)}
            for m in s.movements
        ],
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


def statement_csv(s: Statement) -> str:
    """One row per trade, cash movement and position, then the cash and total rows;
    ``kind`` says which columns a row fills."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    base = {"trading_date": s.trading_date, "account": s.name}
    for t in s.trades:
        writer.writerow(
            base | {
                "kind": "trade", "seq": t.seq, "trade_id": t.trade_id, "symbol": t.symbol,
                "side": _side(t.side), "qty": t.qty, "price": to_dollars(t.price),
                "value": to_dollars(t.price * t.qty), "order_id": t.order_id,
                "liquidity": "maker" if t.maker else "taker", "auction": int(t.auction),
            }
        )  # fmt: skip
    for m in s.movements:
        writer.writerow(
            base | {"kind": "cash_movement", "seq": m.seq, "value": to_dollars(m.amount),
                    "closing": to_dollars(m.cash)}
        )  # fmt: skip
    for p in s.positions:
        writer.writerow(
            base | {
                "kind": "position", "symbol": p.symbol, "opening": p.opening,
                "bought": p.bought, "sold": p.sold, "closing": p.closing,
                "prev_close": to_dollars(p.prev_close), "close": to_dollars(p.close),
                "pnl": to_dollars(p.pnl),
            }
        )  # fmt: skip
    writer.writerow(
        base | {
            "kind": "cash", "opening": to_dollars(s.opening_cash),
            "bought": to_dollars(s.bought_value), "sold": to_dollars(s.sold_value),
            "value": to_dollars(s.moved), "closing": to_dollars(s.closing_cash),
        }
    )  # fmt: skip
    writer.writerow(
        base | {"kind": "total", "opening": to_dollars(s.opening_equity),
                "closing": to_dollars(s.closing_equity), "pnl": to_dollars(s.pnl)}
    )  # fmt: skip
    return out.getvalue()


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
                "trades": len(s.trades),
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


def write_day(root: Path, day: DayStatements) -> Path:
    """Write ``day`` under ``root`` whole (see the module's docstring); its directory."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = day_name(day.trading_date)
    tmp = root / f".{name}.{os.getpid()}{TEMP}"
    shutil.rmtree(tmp, ignore_errors=True)
    accounts = tmp / ACCOUNTS
    accounts.mkdir(mode=0o700, parents=True)
    for s in day.statements:
        _write(accounts / f"{s.name}.json", json.dumps(statement_json(s, day), indent=1) + "\n")
        _write(accounts / f"{s.name}.csv", statement_csv(s))
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
