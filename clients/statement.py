"""`exchange statement [--date D] [--account NAME] [--json]`: an account's end-of-day
statement, read from the files the statements writer keeps on the exchange's host.

Statements are files under ``[statements] directory`` ($EXCHANGE_HOME/statements), not
something the gateway serves: the command reads them where it runs, so it works on
the exchange's host (or wherever the operator copies that directory); a remote trader
gets theirs from the operator (docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
DATE_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def _date(text: str) -> int:
    match = DATE_RE.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"DATE must be YYYYMMDD or YYYY-MM-DD, not {text!r}")
    return int("".join(match.groups()))


def _directory() -> Path:
    from clients import settings

    return Path(settings.load().statements.directory)


def _account(named: str | None) -> str | None:
    if named:
        return named
    from clients import trading

    return os.environ.get("EXCHANGE_USER") or trading._from_file().get("user")


def show(date: int | None, account: str | None, as_json: bool) -> int:
    from services.statements import files

    name = _account(account)
    if not name:
        print(
            "exchange statement: name the account (--account NAME, or EXCHANGE_USER)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    root = _directory()
    days = files.days(root)
    if not days:
        print(
            f"exchange statement: no statements in {root} (they are written on the "
            f"exchange's host at each end of day: docs/cli.md)",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    if date is None:  # the latest day that has this account's statement
        found = next(
            (d for d in reversed(days) if files.read_statement(root, d, name) is not None), None
        )
        statement = files.read_statement(root, found, name) if found else None
    else:
        statement = files.read_statement(root, date, name)
    if statement is None:
        when = f"for {date}" if date else "on any day"
        print(
            f"exchange statement: no statement of {name} {when} in {root} "
            f"(days: {days[0]} .. {days[-1]})",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    print(json.dumps(statement) if as_json else render(statement))
    return 0


def render(s: dict) -> str:
    lines = [
        f"statement of {s['account']} for trading day {s['trading_date']} "
        f"(journal records {s['first_seq']}..{s['last_seq']})",
        "",
        f"{'symbol':<8} {'opening':>10} {'bought':>9} {'sold':>9} {'closing':>10} "
        f"{'prev close':>11} {'close':>10} {'P&L':>14}",
    ]
    for p in s["positions"]:
        lines.append(
            f"{p['symbol']:<8} {p['opening']:>10,} {p['bought']:>9,} {p['sold']:>9,} "
            f"{p['closing']:>10,} {p['prev_close']:>11} {p['close']:>10} {p['pnl']:>14}"
        )
    if not s["positions"]:
        lines.append("(no positions)")
    cash = s["cash"]
    lines += [
        "",
        f"cash: opening {cash['opening']}, bought -{cash['bought']}, sold +{cash['sold']}, "
        f"movements {cash['movements']}, closing {cash['closing']}",
        f"equity at the close: {s['equity']['closing']} (opening {s['equity']['opening']}); "
        f"P&L {s['pnl']}",
        "",
        f"trades ({len(s['trades'])}):",
    ]
    for t in s["trades"]:
        flags = t["liquidity"] + (", auction" if t["auction"] else "")
        lines.append(
            f"  #{t['trade_id']:<8} {t['side']:<4} {t['qty']:>8,} {t['symbol']:<6} "
            f"@ {t['price']:>10}  = {t['value']:>14}  order {t['order_id']} ({flags})"
        )
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser(
        "statement", help="an account's end-of-day statement (on the exchange's host)"
    )
    p.add_argument("--date", type=_date, help="the trading day, YYYYMMDD (default: the latest)")
    p.add_argument("--account", help="whose (default: EXCHANGE_USER or the credentials file)")
    p.add_argument("--json", action="store_true", help="the statement file's JSON on stdout")
    p.set_defaults(func=lambda a: show(a.date, a.account, a.json))
