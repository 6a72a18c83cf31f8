"""`exchange bench fix`: orders through the FIX gateway beside the native gateway.

One mesh (fsync on, the hot standby running, as `make run` starts it) with the FIX
service. Each side sends the same orders from one client with ``window`` in flight:
IOC buys below the market, so each is accepted and its remainder cancelled, and no
order rests or trades (the book stays the same from the first order to the last). A
FIX order's latency runs from its NewOrderSingle written to the socket to its
ExecutionReport (ExecType New) read; a native order's from its ``order`` request to
the execution report carrying its ``accepted``. The FIX side is measured first, then
the native side, on the same mesh. The per-session rate limits are lifted (they are
a policy, not the capacity being measured).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

from clients.bench.cluster import Mesh, Service, free_port, wait_for
from clients.bench.engine import percentile
from clients.client import Client
from services.common.wire import Accepted, PlaceOrder, Side, Tif
from services.fix import codec

PASSWORD = "Bench.pw1"
PRICE = 1_600_000  # $160.00 on AAPL (reference $170.00): inside the band, below any ask
WINDOW = 32
ORDERS = 5_000


def _summary(latencies: list[float], elapsed: float) -> dict:
    ordered = sorted(latencies)
    return {
        "orders": len(ordered),
        "orders_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
    }


def _closed_loop(orders: int, window: int, send, answered) -> dict:
    """Send ``orders`` keeping ``window`` in flight: ``send(i)`` sends order i and
    returns its key, ``answered()`` yields the keys whose first report came in."""
    sent: dict = {}
    latencies: list[float] = []
    began = time.perf_counter()
    next_id = 0
    while len(latencies) < orders:
        while next_id < orders and len(sent) < window:
            at = time.perf_counter()
            sent[send(next_id)] = at
            next_id += 1
        for key in answered():
            at = sent.pop(key, None)
            if at is not None:
                latencies.append(time.perf_counter() - at)
    return _summary(latencies, time.perf_counter() - began)


def _message(msg_type: str, seq: int, fields: str) -> bytes:
    """A whole FIX message built by string formatting: the load generator must cost
    little beside the service it measures (the service uses simplefix)."""
    body = f"35={msg_type}\x0149=BENCH\x0156=EXCHANGE\x0134={seq}\x0152={codec.utc_timestamp()}\x01"
    head = f"8=FIX.4.4\x019={len(body) + len(fields)}\x01".encode()
    data = head + body.encode() + fields.encode()
    return data + b"10=%03d\x01" % codec.checksum(data)


class _Reader:
    """Messages off a socket as tag -> value dicts, split at the CheckSum field."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self) -> list[dict[bytes, bytes]]:
        while True:
            self.buf += self.sock.recv(1 << 16)
            out = []
            while (end := self.buf.find(b"\x0110=")) >= 0 and len(self.buf) >= end + 8:
                raw, self.buf = self.buf[: end + 1], self.buf[end + 8 :]
                out.append(dict(f.split(b"=", 1) for f in raw.split(b"\x01") if f))
            if out:
                return out


def run_fix(port: int, name: str, orders: int, window: int) -> dict:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = _Reader(sock)
    seq = 0

    def send(msg_type: str, fields: str) -> None:
        nonlocal seq
        seq += 1
        sock.sendall(_message(msg_type, seq, fields))

    def read() -> list:
        return reader.read()

    send("A", f"98=0\x01108=30\x01553={name}\x01554={PASSWORD}\x01141=Y\x01")
    while not any(m[b"35"] == b"A" for m in read()):
        pass

    def order(i: int) -> bytes:
        send("D", f"11=b{i}\x0155=AAPL\x0154=1\x0138=1\x0140=2\x0144=160.00\x0159=3\x01")
        return f"b{i}".encode()

    def answered():
        for msg in read():
            kind = msg[b"35"]
            if kind == b"8" and msg.get(b"150") in (b"0", b"8"):
                yield msg.get(b"11")
            elif kind == b"1":  # a TestRequest while we were busy
                send("0", f"112={msg[b'112'].decode()}\x01")

    result = _closed_loop(orders, window, order, answered)
    send("5", "")
    sock.close()
    return result


def run_native(endpoint: str, name: str, orders: int, window: int) -> dict:
    client = Client(endpoint, timeout=30)
    client.login(name, PASSWORD)

    def order(i: int) -> str:
        client.send(PlaceOrder(f"n{i}", "AAPL", Side.BUY, 1, PRICE, tif=Tif.IOC))
        return f"n{i}"

    def answered():
        for event in client.next_report(30).events:
            if type(event) is Accepted:
                yield event.cl_ord_id

    result = _closed_loop(orders, window, order, answered)
    client.logout()
    client.close()
    return result


def run(orders: int = ORDERS, window: int = WINDOW) -> dict:
    home = Path(tempfile.mkdtemp(prefix="exb-", dir="/tmp"))
    unlimited = {
        "session_rate": 10**9,
        "account_rate": 10**9,
        "max_in_flight_per_account": 10**6,
    }
    port = free_port()
    fix = {"port": port, "message_rate": 10.0**9}
    mesh = Mesh(home, standby=True, journal={"fsync": True}, security=unlimited, fix=fix)
    mesh.services["fix"] = Service("fix", mesh.config_path, home)
    try:
        mesh.start()
        wait_for(lambda: '"ready"' in mesh["fix"].log(), 20, what="the FIX service")
        endpoint = mesh.cfg.endpoints["gateway"]
        signup = Client(endpoint)
        for name in ("fixbench", "natbench"):
            signup.signup(name, PASSWORD)
        signup.close()
        return {
            "orders": orders,
            "window": window,
            "fix": run_fix(port, "fixbench", orders, window),
            "native": run_native(endpoint, "natbench", orders, window),
        }
    finally:
        mesh.stop()
        shutil.rmtree(home, ignore_errors=True)


def render(result: dict) -> str:
    lines = [
        f"{result['orders']} IOC orders each, {result['window']} in flight, fsync on",
        f"{'gateway':<8} {'orders/s':>10} {'p50 (ms)':>10} {'p99 (ms)':>10}",
    ]
    for side in ("fix", "native"):
        r = result[side]
        lines.append(
            f"{side:<8} {r['orders_per_s']:>10,.0f} {r['p50_ms']:>10.3f} {r['p99_ms']:>10.3f}"
        )
    return "\n".join(lines)
