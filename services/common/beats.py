"""Each service tells the heartbeat service who it is and how far it has got."""

from __future__ import annotations

import contextlib
import os

import zmq

from services.common import curve
from services.common.bus import ServiceBeat
from services.common.codec import encode


class BeatSender:
    """Sends ServiceBeats (its node says when) to every heartbeat service (one per
    host of a cluster, so each sees every service); never blocks the caller's loop (a
    full queue to a dead heartbeat service just drops the beat). A heartbeat service
    answers on the same socket (a matcher's Promote and Demote)."""

    def __init__(
        self, ctx: zmq.Context, endpoints: list[str], service: str, host: str = ""
    ) -> None:
        self.sockets = []
        for endpoint in endpoints:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 10)
            curve.link(sock, endpoint)
            self.sockets.append(sock)
        self.socket = self.sockets[0]  # the local heartbeat service's
        self.service = service
        self.host = host
        self.pid = os.getpid()

    def send(self, role: str, epoch: int = 0, seq: int = 0, committed: int = 0) -> None:
        frame = encode(ServiceBeat(self.service, role, self.pid, epoch, seq, committed, self.host))
        for sock in self.sockets:
            with contextlib.suppress(zmq.Again):
                sock.send(frame, zmq.NOBLOCK)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(0)
