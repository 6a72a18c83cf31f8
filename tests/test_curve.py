"""CURVE on the gateway: a client without an authorized key gets not one frame through;
one with a key made by `exchange keys` trades normally."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import zmq
import zmq.auth

from clients.aio import AsyncClient
from clients.client import Client
from clients.core import curve_client
from clients.settings import client_keys
from services.common import curve
from services.common.codec import encode
from services.common.money import to_units
from services.common.wire import Ping, Side, Signup
from tests.mesh import Mesh, exchange_cli

PASSWORD = "Secret.pw1"
# a NULL greeting meets a CURVE server: refused as such, or cut off before it could say
PLAIN_REFUSED = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}


def handshake_events(monitor: zmq.Socket, timeout: float) -> set[int]:
    """The handshake outcomes a socket monitor reports within ``timeout``."""
    from zmq.utils.monitor import recv_monitor_message

    seen: set[int] = set()
    done = {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL}
    done |= {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_SUCCEEDED}
    done |= {zmq.EVENT_DISCONNECTED}
    deadline = time.monotonic() + timeout
    while not seen & done and time.monotonic() < deadline:
        if monitor.poll(100):
            seen.add(recv_monitor_message(monitor)["event"])
    return seen


async def async_trade(endpoint: str, keys: tuple[bytes, bytes, bytes]) -> dict[str, int]:
    """alice buys 5 back from bob, both through AsyncClients; her positions after."""
    async with (
        AsyncClient(endpoint, curve_keys=keys) as alice,
        AsyncClient(endpoint, curve_keys=keys) as bob,
    ):
        await alice.login("alice", PASSWORD)
        await bob.login("bob", PASSWORD)
        await alice.place("AAPL", Side.BUY, 5, to_units("170.00"))
        sold = await bob.place("AAPL", Side.SELL, 5, to_units("170.00"))
        assert any(type(e).__name__ == "Fill" for e in sold.events)
        return (await alice.positions()).positions


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
        # a stranger's own key pair, not authorized: the handshake fails, nothing answers;
        # and a client without CURVE at all: the gateway hangs up on its greeting
        stranger_keys = zmq.curve_keypair()
        server_key, _ = zmq.auth.load_certificate(server_public)
        ctx = zmq.Context.instance()
        for keys, refused in (
            ((*stranger_keys, server_key), {zmq.EVENT_HANDSHAKE_FAILED_AUTH}),
            (None, PLAIN_REFUSED),
        ):
            intruder = ctx.socket(zmq.DEALER)
            intruder.setsockopt(zmq.LINGER, 0)
            if keys is not None:
                curve_client(intruder, keys)
            monitor = intruder.get_monitor_socket()  # before connecting: see every attempt
            intruder.connect(endpoint)
            for request in (Ping(1), Signup("mallory", PASSWORD)):
                # never block: a DEALER whose only peer refused it has nowhere to queue
                with contextlib.suppress(zmq.Again):
                    intruder.send(encode(request), zmq.NOBLOCK)
            seen = handshake_events(monitor, 5.0)
            assert seen & refused and zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen, seen
            assert not intruder.poll(1000), "an unauthorized client got an answer"
            intruder.disable_monitor()
            monitor.close(0)
            intruder.close(0)
        # the key `exchange keys` made: signs up, trades, reads its positions
        keys = client_keys(Path(secret), server_public)
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
        # the asyncio client takes the same keys: a bot trades over CURVE too
        assert asyncio.run(async_trade(endpoint, keys)) == {"AAPL": -5}
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
        late_keys = client_keys(Path(json.loads(late.stdout)["client_secret"]), server_public)
        ok = False
        for _ in range(20):  # a refused handshake is final: each try is a new connection
            with Client(endpoint, curve_keys=late_keys) as carol:
                ok = carol.alive(timeout=0.5)
            if ok:
                break
        assert ok, "a key authorized at run time was not let in"
    finally:
        mesh.stop()
