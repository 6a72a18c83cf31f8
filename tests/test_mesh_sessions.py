"""Client and gateway each notice a dead peer; sessions are per connection."""

from __future__ import annotations

import signal
import time

import pytest

from clients.client import Client
from services.common.money import to_units
from services.common.wire import NOTICE_SESSION_ENDED, Ping, PlaceOrder, Pong, Reject, Side
from tests.mesh import Mesh

PASSWORD = "Secret.pw1"


@pytest.fixture
def fast_mesh(short_home):
    mesh = Mesh(short_home, timings={"heartbeat_ms": 50, "client_heartbeat_ms": 200})
    try:
        yield mesh.start()
    finally:
        mesh.stop()


def test_silent_sessions_expire_and_pinging_ones_stay(fast_mesh):
    gateway = fast_mesh.cfg.endpoints["gateway"]
    quiet, chatty = Client(gateway), Client(gateway)
    quiet.signup("quiet", PASSWORD)
    chatty.signup("chatty", PASSWORD)
    quiet.login("quiet", PASSWORD)
    chatty.login("chatty", PASSWORD)
    deadline = time.monotonic() + 1.5  # 7 heartbeats
    while time.monotonic() < deadline:
        chatty.ping()
        time.sleep(0.1)
    assert chatty.place("AAPL", Side.BUY, 1, to_units("169.00")).ack.order_id
    # the gateway forgot the quiet session and said so (a notice, kind session_ended) ...
    ended = quiet.next_notice()
    assert ended.kind == NOTICE_SESSION_ENDED and "no traffic" in ended.text
    assert quiet._call(Ping(9)) == Pong(9, False)  # pong says it has no session
    # ... a bare request is refused, naming its id ...
    quiet.send(PlaceOrder("bare-1", "AAPL", Side.BUY, 1, to_units("169.00")))
    refused = quiet.next_notice()
    assert refused.code == Reject.NOT_LOGGED_IN and refused.ref == "bare-1"
    # ... and the SDK logs in again by itself and resends, so the caller sees an ack
    placed = quiet.place("AAPL", Side.BUY, 1, to_units("169.00"), cl_ord_id="sdk-1")
    assert placed.ack.cl_ord_id == "sdk-1" and placed.ack.order_id
    assert len(quiet.orders().orders) == 1  # refused once, then entered once


def test_client_notices_a_stalled_gateway(fast_mesh):
    client = Client(fast_mesh.cfg.endpoints["gateway"])
    assert client.alive()
    fast_mesh["gateway"].signal(signal.SIGSTOP)
    try:
        assert not client.alive(timeout=0.5)
    finally:
        fast_mesh["gateway"].signal(signal.SIGCONT)
    assert client.alive()
