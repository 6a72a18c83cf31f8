"""Reading the heartbeat service's status feed: who is primary right now."""

from __future__ import annotations

import zmq

from services.common import curve
from services.common.bus import Status
from services.common.codec import DecodeError, bus_decoder


def latest_status(sock: zmq.Socket) -> Status | None:
    """The newest Status waiting on a SUB socket (older ones are stale)."""
    latest = None
    while True:
        try:
            msg = bus_decoder.decode(sock.recv(zmq.NOBLOCK))
        except zmq.Again:
            return latest
        except DecodeError:
            continue
        if isinstance(msg, Status):
            latest = msg


def current_primary(status: Status | None) -> tuple[str, int] | None:
    """(matcher instance, epoch) of the live primary of the current epoch, if any."""
    if status is None:
        return None
    for state in status.services:
        if (
            state.role == "primary"
            and state.alive
            and state.epoch == status.epoch
            and state.service.startswith("matcher-")
        ):
            return state.service.split("-", 1)[1], status.epoch
    return None


def status_socket(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    curve.link(sock, endpoint)
    return sock
