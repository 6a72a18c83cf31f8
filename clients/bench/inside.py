"""What `exchange bench cluster` and the cluster tests run inside a host namespace,
where the cluster's addresses are reachable (with $EXCHANGE_CONFIG and $EXCHANGE_HOST):

    python -m clients.bench.inside signup N          # load accounts load0a, load0b, ...
    python -m clients.bench.inside measure RATE SECONDS   # one sustained-load row (JSON)
    python -m clients.bench.inside state             # the primary's seq and state hash
    python -m clients.bench.inside members           # etcd's members, as this host sees them
    python -m clients.bench.inside trader --gateways A,B --name ann --seconds S --out F
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from types import SimpleNamespace

import zmq

from clients.bench import sustained
from clients.client import Client
from clients.core import ExchangeError
from services.common import config, curve
from services.common.bus import StateInfo, StateQuery
from services.common.codec import bus_decoder, encode
from services.common.wire import Reject, Side, Tif

TRADER_PASSWORD = "Cluster.pw1"


def signup(count: int) -> dict:
    cfg = config.load()
    with Client(cfg.endpoints["gateway"], timeout=30) as client:
        for p in range(count):
            client.signup(f"load{p}a", sustained.PASSWORD)
            client.signup(f"load{p}b", sustained.PASSWORD)
    return {"accounts": 2 * count}


def measure(rate: int | None, seconds: float, processes: int = 1, run: int = 0) -> dict:
    """``exchange bench sustained``'s measurement, against this host's gateway."""
    mesh = SimpleNamespace(cfg=config.load(), services={})  # its CPU: not from here
    return sustained.measure(mesh, rate, seconds, processes, run)


def state() -> dict:
    """The primary matcher's seq and state hash (a standby binds no command socket)."""
    cfg = config.load()
    curve.use_for_services(cfg)
    ctx = zmq.Context.instance()
    for instance in ("a", "b"):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        curve.link(sock, config.matcher_endpoints(cfg, instance)[0])
        sock.send(encode(StateQuery()))
        answered = sock.poll(1_000)
        info = bus_decoder.decode(sock.recv()) if answered else None
        sock.close(0)
        if isinstance(info, StateInfo) and info.role == "primary":
            return {"instance": instance, "epoch": info.epoch, "seq": info.seq,
                    "state_hash": info.state_hash}  # fmt: skip
    return {}


def members() -> dict:
    from services.heartbeat.etcd import Etcd

    cfg = config.load()
    return {"members": Etcd(config.etcd_endpoints(cfg), 2.0).members()}


def trader(gateways: list[str], name: str, seconds: float, rate: float, silence: float) -> dict:
    """Orders one at a time at ``rate`` through the SDK given every gateway: it moves
    to the next when the one in use drops the connection or stays silent ``silence``
    seconds, and resends the same client order id there. Every acknowledgement with
    its seq and when it came (CLOCK_MONOTONIC: one clock for every process here)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    acks: list[dict] = []
    client = Client(gateways, timeout=60, silence=silence)
    deadline = time.monotonic() + 60
    while True:  # at start a gateway may still be on its way up
        try:
            client.open_account(name, TRADER_PASSWORD, create=True)
            break
        except (TimeoutError, ExchangeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    started = time.monotonic()
    n = 0
    while not stop and time.monotonic() - started < seconds:
        n += 1
        cl_ord_id = f"{name}-{os.getpid()}-{n}"
        side = Side.BUY if n % 2 else Side.SELL
        # immediate-or-cancel, away from the market: acknowledged and gone, so however
        # long it runs no account nears its open-order limit
        price = 1_650_000 if side == Side.BUY else 1_750_000
        sent = time.monotonic()
        while True:
            try:
                result = client.place("AAPL", side, 1, price, tif=Tif.IOC, cl_ord_id=cl_ord_id)
                break
            except ExchangeError as exc:  # the same id again: exactly-once makes it safe
                if exc.code != Reject.BUSY:
                    raise
                time.sleep(0.01)
        acks.append(
            {
                "cl_ord_id": cl_ord_id,
                "order_id": getattr(result.ack, "order_id", 0),
                "seq": result.seq,
                "sent": sent,
                "acked": time.monotonic(),
            }
        )
        pause = n / rate - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
    client.close()
    gaps = [b["acked"] - a["acked"] for a, b in zip(acks, acks[1:], strict=False)]
    return {"acks": acks, "max_gap_s": max(gaps, default=0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clients.bench.inside")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("signup")
    p.add_argument("count", type=int)
    p = sub.add_parser("measure")
    p.add_argument("rate", help="orders/s, or max")
    p.add_argument("seconds", type=float)
    p.add_argument("--run", type=int, default=0)
    sub.add_parser("state")
    sub.add_parser("members")
    p = sub.add_parser("trader")
    p.add_argument("--gateways", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--silence", type=float, default=1.0, help="seconds before moving on")
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.what == "signup":
        out = signup(args.count)
    elif args.what == "measure":
        rate = None if args.rate == "max" else int(args.rate)
        out = measure(rate, args.seconds, run=args.run)
    elif args.what == "state":
        out = state()
    elif args.what == "members":
        out = members()
    else:
        result = trader(args.gateways.split(","), args.name, args.seconds, args.rate, args.silence)
        with open(args.out, "w") as fh:
            json.dump(result, fh)
        return 0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
