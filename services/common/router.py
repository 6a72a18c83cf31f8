"""Reading a ROUTER socket of bus messages without ever blocking the loop."""

from __future__ import annotations

from collections.abc import Iterator

import zmq

from services.common.codec import DecodeError, bus_decoder


def bus_messages(sock: zmq.Socket, limit: int = 256) -> Iterator[tuple[bytes, object]]:
    """(identity, decoded message) for up to ``limit`` waiting frames; frames that are
    not two parts or do not decode are dropped (internal peers, so nothing to answer)."""
    for _ in range(limit):
        try:
            ident, payload = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        except ValueError:
            continue
        try:
            yield ident, bus_decoder.decode(payload)
        except DecodeError:
            continue
