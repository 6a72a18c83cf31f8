"""`exchange admin halt|resume|reference|kill|unkill|deposit` and `exchange password`.

Operator commands need an account named in ``[security] operators``; everyone else
gets NOT_AUTHORIZED (exit 1). Each is sequenced and journaled like an order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from clients import trading
from services.common.money import to_dollars, to_units
from services.common.wire import CashAdjusted


def _admin(action: str, symbol: str, account: str, price: str, amount: str, as_json: bool) -> int:
    try:
        units = to_units(price) if price else 0
        cash = to_units(amount) if amount else 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return trading.EXIT_USAGE

    def action_() -> int:
        with trading.logged_in_session(None) as session:
            result = session.admin(action, symbol.upper(), account, units, cash)
        events = [trading.event_dict(e) for e in result.events]
        if as_json:
            print(json.dumps({"ok": True, "seq": result.seq, "events": events}))
            return 0
        print(f"{action} done (seq {result.seq})")
        for event in result.events[1:]:
            if type(event) is CashAdjusted:
                print(f"  {account} cash now {to_dollars(event.cash)} ({to_dollars(event.amount)})")
            else:
                print(f"  {trading.event_dict(event)}")
        return 0

    return trading.run_action(action_, as_json)


def password(as_json: bool) -> int:
    """Change the password: the old one as for any command, the new one from
    EXCHANGE_NEW_PASSWORD or a prompt."""

    def action() -> int:
        user, old = trading.credentials()
        new = os.environ.get("EXCHANGE_NEW_PASSWORD") or trading.ask_password("new password: ")
        with trading.connect() as client:
            client.login(user, old)
            result = client.change_password(old, new)
        if as_json:
            print(json.dumps({"ok": True, "seq": result.seq}))
        else:
            print("password changed; your other sessions are logged out")
        return 0

    return trading.run_action(action, as_json)


def register(sub) -> None:
    admin = sub.add_parser("admin", help="operator commands (journaled like orders)")
    actions = admin.add_subparsers(dest="action", required=True)
    for name, needs, text in (
        ("halt", ["symbol"], "halt trading in a symbol (cancels still work)"),
        ("resume", ["symbol"], "resume trading in a symbol"),
        ("reference", ["symbol", "price"], "set a symbol's reference price (dollars)"),
        ("kill", ["account"], "cancel every open order of an account and block it"),
        ("unkill", ["account"], "unblock an account"),
        (
            "deposit",
            ["account", "amount"],
            "move cash into an account (dollars; negative: a withdrawal)",
        ),
    ):
        p = actions.add_parser(name, help=text)
        for arg in needs:
            p.add_argument(arg)
        p.add_argument("--json", action="store_true", help="JSON on stdout")
        p.set_defaults(func=_run_admin)
    p = sub.add_parser("password", help="change your password (new one from a prompt)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=lambda a: password(a.json))


def _run_admin(args: argparse.Namespace) -> int:
    return _admin(
        args.action,
        getattr(args, "symbol", ""),
        getattr(args, "account", ""),
        getattr(args, "price", ""),
        getattr(args, "amount", ""),
        args.json,
    )
