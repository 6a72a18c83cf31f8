"""docs/protocol.md, read by a client written from it alone: every documented message
decoded with the plain ``msgpack`` package (not msgspec), field by field against the
doc's tables; then a real gateway and marketdata spoken to through plain ZeroMQ
sockets: trailing elements ignored, ``reject.ref`` filled whenever the id is readable,
market order prices checked, ``pong`` saying whether the connection is logged in, a
notice when a session ends, and the snapshot endpoint answering a malformed request."""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgpack
import msgspec
import pytest
import zmq

from services.common import wire
from tests.mesh import FAST_TIMINGS, Mesh

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
PUBLIC = (wire.AnyRequest, wire.AnyReply, wire.AnyEvent, wire.AnyFeed)


def documented() -> dict[str, list[str]]:
    """tag -> the field names of its table, in order (element 1 onwards)."""
    out: dict[str, list[str]] = {}
    for tag, table in re.findall(r"#### `(\w+)` \(\w+\)\n(.*?)(?=\n#### |\n## |\Z)", DOC, re.S):
        fields = re.findall(r"^\| (\d+) \| `(\w+)`", table, re.M)
        # a tag used more than once (a request and its reply, a command, its event and
        # its feed message): the first keeps the tag, the others are tag#2, tag#3...
        key, n = tag, 1
        while key in out:
            n += 1
            key = f"{tag}#{n}"
        out[key] = [name for _, name in sorted(fields, key=lambda f: int(f[0]))]
    return out


DOCUMENTED = documented()


def example(info):
    """A value of a msgspec type, for an example message."""
    i = msgspec.inspect
    if isinstance(info, i.BoolType):
        return True
    if isinstance(info, i.IntType):
        return 7
    if isinstance(info, i.StrType):
        return "x"
    if isinstance(info, i.LiteralType):
        return info.values[-1]
    if isinstance(info, i.ListType):
        return [example(info.item_type)]
    if isinstance(info, i.DictType):
        return {"AAPL": 7}
    if isinstance(info, i.TupleType):
        return tuple(example(t) for t in info.item_types)
    if isinstance(info, i.UnionType):
        return example(info.types[0])
    if isinstance(info, i.StructType):
        return info.cls(**{f.name: example(f.type) for f in info.fields})
    raise AssertionError(f"no example for {info}")


def messages():
    for union in PUBLIC:
        yield from union.__args__


def fields_of(tag: str, cls) -> list[str]:
    """The doc's table for ``cls`` (a reply may share a request's tag)."""
    names = list(cls.__struct_fields__)
    for key, fields in DOCUMENTED.items():
        if key.split("#")[0] == tag and fields == names:
            return fields
    return DOCUMENTED.get(tag, [])


@pytest.mark.parametrize("cls", list(messages()), ids=lambda c: c.__name__)
def test_every_documented_message_decodes_with_plain_msgpack(cls):
    tag = cls.__struct_config__.tag
    assert tag in DOCUMENTED, f"{tag} has no table in docs/protocol.md"
    message = example(msgspec.inspect.type_info(cls))
    plain = msgpack.unpackb(wire.encode(message), raw=False, strict_map_key=False)
    assert isinstance(plain, list) and plain[0] == tag
    assert fields_of(tag, cls) == list(cls.__struct_fields__)  # the doc's order is the wire's
    for name, value in zip(cls.__struct_fields__, plain[1:], strict=True):
        want = msgpack.unpackb(msgpack.packb(msgspec.to_builtins(getattr(message, name))))
        assert value == want, (tag, name)


# -- a real exchange, through plain sockets ------------------------------------------------


class Plain:
    """A DEALER speaking MessagePack with the ``msgpack`` package only."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def ask(self, *message, timeout: float = 10.0) -> list:
        self.sock.send(msgpack.packb(list(message)))
        return self.next(timeout)

    def next(self, timeout: float = 10.0) -> list:
        assert self.sock.poll(int(timeout * 1000)), "no answer"
        reply = msgpack.unpackb(self.sock.recv(), raw=False, strict_map_key=False)
        check(reply)
        return reply

    def until(self, tag: str, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            reply = self.next(max(0.1, deadline - time.monotonic()))
            if reply[0] == tag:
                return reply


def check(message: list) -> None:
    """A message as the doc describes it: a known tag, no more elements than fields."""
    tag = message[0]
    assert tag in DOCUMENTED, tag
    widths = [len(v) for k, v in DOCUMENTED.items() if k.split("#")[0] == tag]
    assert len(message) - 1 <= max(widths), message
    if tag == "report":
        for event in message[3]:
            check(event)
    if tag == "reports":
        for report in message[1]:
            check(report)


AAPL_PX = 1_700_000


def test_a_client_from_the_doc_alone(short_home):
    mesh = Mesh(short_home, timings={**FAST_TIMINGS, "client_heartbeat_ms": 400})
    try:
        mesh.start()
        ctx = zmq.Context.instance()
        c = Plain(ctx, mesh.cfg.endpoints["gateway"])
        # before log-in: ping answers, and says the connection has no session
        assert c.ask("ping", 1) == ["pong", 1, False]
        # the id of a request that needs a session is named in the reject
        nope = c.ask("order", "early-1", "AAPL", 1, 10, AAPL_PX)
        assert nope[0] == "reject" and nope[1] == wire.Reject.NOT_LOGGED_IN
        assert nope[3] == "early-1"
        # a newer client's trailing elements are ignored, on every request
        signed = c.ask("signup", "plain", "Secret.pw1", "from-the-future")
        assert signed[0] == "report" and signed[3][0][0] == "account_created"
        logged = c.ask("login", "plain", "Secret.pw1", {"newer": 1})
        assert logged[0] == "logged_in" and len(logged[3]) == 64
        assert c.ask("ping", 2, "extra") == ["pong", 2, True]
        # (past ``expire_date``, the last field today)
        placed = c.ask("order", "o-1", "AAPL", 1, 10, AAPL_PX, 1, 1, False, 0, 0, "extra", 9)
        assert placed[0] == "report" and placed[3][0][:3] == ["accepted", placed[3][0][1], "o-1"]
        # readable ids are quoted in MALFORMED and BAD_CL_ORD_ID rejects
        bad = c.ask("order", "o-2", "AAPL", "one", 10)
        assert bad[:2] == ["reject", wire.Reject.MALFORMED] and bad[3] == "o-2"
        long_id = "L" * 50
        bad = c.ask("order", long_id, "AAPL", 1, 10, AAPL_PX)
        assert bad[:2] == ["reject", wire.Reject.BAD_CL_ORD_ID] and bad[3] == long_id[:40]
        # a gateway reject names the figures: the tick
        bad = c.ask("order", "o-3", "AAPL", 1, 10, AAPL_PX + 1)
        assert bad[1] == wire.Reject.BAD_PRICE and "0.01" in bad[2] and bad[3] == "o-3"
        # a market order names no price: -1 and 2**64-1 are refused, not journaled
        for i, price in enumerate((-1, 2**64 - 1, AAPL_PX)):
            bad = c.ask("order", f"m-{i}", "AAPL", 1, 10, price, 2, 2)
            assert bad[:2] == ["reject", wire.Reject.BAD_PRICE] and bad[3] == f"m-{i}", bad
        # refused by the gateway: the id is not used, so the same id goes through now
        market = c.ask("order", "m-0", "AAPL", 2, 5, 0, 2, 2)
        assert market[0] == "report" and market[3][0][0] == "accepted", market
        # a matcher's reject uses the id: its resend gets the same answer back
        banded = c.ask("order", "band-1", "AAPL", 1, 10, AAPL_PX * 2)
        assert banded[3][0][0] == "rejected" and banded[3][0][3] == wire.Reject.PRICE_BAND
        again = c.ask("order", "band-1", "AAPL", 1, 10, AAPL_PX)
        assert again[3][0][0] == "duplicate" and again[3][0][3][0] == "rejected"
        for query in (["positions"], ["orders", 0, 10], ["fills", "", 10]):
            answer = c.ask(*query)
            assert answer[0] == query[0], answer
        # silence: the session ends with a notice, and pong says so
        ended = c.until("notice", timeout=10)
        assert ended[2] == wire.NOTICE_SESSION_ENDED and "session ended" in ended[1]
        assert c.ask("ping", 3) == ["pong", 3, False]

        # the snapshot endpoint answers a malformed request, and serves real ones
        md = Plain(ctx, mesh.cfg.endpoints["marketdata_snapshot"])
        for junk in (b"\xc1", msgpack.packb(["snapshot_req"]), msgpack.packb({"a": 1})):
            md.sock.send(junk)
            err = md.next()
            assert err[:2] == ["feed_error", wire.Reject.MALFORMED], err
        snap = md.ask("snapshot_req", "AAPL", 0, "extra")
        assert snap[0] == "snapshot" and snap[4][0][0] == AAPL_PX
        assert md.ask("trades_req", "NOPE")[:2] == ["feed_error", wire.Reject.UNKNOWN_SYMBOL]
        c.sock.close(0)
        md.sock.close(0)
    finally:
        mesh.stop()
