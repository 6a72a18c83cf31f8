"""`exchange admin deposit ACCOUNT AMOUNT` end to end: an operator moves cash into and
out of an account; the account sees its opening balance and each move in
`positions`; the gateway refuses unknown names, zero and oversized amounts and
non-operators before anything reaches the matcher."""

from __future__ import annotations

import json

from clients.client import Client
from services.common.money import to_dollars, to_units
from services.common.wire import PRICE_SCALE, CashAdjusted, Reject
from tests.mesh import Mesh, exchange_cli

PASSWORD = "Secret.pw1"


def test_operator_deposits_and_withdraws_through_the_cli(short_home):
    mesh = Mesh(short_home, security={"operators": ["ops"]})
    try:
        mesh.start()
        opening = mesh.cfg.risk.opening_cash
        with Client(mesh.cfg.endpoints["gateway"]) as c:
            c.signup("ops", PASSWORD)
            c.signup("alice", PASSWORD)
        as_ops = {"EXCHANGE_USER": "ops", "EXCHANGE_PASSWORD": PASSWORD}
        as_alice = {"EXCHANGE_USER": "alice", "EXCHANGE_PASSWORD": PASSWORD}

        def run(*args, **env):
            return exchange_cli(*args, home=short_home, config_path=mesh.config_path, env=env)

        def usd() -> str:
            shown = run("positions", "--json", **as_alice)
            assert shown.returncode == 0, shown.stdout + shown.stderr
            return json.loads(shown.stdout)["USD"]

        with Client(mesh.cfg.endpoints["gateway"]) as alice:
            alice.login("alice", PASSWORD)
            assert usd() == to_dollars(opening)  # the opening balance, an exact string

            done = run("admin", "deposit", "alice", "250.50", "--json", **as_ops)
            assert done.returncode == 0, done.stdout + done.stderr
            events = json.loads(done.stdout)["events"]
            assert [e["type"] for e in events] == ["admin_done", "cash"]
            assert events[1]["amount"] == to_units("250.50")
            assert events[1]["cash"] == opening + to_units("250.50")
            assert usd() == to_dollars(opening + to_units("250.50"))
            # the account's own session hears of it, with the balance after it
            told = alice.next_report(timeout=5)
            assert told.events == [
                CashAdjusted(alice.account, to_units("250.50"), opening + to_units("250.50"))
            ]

        out = run("admin", "deposit", "alice", "-100", **as_ops)  # a withdrawal, in words
        assert out.returncode == 0, out.stdout + out.stderr
        assert "cash now" in out.stdout
        assert usd() == to_dollars(opening + to_units("150.50"))

        def refused(*args, env=as_ops) -> int:
            got = run("admin", "deposit", *args, "--json", **env)
            assert got.returncode == 1, got.stdout + got.stderr
            return json.loads(got.stdout)["code"]

        assert refused("nobody", "5") == Reject.UNKNOWN_ACCOUNT
        assert refused("alice", "0") == Reject.BAD_AMOUNT
        too_much = str(mesh.cfg.risk.max_cash // PRICE_SCALE + 1)
        assert refused("alice", too_much) == Reject.BAD_AMOUNT
        assert refused("alice", "-" + too_much) == Reject.BAD_AMOUNT
        assert refused("alice", "5", env=as_alice) == Reject.NOT_AUTHORIZED
        usage = run("admin", "deposit", "alice", "five", **as_ops)
        assert usage.returncode == 2 and "not a price" in usage.stderr
        assert usd() == to_dollars(opening + to_units("150.50"))  # none of them moved it
    finally:
        mesh.stop()
