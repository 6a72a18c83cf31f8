"""`exchange up` under supervisord, then the first trading commands, end to end."""

from __future__ import annotations

import json
import os
import signal

from services.common import config
from tests.fixclient import FixClient
from tests.mesh import exchange_cli, stop_supervised, wait_for, write_config

PASSWORD = "Secret.pw1"


def test_up_trade_book_status_down(short_home):
    config_path = write_config(short_home)
    run = lambda *args, **env: exchange_cli(  # noqa: E731
        *args, home=short_home, config_path=config_path, env=env
    )
    try:
        up = run("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "order entry:" in up.stdout
        created = run("account", "create", "alice", "--json", EXCHANGE_PASSWORD=PASSWORD)
        assert json.loads(created.stdout)["ok"], created.stdout + created.stderr
        # the FIX acceptor runs beside the gateway: a QuickFIX session logs on to it
        assert "FIX 4.4:" in up.stdout
        port = config.load(config_path, home=short_home).fix.port
        quickfix = FixClient(short_home / "quickfix", port, "ALICE1", "alice").start(30)
        quickfix.stop()
        creds = {"EXCHANGE_USER": "alice", "EXCHANGE_PASSWORD": PASSWORD}
        bought = run("buy", "AAPL", "100", "170.50", "--json", **creds)
        assert bought.returncode == 0, bought.stdout + bought.stderr
        order = json.loads(bought.stdout)
        assert order["ok"] and order["events"][0]["type"] == "accepted"
        book = json.loads(run("book", "AAPL", "--json").stdout)
        assert book["bids"] == [["170.50", 100]] and book["asks"] == []
        human = run("book", "AAPL").stdout
        assert "170.50" in human
        # a bad order gets a readable reject and a non-zero exit code
        bad = run("buy", "AAPL", "100", "170.505", **creds)
        assert bad.returncode == 1 and "tick" in bad.stderr
        sold = run("sell", "AAPL", "40", "170.00", **creds)  # human output this time
        assert sold.returncode == 0 and "SELF_TRADE" in sold.stdout, sold.stdout + sold.stderr
        positions = json.loads(run("positions", "--json", **creds).stdout)
        assert positions == {"USD": "100000000.00"}  # the demo config's opening balance
        cancelled = run("cancel", str(order["order_id"]), "--json", **creds)
        assert json.loads(cancelled.stdout)["ok"], cancelled.stdout + cancelled.stderr
        assert json.loads(run("book", "AAPL", "--json").stdout)["bids"] == []
        status = json.loads(run("status", "--json").stdout)
        roles = {s["service"]: s["role"] for s in status["services"]}
        assert roles["matcher-a"] == "primary" or roles["matcher-b"] == "primary"
        assert {"journal", "gateway", "marketdata", "statements"} <= set(roles)
        assert (short_home / "log" / "gateway.log").exists()
        # supervisord restarts a service that dies
        pids = {s["service"]: s["pid"] for s in status["services"]}
        os.kill(pids["gateway"], signal.SIGKILL)
        wait_for(
            lambda: any(
                s["service"] == "gateway" and s["alive"] and s["pid"] != pids["gateway"]
                for s in json.loads(run("status", "--json").stdout)["services"]
            ),
            timeout=30,
            what="supervisord to restart the gateway",
        )
        wait_for(lambda: run("book", "AAPL", "--json").returncode == 0, timeout=10)
        again = run("buy", "AAPL", "1", "170.00", "--json", **creds)
        assert json.loads(again.stdout)["ok"], again.stdout + again.stderr
        # up again on a running exchange is harmless, and --json says where it is
        repeat = run("up", "--json")
        assert repeat.returncode == 0 and "already running" in repeat.stderr
        assert json.loads(repeat.stdout)["endpoints"]["gateway"].startswith("tcp://127.0.0.1:")
    finally:
        down = stop_supervised(short_home, config_path)
        assert down.returncode == 0, down.stdout + down.stderr
        assert json.loads(down.stdout) == {
            "ok": True,
            "home": str(short_home),
            "was_running": True,
        }
