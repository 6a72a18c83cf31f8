"""Asks a cluster's services what a test cannot see from outside the namespaces; run
inside a host (``ip netns exec``) with $EXCHANGE_CONFIG and $EXCHANGE_HOST set:

    python -m tests.cluster_probe hash    # the primary matcher's seq and state hash
"""

from __future__ import annotations

import json
import sys

import zmq

from services.common import config, curve
from services.common.bus import StateInfo, StateQuery
from services.common.codec import bus_decoder, encode


def state() -> dict:
    cfg = config.load()
    curve.use_for_services(cfg)
    ctx = zmq.Context.instance()
    for instance in ("a", "b"):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        curve.link(sock, config.matcher_endpoints(cfg, instance)[0])
        sock.send(encode(StateQuery()))
        if sock.poll(1_000):
            info = bus_decoder.decode(sock.recv())
            if isinstance(info, StateInfo) and info.role == "primary":
                return {"instance": instance, "epoch": info.epoch, "seq": info.seq,
                        "state_hash": info.state_hash}  # fmt: skip
        sock.close(0)
    return {}


if __name__ == "__main__":
    print(json.dumps(state() if sys.argv[1:] == ["hash"] else {}))
