"""The terminal UI's panels: each shows rows the view-model worked out."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Static

from clients.tui.model import DEPTH


class BookView(Static):
    """Top 10 levels a side: bid size, bid | ask, ask size (our levels marked *)."""

    def show(self, symbol: str, rows, seq: int, synced: bool, session: str = "") -> None:
        # the L2 feed's own sequence (the top bar's is your account's last record)
        state = f"feed seq {seq}" if synced else "no feed"
        lines = [
            f"[b]{symbol}[/b] book ({state})",
            f"{'size':>9} {'bid':>10} │ {'ask':<10} {'size':<9}",
        ]
        for bid_qty, bid, ask, ask_qty in rows:
            lines.append(
                f"[green]{bid_qty:>9} {bid:>10}[/green] │ [red]{ask:<10} {ask_qty:<9}[/red]"
            )
        if session:  # the state, and in a call the indicative auction, under the levels
            lines.append(session)
        self.text = "\n".join(lines)
        self.update(self.text)


class TapeView(Static):
    """The latest trades of the symbol on show, newest first."""

    def show(self, symbol: str, rows: list[str], limit: int = 7) -> None:
        self.text = "\n".join([f"[b]trades[/b] {symbol}", *rows[:limit]])
        self.update(self.text)


class OrdersTable(DataTable):
    """Open orders; ``c`` (or Delete) cancels the highlighted one."""

    BINDINGS = [
        Binding("c", "cancel_order", "Cancel"),
        Binding("delete", "cancel_order", "Cancel", show=False),
    ]

    class CancelRequested(Message):
        def __init__(self, order_id: int) -> None:
            super().__init__()
            self.order_id = order_id

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("id", "sym", "side", "open", "price")

    def show(self, rows) -> None:
        row = self.cursor_row
        self.clear()
        for order_id, *cells in rows:
            self.add_row(str(order_id), *cells, key=str(order_id))
        if self.row_count:
            self.move_cursor(row=min(max(row, 0), self.row_count - 1))

    def action_cancel_order(self) -> None:
        if not self.row_count:
            return
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        self.post_message(self.CancelRequested(int(key.value)))


class PositionsTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_columns("symbol", "shares", "mark", "value")

    def show(self, rows) -> None:
        self.clear()
        for row in rows:
            self.add_row(*row)


class SymbolPicker(Vertical):
    """The configured symbols with a filter; Enter on one shows its book."""

    class Chosen(Message):
        def __init__(self, symbol: str) -> None:
            super().__init__()
            self.symbol = symbol

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter symbols", id="symbol-filter", compact=True)
        yield DataTable(id="symbol-table", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#symbol-table", DataTable).add_columns("symbol", "tick", "lot", "ref")

    def show(self, rows) -> None:
        table = self.query_one("#symbol-table", DataTable)
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[0])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.Chosen(str(event.row_key.value)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        table = self.query_one("#symbol-table", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.post_message(self.Chosen(str(key.value)))


class OrderEntry(Horizontal):
    """Symbol, side, size, price and Post (Enter in any field posts too)."""

    class Submitted(Message):
        def __init__(self, symbol: str, side: str, qty: str, price: str) -> None:
            super().__init__()
            self.symbol, self.side, self.qty, self.price = symbol, side, qty, price

    def __init__(self, symbol: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.symbol = symbol

    def compose(self) -> ComposeResult:
        yield Label("order ")
        yield Input(self.symbol, placeholder="symbol", id="entry-symbol", compact=True)
        yield Input("buy", placeholder="buy/sell", id="entry-side", compact=True)
        # the size box takes a whole line too (``buy 300 170.30``): F2 lands there
        yield Input(placeholder="size or: buy 300 170.30", id="entry-qty", compact=True)
        yield Input(placeholder="price", id="entry-price", compact=True)
        yield Button("Post", id="entry-post", compact=True, variant="primary")

    def fields(self) -> tuple[str, str, str, str]:
        value = lambda i: self.query_one(f"#entry-{i}", Input).value  # noqa: E731
        return value("symbol"), value("side"), value("qty"), value("price")

    def fill(self, symbol: str, side: str, qty: str, price: str) -> None:
        """Show these values in the four fields (a parsed line, a new symbol)."""
        for name, value in (("symbol", symbol), ("side", side), ("qty", qty), ("price", price)):
            self.query_one(f"#entry-{name}", Input).value = value

    def _submit(self) -> None:
        self.post_message(self.Submitted(*self.fields()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._submit()


__all__ = [
    "DEPTH",
    "BookView",
    "OrderEntry",
    "OrdersTable",
    "PositionsTable",
    "SymbolPicker",
    "TapeView",
]
