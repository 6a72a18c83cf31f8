"""Frame limits at the gateway: a frame over MAXMSGSIZE costs its sender the connection
(and nothing else), a frame at the limit is read and rejected, a message of several
frames is rejected, and an honest client trades on throughout."""

from __future__ import annotations

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from services.common.codec import encode, reply_decoder
from services.common.money import to_units
from services.common.wire import Ping, Pong, Reject, RequestRejected, Side
from services.gateway.service import MAX_FRAME
from tests.mesh import running, trader


def send_soon(sock: zmq.Socket, *frames: bytes, timeout: float = 5.0) -> None:
    """Send without blocking forever: a DEALER between connections may not queue."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.send_multipart(list(frames), zmq.NOBLOCK)
            return
        except zmq.Again:
            assert time.monotonic() < deadline, "could not send"
            time.sleep(0.01)


def answer(sock: zmq.Socket, timeout: float = 5.0):
    assert sock.poll(int(timeout * 1000)), "no answer"
    return reply_decoder.decode(sock.recv())


def test_frame_limits(mesh):
    alice = trader(mesh, "alice")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(mesh.cfg.endpoints["gateway"])
    try:
        send_soon(sock, encode(Ping(1)))
        assert answer(sock) == Pong(1)

        send_soon(sock, b"\x00" * (MAX_FRAME + 1))  # over MAXMSGSIZE: ZeroMQ hangs up
        assert monitor.poll(5000), "the gateway kept a connection that sent a huge frame"
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        assert not sock.poll(300), "a huge frame was answered"
        alice.place("AAPL", Side.BUY, 10, to_units("169.00"))  # everyone else carries on

        send_soon(sock, encode(Ping(2)))  # the DEALER reconnects by itself
        assert answer(sock) == Pong(2)
        send_soon(sock, b"\xc1" * MAX_FRAME)  # at the limit: read, and malformed
        got = answer(sock)
        assert isinstance(got, RequestRejected) and got.code == Reject.MALFORMED, got
        send_soon(sock, encode(Ping(3)), encode(Ping(4)))  # one message, two frames
        got = answer(sock)
        assert isinstance(got, RequestRejected) and got.code == Reject.MALFORMED, got
        assert "one frame" in got.text
        send_soon(sock, encode(Ping(5)))
        assert answer(sock) == Pong(5)
        assert not monitor.poll(0), "the gateway hung up on frames within the limit"
        assert alice.positions().account == alice.account
        assert mesh["gateway"].alive()
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        alice.close()


def test_a_flood_before_login_is_refused_and_others_trade_on(short_home):
    """A connection that never logs in has its own rate: past it, every frame gets
    RATE_LIMITED undecoded, while a logged-in trader and a newcomer carry on."""
    rate = 50
    flood = zmq.Context.instance().socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    with running(short_home, security={"anonymous_rate": rate}) as mesh, flood:
        alice = trader(mesh, "alice")
        flood.connect(mesh.cfg.endpoints["gateway"])
        sent, pongs, limited = 2_000, 0, 0
        began = time.monotonic()
        for i in range(sent):
            send_soon(flood, encode(Ping(i)))
        while pongs + limited < sent:
            got = answer(flood)
            if isinstance(got, Pong):
                pongs += 1
            else:
                assert isinstance(got, RequestRejected), got
                assert got.code == Reject.RATE_LIMITED and "not logged in" in got.text, got
                limited += 1
        elapsed = time.monotonic() - began
        assert limited > 0, "a flood before login was never refused"
        assert pongs <= 2 * rate + rate * elapsed + 1, (pongs, elapsed)  # burst + rate
        # everyone else carries on: the trader, and a newcomer with a bucket of its own
        assert alice.place("AAPL", Side.BUY, 10, to_units("169.00")).ack.order_id
        bob = trader(mesh, "bob")
        assert bob.positions().account == bob.account
        time.sleep(0.2)  # the flooder's bucket refills at its rate
        send_soon(flood, encode(Ping(-1)))
        assert answer(flood) == Pong(-1)
        alice.close()
        bob.close()
