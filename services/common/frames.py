"""Multipart send and receive on pyzmq's compiled socket methods.

pyzmq's ``send_multipart``/``recv_multipart`` are Python loops doing enum flag
arithmetic per frame: about 3 µs to send and 5.6 µs to receive a two-frame message
here, against 0.4 µs and 2.9 µs through the compiled methods below. Every message on
the order path is multipart (a ROUTER identity or a PUB topic), so this is a large
share of each service's time at 20,000 orders/s.
"""

from __future__ import annotations

import zmq
from zmq.backend import Socket as _CompiledSocket

NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_send = _CompiledSocket.send
_recv = _CompiledSocket.recv
_get = _CompiledSocket.get


def send_pair(sock: zmq.Socket, first: bytes, second: bytes, flags: int = 0) -> None:
    """``sock.send_multipart([first, second], flags)``; raises zmq.Again the same way."""
    _send(sock, first, flags | _SNDMORE)
    _send(sock, second, flags)


def recv_frames(sock: zmq.Socket, flags: int = NOBLOCK) -> list[bytes]:
    """``sock.recv_multipart(flags)``: every frame of the next message."""
    frames = [_recv(sock, flags)]
    while _get(sock, _RCVMORE):
        frames.append(_recv(sock, flags))
    return frames
