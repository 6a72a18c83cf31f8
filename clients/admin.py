"""`exchange admin halt|resume|reference|kill|unkill|deposit|session|end-of-day` and
`exchange password`.

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
from services.common.wire import (
    AuctionDone,
    Cancelled,
    CancelReason,
    CashAdjusted,
    DayEnded,
    Executed,
    Fill,
    Session,
    SessionChanged,
)

# the session states by the names the command line takes (and prints)
STATE_NAMES = {
    "closed": Session.CLOSED,
    "pre-open": Session.PRE_OPEN,
    "continuous": Session.CONTINUOUS,
    "pre-close": Session.PRE_CLOSE,
}


def state_name(state: int) -> str:
    """A Session code as the command line writes it (``pre-open``)."""
    return next((name for name, code in STATE_NAMES.items() if code == state), str(state))


def session_state(text: str) -> int:
    """A state name for argparse (``pre-open``, ``pre_open``, ``PRE_OPEN`` alike)."""
    code = STATE_NAMES.get(text.strip().lower().replace("_", "-"))
    if code is None:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(STATE_NAMES)}")
    return int(code)


def _admin(
    action: str,
    symbol: str,
    account: str,
    price: str,
    amount: str,
    as_json: bool,
    state: int = 0,
) -> int:
    try:
        units = to_units(price) if price else 0
        cash = to_units(amount) if amount else 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return trading.EXIT_USAGE

    def action_() -> int:
        with trading.logged_in_session(None) as session:
            result = session.admin(action, symbol.upper(), account, units, cash, state)
        events = [trading.event_dict(e) for e in result.events]
        if as_json:
            print(json.dumps({"ok": True, "seq": result.seq, "events": events}))
            return 0
        print(f"{action} done (seq {result.seq})")
        for event in result.events[1:]:
            if type(event) is CashAdjusted:
                print(f"  {account} cash now {to_dollars(event.cash)} ({to_dollars(event.amount)})")
            elif type(event) is SessionChanged:
                print(f"  {event.symbol} {state_name(event.state)} ({event.trading_date})")
            elif type(event) is AuctionDone:
                heavy = {1: " (BUY side)", 2: " (SELL side)"}.get(event.imbalance_side, "")
                print(
                    f"  {event.kind} auction: {event.matched:,} at "
                    f"{to_dollars(event.price) if event.matched else '-'}, "
                    f"imbalance {event.imbalance:,}{heavy}"
                )
            elif type(event) is Fill:
                print(
                    f"  fill {event.qty:,} {event.symbol} @ {to_dollars(event.price)} "
                    f"(trade {event.trade_id}: account {event.taker_account} order "
                    f"{event.taker_order} with account {event.maker_account} order "
                    f"{event.maker_order})"
                )
            elif type(event) is Executed:
                continue  # the fills above say it
            elif type(event) is Cancelled:
                side = "BUY" if event.side == 1 else "SELL"
                why = CancelReason(event.reason).name.lower().replace("_", " ")
                print(
                    f"  cancelled order {event.order_id} (account {event.account}) {side} "
                    f"{event.qty} {event.symbol} @ {to_dollars(event.price)}: {why}"
                )
            elif type(event) is DayEnded:
                closes = ", ".join(
                    f"{c.symbol} {to_dollars(c.price) if c.price else 'none (never traded)'}"
                    for c in event.closes
                )
                print(f"  day {event.trading_date} ended; trading date now {event.next_date}")
                if closes:
                    print(f"  closes: {closes}")
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
    p = actions.add_parser(
        "session", help="move a symbol to a session state (an auction runs out of a call)"
    )
    p.add_argument("symbol")
    p.add_argument("state", type=session_state, help=", ".join(STATE_NAMES))
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=lambda a: _admin("session", a.symbol, "", "", "", a.json, a.state))
    p = actions.add_parser(
        "end-of-day",
        help="end the trading day now: DAY orders expire, the next trading date begins",
    )
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=lambda a: _admin("end_of_day", "", "", "", "", a.json))
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
