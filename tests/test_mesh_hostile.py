"""Hostile frames get a reject with a code each, while an honest client trades on."""

from __future__ import annotations

import random
import threading

import msgspec
import pytest
import zmq

from clients.client import Client
from services.common.codec import encode, reply_decoder
from services.common.money import to_units
from services.common.wire import CancelRequest, PlaceOrder, Rejected, Report, RequestRejected, Side
from tests.mesh import running

PASSWORD = "Secret.pw1"
pack = msgspec.msgpack.encode


def hostile_frames(rng: random.Random, victim_order: int) -> list[tuple[bytes, bool]]:
    """(frame, needs_login) pairs: every kind of bad input a client can send."""
    good = ["order", "c1", "AAPL", 1, 10, to_units("170.00"), 1, 1, False, 0]
    frames: list[tuple[bytes, bool]] = []

    def variant(index: int, value) -> bytes:
        bad = list(good)
        bad[1] = f"h{rng.randrange(10**9)}"
        bad[index] = value
        return pack(bad)

    while len(frames) < 1000:
        kind = len(frames) % 14
        if kind == 0:
            frames.append((rng.randbytes(rng.randrange(1, 200)), False))
        elif kind == 1:
            frames.append((pack(rng.choice([1, "x", None, 2.5, {}, [], {"a": 1}])), False))
        elif kind == 2:
            frames.append(
                (variant(rng.randrange(2, 10), rng.choice(["x", 2.5, None, [1], {}])), False)
            )
        elif kind == 3:
            frames.append((pack(good[: rng.randrange(0, 4)]), False))  # missing fields
        elif kind == 4:
            frames.append((pack(good + [1, "extra"]), False))  # extra fields
        elif kind == 5:
            frames.append((variant(4, rng.choice([0, -1, -(2**63)])), True))  # size
        elif kind == 6:
            frames.append((variant(4, rng.choice([2**63, 2**64 - 1, 10**12])), True))
        elif kind == 7:
            frames.append((variant(5, rng.choice([0, -100, 2**63, float("nan")])), True))
        elif kind == 8:
            frames.append((variant(2, rng.choice(["NOPE", "", "aapl", "A" * 300])), True))
        elif kind == 9:
            frames.append((variant(5, to_units("170.00") + rng.randrange(1, 100)), True))
        elif kind == 10:
            frames.append((encode(CancelRequest(f"x{len(frames)}", victim_order)), True))
        elif kind == 11:
            frames.append(
                (
                    encode(PlaceOrder(f"p{len(frames)}", "AAPL", Side.BUY, 10, to_units("170.00"))),
                    False,
                )
            )  # before login
        elif kind == 12:
            frames.append((variant(1, rng.choice(["", "x" * 37, "é", "\x00"])), True))
        else:
            frames.append((variant(3, rng.choice([0, 3, -1, True])), True))  # bad side
    return frames


@pytest.fixture
def mesh(short_home):
    """The mesh with the rate before login lifted: every hostile frame must reach the
    decoder and the checks (test_mesh_limits tests that rate)."""
    with running(short_home, security={"anonymous_rate": 10**6}) as m:
        yield m


def test_hostile_frames_are_rejected_while_honest_trading_goes_on(mesh):
    gateway = mesh.cfg.endpoints["gateway"]
    alice, bob = Client(gateway), Client(gateway)
    for c, name in ((alice, "alice"), (bob, "bob")):
        c.signup(name, PASSWORD)
        c.login(name, PASSWORD)
    victim = alice.place("AAPL", Side.SELL, 1, to_units("180.00")).ack.order_id
    Client(gateway).signup("mallory", PASSWORD)

    frames = hostile_frames(random.Random(7), victim)
    ctx = zmq.Context.instance()
    anon = ctx.socket(zmq.DEALER)
    anon.setsockopt(zmq.LINGER, 0)
    anon.connect(gateway)
    logged = Client(gateway)
    logged.login("mallory", PASSWORD)

    honest_errors: list[str] = []

    def honest() -> None:
        try:
            for i in range(60):
                sold = alice.place("TSLA", Side.SELL, 10, to_units("160.00"))
                bought = bob.place("TSLA", Side.BUY, 10, to_units("160.00"))
                fills = [e for e in bought.events if type(e).__name__ == "Fill"]
                # bob's own order traded in full, with a maker bob is not told of
                own = [(f.taker_order, f.qty, f.maker_account, f.maker_order) for f in fills]
                if not sold.ack.order_id or own != [(bought.ack.order_id, 10, 0, 0)]:
                    honest_errors.append(f"round {i}: {bought.events}")
        except Exception as exc:  # noqa: BLE001 - reported below
            honest_errors.append(repr(exc))

    thread = threading.Thread(target=honest)
    thread.start()
    codes: dict[int, int] = {}
    try:
        for frame, needs_login in frames:
            sock = logged.socket if needs_login else anon
            sock.send(frame)
            assert sock.poll(10_000), f"no answer to {frame!r}"
            reply = reply_decoder.decode(sock.recv())
            while isinstance(reply, Report) and not isinstance(reply.events[0], Rejected):
                assert sock.poll(10_000), f"{frame!r} answered by {reply}"
                reply = reply_decoder.decode(sock.recv())  # unrelated report, keep reading
            if isinstance(reply, Report):
                code = reply.events[0].code
            else:
                assert isinstance(reply, RequestRejected), reply
                assert reply.text
                code = reply.code
            codes[code] = codes.get(code, 0) + 1
    finally:
        thread.join(60)
        anon.close(0)
    assert sum(codes.values()) == 1000
    assert len(codes) >= 8, codes  # many different reasons, each with its own code
    assert not honest_errors, honest_errors[:3]
    assert alice.positions().positions["TSLA"] == -600
    assert bob.positions().positions["TSLA"] == 600
    assert [o.order_id for o in alice.orders().orders] == [victim]  # untouched by mallory
    for c in (alice, bob, logged):
        c.close()
