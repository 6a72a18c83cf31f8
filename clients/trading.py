"""`exchange account create | buy | sell | cancel | book | positions`: one-shot commands.

Credentials come from EXCHANGE_USER / EXCHANGE_PASSWORD or a prompt, never from the
command line. Exit codes: 0 done, 1 the exchange rejected it, 3 no answer.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clients import settings
from clients.accountview import average_prices
from clients.client import Client, ExchangeError, NoAnswer, recent_trades, snapshot
from services.common.money import to_dollars, to_units
from services.common.wire import FILLS_KEPT, CancelReason, OrdType, Reject, Session, Side, Tif

# the session states as the command line writes them
STATE_NAMES = {
    int(Session.CLOSED): "closed",
    int(Session.PRE_OPEN): "pre-open",
    int(Session.CONTINUOUS): "continuous",
    int(Session.PRE_CLOSE): "pre-close",
}


def state_name(state: int) -> str:
    return STATE_NAMES.get(state, str(state))


def tif_name(tif: int) -> str:
    """A time in force as the command line writes it (``on-close`` for CLOSE)."""
    return "on-close" if tif == Tif.CLOSE else Tif(tif).name.lower()


def indicative_dict(indicative) -> dict | None:
    """A snapshot's indicative auction (price, matched, imbalance, its side) for JSON;
    None when nothing would execute."""
    price, matched, imbalance, side = indicative
    if not price:
        return None
    return {
        "price": money(price),
        "matched": matched,
        "imbalance": imbalance,
        "imbalance_side": Side(side).name if side else "",
    }


def indicative_text(indicative) -> str:
    price, matched, imbalance, side = indicative
    if not price:
        return "no indicative price"
    heavier = f" ({Side(side).name} side)" if side and imbalance else ""
    return (
        f"indicative {to_dollars(price)}, {matched:,} would match, imbalance {imbalance:,}{heavier}"
    )


EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def not_running(endpoint: str, home: Path) -> str | None:
    """Why nothing can answer at ``endpoint`` when it is on this machine and nothing
    listens there (a refused connection, a missing ipc socket): said at once, instead
    of a wait for a timeout. None when it may be up (or is another machine's)."""
    scheme, _, where = endpoint.partition("://")
    host, _, port = where.rpartition(":")
    try:
        if scheme == "ipc":  # a socket file left by a killed process refuses too
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                probe.connect(where)
        elif scheme == "tcp" and host in LOOPBACK:
            socket.create_connection((host.strip("[]"), int(port)), timeout=0.5).close()
        down = False
    except (ConnectionRefusedError, FileNotFoundError):
        down = True
    except (OSError, ValueError):  # anything else: let the real request find out
        down = False
    if not down:
        return None
    return (
        f"the exchange is not running: nothing listens at {endpoint} "
        f"(EXCHANGE_HOME={home}); start it with `make run` or `exchange up`"
    )


def check_running(endpoint: str, cfg: settings.Settings | None = None) -> None:
    """NoAnswer at once when ``endpoint`` is local and nothing listens there."""
    why = not_running(endpoint, (cfg or _cfg()).home)
    if why:
        raise NoAnswer(why)


def _snapshot_endpoints() -> list[str]:
    """Every marketdata service's snapshot endpoint; a lone local one that is down is
    said at once."""
    endpoints = settings.marketdata(_cfg())[1]
    if len(endpoints) == 1:
        check_running(endpoints[0])
    return endpoints


def ask_password(prompt: str) -> str:
    """A password from the terminal without echo; without a terminal, the first line
    of stdin (no GetPassWarning noise), EOFError when there is none."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def money(units: int) -> str:
    """Price units as an exact decimal string of dollars, for JSON (never a float)."""
    return to_dollars(units)


def reject_detail(code: int, spec: settings.SymbolSpec | None, max_price: int) -> str:
    """The numbers behind a matcher's reject that the trader needs (the configured
    band of the symbol, its tick or lot), or "" when there are none to add."""
    if spec is None:
        return ""
    symbol = spec.symbol
    if code == Reject.PRICE_BAND:
        lo = max(1, -(-spec.reference * (10_000 - spec.band_bps) // 10_000))
        hi = min(max_price, spec.reference * (10_000 + spec.band_bps) // 10_000)
        return (
            f"{symbol} trades within {to_dollars(lo)} - {to_dollars(hi)} "
            f"(reference {to_dollars(spec.reference)} +- {spec.band_bps / 100:g}%, as "
            "configured; an operator's new reference moves it)"
        )
    if code == Reject.BAD_PRICE:
        return f"{symbol}'s tick is {to_dollars(spec.tick)}"
    if code == Reject.BAD_QTY:
        return f"{symbol}'s lot is {spec.lot:,} shares"
    return ""


def _cfg() -> settings.Settings:
    """What the client commands read of the exchange's configuration file."""
    return settings.load()


def connect(cfg: settings.Settings | None = None, timeout: float = 10.0) -> Client:
    """A client for the configured gateways (EXCHANGE_GATEWAYS, else the config's:
    it moves to the next when one goes silent), with CURVE keys when the config turns
    it on: the client's secret key file from EXCHANGE_CURVE_KEY, the server's public
    key from the key directory (``exchange keys`` makes both)."""
    cfg = cfg or _cfg()
    try:
        keys = settings.curve_keys(cfg)
    except LookupError as exc:
        raise NoAnswer(str(exc)) from None
    gateways = settings.gateways(cfg)
    if len(gateways) == 1:  # with several, the client itself moves past a dead one
        check_running(gateways[0], cfg)
    return Client(gateways, timeout=timeout, curve_keys=keys)


def credentials_file() -> Path:
    return Path(
        os.environ.get("EXCHANGE_CREDENTIALS")
        or Path.home() / ".config" / "exchange" / "credentials.toml"
    )


def _from_file() -> dict:
    """``user`` and ``password`` from the credentials file, if it exists and only its
    owner can read it (like ssh, a file others can read is refused, loudly)."""
    path = credentials_file()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & 0o077:
        print(f"ignoring {path}: readable by others (chmod 600 it)", file=sys.stderr)
        return {}
    with path.open("rb") as fh:
        found = tomllib.load(fh)
    return {k: str(found[k]) for k in ("user", "password") if k in found}


def credentials() -> tuple[str, str]:
    """From EXCHANGE_USER / EXCHANGE_PASSWORD, else the credentials file, else a prompt;
    never from the command line, where other users could read them."""
    stored = _from_file()
    user = os.environ.get("EXCHANGE_USER") or stored.get("user") or input("account: ").strip()
    password = (
        os.environ.get("EXCHANGE_PASSWORD") or stored.get("password") or ask_password("password: ")
    )
    return user, password


def event_dict(event) -> dict:
    """An event as a JSON-ready dict with its type name and named fields (a struct
    inside it, or a list of them such as a day's closes, as dicts too)."""
    tag = type(event).__struct_config__.tag
    out = {"type": tag} if tag is not None else {}
    for name in event.__struct_fields__:
        out[name] = _plain(getattr(event, name))
    return out


def _plain(value):
    if hasattr(value, "__struct_fields__"):
        return event_dict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def run_action(action, as_json: bool, symbol: str = "") -> int:
    """Run a command's ``action``: a reject is exit 1 with its text (and, for an
    order, the numbers behind it), no answer exit 3, no credentials exit 2."""
    try:
        return action()
    except ExchangeError as exc:
        detail = ""
        if exc.consumed and symbol:  # the matcher's: the gateway's name their own figures
            cfg = _cfg()
            detail = reject_detail(exc.code, cfg.symbols.get(symbol.upper()), cfg.risk.max_price)
        text = f"{exc.text}: {detail}" if detail else exc.text
        if as_json:
            print(
                json.dumps({"ok": False, "code": exc.code, "error": text, "consumed": exc.consumed})
            )
        else:
            print(f"rejected: {text} (code {exc.code})", file=sys.stderr)
        return EXIT_REJECTED
    except EOFError:
        print(
            "no credentials: set EXCHANGE_USER and EXCHANGE_PASSWORD, write a credentials "
            f"file ({credentials_file()}), or run in a terminal to be asked",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except NoAnswer as exc:
        if as_json:
            print(json.dumps({"ok": False, "code": 0, "error": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER


@contextmanager
def logged_in_session(client: Client | None) -> Iterator[Client]:
    """The caller's logged-in client (the `exchange trade` prompt keeps one), or a new
    one logged in with ``credentials()`` and closed afterwards (one-shot commands)."""
    if client is not None:
        yield client
        return
    with connect() as new:
        new.login(*credentials())
        yield new


def account_create(name: str, as_json: bool) -> int:
    def action() -> int:
        password = os.environ.get("EXCHANGE_PASSWORD") or ask_password("new password: ")
        with connect() as client:
            account = client.signup(name, password)
        print(
            json.dumps({"ok": True, "account": account, "name": name})
            if as_json
            else f"account {name} created (id {account})"
        )
        return 0

    return run_action(action, as_json)


def order(
    side: Side,
    symbol: str,
    size: int,
    price: str,
    as_json: bool,
    client: Client | None = None,
    tif: Tif = Tif.DAY,
    expire_date: int = 0,
) -> int:
    """A limit order at ``price`` (dollars), or a market order when ``price`` is empty;
    DAY unless ``tif`` says otherwise (GTD with ``expire_date``)."""

    def action() -> int:
        units = to_units(price) if price else 0
        kind = OrdType.LIMIT if price else OrdType.MARKET
        with logged_in_session(client) as session:
            result = session.place(
                symbol.upper(), side, size, units, kind, tif, expire_date=expire_date
            )
        events = [event_dict(e) for e in result.events]
        if as_json:
            print(
                json.dumps(
                    {
                        "ok": True,
                        "order_id": result.ack.order_id,
                        "seq": result.seq,
                        "events": events,
                    }
                )
            )
            return 0
        at = f"@ {price}" if price else "at market"
        until = f" until {expire_date}" if expire_date else ""
        print(
            f"accepted: order {result.ack.order_id} {side.name} {size} {symbol.upper()} "
            f"{at} {tif_name(tif)}{until} (seq {result.seq})"
        )
        for e in result.events[1:]:
            kind = type(e).__struct_config__.tag
            if kind == "fill":
                print(f"  fill {e.qty} @ {to_dollars(e.price)} (trade {e.trade_id})")
            elif kind == "executed":
                print(f"  done {e.cum_qty} at an average of {to_dollars(e.avg_px)}")
            elif kind == "rested":
                print(f"  resting {e.qty} @ {to_dollars(e.price)}")
            elif kind == "cancelled":
                print(f"  cancelled {e.qty} (reason {CancelReason(e.reason).name})")
        return 0

    return run_action(action, as_json, symbol)


def cancel(order_id: int, as_json: bool, client: Client | None = None) -> int:
    def action() -> int:
        with logged_in_session(client) as session:
            result = session.cancel(order_id)
        if as_json:
            print(
                json.dumps(
                    {
                        "ok": True,
                        "order_id": order_id,
                        "seq": result.seq,
                        "events": [event_dict(e) for e in result.events],
                    }
                )
            )
        else:
            print(f"cancelled order {order_id}: {result.ack.qty} open")
        return 0

    return run_action(action, as_json)


def marks(symbols, cfg: settings.Settings | None = None) -> dict[str, int]:
    """Each symbol's last trade (from marketdata's tape), else its reference price."""
    cfg = cfg or _cfg()
    out = {}
    for symbol in symbols:
        spec = cfg.symbols.get(symbol)
        out[symbol] = spec.reference if spec else 0
        try:
            tape = recent_trades(cfg.endpoints["marketdata_snapshot"], symbol, 1, 2.0)
        except (ExchangeError, NoAnswer):
            continue
        if tape.trades:
            out[symbol] = tape.trades[-1].price
    return out


def positions(as_json: bool, client: Client | None = None) -> int:
    def action() -> int:
        with logged_in_session(client) as session:
            pos = session.positions()
            mine = session.fills("", FILLS_KEPT).fills if pos.positions else []
        if as_json:
            out: dict = dict(sorted(pos.positions.items()))
            out["USD"] = money(pos.cash)
            print(json.dumps(out))
            return 0
        held = {s: q for s, q in pos.positions.items() if q}
        marked = marks(held)
        entries = average_prices(mine)
        print(f"{'symbol':<8} {'position':>10} {'avg price':>12} {'mark':>12} {'P&L':>14}")
        value = pos.cash
        for symbol, qty in sorted(held.items()):
            mark = marked[symbol]
            value += qty * mark
            found, avg = entries.get(symbol, (0, 0))
            if found == qty:  # the fills kept explain the whole position
                avg_text = to_dollars(round(avg))
                pnl_text = to_dollars(round(qty * (mark - avg)))
            else:
                avg_text = pnl_text = "?"
            print(f"{symbol:<8} {qty:>10,} {avg_text:>12} {to_dollars(mark):>12} {pnl_text:>14}")
        print(f"{'USD':<8} {to_dollars(pos.cash):>10}")
        print(f"{'value':<8} {to_dollars(value):>10}  (cash + positions at their marks)")
        return 0

    return run_action(action, as_json)


def book(symbol: str, as_json: bool, depth: int = 10) -> int:
    def action() -> int:
        endpoints = _snapshot_endpoints()
        snap = snapshot(endpoints, symbol.upper())
        bids = [[money(p), q] for p, q in snap.bids]
        asks = [[money(p), q] for p, q in snap.asks]
        if as_json:
            print(
                json.dumps(
                    {
                        "symbol": snap.symbol,
                        "seq": snap.seq,
                        "state": state_name(snap.state),
                        "trading_date": snap.trading_date,
                        "indicative": indicative_dict(snap.indicative),
                        "bids": bids,
                        "asks": asks,
                    }
                )
            )
            return 0
        print(f"{snap.symbol}  {state_name(snap.state)}  (trading date {snap.trading_date}, "
              f"feed seq {snap.seq})")  # fmt: skip
        if snap.state in (Session.PRE_OPEN, Session.PRE_CLOSE):
            print(f"call period: {indicative_text(snap.indicative)}")
        print(f"{'bid size':>10} {'bid':>10} | {'ask':<10} {'ask size':<10}")
        for i in range(max(min(len(snap.bids), depth), min(len(snap.asks), depth))):
            b = snap.bids[i] if i < len(snap.bids) else None
            a = snap.asks[i] if i < len(snap.asks) else None
            left = f"{b[1]:>10,} {to_dollars(b[0]):>10}" if b else " " * 21
            right = f"{to_dollars(a[0]):<10} {a[1]:<10,}" if a else ""
            print(f"{left} | {right}")
        return 0

    return run_action(action, as_json)


def sessions(as_json: bool) -> int:
    """Every configured symbol's session state, trading date and indicative auction."""

    def action() -> int:
        endpoints = _snapshot_endpoints()
        rows, snaps = [], []
        for symbol in sorted(_cfg().symbols):
            snap = snapshot(endpoints, symbol, depth=1)
            snaps.append(snap)
            rows.append(
                {
                    "symbol": symbol,
                    "state": state_name(snap.state),
                    "trading_date": snap.trading_date,
                    "indicative": indicative_dict(snap.indicative),
                }
            )
        if as_json:
            print(json.dumps({"symbols": rows}))
            return 0
        print(f"{'symbol':<8} {'state':<11} {'date':>8}  auction")
        for row, snap in zip(rows, snaps, strict=True):
            auction = ""
            if snap.state in (Session.PRE_OPEN, Session.PRE_CLOSE):
                auction = indicative_text(snap.indicative)
            print(f"{snap.symbol:<8} {row['state']:<11} {row['trading_date']:>8}  {auction}")
        return 0

    return run_action(action, as_json)


def orders(as_json: bool, client: Client | None = None) -> int:
    def action() -> int:
        with logged_in_session(client) as session:
            listed = session.orders()
        rows = [
            {
                "order_id": o.order_id,
                "symbol": o.symbol,
                "side": Side(o.side).name,
                "price": money(o.price),
                "qty": o.qty,
                "tif": tif_name(o.tif),
                "expire_date": o.expire_date,
            }
            for o in listed.orders
        ]
        if as_json:
            print(json.dumps({"seq": listed.seq, "orders": rows}))
            return 0
        print(f"{'order':>8} {'symbol':<7} {'side':<5} {'open':>9} {'price':>12}  tif")
        for o in listed.orders:
            side = Side(o.side).name
            tif = tif_name(o.tif) + (f" {o.expire_date}" if o.expire_date else "")
            print(
                f"{o.order_id:>8} {o.symbol:<7} {side:<5} {o.qty:>9,} "
                f"{to_dollars(o.price):>12}  {tif}"
            )
        if not listed.orders:
            print("no open orders")
        return 0

    return run_action(action, as_json)


def fills(symbol: str, limit: int, as_json: bool, client: Client | None = None) -> int:
    def action() -> int:
        with logged_in_session(client) as session:
            got = session.fills(symbol.upper(), limit)
        rows = [
            {
                "seq": f.seq,
                "trade_id": f.trade_id,
                "symbol": f.symbol,
                "side": Side(f.side).name,
                "price": money(f.price),
                "qty": f.qty,
                "order_id": f.order_id,
                "liquidity": "maker" if f.maker else "taker",
            }
            for f in got.fills
        ]
        if as_json:
            print(json.dumps({"seq": got.seq, "fills": rows}))
            return 0
        print(f"{'trade':>8} {'symbol':<7} {'side':<5} {'qty':>9} {'price':>12} {'order':>8}  liq")
        for r, f in zip(rows, got.fills, strict=True):
            print(
                f"{r['trade_id']:>8} {r['symbol']:<7} {r['side']:<5} {r['qty']:>9,} "
                f"{to_dollars(f.price):>12} {r['order_id']:>8}  {r['liquidity']}"
            )
        if not rows:
            print("no fills")
        return 0

    return run_action(action, as_json)


def trades(symbol: str, limit: int, as_json: bool) -> int:
    def action() -> int:
        tape = recent_trades(_snapshot_endpoints(), symbol.upper(), limit)
        rows = [
            {
                "seq": t.seq,
                "trade_id": t.trade_id,
                "price": money(t.price),
                "qty": t.qty,
                "aggressor": Side(t.side).name,
                "auction": t.auction,
            }
            for t in tape.trades
        ]
        if as_json:
            print(json.dumps({"symbol": tape.symbol, "seq": tape.seq, "trades": rows}))
            return 0
        print(f"{tape.symbol}  last {len(rows)} trades (feed seq {tape.seq}), oldest first")
        print(f"{'trade':>8} {'qty':>9} {'price':>12}  aggressor")
        for r, t in zip(rows, tape.trades, strict=True):
            mark = "  auction" if t.auction else ""
            price = to_dollars(t.price)
            print(f"{r['trade_id']:>8} {r['qty']:>9,} {price:>12}  {r['aggressor']}{mark}")
        return 0

    return run_action(action, as_json)
