"""The client side needs none of the server's packages or modules.

A subprocess refuses to import the server's dependencies (structlog, supervisor,
sortedcontainers, hdrhistogram) and textual, and every module of ``services`` but the
public protocol (``services.common.wire``), the money helpers and the typed
configuration (``services.common.config``: one definition of every key and default for
both sides, itself needing only those and msgspec): the SDK, the trading
commands, the market maker and the TUI's model still import, the SDK signs up,
trades, follows a book and reads the tape through a real mesh, and the `exchange`
command's trading commands work."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from clients.bench.cluster import ROOT
from tests.mesh import cli_env

SERVER_PACKAGES = ("structlog", "supervisor", "sortedcontainers", "hdrhistogram", "textual")
ALLOWED = (
    "services",
    "services.common",
    "services.common.wire",
    "services.common.money",
    "services.common.config",
    "services.common.trading_calendar",  # the [schedule] section's checks: the stdlib only
)
CLIENT_MODULES = (
    "clients.cli",
    "clients.client",
    "clients.aio",
    "clients.feed",
    "clients.core",
    "clients.settings",
    "clients.accountview",
    "clients.trading",
    "clients.shell",
    "clients.admin",
    "clients.mm.bot",
    "clients.tui.model",
    "clients.examples.spread_bot",
)
FENCE = textwrap.dedent(
    f"""
    import sys

    class Fence:
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in {SERVER_PACKAGES!r} or (top == "services" and name not in {ALLOWED!r}):
                raise ImportError(f"{{name}}: not for the client side")
            return None

    sys.meta_path.insert(0, Fence())
    """
)


def run(script: str, env: dict | None = None, timeout: float = 60) -> dict:
    """Run ``script`` behind the fence; it prints one JSON object."""
    done = subprocess.run(
        [sys.executable, "-c", FENCE + textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_fence_holds():
    out = run(
        """
        import json
        refused = []
        for name in ("structlog", "services.common.node", "services.common.bus"):
            try:
                __import__(name)
            except ImportError:
                refused.append(name)
        print(json.dumps(refused))
        """
    )
    assert out == ["structlog", "services.common.node", "services.common.bus"]


def test_client_modules_import_without_the_server():
    out = run(
        f"""
        import importlib, json, sys
        for name in {CLIENT_MODULES!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "services")))
        """
    )
    assert set(out) <= set(ALLOWED)


def test_the_sdk_trades_through_a_mesh_without_the_server(mesh, short_home):
    env = cli_env(short_home, mesh.config_path)
    out = run(
        """
        import asyncio, json
        import zmq
        from clients import settings
        from clients.aio import AsyncClient
        from clients.client import Client, recent_trades, snapshot
        from clients.feed import BookSubscriber
        from services.common.money import to_units
        from services.common.wire import Fill, Side

        cfg = settings.load()
        gateway = cfg.endpoints["gateway"]
        px = to_units("170.00")
        with Client(gateway) as maker:
            maker.open_account("lone-maker", "Secret.pw1", create=True)
            rested = maker.place("AAPL", Side.SELL, 20, px)
            book = BookSubscriber(
                zmq.Context.instance(),
                cfg.endpoints["marketdata_pub"],
                cfg.endpoints["marketdata_snapshot"],
                "AAPL",
            )
            for _ in range(50):
                book.poll(100)
                if book.synced and book.asks():
                    break

            async def take():
                async with AsyncClient(gateway) as taker:
                    await taker.signup("lone-taker", "Secret.pw1")
                    await taker.login("lone-taker", "Secret.pw1")
                    result = await taker.place("AAPL", Side.BUY, 5, px)
                    return sum(e.qty for e in result.events if type(e) is Fill)

            filled = asyncio.run(take())
            orders = maker.orders().orders
            tape = recent_trades(cfg.endpoints["marketdata_snapshot"], "AAPL", 5).trades
            snap = snapshot(cfg.endpoints["marketdata_snapshot"], "AAPL")
            print(json.dumps({
                "rested": rested.ack.order_id,
                "book_asks": book.asks()[:1],
                "filled": filled,
                "open": [o.qty for o in orders],
                "tape": [t.qty for t in tape],
                "snapshot_asks": snap.asks[:1],
            }))
        """,
        env=env,
    )
    assert out["rested"] > 0 and out["book_asks"] == [[1_700_000, 20]]
    assert out["filled"] == 5 and out["open"] == [15] and out["tape"] == [5]
    assert out["snapshot_asks"] == [[1_700_000, 15]]

    trader = cli_env(
        short_home, mesh.config_path, EXCHANGE_USER="lone-maker", EXCHANGE_PASSWORD="Secret.pw1"
    )
    said = run(
        """
        import contextlib, io, json
        from clients import cli

        def exchange(*argv):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = cli.main(list(argv))
            return code, json.loads(out.getvalue())

        sold = exchange("sell", "AAPL", "1", "171.00", "--json")
        held = exchange("positions", "--json")
        print(json.dumps({"sold": sold, "held": held}))
        """,
        env=trader,
    )
    assert said["sold"][0] == 0 and said["sold"][1]["ok"]
    assert said["held"][0] == 0 and said["held"][1]["AAPL"] == -5
