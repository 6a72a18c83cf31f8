"""CURVE between the exchange's own services: with every internal link on tcp:// and
`[security] curve = true`, the mesh trades, fails nothing, and replays; a socket
without the mesh's key gets not one record off the journal's feed nor an answer from
the matcher; and a capture of the loopback traffic finds no plaintext on those links
(while the public market-data port, left plain on purpose, shows its symbols)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import warnings
from pathlib import Path

import zmq
import zmq.auth

from clients import settings
from clients.client import Client, snapshot
from clients.core import curve_client
from services.common import curve
from services.common.bus import TOPIC_RECORDS, StateQuery
from services.common.codec import bus_decoder, encode
from services.common.config import matcher_endpoints
from services.common.money import to_units
from services.common.status import current_primary
from services.common.wire import Side
from tests.mesh import Mesh, exchange_cli, free_port, replay_journal
from tests.test_curve import PLAIN_REFUSED, handshake_events

PASSWORD = "Zebra.corn.42"
NAME = "zebracorn"  # distinctive: it travels gateway -> matcher -> journal in a command
INTERNAL = (
    "matcher_in",
    "matcher_pub",
    "matcher_b_in",
    "matcher_b_pub",
    "journal_pub",
    "journal_read",
    "heartbeat",
    "status_pub",
)


class Sniffer(threading.Thread):
    """TCP payloads seen on the loopback interface, by port (AF_PACKET; needs root)."""

    def __init__(self, ports: set[int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.seen: dict[int, bytearray] = {p: bytearray() for p in ports}
        self.stopping = threading.Event()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                frame = self.sock.recv(65_600)
            except TimeoutError:
                continue
            if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue  # not IPv4 TCP
            ip = frame[14:]
            tcp = ip[(ip[0] & 0x0F) * 4 :]
            src, dst = struct.unpack("!HH", tcp[:4])
            payload = tcp[(tcp[12] >> 4) * 4 :]
            for port in (src, dst):
                if port in self.seen and len(self.seen[port]) < 8_000_000:
                    self.seen[port] += payload

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.sock.close()


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_service_links_over_tcp_are_curve(short_home):
    endpoints = {name: f"tcp://127.0.0.1:{free_port()}" for name in INTERNAL}
    mesh = Mesh(
        short_home,
        standby=True,
        endpoints=endpoints,
        timings={"heartbeat_ms": 50, "missed_beats": 4},
        security={"curve": True},
    )
    made = exchange_cli(
        "keys", "client", "traders", "--json", home=short_home, config_path=mesh.config_path
    )
    assert made.returncode == 0, made.stdout + made.stderr
    keys_dir = curve.key_dir(mesh.cfg)
    assert (keys_dir / "authorized_services" / "mesh.key").exists()
    assert oct((keys_dir / "mesh.key_secret").stat().st_mode)[-3:] == "600"
    client_keys = settings.client_keys(
        Path(json.loads(made.stdout)["client_secret"]), keys_dir / "server.key"
    )
    internal_ports = {port_of(endpoints[n]) for n in INTERNAL}
    public_port = port_of(mesh.cfg.endpoints["marketdata_snapshot"])
    try:
        sniffer = Sniffer(internal_ports | {public_port})
        sniffer.start()
    except (OSError, PermissionError) as exc:  # no raw sockets here: the rest still runs
        warnings.warn(f"no loopback capture ({exc}); encryption not checked", stacklevel=1)
        sniffer = None
    ctx = zmq.Context.instance()
    try:
        mesh.start()
        gateway = mesh.cfg.endpoints["gateway"]
        with (
            Client(gateway, curve_keys=client_keys) as a,
            Client(gateway, curve_keys=client_keys) as b,
        ):
            a.signup(NAME, PASSWORD)
            a.login(NAME, PASSWORD)
            b.signup("bob", PASSWORD)
            b.login("bob", PASSWORD)
            for _ in range(20):
                a.place("AAPL", Side.SELL, 10, to_units("170.00"))
                b.place("AAPL", Side.BUY, 10, to_units("170.00"))
            assert b.positions().positions == {"AAPL": 200}
            assert a.positions().positions == {"AAPL": -200}
        assert snapshot(mesh.cfg.endpoints["marketdata_snapshot"], "AAPL").symbol == "AAPL"

        # outsiders on the internal links: a plain socket and one with its own key; the
        # primary's command port (either matcher may have reported in first)
        primary = current_primary(mesh.status())
        assert primary is not None, "no primary matcher"
        matcher_in = "matcher_in" if primary[0] == "a" else "matcher_b_in"
        stranger = zmq.curve_keypair()
        mesh_public, _ = zmq.auth.load_certificate(keys_dir / "mesh.key")
        for keys, refused in (
            ((*stranger, mesh_public), {zmq.EVENT_HANDSHAKE_FAILED_AUTH}),
            (None, PLAIN_REFUSED),
        ):
            for kind, endpoint in ((zmq.SUB, "journal_pub"), (zmq.DEALER, matcher_in)):
                sock = ctx.socket(kind)
                sock.setsockopt(zmq.LINGER, 0)
                if kind == zmq.SUB:
                    sock.setsockopt(zmq.SUBSCRIBE, TOPIC_RECORDS)
                if keys is not None:
                    curve_client(sock, keys)
                monitor = sock.get_monitor_socket()
                sock.connect(endpoints[endpoint])
                if kind == zmq.DEALER:
                    with contextlib.suppress(zmq.Again):
                        sock.send(encode(StateQuery()), zmq.NOBLOCK)
                seen = handshake_events(monitor, 5.0)
                assert seen & refused and zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen, (
                    endpoint,
                    seen,
                )
                with Client(gateway, curve_keys=client_keys) as more:  # traffic meanwhile
                    more.login("bob", PASSWORD)
                    more.place("AAPL", Side.BUY, 10, to_units("169.00"))
                assert not sock.poll(500), f"an outsider got a frame from {endpoint}"
                sock.disable_monitor()
                monitor.close(0)
                sock.close(0)

        # the mesh's own key gets in: the live state, then replay agrees with it
        curve.use_for_services(mesh.cfg)
        query = ctx.socket(zmq.DEALER)
        query.setsockopt(zmq.LINGER, 0)
        curve.link(query, matcher_endpoints(mesh.cfg, primary[0])[0])
        query.send(encode(StateQuery()))
        assert query.poll(5_000), "the matcher did not answer its own mesh's key"
        live = bus_decoder.decode(query.recv())
        query.close(0)
        replayed = replay_journal(mesh)
        assert (replayed["last_seq"], replayed["state_hash"]) == (live.seq, live.state_hash)
        for name in ("matcher-a", "matcher-b", "journal", "heartbeat", "gateway"):
            assert mesh[name].alive(), mesh[name].log()[-2000:]
    finally:
        mesh.stop()
        if sniffer is not None:
            sniffer.stop()
    if sniffer is not None:
        internal = b"".join(bytes(sniffer.seen[p]) for p in internal_ports)
        assert len(internal) > 20_000, "the capture saw too little of the mesh's traffic"
        assert b"AAPL" in sniffer.seen[public_port], "the capture does not work"
        for plain in (NAME.encode(), b"AAPL", b"scrypt$"):
            assert plain not in internal, f"{plain!r} crossed an internal link in clear"
