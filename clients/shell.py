"""`exchange trade`: an interactive prompt for a trader, logged in once.

The one-shot commands' words (buy, sell, cancel, orders, positions, fills, book,
trades) plus replace, with line editing, a history kept between sessions
($EXCHANGE_HOME/trade_history) and tab completion of commands and symbols. Execution
reports that arrive between commands (fills of resting orders, failover notices) are
printed before the next prompt, so nothing the exchange says is missed.
"""

from __future__ import annotations

import cmd
import contextlib
import shlex
import sys
from pathlib import Path

from clients import trading
from clients.client import Client
from services.common.money import to_dollars, to_units
from services.common.wire import Fill, Notice, Side

HISTORY_LINES = 1_000


def describe(report) -> list[str]:
    """One line per event of an unsolicited report that a trader cares about."""
    lines = []
    for event in report.events:
        if type(event) is Fill:
            lines.append(
                f"fill: trade {event.trade_id} {event.symbol} {event.qty} @ "
                f"{to_dollars(event.price)}"
            )
        else:
            lines.append(f"{type(event).__struct_config__.tag}: {trading.event_dict(event)}")
    return lines


class TradeShell(cmd.Cmd):
    intro = "exchange trade: type help, or a command such as  buy AAPL 100 170.50"
    prompt = "exchange> "

    def __init__(self, client: Client, symbols: list[str], stdin=None, stdout=None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.client = client
        self.symbols = symbols

    # -- the loop -----------------------------------------------------------

    def preloop(self) -> None:
        self._news()

    def postcmd(self, stop: bool, line: str) -> bool:
        self._news()
        return stop

    def emptyline(self) -> bool:
        return False  # an empty line does nothing (cmd would repeat the last command)

    def default(self, line: str) -> bool:
        if line == "EOF":  # end of input (Ctrl-D, or the end of a piped script)
            print()
            return True
        print(f"unknown command: {line.split()[0]} (try help)")
        return False

    def onecmd(self, line: str) -> bool:
        """Any command, whatever is typed: an error is one line, never the end of the
        prompt (the session and its open orders stay)."""
        try:
            return super().onecmd(line)
        except Exception as exc:  # noqa: BLE001 - the prompt outlives any one command
            print(f"error: {exc}")
            return False

    def get_names(self) -> list[str]:
        return [n for n in super().get_names() if n != "do_EOF"]

    def _news(self) -> None:
        """Reports and notices that arrived since the last command."""
        for report in self.client.drain_reports():
            for text in describe(report):
                print(f"  * {text}")
        while self.client.notices:
            notice = self.client.notices.popleft()
            if isinstance(notice, Notice):
                print(f"  * notice: {notice.text}")
            else:
                print(f"  * rejected: {notice.text} (code {notice.code})")

    def _args(self, line: str, count: int, usage: str) -> list[str] | None:
        try:
            args = shlex.split(line)
        except ValueError as exc:
            print(f"error: {exc}")
            return None
        if len(args) != count:
            print(f"usage: {usage}")
            return None
        return args

    # -- completion ---------------------------------------------------------

    def _complete_symbol(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        if len(line[:begidx].split()) == 1:  # the first argument is the symbol
            return [s for s in self.symbols if s.startswith(text.upper())]
        return []

    complete_buy = complete_sell = complete_book = complete_trades = complete_fills = (
        _complete_symbol
    )

    # -- commands -----------------------------------------------------------

    def _order(self, side: Side, line: str) -> None:
        usage = f"{side.name.lower()} SYMBOL SIZE PRICE   (PRICE in dollars, e.g. 170.50)"
        args = self._args(line, 3, usage)
        if args is None:
            return
        symbol, size, price = args
        qty, units = _size(size), _price(price)
        if qty is None or units is None:
            print(f"usage: {usage}")
            return
        trading.order(side, symbol, qty, price.lstrip("$"), as_json=False, client=self.client)

    def do_buy(self, line: str) -> None:
        """buy SYMBOL SIZE PRICE: a limit order (good till cancelled)."""
        self._order(Side.BUY, line)

    def do_sell(self, line: str) -> None:
        """sell SYMBOL SIZE PRICE: a limit order (good till cancelled)."""
        self._order(Side.SELL, line)

    def do_cancel(self, line: str) -> None:
        """cancel ORDER_ID: cancel one of your open orders."""
        args = self._args(line, 1, "cancel ORDER_ID")
        if args is None:
            return
        if not args[0].isdigit():
            print("usage: cancel ORDER_ID   (the number `orders` shows)")
            return
        trading.cancel(int(args[0]), as_json=False, client=self.client)

    def do_replace(self, line: str) -> None:
        """replace ORDER_ID SIZE PRICE: new size and price (as buy and sell take them);
        a smaller size at the same price keeps your place in the queue."""
        usage = "replace ORDER_ID SIZE PRICE   (PRICE in dollars, e.g. 170.50)"
        args = self._args(line, 3, usage)
        if args is None:
            return
        qty, units = _size(args[1]), _price(args[2])
        if not args[0].isdigit() or qty is None or units is None:
            print(f"usage: {usage}")
            return

        def action() -> int:
            result = self.client.replace(int(args[0]), units, qty)
            ack = result.ack
            kept = "kept its priority" if getattr(ack, "kept_priority", False) else "requeued"
            print(f"replaced order {args[0]}: {qty:,} @ {to_dollars(units)} ({kept})")
            return 0

        trading.run_action(action, as_json=False)

    def do_orders(self, line: str) -> None:
        """orders: your open orders."""
        trading.orders(as_json=False, client=self.client)

    def do_positions(self, line: str) -> None:
        """positions: your shares per symbol and your cash."""
        trading.positions(as_json=False, client=self.client)

    def do_fills(self, line: str) -> None:
        """fills [SYMBOL]: your own most recent fills."""
        trading.fills(line.strip(), 20, as_json=False, client=self.client)

    def do_book(self, line: str) -> None:
        """book SYMBOL: the order book, 10 levels a side."""
        args = self._args(line, 1, "book SYMBOL")
        if args:
            trading.book(args[0], as_json=False)

    def do_trades(self, line: str) -> None:
        """trades SYMBOL: the symbol's most recent public trades."""
        args = self._args(line, 1, "trades SYMBOL")
        if args:
            trading.trades(args[0], 20, as_json=False)

    def do_symbols(self, line: str) -> None:
        """symbols: what trades here."""
        print(" ".join(self.symbols))

    def do_quit(self, line: str) -> bool:
        """quit: leave (your open orders stay in the book)."""
        return True

    do_exit = do_quit


def _size(text: str) -> int | None:
    cleaned = text.replace(",", "").replace("_", "")
    return int(cleaned) if cleaned.isdigit() else None


def _price(text: str) -> int | None:
    try:
        return to_units(text.lstrip("$"))
    except ValueError:
        return None


def _readline(history: Path):
    """Line editing and history when there is a terminal; None when there is not."""
    if not sys.stdin.isatty():
        return None
    try:
        import readline
    except ImportError:  # pragma: no cover - no readline on this platform
        return None
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(history)
    readline.set_history_length(HISTORY_LINES)
    return readline


def main() -> int:
    cfg = trading._cfg()
    client = trading.connect(cfg)

    def login() -> int:
        client.login(*trading.credentials())
        return 0

    code = trading.run_action(login, as_json=False)
    if code:
        client.close()
        return code
    history = cfg.home / "trade_history"
    readline = _readline(history)
    try:
        TradeShell(client, sorted(cfg.symbols)).cmdloop()
    except KeyboardInterrupt:
        print()
    finally:
        if readline is not None:
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)
        client.close()
    return 0
