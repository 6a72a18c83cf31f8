"""`exchange admin ...` and `exchange password` end to end, with their JSON and exit codes."""

from __future__ import annotations

import json

from clients.client import Client
from tests.mesh import Mesh, exchange_cli

PASSWORD = "Secret.pw1"


def test_operator_commands_and_password_change(short_home):
    mesh = Mesh(short_home, security={"operators": ["ops"]})
    try:
        mesh.start()
        with Client(mesh.cfg.endpoints["gateway"]) as c:
            c.signup("ops", PASSWORD)
            c.signup("alice", PASSWORD)
        as_ops = {"EXCHANGE_USER": "ops", "EXCHANGE_PASSWORD": PASSWORD}
        as_alice = {"EXCHANGE_USER": "alice", "EXCHANGE_PASSWORD": PASSWORD}

        def run(*args, **env):
            return exchange_cli(*args, home=short_home, config_path=mesh.config_path, env=env)

        denied = run("admin", "halt", "AAPL", "--json", **as_alice)
        assert denied.returncode == 1 and json.loads(denied.stdout)["code"] == 24
        halted = run("admin", "halt", "aapl", "--json", **as_ops)
        assert halted.returncode == 0, halted.stdout + halted.stderr
        types = [e["type"] for e in json.loads(halted.stdout)["events"]]
        assert types == ["admin_done", "symbol_halted"]
        refused = run("buy", "AAPL", "10", "170.00", "--json", **as_alice)
        assert refused.returncode == 1 and json.loads(refused.stdout)["code"] == 25
        assert run("admin", "resume", "AAPL", **as_ops).returncode == 0
        assert run("buy", "AAPL", "10", "169.00", **as_alice).returncode == 0
        moved = json.loads(run("admin", "reference", "AAPL", "150.00", "--json", **as_ops).stdout)
        assert moved["events"][1]["band_lo"] == 1_350_000
        # alice's bid at 169.00 is outside the new band (135-165): cancelled with it
        assert [e["type"] for e in moved["events"]] == [
            "admin_done",
            "reference_set",
            "cancelled",
        ]
        assert moved["events"][2]["reason"] == 7  # OUTSIDE_BAND
        assert run("buy", "AAPL", "10", "149.00", **as_alice).returncode == 0
        killed = json.loads(run("admin", "kill", "alice", "--json", **as_ops).stdout)
        assert [e["type"] for e in killed["events"]] == [
            "admin_done",
            "cancelled",
            "account_blocked",
        ]
        assert json.loads(run("orders", "--json", **as_alice).stdout)["orders"] == []
        assert run("admin", "unkill", "alice", **as_ops).returncode == 0
        assert run("admin", "kill", "nobody", **as_ops).returncode == 1

        changed = run("password", "--json", EXCHANGE_NEW_PASSWORD="Renewed.pw2", **as_alice)
        assert changed.returncode == 0 and json.loads(changed.stdout)["ok"]
        assert run("orders", **as_alice).returncode == 1  # the old password is gone
        fresh = {"EXCHANGE_USER": "alice", "EXCHANGE_PASSWORD": "Renewed.pw2"}
        assert run("orders", **fresh).returncode == 0
        weak = run("password", EXCHANGE_NEW_PASSWORD="weak", **fresh)
        assert weak.returncode == 1 and "password needs" in weak.stderr
    finally:
        mesh.stop()
