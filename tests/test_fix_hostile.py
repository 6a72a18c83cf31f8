"""Hostile FIX input: bad checksum, bad body length, missing required tags, wrong
sequence numbers, a Logon with a bad password, oversized messages and a flood each
get the FIX-standard answer, while a QuickFIX session beside them trades on and sees
nothing of it. The hostile side writes raw bytes (an engine would refuse to send
them); the honest side is the independent engine."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from services.common.money import to_units
from services.common.wire import Side
from tests.fixclient import SOH, FixClient, fields
from tests.mesh import running, trader, wait_for

PASSWORD = "Secret.pw1"


def frame(body: str, length_delta: int = 0, checksum_delta: int = 0) -> bytes:
    """8=FIX.4.4|9=len|body|10=sum, with a wrong BodyLength or CheckSum on request."""
    head = f"8=FIX.4.4{SOH}9={len(body) + length_delta}{SOH}"
    total = (sum((head + body).encode()) + checksum_delta) % 256
    return (head + body + f"10={total:03d}{SOH}").encode()


def body(msg_type: str, seq: int, *pairs, sender: str = "EVE1", poss_dup: bool = False) -> str:
    header = [(35, msg_type), (49, sender), (56, "EXCHANGE"), (34, seq)]
    header += [(43, "Y")] if poss_dup else []
    header += [(52, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()))]
    return "".join(f"{tag}={value}{SOH}" for tag, value in header + list(pairs))


class Raw:
    """A FIX counterparty made of a socket: whatever bytes the test wants."""

    def __init__(self, port: int, sender: str = "EVE1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sender = sender
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def msg(self, msg_type: str, seq: int, *pairs, **kw) -> None:
        self.send(frame(body(msg_type, seq, *pairs, sender=self.sender, **kw)))

    def logon(self, password: str = PASSWORD, seq: int = 1, name: str = "eve") -> None:
        self.msg("A", seq, (98, 0), (108, 30), (553, name), (554, password))

    @classmethod
    def logged_on(cls, mesh, sender: str) -> Raw:
        raw = cls(mesh.cfg.fix.port, sender)
        raw.logon()
        raw.until("A")
        return raw

    def read(self, timeout: float = 5.0) -> dict | None:
        """The next whole message, or None when the connection closed."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.buf.find(b"\x0110=")
            if end >= 0 and len(self.buf) >= end + 8:
                raw, self.buf = self.buf[: end + 8], self.buf[end + 8 :]
                return fields(raw.decode())
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no message from the FIX service") from None
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data

    def until(self, msg_type: str, timeout: float = 5.0) -> dict:
        while True:
            msg = self.read(timeout)
            assert msg is not None, f"closed before a {msg_type}"
            if msg["35"] == msg_type:
                return msg

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the service closed the connection (what it sent before is skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.read(deadline - time.monotonic()) is None:
                    return True
            except AssertionError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def hostile_mesh(tmp_path_factory):
    home = Path(tempfile.mkdtemp(prefix="exh-", dir="/tmp"))
    try:
        with running(home, fix={"message_rate": 200.0}) as mesh:
            wait_for(lambda: '"ready"' in mesh["fix"].log(), 20, what="the FIX service")
            trader(mesh, "eve").close()
            trader(mesh, "honest").close()
            mesh.clients = tmp_path_factory.mktemp("quickfix")
            yield mesh
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def honest(hostile_mesh):
    """A QuickFIX session trading beside the attacks; it must notice none of them."""
    mesh = hostile_mesh
    client = FixClient(mesh.clients / "HONEST1", mesh.cfg.fix.port, "HONEST1", "honest").start()
    yield client
    admin = [m for m in client.app.admin if m["35"] in "2345"]
    client.new_order(f"h{time.monotonic_ns()}", "1", 1, "165.00")
    client.next(t150="0")
    client.stop()
    assert admin == []  # no Reject, ResendRequest, SequenceReset or Logout reached it


def test_bad_password_gets_logout_and_disconnect(hostile_mesh, honest):
    eve = Raw(hostile_mesh.cfg.fix.port)
    eve.logon(password="Wrong.pw1")
    logout = eve.until("5")
    assert "logon refused" in logout["58"]
    assert eve.closed()


def test_first_message_not_a_logon_is_dropped(hostile_mesh, honest):
    eve = Raw(hostile_mesh.cfg.fix.port)
    eve.msg("D", 1, (11, "x"), (55, "AAPL"), (54, 1), (38, 1), (40, 1))
    assert eve.closed()


def test_garbled_messages_are_dropped_and_the_gap_is_asked_for(hostile_mesh, honest):
    eve = Raw(hostile_mesh.cfg.fix.port, "EVE2")
    eve.logon(seq=1)
    logon = eve.until("A")
    eve.send(frame(body("1", 2, (112, "bad-sum"), sender="EVE2"), checksum_delta=1))
    eve.send(frame(body("1", 2, (112, "bad-len"), sender="EVE2"), length_delta=3))
    eve.msg("1", 3, (112, "after"))  # 2 was never received: a gap
    ask = eve.until("2")
    assert (ask["7"], ask["16"]) == ("2", "0")
    assert int(ask["34"]) == int(logon["34"]) + 1
    eve.msg("4", 2, (123, "Y"), (36, 4), poss_dup=True)  # gap fill 2..3
    eve.msg("1", 4, (112, "ok"))
    beat = eve.until("0")
    assert beat["112"] == "ok"
    eve.msg("5", 5)
    assert eve.until("5")
    eve.close()


def test_missing_tags_and_bad_values_get_session_rejects(hostile_mesh, honest):
    eve = Raw.logged_on(hostile_mesh, "EVE3")
    eve.msg("D", 2, (11, "m1"), (54, 1), (38, 10), (40, 2), (44, "170.00"))  # no Symbol
    reject = eve.until("3")
    assert (reject["45"], reject["371"], reject["373"]) == ("2", "55", "1")
    eve.msg("D", 3, (11, "m2"), (55, "AAPL"), (54, 7), (38, 10), (40, 2), (44, "170.00"))
    reject = eve.until("3")
    assert (reject["371"], reject["373"]) == ("54", "5")
    eve.msg("D", 4, (11, "m3"), (55, "AAPL"), (54, 1), (38, "ten"), (40, 2), (44, "170.00"))
    assert eve.until("3")["373"] == "6"
    eve.msg("V", 5, (262, "md"))  # market data is not offered here
    business = eve.until("j")
    assert (business["45"], business["372"], business["380"]) == ("5", "V", "3")
    eve.msg("1", 6, (112, "still here"))
    assert eve.until("0")["112"] == "still here"
    eve.close()


def test_sequence_number_too_low_ends_the_session(hostile_mesh, honest):
    eve = Raw.logged_on(hostile_mesh, "EVE4")
    eve.msg("0", 2)
    eve.msg("0", 2)  # again, without PossDupFlag
    logout = eve.until("5")
    assert "MsgSeqNum too low" in logout["58"]
    assert eve.closed()
    again = Raw(hostile_mesh.cfg.fix.port, "EVE4")  # the next logon carries on at 3
    again.logon(seq=1)
    assert "MsgSeqNum too low" in again.until("5")["58"]
    again = Raw(hostile_mesh.cfg.fix.port, "EVE4")
    again.logon(seq=3)
    assert again.until("A")
    again.close()


def test_flood_and_oversized_messages_end_only_that_session(hostile_mesh, honest):
    eve = Raw.logged_on(hostile_mesh, "EVE5")
    eve.send(b"".join(frame(body("0", seq, sender="EVE5")) for seq in range(2, 2_000)))
    logout = eve.until("5")
    assert logout["58"] == "message rate exceeded"
    assert eve.closed()
    big = Raw.logged_on(hostile_mesh, "EVE6")
    big.send(f"8=FIX.4.4{SOH}9=99999999{SOH}35=0{SOH}".encode())
    assert "BodyLength" in big.until("5")["58"]
    assert big.closed()
    bob = trader(hostile_mesh, "hbob")
    bob.place("AAPL", Side.SELL, 1, to_units("170.00"))
    bob.close()
