"""The floor under `exchange bench sustained`: the mesh's hops with no exchange in them.

Three processes relay an order the way the mesh carries it, with the same sockets,
codec and group commit, and nothing else: no sessions, validation, book, risk,
accounts, marketdata, standby, beats or gap recovery.

  load --DEALER--> gateway (ROUTER) --DEALER--> matcher (ROUTER) --PUB--> journal (SUB)
       <--ROUTER-- gateway (SUB) <--PUB-- journal: append with CRCs, fdatasync, publish

- gateway: decodes each client frame (a PlaceOrder), forwards what one drain holds as
  one frame to the matcher; from the journal's stream it answers each order with an
  execution report holding one ``Accepted``, one frame per connection per drain.
- matcher: numbers each order and publishes a drained batch as one message.
- journal: writes each record with its length and CRC32 into a preallocated file
  (data-only ``fdatasync``, as into the journal's spare segments), syncs once for all
  it drained, at most once per ``min_sync_interval_us`` (what arrives while it waits
  shares the sync), then publishes the records.

`exchange bench sustained` drives it with the same load processes at the same rates,
beside the mesh, so a latency reads as a multiple of what the processes and hops
alone cost on this host. Run as ``python -m clients.bench.relay ROLE DIR FRONT``.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import msgspec
import zmq

from services.common.frames import NOBLOCK, recv_frames, send_frame, send_pair
from services.common.runtime import batch_io_threads, die_with_parent, tune_gc
from services.common.wire import Accepted, PlaceOrder, Report, Reports, encode

ROLES = ("journal", "matcher", "gateway")
TOPIC = b"r"
DRAIN = 256  # frames a loop turn takes at most, as the matcher's
RING_BYTES = 16 << 20  # the journal's file: written over in a ring, never grown
ROOT = Path(__file__).resolve().parents[2]


class Order(msgspec.Struct, array_like=True, gc=False):
    """What the gateway forwards and the journal stores: an order-sized record."""

    seq: int
    conn: int
    cl_ord_id: str
    symbol: str
    side: int
    qty: int
    price: int


orders_decoder = msgspec.msgpack.Decoder(list[Order])
raw_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
place_decoder = msgspec.msgpack.Decoder(PlaceOrder)
HEAD = struct.Struct("<II")  # length, CRC32


def endpoints(directory: Path) -> dict[str, str]:
    return {
        "matcher": f"ipc://{directory}/relay-in",
        "matcher_pub": f"ipc://{directory}/relay-pub",
        "journal_pub": f"ipc://{directory}/relay-journal",
    }


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)  # the load's window bounds what is in flight
    sock.setsockopt(zmq.RCVHWM, 0)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, TOPIC)
    return sock


def gateway(ctx: zmq.Context, directory: Path, front_endpoint: str) -> None:
    ends = endpoints(directory)
    front = _socket(ctx, zmq.ROUTER)
    front.bind(front_endpoint)
    back = _socket(ctx, zmq.DEALER)
    back.connect(ends["matcher"])
    sub = _socket(ctx, zmq.SUB)
    sub.connect(ends["journal_pub"])
    idents: list[bytes] = []
    conns: dict[bytes, int] = {}
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(sub, zmq.POLLIN)
    tune_gc()
    while True:
        ready = dict(poller.poll(1000))
        if front in ready:
            batch = []
            for _ in range(DRAIN):
                try:
                    ident, frame = recv_frames(front, NOBLOCK)
                except zmq.Again:
                    break
                o = place_decoder.decode(frame)
                conn = conns.get(ident)
                if conn is None:
                    conn = conns[ident] = len(idents)
                    idents.append(ident)
                batch.append(Order(0, conn, o.cl_ord_id, o.symbol, o.side, o.qty, o.price))
            if batch:
                send_frame(back, encode(batch))
        if sub in ready:
            replies: dict[int, list[Report]] = {}
            while True:
                try:
                    _, frame = recv_frames(sub, NOBLOCK)
                except zmq.Again:
                    break
                for o in orders_decoder.decode(frame):
                    ack = Accepted(o.conn, o.cl_ord_id, o.seq, o.symbol, o.side, o.price, o.qty)
                    replies.setdefault(o.conn, []).append(Report(o.seq, 1, [ack]))
            for conn, reports in replies.items():
                reply = reports[0] if len(reports) == 1 else Reports(reports)
                send_pair(front, idents[conn], encode(reply))


def matcher(ctx: zmq.Context, directory: Path) -> None:
    ends = endpoints(directory)
    router = _socket(ctx, zmq.ROUTER)
    router.bind(ends["matcher"])
    pub = _socket(ctx, zmq.PUB)
    pub.bind(ends["matcher_pub"])
    seq = 0
    tune_gc()
    while True:
        if not router.poll(1000):
            continue
        out: list[Order] = []
        for _ in range(DRAIN):
            try:
                _, frame = recv_frames(router, NOBLOCK)
            except zmq.Again:
                break
            for o in orders_decoder.decode(frame):
                seq += 1
                o.seq = seq
                out.append(o)
        send_pair(pub, TOPIC, encode(out))


def journal(ctx: zmq.Context, directory: Path, fsync: bool, sync_interval_us: int) -> None:
    ends = endpoints(directory)
    sub = _socket(ctx, zmq.SUB)
    sub.connect(ends["matcher_pub"])
    pub = _socket(ctx, zmq.PUB)
    pub.bind(ends["journal_pub"])
    fd = os.open(directory / "relay.journal", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    chunk = bytes(1 << 20)
    for offset in range(0, RING_BYTES, len(chunk)):  # every block exists before timing
        os.pwrite(fd, chunk, offset)
    os.fsync(fd)
    at = 0
    interval = sync_interval_us / 1e6
    next_sync = 0.0
    pack, crc = HEAD.pack, zlib.crc32

    def drain() -> list[msgspec.Raw]:
        raws: list[msgspec.Raw] = []
        while True:
            try:
                _, frame = recv_frames(sub, NOBLOCK)
            except zmq.Again:
                return raws
            raws += raw_decoder.decode(frame)

    def append(raws: list[msgspec.Raw]) -> None:
        nonlocal at
        data = b"".join(pack(len(r), crc(r)) + bytes(r) for r in raws)
        if at + len(data) > RING_BYTES:
            at = 0
        os.pwrite(fd, data, at)
        at += len(data)

    tune_gc()
    while True:
        if not sub.poll(1000):
            continue
        raws = drain()
        if not raws:
            continue
        append(raws)
        if fsync:
            wait = next_sync - time.monotonic()
            if wait > 0:  # paced as the journal's group commit: late comers share it
                time.sleep(wait)
                more = drain()
                append(more)
                raws += more
            next_sync = time.monotonic() + interval
            os.fdatasync(fd)
        send_pair(pub, TOPIC, encode(raws))


class Relay:
    """The three relay processes in ``directory``, the gateway's front on ``front``;
    stopped by PID."""

    def __init__(self, directory: Path, front: str, fsync: bool, sync_interval_us: int):
        self.directory = directory
        self.front = front
        self.args = {"journal": [str(int(fsync)), str(sync_interval_us)]}
        self.procs: list[subprocess.Popen] = []

    def start(self, timeout: float = 30.0) -> Relay:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for role in ROLES:
            argv = [sys.executable, "-m", "clients.bench.relay", role, str(self.directory)]
            argv += [self.front] if role == "gateway" else self.args.get(role, [])
            self.procs.append(
                subprocess.Popen(
                    argv, cwd=ROOT, env=env, preexec_fn=lambda: die_with_parent(signal.SIGTERM)
                )
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Send orders until one comes back: every subscription is joined."""
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.front)
        deadline = time.monotonic() + timeout
        try:
            for i in range(1_000_000):
                send_frame(sock, encode(PlaceOrder(f"ready-{i}", "X", 1, 1, 1)))
                if sock.poll(100):
                    return
                dead = [p.returncode for p in self.procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the relay did not come up (exit codes {dead})")
        finally:
            sock.close(0)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def main(argv: list[str]) -> None:
    role, directory = argv[0], Path(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # nothing to flush or close
    ctx = zmq.Context()
    batch_io_threads(ctx)  # as every service's I/O threads
    if role == "gateway":
        gateway(ctx, directory, argv[2])
    elif role == "matcher":
        matcher(ctx, directory)
    else:
        journal(ctx, directory, argv[2] == "1", int(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
