"""Each service tells the heartbeat service who it is and how far it has got."""

from __future__ import annotations

import contextlib
import os

import zmq

from services.common import curve
from services.common.bus import ServiceBeat
from services.common.codec import encode


class BeatSender:
    """Sends ServiceBeats (its node says when); never blocks the caller's loop (a full
    queue to a dead heartbeat service just drops the beat). The heartbeat service
    answers on the same socket (a matcher's Promote and Demote)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, service: str) -> None:
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 10)
        curve.link(self.socket, endpoint)
        self.service = service
        self.pid = os.getpid()

    def send(self, role: str, epoch: int = 0, seq: int = 0, committed: int = 0) -> None:
        beat = ServiceBeat(self.service, role, self.pid, epoch, seq, committed)
        with contextlib.suppress(zmq.Again):
            self.socket.send(encode(beat), zmq.NOBLOCK)

    def close(self) -> None:
        self.socket.close(0)
