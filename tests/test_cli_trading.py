"""The one-shot trading commands end to end against a running mesh: orders, fills,
the public tape, credentials from a file, exit codes and --json."""

from __future__ import annotations

import json

from clients.client import Client
from tests.mesh import exchange_cli, wait_for, write_config

PASSWORD = "Secret.pw1"


def test_orders_fills_trades_and_credentials(mesh, short_home, tmp_path):
    with Client(mesh.cfg.endpoints["gateway"]) as client:
        client.signup("alice", PASSWORD)
        client.signup("bob", PASSWORD)
    creds = tmp_path / "credentials.toml"
    creds.write_text(f'user = "alice"\npassword = "{PASSWORD}"\n')
    creds.chmod(0o600)
    as_alice = {"EXCHANGE_CREDENTIALS": str(creds)}
    as_bob = {"EXCHANGE_USER": "bob", "EXCHANGE_PASSWORD": PASSWORD}

    def run(*args, **env):
        return exchange_cli(*args, home=short_home, config_path=mesh.config_path, env=env)

    def ok_json(*args, **env):
        done = run(*args, "--json", **env)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    sold = ok_json("sell", "AAPL", "50", "170.00", **as_alice)  # credentials from the file
    bought = ok_json("buy", "AAPL", "30", "170.00", **as_bob)
    assert [e["type"] for e in bought["events"]][:2] == ["accepted", "fill"]

    orders = ok_json("orders", **as_alice)["orders"]
    assert orders == [
        {
            "order_id": sold["order_id"],
            "symbol": "AAPL",
            "side": "SELL",
            "price": "170.00",
            "qty": 20,
            "tif": "day",  # the command line's default
            "expire_date": 0,
        }
    ]
    # the other times in force: good till a date, good till cancelled, IOC, on-close
    gtd = ok_json("buy", "TSLA", "5", "150.00", "--expire", "20991231", **as_alice)
    gtc = ok_json("buy", "TSLA", "5", "150.00", "--gtc", **as_alice)
    ioc = ok_json("buy", "TSLA", "5", "150.00", "--ioc", **as_alice)
    assert [e["type"] for e in ioc["events"]] == ["accepted", "cancelled"]
    moc = ok_json("sell", "TSLA", "5", "--on-close", **as_alice)
    listed = {o["order_id"]: o for o in ok_json("orders", **as_alice)["orders"]}
    assert (listed[gtd["order_id"]]["tif"], listed[gtd["order_id"]]["expire_date"]) == (
        "gtd",
        20991231,
    )
    assert listed[gtc["order_id"]]["tif"] == "gtc" and listed[moc["order_id"]]["tif"] == "on-close"
    for order_id in (gtd["order_id"], gtc["order_id"], moc["order_id"]):
        ok_json("cancel", str(order_id), **as_alice)
    both = run("buy", "TSLA", "5", "150.00", "--gtc", "--ioc", **as_alice)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad_date = run("buy", "TSLA", "5", "150.00", "--expire", "2099-12-31", **as_alice)
    assert bad_date.returncode == 2 and "YYYYMMDD" in bad_date.stderr
    book = ok_json("book", "AAPL")
    assert book["state"] == "continuous" and book["trading_date"] > 20260000
    assert book["indicative"] is None
    fills = ok_json("fills", **as_alice)["fills"]
    assert [(f["side"], f["qty"], f["price"], f["liquidity"]) for f in fills] == [
        ("SELL", 30, "170.00", "maker")
    ]
    assert fills[0]["order_id"] == sold["order_id"]
    bob_fills = ok_json("fills", "AAPL", **as_bob)["fills"]
    assert [(f["side"], f["liquidity"]) for f in bob_fills] == [("BUY", "taker")]
    assert ok_json("fills", "TSLA", **as_bob)["fills"] == []

    tape = wait_for(
        lambda: (t := ok_json("trades", "AAPL"))["trades"] and t, what="the trade on the tape"
    )
    assert [(t["qty"], t["price"], t["aggressor"]) for t in tape["trades"]] == [
        (30, "170.00", "BUY")
    ]
    human = run("trades", "AAPL").stdout
    assert "170.00" in human and "BUY" in human
    assert "maker" in run("fills", **as_alice).stdout

    cancelled = ok_json("cancel", str(sold["order_id"]), **as_alice)
    assert cancelled["events"][0]["type"] == "cancelled"
    assert ok_json("orders", **as_alice)["orders"] == []
    assert "no open orders" in run("orders", **as_alice).stdout

    # someone else's order, or no order: exit 1 with the code, in JSON too
    again = run("cancel", str(sold["order_id"]), "--json", **as_bob)
    assert again.returncode == 1 and json.loads(again.stdout)["code"] == 8  # UNKNOWN_ORDER

    # a credentials file others can read is refused, and with no terminal to ask: exit 2
    creds.chmod(0o644)
    refused = run("orders", **as_alice)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "readable by others" in refused.stderr and "no credentials" in refused.stderr
    assert PASSWORD not in refused.stdout + refused.stderr


def test_a_stopped_local_exchange_is_said_at_once(tmp_path):
    """Nothing listens at the configured loopback/ipc endpoints: every command says
    the exchange is not running and how to start it (a refused connection, not the
    request's timeout, which would say "no answer")."""
    config_path = write_config(tmp_path)
    creds = {"EXCHANGE_USER": "alice", "EXCHANGE_PASSWORD": "Secret.pw1"}
    for args in (["buy", "AAPL", "1", "170.00"], ["book", "AAPL"], ["status"]):
        done = exchange_cli(*args, home=tmp_path, config_path=config_path, env=creds)
        out = done.stdout + done.stderr
        assert done.returncode == 3 and "not running" in out and "exchange up" in out, out
    helped = exchange_cli("--help", home=tmp_path, config_path=config_path).stdout
    assert "EXCHANGE_USER" in helped and "docs/cli.md" in helped
