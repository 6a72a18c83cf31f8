"""The market maker's loop: one logged-in client, one feed per symbol, quotes kept in
slots (one order per side and level) that are replaced in place, never piled up.

Everything it knows of its orders comes from its execution reports (an
``AccountView``): a slot holds an order id, and the order's price and size are the
view's. Requests are sent without waiting; their answers arrive as reports and clear
the slot's pending mark. A request not answered in ``resync_s`` (a lost session, a
gateway restart) makes the bot reload its orders and positions from the gateway and
start from there, and so does the client's move to another gateway (the reports sent
meanwhile went to the one it left). A matcher failover needs nothing: the gateway
resends what was in flight, the repeats are answered once, and a ``notice`` says so
(counted here).

The trading day: quotes are DAY limit orders (GTC with ``post_only``, which the
exchange takes only as GTC), so the day's end expires them and the next day's
pre-open gets a fresh ladder. In a call period (pre-open, pre-close) the ladder stays
as in continuous trading (limit orders rest; no IOC is ever sent), centred on the
auction's indicative price when there is one. A CLOSED symbol gets no new quotes nor
replaces (its resting ones wait for the day's end); a reject (MARKET_CLOSED,
TIF_NOT_NOW, any code) only backs the slot off for a moment.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field

import zmq

from clients.accountview import AccountView
from clients.client import Client, ExchangeError, NoAnswer, new_cl_ord_id, recent_trades
from clients.feed import BookSubscriber
from clients.mm.quotes import (
    BUY,
    SELL,
    Action,
    Draws,
    Key,
    Live,
    QuoteParams,
    band,
    fair_value,
    feed_agrees,
    ladder,
    plan,
)
from clients.settings import Settings, SymbolSpec, marketdata
from services.common.money import to_dollars
from services.common.wire import (
    Accepted,
    Cancelled,
    CancelRequest,
    Duplicate,
    Notice,
    PlaceOrder,
    Reject,
    Rejected,
    Replaced,
    ReplaceRequest,
    RequestRejected,
    Session,
    Side,
    Tif,
)


def reject_name(code: int) -> str:
    """A reject code's name, or its number for one this version does not know."""
    return Reject(code).name if code in Reject._value2member_map_ else str(code)


@dataclass(slots=True)
class Pending:
    symbol: str
    key: Key
    kind: str
    sent: float
    order_id: int = 0


@dataclass
class SymbolQuoter:
    spec: SymbolSpec
    feed: BookSubscriber
    reference: int
    slots: dict[Key, Live] = field(default_factory=dict)
    draws: Draws | None = None
    fair: int = 0
    fair_source: str = "reference"
    centre: int = 0
    last_trade: int = 0
    backoff: dict[Key, float] = field(default_factory=dict)


class MarketMaker:
    def __init__(
        self,
        cfg: Settings,
        client: Client,
        symbols: list[str],
        params: QuoteParams,
        *,
        fair: dict[str, int] | None = None,
        seed: int | None = None,
        refresh_s: float = 5.0,
        post_only: bool = False,
        interval_s: float = 0.05,
        resync_s: float = 3.0,
        ctx: zmq.Context | None = None,
        log=None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.params = params
        self.rng = random.Random(seed)
        self.refresh_s = refresh_s
        self.post_only = post_only
        self.interval_s = interval_s
        self.resync_s = resync_s
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.view = AccountView(client.account)
        self.pending: dict[str, Pending] = {}
        self.ctx = ctx or zmq.Context.instance()
        self.quoters: dict[str, SymbolQuoter] = {}
        # every marketdata service: a feed moves to the next when its one goes silent
        pubs, self.snapshots = marketdata(cfg)
        for symbol in symbols:
            spec = cfg.symbols[symbol]
            feed = BookSubscriber(
                self.ctx,
                pubs,
                self.snapshots,
                symbol,
                cfg.marketdata.depth,
                trades=True,
            )
            reference = (fair or {}).get(symbol, spec.reference)
            self.quoters[symbol] = SymbolQuoter(spec, feed, reference, fair=reference)
        self.counts = {"placed": 0, "replaced": 0, "cancelled": 0, "rejected": 0, "resyncs": 0}
        self.rejects: dict[str, int] = {}
        self.notices: list[str] = []
        self.failovers = 0
        self.peak_open = 0
        self.started = time.monotonic()
        self._refreshed: float | None = None
        self._pinged = time.monotonic()
        self.stopping = False
        self._moves = client.gateways.moves  # the client's moves to another gateway

    # -- start and resync -------------------------------------------------------

    def resync(self) -> None:
        """Reload orders and positions from the gateway; slots keep orders that still
        exist, and the rest of our orders on our symbols are adopted or cancelled."""
        self.counts["resyncs"] += 1
        self.client.drain_reports()  # older than what we are about to load
        try:
            positions, orders = self.client.positions(), self.client.orders()
        except ExchangeError as exc:
            if exc.code != Reject.NOT_LOGGED_IN:
                raise
            self.client.login(*self._credentials)
            positions, orders = self.client.positions(), self.client.orders()
        self.view.load(positions, orders)
        self.pending.clear()
        self._reconcile()

    def start(self, credentials: tuple[str, str]) -> None:
        self._credentials = credentials
        self.resync()
        self.counts["resyncs"] = 0
        for symbol, q in self.quoters.items():  # the last trade, if the symbol had one
            try:
                trades = recent_trades(self.snapshots, symbol, 1, 1.0, self.ctx).trades
            except NoAnswer:
                trades = []
            if trades:
                q.last_trade = trades[-1].price
        for q in self.quoters.values():
            q.feed.poll(200)

    # -- reports ----------------------------------------------------------------

    def _answer(self, event, now: float) -> None:
        """The answer to one of our requests: clear the slot's pending mark."""
        if isinstance(event, Duplicate):
            event = event.original
        pending = self.pending.pop(getattr(event, "cl_ord_id", ""), None)
        if pending is None or pending.key[1] < 0:  # unknown, or a stray's cancel
            return
        q = self.quoters[pending.symbol]
        slot = q.slots.setdefault(pending.key, Live())
        slot.pending = ""
        if isinstance(event, Accepted):
            slot.order_id = event.order_id
        elif isinstance(event, Rejected):
            self._count_reject(reject_name(event.code))
            q.backoff[pending.key] = now + 0.5
            if event.code == Reject.UNKNOWN_ORDER:
                slot.order_id = 0

    def _count_reject(self, name: str) -> None:
        self.counts["rejected"] += 1
        self.rejects[name] = self.rejects.get(name, 0) + 1

    def handle_reports(self, now: float) -> int:
        reports = self.client.drain_reports()
        for report in reports:
            self.view.apply_report(report)
            for event in report.events:
                if isinstance(event, Accepted | Rejected | Replaced | Cancelled | Duplicate):
                    self._answer(event, now)
        for reply in list(self.client.notices):
            if isinstance(reply, Notice):
                self.notices.append(reply.text)
                if "failover" in reply.text:
                    self.failovers += 1
                self.log(f"notice: {reply.text}")
            elif isinstance(reply, RequestRejected):
                pending = self.pending.pop(reply.ref, None)
                if pending is not None:
                    slot = self.quoters[pending.symbol].slots.get(pending.key)
                    if slot is not None:
                        slot.pending = ""
                    self.quoters[pending.symbol].backoff[pending.key] = now + 0.5
                self._count_reject(reject_name(reply.code))
                if reply.code == Reject.NOT_LOGGED_IN:
                    self.client.login(*self._credentials)
        self.client.notices.clear()
        if reports:
            self._reconcile()
        return len(reports)

    def _reconcile(self) -> None:
        """Slots follow the view: a slot whose order is gone empties; an order of ours
        on our symbols that no slot holds goes into a free slot, or is cancelled."""
        held: set[int] = set()
        for q in self.quoters.values():
            for slot in q.slots.values():
                if slot.order_id and slot.order_id not in self.view.orders:
                    slot.order_id = 0
                if slot.order_id:
                    held.add(slot.order_id)
        strays = sorted(
            (w for w in self.view.orders.values() if w.symbol in self.quoters),
            key=lambda w: w.price if w.side == SELL else -w.price,  # best first
        )
        for working in strays:
            if working.order_id in held:
                continue
            q = self.quoters[working.symbol]
            free = [
                (working.side, level)
                for level in range(self.params.levels)
                if working.side in self.params.sides
                and not q.slots.get((working.side, level), Live()).order_id
                and not q.slots.get((working.side, level), Live()).pending
            ]
            if free:
                q.slots.setdefault(free[0], Live()).order_id = working.order_id
                held.add(working.order_id)
            elif not any(p.order_id == working.order_id for p in self.pending.values()):
                self._send(q, Action("cancel", (working.side, -1), order_id=working.order_id))
        open_now = sum(1 for w in self.view.orders.values() if w.symbol in self.quoters)
        self.peak_open = max(self.peak_open, open_now)

    # -- quoting ----------------------------------------------------------------

    def _live(self, q: SymbolQuoter) -> dict[Key, Live]:
        live = {}
        for key, slot in q.slots.items():
            working = self.view.orders.get(slot.order_id) if slot.order_id else None
            if working is not None:
                live[key] = Live(slot.order_id, working.price, working.qty, slot.pending)
            elif slot.pending:
                live[key] = Live(0, 0, 0, slot.pending)
        return live

    def _own(self, symbol: str) -> dict[tuple[Side, int], int]:
        own: dict[tuple[Side, int], int] = {}
        for w in self.view.orders.values():
            if w.symbol == symbol:
                own[(w.side, w.price)] = own.get((w.side, w.price), 0) + w.qty
        return own

    def quote(self, now: float) -> int:
        """Work out every symbol's ladder and send what changes it; returns requests sent."""
        if self._refreshed is None or (self.refresh_s and now - self._refreshed >= self.refresh_s):
            self._refreshed = now
            for q in self.quoters.values():
                q.draws = Draws.draw(self.rng, self.params, q.spec.lot)
        sent = 0
        for symbol, q in self.quoters.items():
            for trade in q.feed.take_trades():
                q.last_trade = trade.price
            feed = q.feed
            if feed.state == Session.CLOSED:
                continue  # no new quotes; the resting ones expire at the day's end
            busy = any(p.symbol == symbol for p in self.pending.values())
            bids, asks = feed.bids(), feed.asks()
            own = self._own(symbol)
            if feed.in_call:
                # the book may cross until the uncross: the auction's price is the news
                if feed.indicative[0]:
                    q.fair, q.fair_source = feed.indicative[0], "indicative"
            # while our requests are in flight, or the feed and our reports disagree, a
            # level we are leaving would pass for someone else's: keep the fair value
            elif not busy and feed.synced and feed_agrees(bids, asks, own, feed.depth):
                q.fair, q.fair_source = fair_value(
                    bids, asks, own, q.last_trade, q.reference, q.spec.tick
                )
            position = self.view.positions.get(symbol, 0)
            q.centre, wanted = ladder(
                q.spec, self.params, q.fair, position, q.draws, q.spec.reference
            )
            for action in plan(wanted, self._live(q), self.params.refill):
                if q.backoff.get(action.key, 0) > now:
                    continue
                self._send(q, action)
                sent += 1
        return sent

    def _send(self, q: SymbolQuoter, action: Action) -> None:
        cl = new_cl_ord_id()
        symbol = q.spec.symbol
        side = action.key[0]
        if action.kind == "place":
            request = PlaceOrder(
                cl,
                symbol,
                side,
                action.qty,
                action.price,
                tif=Tif.GTC if self.post_only else Tif.DAY,
                post_only=self.post_only,
            )
            self.counts["placed"] += 1
        elif action.kind == "replace":
            request = ReplaceRequest(cl, action.order_id, action.price, action.qty)
            self.counts["replaced"] += 1
        else:
            request = CancelRequest(cl, action.order_id)
            self.counts["cancelled"] += 1
        self.client.send(request)
        if action.key[1] >= 0:
            q.slots.setdefault(action.key, Live()).pending = cl
        self.pending[cl] = Pending(
            symbol, action.key, action.kind, time.monotonic(), action.order_id
        )

    # -- the loop ---------------------------------------------------------------

    def step(self, timeout_s: float | None = None) -> None:
        """One turn: wait for a report or a feed message (up to ``interval_s``), take
        everything that arrived, then requote."""
        poller = zmq.Poller()
        poller.register(self.client.socket, zmq.POLLIN)
        for q in self.quoters.values():
            poller.register(q.feed.sub, zmq.POLLIN)
        poller.poll(int(1000 * (self.interval_s if timeout_s is None else timeout_s)))
        now = time.monotonic()
        for q in self.quoters.values():
            q.feed.poll(0)
        self.handle_reports(now)
        oldest = min((p.sent for p in self.pending.values()), default=now)
        moves = self.client.gateways.moves
        if moves != self._moves:  # reports sent meanwhile went to the gateway left
            self.log(f"now through {self.client.gateways.current}: reloading orders and positions")
        elif now - oldest > self.resync_s:
            self.log("requests unanswered: reloading orders and positions")
        if moves != self._moves or now - oldest > self.resync_s:
            try:
                self.resync()
                self._moves = moves
            except NoAnswer:
                self.log("gateway not answering; retrying")
                return
        if now - self._pinged > self.cfg.timings.client_heartbeat_ms / 2000:
            self._pinged = now
            self.client.ping()
        if not self.stopping:
            self.quote(now)

    def cancel_all(self, timeout_s: float = 5.0) -> bool:
        """Cancel every quote on our symbols; True once none is left."""
        self.stopping = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.handle_reports(time.monotonic())
            mine = [w for w in self.view.orders.values() if w.symbol in self.quoters]
            if not mine:
                return True
            cancelling = {p.key for p in self.pending.values() if p.kind == "cancel"}
            for q in self.quoters.values():
                for key, slot in q.slots.items():
                    if slot.order_id and not slot.pending and key not in cancelling:
                        self._send(q, Action("cancel", key, order_id=slot.order_id))
            self.step(0.05)
        return False

    def run(self, duration_s: float = 0.0, status_every_s: float = 1.0) -> None:
        end = time.monotonic() + duration_s if duration_s else float("inf")
        shown = time.monotonic()
        while not self.stopping and time.monotonic() < end:
            self.step()
            if status_every_s and time.monotonic() - shown >= status_every_s:
                shown = time.monotonic()
                self.log(self.status_line())
        if status_every_s:  # the last word, however short the run
            self.log(self.status_line())

    # -- status -----------------------------------------------------------------

    def marks(self) -> dict[str, int]:
        return {s: q.fair for s, q in self.quoters.items()}

    def status(self) -> dict:
        symbols = {}
        for symbol, q in self.quoters.items():
            live = self._live(q)
            symbols[symbol] = {
                "fair": to_dollars(q.fair),
                "fair_source": q.fair_source,
                "centre": to_dollars(q.centre),
                "position": self.view.positions.get(symbol, 0),
                "bids": sum(1 for (side, _), s in live.items() if side == BUY and s.order_id),
                "asks": sum(1 for (side, _), s in live.items() if side == SELL and s.order_id),
                "band": [to_dollars(p) for p in band(q.spec, q.spec.reference)],
                "session": Session(q.feed.state).name.lower(),
            }
        return {
            "account": self.view.account,
            "seconds": round(time.monotonic() - self.started, 3),
            "symbols": symbols,
            "open_orders": sum(1 for w in self.view.orders.values() if w.symbol in self.quoters),
            "peak_open_orders": self.peak_open,
            **self.counts,
            "fills": self.view.fills,
            "rejects": dict(self.rejects),
            "notices": len(self.notices),
            "failovers": self.failovers,
            "cash": to_dollars(self.view.cash),
            "pnl": to_dollars(self.view.pnl(self.marks())),
        }

    def status_line(self) -> str:
        s = self.status()
        parts = [
            f"{sym} fair {v['fair']} ({v['fair_source']}) "
            f"pos {v['position']:+d} {v['bids']}x{v['asks']}"
            for sym, v in s["symbols"].items()
        ]
        return (
            "mm | " + " | ".join(parts) + f" | open {s['open_orders']} placed {s['placed']} "
            f"replaced {s['replaced']} cancelled {s['cancelled']} fills {s['fills']} "
            f"rejects {s['rejected']} failovers {s['failovers']} pnl {s['pnl']}"
        )


# -- the command ------------------------------------------------------------------


def _parse_fair(text: str | None, symbols: list[str]) -> dict[str, int]:
    from services.common.money import to_units

    if not text:
        return {}
    if "=" not in text:
        return {s: to_units(text) for s in symbols}
    out = {}
    for part in text.split(","):
        sym, _, price = part.partition("=")
        out[sym.strip().upper()] = to_units(price.strip())
    return out


def main(args) -> int:
    """`exchange mm`: see docs/cli.md."""
    import getpass
    import os

    from clients.trading import EXIT_NO_ANSWER, EXIT_REJECTED, _cfg, connect, credentials
    from services.common.money import to_units

    cfg = _cfg()
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    unknown = [s for s in symbols if s not in cfg.symbols]
    if unknown:
        print(f"unknown symbol(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    sides = {"both": (BUY, SELL), "buy": (BUY,), "sell": (SELL,)}[args.side]
    levels = args.levels
    if levels * len(sides) * len(symbols) > cfg.risk.max_open_orders:
        levels = max(1, cfg.risk.max_open_orders // (len(sides) * len(symbols)))
        print(f"levels cut to {levels}: [risk] max_open_orders", file=sys.stderr)
    params = QuoteParams(
        levels=levels,
        step=to_units(args.fade),
        noise_ticks=args.noise,
        size=args.size,
        skew=to_units(args.skew),
        max_position=min(args.max_position or cfg.risk.max_position, cfg.risk.max_position),
        max_order_qty=cfg.risk.max_order_qty,
        sides=sides,
    )
    if args.account:  # the password still comes from the environment or a prompt
        name = args.account
        password = os.environ.get("EXCHANGE_PASSWORD") or getpass.getpass("password: ")
    else:
        name, password = credentials()
    client = connect(cfg, timeout=5.0)
    try:
        client.open_account(name, password, create=args.create_account)
        bot = MarketMaker(
            cfg,
            client,
            symbols,
            params,
            fair=_parse_fair(args.fair, symbols),
            seed=args.seed,
            refresh_s=args.refresh,
            post_only=args.post_only,
        )

        def stop(signum, frame) -> None:
            bot.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        bot.start((name, password))
        bot.log(f"mm {name}: quoting {', '.join(symbols)} (Ctrl-C stops and cancels)")
        bot.run(args.duration, args.status_every)
        clean = True if args.keep_quotes else bot.cancel_all()
        result = bot.status() | {"ok": True, "cancelled_on_exit": clean}
        print(json.dumps(result) if args.json else bot.status_line())
        return 0
    except ExchangeError as exc:
        if args.json:
            print(json.dumps({"ok": False, "code": exc.code, "error": exc.text}))
        else:
            print(f"rejected: {exc.text} (code {exc.code})", file=sys.stderr)
        return EXIT_REJECTED
    except NoAnswer as exc:
        if args.json:
            print(json.dumps({"ok": False, "code": 0, "error": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    finally:
        client.close()


def register(sub) -> None:
    """Add `exchange mm` to the CLI's subcommands."""
    p = sub.add_parser(
        "mm",
        help="market maker: 10 levels a side around fair value, skewed by inventory",
        description="Quote a ladder on each symbol around fair value (the reference price, "
        "then the feed's mid or last trade), replacing quotes in place. Credentials from "
        "EXCHANGE_USER / EXCHANGE_PASSWORD or a prompt.",
    )
    p.add_argument("--symbols", default="AAPL", help="comma-separated, e.g. AAPL,TSLA")
    p.add_argument("--account", help="account name (default EXCHANGE_USER or a prompt)")
    p.add_argument("--create-account", action="store_true", help="sign up first if missing")
    p.add_argument(
        "--fair",
        help="starting fair value in dollars, or SYM=PRICE,... "
        "(default: the config's reference price)",
    )
    p.add_argument("--size", type=int, default=100, help="base order size (shares)")
    p.add_argument("--levels", type=int, default=10, help="levels a side")
    p.add_argument("--fade", default="0.05", help="dollars between levels (0.05: 0.05..0.50)")
    p.add_argument("--noise", type=int, default=2, help="up to N ticks of noise per level")
    p.add_argument("--skew", default="0.0001", help="dollars the quotes move per share held")
    p.add_argument(
        "--max-position",
        type=int,
        default=0,
        help="shares a side, open orders included (default: [risk] max_position)",
    )
    p.add_argument("--side", choices=("both", "buy", "sell"), default="both")
    p.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        help="seconds between redraws of noise and sizes (0: never)",
    )
    p.add_argument("--post-only", action="store_true", help="quotes never take liquidity")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: never)")
    p.add_argument("--status-every", type=float, default=1.0, help="status line period (s)")
    p.add_argument("--keep-quotes", action="store_true", help="leave the quotes on exit")
    p.add_argument("--seed", type=int, help="random seed for noise and sizes")
    p.add_argument("--json", action="store_true", help="status as one JSON object on exit")
    p.set_defaults(func=main)
