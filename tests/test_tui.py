"""`exchange tui`: the view-model on its own, then the real app (textual's pilot, 80x24)
against a real mesh: an order typed into the order entry, seen in the open orders and
the book; a fill from another client in the log, positions and tape; a one-key cancel."""

from __future__ import annotations

import asyncio
import time

import pytest

from clients.settings import SymbolSpec
from services.common.money import to_units
from services.common.wire import (
    Accepted,
    Cancelled,
    Executed,
    Fill,
    Report,
    Rested,
    Session,
    Side,
    Trade,
)
from tests.mesh import trader

textual = pytest.importorskip("textual")

from clients.tui.model import TuiModel, parse_ticket  # noqa: E402

SYMBOLS = {
    "AAPL": SymbolSpec("AAPL", 100, 1, 1_700_000, 1000),
    "PENNY": SymbolSpec("PENNY", 1, 100, 5_000, 2000),
    "TSLA": SymbolSpec("TSLA", 100, 1, 1_600_000, 1000),
}


def test_ticket_is_checked_like_the_gateway_checks_it():
    t = parse_ticket(SYMBOLS, "aapl", "b", "1,000", "170.5")
    assert (t.symbol, t.side, t.qty, t.price) == ("AAPL", Side.BUY, 1000, 1_705_000)
    for args, message in [
        (("XYZ", "buy", "1", "1"), "unknown symbol"),
        (("AAPL", "hold", "1", "1"), "buy or sell"),
        (("PENNY", "sell", "150", "0.5"), "multiple of 100"),
        (("AAPL", "sell", "10", "170.005"), "multiple of 0.01"),
        (("AAPL", "sell", "", "170"), "not a whole number"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_ticket(SYMBOLS, *args)


def test_model_follows_reports_and_marks_positions_to_market():
    m = TuiModel(SYMBOLS, "AAPL", account=1)
    m.on_report(
        Report(
            5,
            1,
            [
                Accepted(1, "c1", 7, "AAPL", Side.BUY, 1_700_000, 100),
                Rested(1, 7, "AAPL", Side.BUY, 1_700_000, 100),
            ],
        )
    )
    assert m.order_rows() == [(7, "AAPL", "BUY", "100", "170.00")]
    rows = m.book_rows([(1_700_000, 100)], [(1_701_000, 5)])
    assert rows[0] == ("100", "*170.00", "170.10", "5") and rows[9] == ("", "", "", "")
    # someone sells 40 into our bid: we are the maker
    fill = Fill(1, "AAPL", Side.SELL, 1_700_000, 40, 2, 8, 0, 1, 7, 60)
    m.on_report(Report(6, 1, [fill]))
    m.on_trade(Trade("AAPL", 1, 1, 1_700_000, 40, Side.SELL))
    assert m.order_rows() == [(7, "AAPL", "BUY", "60", "170.00")]
    assert m.view.positions == {"AAPL": 40} and m.view.cash == -40 * 1_700_000
    assert "FILL #7 BUY 40 AAPL @ 170.00" in m.log[-1]
    m.on_trade(Trade("AAPL", 2, 2, 1_701_000, 1, Side.BUY))  # the mark moves up 0.10
    assert m.position_rows()[-1] == ("P&L", "", "", "4.00")
    assert m.tape_rows("AAPL")[0].startswith("AAPL  buy        1 @ 170.10")
    m.on_report(Report(7, 1, [Cancelled(1, 7, "AAPL", Side.BUY, 1_700_000, 60, 1, True, "c2")]))
    assert m.order_rows() == [] and "cancelled #7 60 AAPL (user)" in m.log[-1]
    assert [r[0] for r in m.symbol_rows("a")] == ["AAPL", "TSLA"]
    m.on_report(
        Report(
            8,
            1,
            [
                Accepted(1, "c3", 9, "AAPL", Side.BUY, 1_720_000, 5),
                Fill(2, "AAPL", Side.BUY, 1_710_000, 5, 1, 9, 0, 3, 3, 0),
                Executed(1, 9, 5, 5 * 1_710_000, 1_710_000),
            ],
        )
    )
    assert m.order_rows() == []  # a taker that filled in full leaves nothing open
    # the recent trades from before the screen, merged by trade id without repeats
    m.load_tape(
        [Trade("TSLA", 1, 0, 1_600_000, 3, Side.BUY), Trade("AAPL", 1, 1, 1_700_000, 40, Side.SELL)]
    )
    assert [t.trade_id for t in m.tape] == [0, 1, 2] and m.last["TSLA"] == 1_600_000


async def _until(pilot, predicate, what: str, timeout: float = 5.0) -> float:
    """Let the app run until ``predicate()``; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.01)
    return time.monotonic() - start


async def _drive(mesh, client, other) -> dict:
    from textual.widgets import DataTable, Input, RichLog, Static

    from clients.tui.app import ExchangeApp
    from clients.tui.widgets import BookView, OrdersTable, TapeView

    app = ExchangeApp(mesh.cfg, client, "AAPL", credentials=("tina", "Secret.pw1"))
    timings = {}
    async with app.run_test(size=(80, 24)) as pilot:
        book = app.query_one(BookView)
        orders = app.query_one(OrdersTable)
        await _until(pilot, lambda: "seq" in getattr(book, "text", ""), "the book to sync")
        tape = app.query_one(TapeView)
        assert "5 @ 171.00" in tape.text  # a trade from before the screen started

        # type an order into the order entry: buy 100 AAPL @ 170.00
        app.query_one("#entry-qty", Input).focus()
        await pilot.press(*"100")
        app.query_one("#entry-price", Input).focus()
        await pilot.press(*"170.00", "enter")
        await _until(pilot, lambda: orders.row_count == 1, "the order in open orders")
        assert orders.get_row_at(0)[1:] == ["AAPL", "BUY", "100", "170.00"]
        await _until(pilot, lambda: "*170.00" in book.text, "our bid in the book")
        assert "100" in book.text.splitlines()[2]
        assert book.text.splitlines()[-1].startswith("continuous │ 2")  # the session line

        # another client sells 40 into it: log, positions, tape and book follow
        other.place("AAPL", Side.SELL, 40, to_units("170.00"))
        sent = time.monotonic()
        last = app.query_one("#last", Static)  # the latest notification, always on show
        await _until(pilot, lambda: "FILL" in str(last.content), "the fill notification")
        timings["fill_to_notice_s"] = time.monotonic() - sent
        await _until(pilot, lambda: orders.get_row_at(0)[3] == "60", "60 left open")
        positions = app.query_one("#positions-table", DataTable)
        await _until(pilot, lambda: positions.get_row_at(0)[:2] == ["AAPL", "+40"], "position")
        assert positions.get_row_at(positions.row_count - 1)[0] == "P&L"
        await _until(pilot, lambda: "40 @ 170.00" in tape.text, "the trade on the tape")
        await _until(pilot, lambda: " 60 " in book.text.splitlines()[2], "book shows 60")
        timings["fill_to_all_panels_s"] = time.monotonic() - sent

        # one key cancels the highlighted open order
        orders.focus()
        await pilot.press("c")
        await _until(pilot, lambda: orders.row_count == 0, "the order cancelled")
        await _until(pilot, lambda: "*170.00" not in book.text, "the bid gone from the book")
        # the notification log tab holds the whole story
        await pilot.press("f5")
        log = app.query_one("#log-view", RichLog)
        await _until(pilot, lambda: any("cancelled #" in s.text for s in log.lines), "the log")
        text = "\n".join(s.text for s in log.lines)
        for expected in ("sent BUY 100 AAPL @ 170.00", "accepted #", "FILL #", "cancel sent"):
            assert expected in text

        # the symbol look-up: filter, Enter shows that symbol's book
        await pilot.press("f6")
        await pilot.press(*"tsl", "enter")
        await _until(pilot, lambda: book.text.startswith("[b]TSLA"), "the TSLA book")
        assert app.query_one("#entry-symbol", Input).value == "TSLA"
        # AAPL's size and price are not left for one Enter to send at TSLA
        assert app.query_one("#entry-qty", Input).value == ""
        assert app.query_one("#entry-price", Input).value == ""
        app.exit()
    return timings


def test_the_session_line_shows_the_state_and_a_calls_indicative_auction():
    line = TuiModel.session_line(Session.PRE_OPEN, 20260309, (1_700_500, 300, 50, Side.BUY))
    assert line == "pre-open │ 20260309\nauction 170.05 x300 imb 50 B"
    assert TuiModel.session_line(Session.PRE_CLOSE, 1, (0, 0, 0, 0)).endswith("no cross")
    assert TuiModel.session_line(Session.CONTINUOUS, 20260309, (0, 0, 0, 0)) == (
        "continuous │ 20260309"
    )
    lines = [TuiModel.session_line(s, 20260309, (10**10, 10**5, 10**5, 2)) for s in Session]
    assert max(len(one) for line in lines for one in line.splitlines()) <= 42


def test_tui_against_a_real_mesh(mesh):
    client = trader(mesh, "tina")
    other = trader(mesh, "otto")
    early = trader(mesh, "eddy")
    other.place("AAPL", Side.SELL, 5, to_units("171.00"))
    early.place("AAPL", Side.BUY, 5, to_units("171.00"))
    early.close()
    try:
        timings = asyncio.run(asyncio.wait_for(_drive(mesh, client, other), 60))
    finally:
        client.close()
        other.close()
    # the app polls every 25 ms; on a busy 2-core machine allow for scheduling
    assert timings["fill_to_notice_s"] < 1.0, timings
