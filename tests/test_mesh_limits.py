"""Frame limits at the gateway: a frame over MAXMSGSIZE costs its sender the connection
(and nothing else), a frame at the limit is read and rejected, a message of several
frames is rejected, and an honest client trades on throughout."""

from __future__ import annotations

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from services.common.codec import encode, reply_decoder
from services.common.money import to_units
from services.common.protocol import Ping, Pong, Reject, RequestRejected, Side
from services.gateway.service import MAX_FRAME
from tests.mesh import trader


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
