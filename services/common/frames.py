"""Multipart send and receive on pyzmq's compiled socket methods.

pyzmq's ``send_multipart``/``recv_multipart`` are Python loops doing enum flag
arithmetic per frame: about 3 µs to send and 5.6 µs to receive a two-frame message
here, against 0.4 µs and 2.9 µs through the compiled methods below. Every message on
the order path is multipart (a ROUTER identity or a PUB topic), so this is a large
share of each service's time at 20,000 orders/s. Receiving, even the compiled
``get(RCVMORE)`` turns its option into an enum in Python (two per message), while a
frame received without copying carries the flag already: 2.8 against 3.8 µs.
"""

from __future__ import annotations

import zmq
from zmq.backend import Socket as _CompiledSocket

NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_send = _CompiledSocket.send
_recv = _CompiledSocket.recv


def send_frame(sock: zmq.Socket, frame: bytes, flags: int = 0) -> None:
    """``sock.send(frame, flags)`` without pyzmq's Python wrapper around it."""
    _send(sock, frame, flags)


def send_pair(sock: zmq.Socket, first: bytes, second: bytes, flags: int = 0) -> None:
    """``sock.send_multipart([first, second], flags)``; raises zmq.Again the same way."""
    _send(sock, first, flags | _SNDMORE)
    _send(sock, second, flags)


def recv_frames(sock: zmq.Socket, flags: int = NOBLOCK) -> list[bytes]:
    """``sock.recv_multipart(flags)``: every frame of the next message."""
    frame = _recv(sock, flags, False)
    frames = [frame.bytes]
    while frame.more:
        frame = _recv(sock, flags, False)
        frames.append(frame.bytes)
    return frames


def recv_bounded(sock: zmq.Socket, keep: int, flags: int = NOBLOCK) -> tuple[list[bytes], int]:
    """The next message's first ``keep`` frames and how many it had: frames past
    ``keep`` are received one at a time and dropped, never copied or kept, so a peer's
    message of many frames costs the caller no memory beyond ``keep`` of them."""
    frame = _recv(sock, flags, False)
    frames = [frame.bytes]
    parts = 1
    while frame.more:
        frame = _recv(sock, flags, False)
        parts += 1
        if parts <= keep:
            frames.append(frame.bytes)
    return frames, parts
