"""`exchange trade`: the interactive prompt, fed a session on stdin as a trader types it."""

from __future__ import annotations

from clients.client import Client
from services.common.money import to_dollars, to_units
from tests.mesh import exchange_cli

PASSWORD = "Secret.pw1"


def test_trade_prompt_session(mesh, short_home):
    with Client(mesh.cfg.endpoints["gateway"]) as client:
        client.signup("carol", PASSWORD)
    with Client(mesh.cfg.endpoints["gateway"]) as dave:
        dave.signup("dave", PASSWORD)
        dave.login("dave", PASSWORD)
        resting = dave.place("TSLA", 2, 25, 1_600_000).ack.order_id  # dave sells 25 @ 160
    typed = "\n".join(
        [
            "symbols",
            "buy AAPL 100 170.50",
            "buy AAPL lots 170.50",  # a typo: usage, not a crash
            "orders",
            "buy TSLA 10 160.00",  # trades against dave
            "fills TSLA",
            "positions",
            "book AAPL",
            "trades TSLA",
            "replace 999999 5 170.00",  # not ours: a reject, the prompt carries on
            "cancel 1",
            "frobnicate",
            "buy AAPL 10 abc",  # typos: one line each, and the prompt lives on
            "cancel abc",
            "replace 1 x y",
            "replace 1 170.00 5",  # the old order (PRICE SIZE): a usage line, not a trade
            "help",
            "quit",
        ]
    )
    done = exchange_cli(
        "trade",
        home=short_home,
        config_path=mesh.config_path,
        env={"EXCHANGE_USER": "carol", "EXCHANGE_PASSWORD": PASSWORD},
        input=typed + "\n",
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "AAPL" in out and "PENNY" in out  # symbols
    assert "accepted: order" in out and "resting 100 @ 170.50" in out
    assert "usage: buy SYMBOL SIZE PRICE" in out
    assert "fill 10 @ 160.00" in out  # the taker's own execution
    assert "taker" in out.split("exchange> ")[6]  # fills TSLA: carol took dave's order
    positions = out.split("exchange> ")[7]
    # 10 bought at 160.00, from the opening balance
    cash = to_dollars(mesh.cfg.risk.opening_cash - to_units("1600.00"))
    assert "TSLA" in positions and cash in positions
    assert "170.50" in out.split("exchange> ")[8]  # the book shows carol's bid
    assert "aggressor" in out and "BUY" in out.split("exchange> ")[9]  # the tape
    # replace of an unknown order and cancel of dave's order: rejects, the prompt goes on
    assert done.stderr.count("rejected: no such open order") == 2, done.stderr
    assert "unknown command: frobnicate" in out
    assert "Traceback" not in out + done.stderr
    typos = out.split("exchange> ")[13:16]
    assert "usage: buy SYMBOL SIZE PRICE" in typos[0]
    assert "usage: cancel ORDER_ID" in typos[1]
    assert "usage: replace ORDER_ID SIZE PRICE" in typos[2]
    helped = out.split("exchange> ")[17]
    assert "replace" in helped and "EOF" not in helped
    # positions: average price and P&L per holding, like the TUI
    assert "avg price" in positions and "160.00" in positions and "P&L" in positions
    assert resting == 1  # dave's order, which carol may not cancel
