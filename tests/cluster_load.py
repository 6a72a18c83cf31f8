"""A trader for the cluster tests, run inside a host namespace: sends orders one at a
time at a steady pace, moving to the next gateway on silence and resending the same
client order id there, and writes every acknowledgement it got (JSON) when done.

    python -m tests.cluster_load --gateways tcp://A:5555,tcp://B:5555 --name ann \\
        --seconds 20 --rate 100 --out acks.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

from clients.client import Client
from clients.core import ExchangeError
from services.common.wire import Reject, Side

PASSWORD = "Cluster.pw1"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    gateways = args.gateways.split(",")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    acks: list[dict] = []
    moves = 0
    turn = 0
    client = None

    def connect() -> Client:
        nonlocal turn
        while True:
            endpoint = gateways[turn % len(gateways)]
            c = Client(endpoint, timeout=args.timeout)
            try:
                c.open_account(args.name, PASSWORD, create=True)
                return c
            except (TimeoutError, ExchangeError, OSError):
                c.close()
                turn += 1
                time.sleep(0.05)

    client = connect()
    started = time.monotonic()
    n = 0
    while not stop and time.monotonic() - started < args.seconds:
        n += 1
        cl_ord_id = f"{args.name}-{os.getpid()}-{n}"
        side = Side.BUY if n % 2 else Side.SELL
        price = 1_650_000 if side == Side.BUY else 1_750_000  # rests: no trades needed
        sent = time.monotonic()
        while True:
            try:
                result = client.place("AAPL", side, 1, price, cl_ord_id=cl_ord_id)
                break
            except (TimeoutError, OSError, ExchangeError) as exc:
                retry = not isinstance(exc, ExchangeError) or exc.code in (
                    Reject.NOT_LOGGED_IN,
                    Reject.BUSY,
                )
                if not retry:
                    raise
                client.close()
                turn += 1
                moves += 1
                client = connect()
        ack = result.ack
        acks.append(
            {
                "cl_ord_id": cl_ord_id,
                "order_id": getattr(ack, "order_id", 0),
                "kind": type(ack).__name__,
                "seq": result.seq,
                "sent": sent,  # CLOCK_MONOTONIC: the same clock in every process
                "acked": time.monotonic(),
            }
        )
        pause = n / args.rate - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
    client.close()
    gaps = [b["acked"] - a["acked"] for a, b in zip(acks, acks[1:], strict=False)]
    with open(args.out, "w") as fh:
        json.dump({"acks": acks, "moves": moves, "max_gap_s": max(gaps, default=0)}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
