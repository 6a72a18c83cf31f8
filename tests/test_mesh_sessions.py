"""Client and gateway each notice a dead peer; sessions are per connection."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import pytest

from clients.client import Client
from services.common.money import to_units
from services.common.wire import (
    NOTICE_SESSION_ENDED,
    Accepted,
    Ping,
    PlaceOrder,
    Pong,
    Reject,
    Side,
)
from tests.mesh import Mesh, trader

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


@contextlib.contextmanager
def journal_stopped(mesh):
    """The journal frozen (SIGSTOP): nothing commits, so every order stays in flight
    at the gateway, as across a partition until it heals; continued on the way out."""
    mesh["journal"].signal(signal.SIGSTOP)
    try:
        yield
    finally:
        mesh["journal"].signal(signal.SIGCONT)


def test_a_session_waiting_for_an_answer_is_not_dropped_for_its_silence(fast_mesh):
    """A client that sent an order and waits for it says nothing meanwhile (the sync
    SDK with one gateway sends no pings during a call): held up longer than the
    session timeout (3 client heartbeats), the answer still comes, on the session it
    was asked on, and the session was not ended for that silence."""
    client = trader(fast_mesh, "waiter", PASSWORD, timeout=10)
    with journal_stopped(fast_mesh):
        cont = threading.Timer(1.5, fast_mesh["journal"].signal, (signal.SIGCONT,))
        cont.start()  # 2.5 session timeouts later, while the call below waits
        try:
            placed = client.place("AAPL", Side.BUY, 1, to_units("169.00"), cl_ord_id="held-1")
        finally:
            cont.cancel()
    assert placed.ack.cl_ord_id == "held-1" and placed.ack.order_id
    ended = [n for n in client.notices if getattr(n, "kind", "") == NOTICE_SESSION_ENDED]
    assert not ended, ended
    assert [o.order_id for o in client.orders().orders] == [placed.ack.order_id]


def test_an_order_in_flight_is_answered_on_its_connection_after_its_session_ended(fast_mesh):
    """The session that sent an order may end before the order commits (here: a
    log-out on another connection sharing its token); the connection that sent it
    still gets its one answer, after the session_ended notice."""
    first = Client(fast_mesh.cfg.endpoints["gateway"], timeout=10)
    first.signup("sender", PASSWORD)
    token = first.login("sender", PASSWORD).token
    with journal_stopped(fast_mesh):
        first.send(PlaceOrder("held-2", "AAPL", Side.BUY, 1, to_units("169.00")))
        with Client(fast_mesh.cfg.endpoints["gateway"], timeout=10) as second:
            second.resume(token)
            second.logout()  # ends the token: on ``first``'s connection too
        ended = first.next_notice()
        assert ended.kind == NOTICE_SESSION_ENDED, ended
    report = first.next_report()
    accepted = report.events[0]
    assert isinstance(accepted, Accepted) and accepted.cl_ord_id == "held-2", report
    first.login("sender", PASSWORD)
    assert [o.order_id for o in first.orders().orders] == [accepted.order_id]
    assert not first.reports, first.reports  # answered once
