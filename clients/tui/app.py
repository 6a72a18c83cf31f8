"""`exchange tui`: the application. A timer polls the sockets every 25 ms without
blocking (execution reports, notices, the selected symbol's book, every symbol's
trades), hands what arrived to the view-model and redraws only the panels whose data
changed, so a committed event shows within one or two polls.

Layout for 80x24 and up: a status bar; the book (10 levels a side) over the trades
tape on the left; tabs on the right (open orders, positions, notification log, symbol
look-up); the order entry line; the latest notification; the keys.
"""

from __future__ import annotations

import time

import msgspec
import zmq
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, RichLog, Static, TabbedContent, TabPane

from clients.client import Client, ExchangeError, NoAnswer, new_cl_ord_id, recent_trades
from clients.feed import BookSubscriber
from clients.settings import Settings, marketdata
from clients.tui.model import TuiModel, is_line, parse_line, parse_ticket
from clients.tui.widgets import (
    BookView,
    OrderEntry,
    OrdersTable,
    PositionsTable,
    SymbolPicker,
    TapeView,
)
from services.common.money import to_dollars
from services.common.wire import (
    CancelRequest,
    PlaceOrder,
    Reject,
    RequestRejected,
    Tif,
    Trade,
)

POLL_S = 0.025
TRADE_DECODER = msgspec.msgpack.Decoder(Trade)


class ExchangeApp(App):
    TITLE = "exchange"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    #top { height: 1; background: $primary-background; padding: 0 1; }
    #main { height: 1fr; }
    #left { width: 42; }
    #book { height: 14; }
    #tape { height: 1fr; border-top: solid $primary-darken-2; }
    #tabs { width: 1fr; }
    #entry { height: 1; padding: 0 1; }
    #entry Label { width: 6; }
    #entry-symbol { width: 8; }
    #entry-side { width: 6; }
    #entry-qty { width: 24; }
    #entry-price { width: 11; }
    #entry Input { margin: 0 1 0 0; }
    #last { height: 1; padding: 0 1; color: $text-muted; }
    TabPane { padding: 0; }
    """
    BINDINGS = [
        Binding("f2", "focus_entry", "Order"),
        Binding("f3", "tab('orders')", "Orders"),
        Binding("f4", "tab('positions')", "Pos"),
        Binding("f5", "tab('log')", "Log"),
        Binding("f6", "tab('symbols')", "Symbols"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(
        self,
        cfg: Settings,
        client: Client,
        symbol: str = "AAPL",
        *,
        credentials: tuple[str, str] | None = None,
        ctx: zmq.Context | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.client = client
        self.credentials = credentials
        self.ctx = ctx or zmq.Context.instance()
        self.model = TuiModel(cfg.symbols, symbol.upper(), client.account, cfg.risk.max_price)
        self.book: BookSubscriber | None = None
        self.trades = self.ctx.socket(zmq.SUB)
        self.trades.setsockopt(zmq.LINGER, 0)
        self.trades.setsockopt(zmq.SUBSCRIBE, b"T.")  # every symbol's trades: tape, marks
        self.pubs, self.snapshots = marketdata(cfg)  # several: the tape follows the book
        self.trades_pub = self.pubs[0]
        self.trades.connect(self.trades_pub)
        self._pinged = time.monotonic()
        self._moves = client.gateways.moves  # the client's moves to another gateway
        self._dirty: set[str] = {"book", "tape", "orders", "positions", "top", "symbols"}
        self.last_update = 0.0  # monotonic time the panels last changed

    # -- layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="top")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield BookView(id="book")
                yield TapeView(id="tape")
            with TabbedContent(id="tabs", initial="orders"):
                with TabPane("Orders", id="orders"):
                    yield OrdersTable(id="orders-table")
                with TabPane("Positions", id="positions"):
                    yield PositionsTable(id="positions-table")
                with TabPane("Log", id="log"):
                    yield RichLog(id="log-view", max_lines=1000, wrap=True, min_width=20)
                with TabPane("Symbols", id="symbols"):
                    yield SymbolPicker(id="picker")
        yield OrderEntry(self.model.selected, id="entry")
        yield Static(id="last")
        yield Footer()

    def on_mount(self) -> None:
        self._load()
        self._subscribe(self.model.selected)
        self._poll()
        self.set_interval(POLL_S, self._poll)
        self.query_one("#entry-qty", Input).focus()

    def on_unmount(self) -> None:
        if self.book is not None:
            self.book.close()
        self.trades.close(0)

    # -- the exchange -------------------------------------------------------------

    def _load(self) -> None:
        try:
            self.model.view.load(self.client.positions(), self.client.orders())
        except (ExchangeError, NoAnswer) as exc:
            self.model.note(f"could not load orders and positions: {exc}")
        # every holding is marked at its last trade, not only the symbol on show's
        for symbol in self.model.view.positions:
            if symbol in self.model.last:
                continue
            try:
                recent = recent_trades(self.cfg.endpoints["marketdata_snapshot"], symbol, 1, 0.5)
            except (ExchangeError, NoAnswer):
                continue
            self.model.load_tape(recent.trades)
        self._dirty |= {"orders", "positions"}

    def _subscribe(self, symbol: str) -> None:
        if self.book is not None:
            self.book.close()
        self.book = BookSubscriber(self.ctx, self.pubs, self.snapshots, symbol, timeout_ms=300)
        try:
            recent = recent_trades(self.snapshots, symbol, 50, 0.5)
            self.model.load_tape(recent.trades)
        except NoAnswer:
            self.model.note("no recent trades from marketdata")
        self._dirty |= {"book", "tape", "top", "positions"}

    def _poll(self) -> None:
        """Take everything that arrived, without waiting, and redraw what changed."""
        model = self.model
        for report in self.client.drain_reports():
            model.on_report(report)
            self._dirty |= {"orders", "positions", "top"}
        if self.client.gateways.moves != self._moves:  # reports meanwhile went elsewhere
            self._moves = self.client.gateways.moves
            model.note(f"now through {self.client.gateways.current}")
            self._load()
        for reply in list(self.client.notices):
            model.on_reply(reply)
            if isinstance(reply, RequestRejected) and reply.code == Reject.NOT_LOGGED_IN:
                self._relogin()
        self.client.notices.clear()
        if self.book is not None and (self.book.poll(0) or not self._drawn_book):
            model.on_book(self.book.symbol, self.book.bids(), self.book.asks())
            self._dirty.add("book")
        if self.book is not None and self.book.markets.current[0] != self.trades_pub:
            self.trades.disconnect(self.trades_pub)  # the tape follows the book's service
            self.trades_pub = self.book.markets.current[0]
            self.trades.connect(self.trades_pub)
        while True:
            try:
                _, payload = self.trades.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except ValueError:
                continue
            try:
                model.on_trade(TRADE_DECODER.decode(payload))
            except msgspec.DecodeError:
                continue
            self._dirty |= {"tape", "positions", "top"}
        now = time.monotonic()
        if now - self._pinged > self.cfg.timings.client_heartbeat_ms / 2000:
            self._pinged = now
            self.client.ping()
        self._write_log()
        self._redraw()

    _drawn_book = False
    _drawn_log = 0

    def _relogin(self) -> None:
        if self.credentials is None:
            return
        try:
            self.client.login(*self.credentials)
            self.model.note("session lost: logged in again")
            self._load()
        except (ExchangeError, NoAnswer) as exc:
            self.model.note(f"log in again failed: {exc}")

    def _write_log(self) -> None:
        """Append the lines noted since the last call to the log panel."""
        fresh = min(self.model.logged - self._drawn_log, len(self.model.log))
        self._drawn_log = self.model.logged
        if fresh <= 0:
            return
        view = self.query_one("#log-view", RichLog)
        lines = list(self.model.log)
        for line in lines[-fresh:]:
            view.write(line)
        self.query_one("#last", Static).update(lines[-1])
        self.last_update = time.monotonic()

    def _redraw(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return
        model = self.model
        symbol = model.selected
        if "book" in dirty and self.book is not None:
            book = self.book
            rows = model.book_rows(book.bids(), book.asks())
            session = model.session_line(book.state, book.trading_date, book.indicative)
            self.query_one(BookView).show(symbol, rows, book.seq, book.synced, session)
            self._drawn_book = self.book.synced
        if "tape" in dirty:
            self.query_one(TapeView).show(symbol, model.tape_rows(symbol))
        if "orders" in dirty:
            self.query_one(OrdersTable).show(model.order_rows())
        if "positions" in dirty:
            self.query_one(PositionsTable).show(model.position_rows())
        if "symbols" in dirty:
            self.query_one(SymbolPicker).show(model.symbol_rows())
        if "top" in dirty:
            account = self.credentials[0] if self.credentials else f"#{model.view.account}"
            seq = max(model.seq, model.view.seq)  # your account's last record
            self.query_one("#top", Static).update(
                f"[b]exchange[/b] {account} │ {symbol} │ acct seq {seq} │ "
                f"open {len(model.order_rows())} │ P&L {to_dollars(model.pnl())}"
            )
        self.last_update = time.monotonic()

    # -- actions ------------------------------------------------------------------

    def on_order_entry_submitted(self, event: OrderEntry.Submitted) -> None:
        fields = (event.symbol, event.side, event.qty, event.price)
        try:
            line = next((f for f in fields[1:] if is_line(f) and " " in f.strip()), None)
            if line is not None:  # a whole order line typed into one box
                fields = parse_line(line, self.cfg.symbols, event.symbol, "buy")
                self.query_one(OrderEntry).fill(*fields)
            ticket = parse_ticket(self.cfg.symbols, *fields)
        except ValueError as exc:
            self.model.note(f"not sent: {exc}")
            return
        cl_ord_id = new_cl_ord_id()
        self.model.sent_order(cl_ord_id, ticket.symbol)
        self.client.send(  # a DAY order, as the command line's
            PlaceOrder(cl_ord_id, ticket.symbol, ticket.side, ticket.qty, ticket.price, tif=Tif.DAY)
        )
        self.model.note(
            f"sent {ticket.side.name} {ticket.qty:,} {ticket.symbol} @ {to_dollars(ticket.price)}"
        )
        if ticket.symbol != self.model.selected:
            self.select(ticket.symbol)

    def on_orders_table_cancel_requested(self, event: OrdersTable.CancelRequested) -> None:
        self.client.send(CancelRequest(new_cl_ord_id(), event.order_id))
        self.model.note(f"cancel sent for #{event.order_id}")

    def on_symbol_picker_chosen(self, event: SymbolPicker.Chosen) -> None:
        self.select(event.symbol)
        self.query_one("#entry-symbol", Input).value = event.symbol
        self.action_focus_entry()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "symbol-filter":
            self.model.filter = event.value
            self._dirty.add("symbols")

    def select(self, symbol: str) -> None:
        if symbol in self.cfg.symbols and symbol != self.model.selected:
            self.model.selected = symbol
            self._drawn_book = False
            self._subscribe(symbol)
            # the last symbol's size and price must not go out at this one's by one Enter
            entry = self.query_one(OrderEntry)
            _, side, _, _ = entry.fields()
            entry.fill(symbol, side, "", "")

    def action_focus_entry(self) -> None:
        self.query_one("#entry-qty", Input).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = {
            "orders": "#orders-table",
            "positions": "#positions-table",
            "log": "#log-view",
            "symbols": "#symbol-filter",
        }[tab]
        self.query_one(target).focus()


def main(args) -> int:
    """`exchange tui`: log in (credentials before the screen starts), then run."""
    from clients.trading import EXIT_NO_ANSWER, EXIT_REJECTED, _cfg, connect, credentials

    cfg = _cfg()
    name, password = credentials()
    client = connect(cfg, timeout=5.0)
    try:
        client.open_account(name, password, create=args.create_account)
        ExchangeApp(cfg, client, args.symbol, credentials=(name, password)).run()
        return 0
    except ExchangeError as exc:
        print(f"rejected: {exc.text} (code {exc.code})")
        return EXIT_REJECTED
    except NoAnswer as exc:
        print(f"error: {exc}")
        return EXIT_NO_ANSWER
    finally:
        client.close()
