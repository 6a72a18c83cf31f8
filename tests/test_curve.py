"""CURVE on the gateway: a client without an authorized key gets not one frame through;
one with a key made by `exchange keys` trades normally."""

from __future__ import annotations

import json
from pathlib import Path

import zmq
import zmq.auth

from clients.client import Client
from services.common import curve
from services.common.codec import encode
from services.common.money import to_units
from services.common.protocol import Ping, Side, Signup
from tests.mesh import Mesh, exchange_cli

PASSWORD = "Secret.pw1"


def test_only_authorized_keys_get_through(short_home):
    mesh = Mesh(short_home, security={"curve": True})
    made = exchange_cli(
        "keys", "client", "alice", "--json", home=short_home, config_path=mesh.config_path
    )
    assert made.returncode == 0, made.stdout + made.stderr
    secret = json.loads(made.stdout)["client_secret"]
    server_public = curve.key_dir(mesh.cfg) / "server.key"
    assert (short_home / "keys" / "authorized_clients" / "alice.key").exists()
    assert oct((short_home / "keys" / "clients" / "alice.key_secret").stat().st_mode)[-3:] == "600"
    endpoint = mesh.cfg.endpoints["gateway"]
    try:
        mesh.start()
        # a stranger's own key pair, not authorized: the handshake fails, nothing answers
        stranger_keys = zmq.curve_keypair()
        server_key, _ = zmq.auth.load_certificate(server_public)
        stranger = Client(endpoint, curve_keys=(*stranger_keys, server_key))
        plain = Client(endpoint)  # and no CURVE at all
        for intruder in (stranger, plain):
            intruder.send(Ping(1))
            intruder.send(Signup("mallory", PASSWORD))
            assert not intruder.socket.poll(1500), "an unauthorized client got an answer"
            intruder.close()
        # the key `exchange keys` made: signs up, trades, reads its positions
        keys = curve.client_keys(Path(secret), server_public)
        with Client(endpoint, curve_keys=keys) as alice, Client(endpoint, curve_keys=keys) as bob:
            alice.signup("alice", PASSWORD)
            alice.login("alice", PASSWORD)
            bob.signup("bob", PASSWORD)
            bob.login("bob", PASSWORD)
            alice.place("AAPL", Side.SELL, 10, to_units("170.00"))
            bought = bob.place("AAPL", Side.BUY, 10, to_units("170.00"))
            assert any(type(e).__name__ == "Fill" for e in bought.events)
            assert bob.positions().positions == {"AAPL": 10}
            # mallory's sign-up never reached the exchange
            assert "mallory" not in encode(alice.orders()).decode(errors="replace")
        names = exchange_cli(
            "journal",
            "dump",
            str(short_home / "journal"),
            "--json",
            home=short_home,
            config_path=mesh.config_path,
        ).stdout
        assert "alice" in names and "mallory" not in names
        # a key authorized while the gateway runs is let in within seconds
        late = exchange_cli(
            "keys", "client", "carol", "--json", home=short_home, config_path=mesh.config_path
        )
        late_keys = curve.client_keys(Path(json.loads(late.stdout)["client_secret"]), server_public)
        ok = False
        for _ in range(20):  # a refused handshake is final: each try is a new connection
            with Client(endpoint, curve_keys=late_keys) as carol:
                ok = carol.alive(timeout=0.5)
            if ok:
                break
        assert ok, "a key authorized at run time was not let in"
    finally:
        mesh.stop()
