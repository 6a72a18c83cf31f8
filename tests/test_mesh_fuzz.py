"""Fuzzing the way in: hypothesis against the gateway's decoder and checks, then 10,000
random and mutated frames (EXCHANGE_FUZZ_FRAMES for more) against a running gateway
while an honest client trades. Nothing may die, every frame gets an answer, a reject
always says why, and the honest client ends with exactly the state its fills say."""

from __future__ import annotations

import os
import random
import threading
import time

import msgspec
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.client import Client
from services.common import config
from services.common.codec import DecodeError, encode, reply_decoder, request_decoder
from services.common.money import to_units
from services.common.wire import (
    REJECT_TEXT,
    AdminRequest,
    CancelRequest,
    ChangePassword,
    Fill,
    GetFills,
    LoggedIn,
    Login,
    PlaceOrder,
    Pong,
    ReplaceRequest,
    Report,
    Reports,
    RequestRejected,
    Resume,
    Side,
    Signup,
)
from services.gateway import validate
from tests.mesh import FAST_TIMINGS, Mesh, matcher_state, replay_journal

PASSWORD = "Secret.pw1"
CFG = config.load()
FRAMES = int(os.environ.get("EXCHANGE_FUZZ_FRAMES", "10000"))
SEED = int(os.environ.get("EXCHANGE_FUZZ_SEED", "11"))  # another corpus for longer runs

ints = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from([0, 1, -1, 2**63, 10**12]))
texts = st.one_of(st.text(max_size=40), st.sampled_from(["AAPL", "", "x" * 37, "é", "\x00"]))
requests = st.one_of(
    st.builds(PlaceOrder, texts, texts, ints, ints, ints, ints, ints, st.booleans(), ints),
    st.builds(CancelRequest, texts, ints),
    st.builds(ReplaceRequest, texts, ints, ints, ints),
    st.builds(AdminRequest, texts, st.sampled_from(["halt", "kill"]), texts, texts, ints),
    st.builds(ChangePassword, texts, texts, texts),
    st.builds(GetFills, texts, ints),
    st.builds(Login, texts, texts),
    st.builds(Resume, texts),
)


def mutate(frame: bytes, rng: random.Random) -> bytes:
    """Flip, drop, insert or truncate a few bytes of a valid frame."""
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        at = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            del data[at]
        elif op == 2:
            data.insert(at, rng.randrange(256))
        else:
            data = data[:at]
    return bytes(data)


def judge(payload: bytes) -> int | None:
    """What the gateway's pure front does with a frame: None if it decodes to a request
    the static checks pass, else a reject code; it must never raise anything else."""
    try:
        req = request_decoder.decode(payload)
    except DecodeError:
        assert isinstance(validate.readable_ref(payload), str)  # the reject's ref
        return 15  # MALFORMED
    if isinstance(req, PlaceOrder):
        code = validate.check_order(CFG, req)
    elif isinstance(req, CancelRequest):
        code = validate.check_cancel(req)
    elif isinstance(req, ReplaceRequest):
        code = validate.check_replace(CFG, req)
    else:
        return None
    if not code:
        assert validate.to_command(7, req).account == 7
    return code or None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), requests.map(encode)), st.randoms())
def test_decoder_and_checks_never_fail_open(payload, rng):
    for frame in (payload, mutate(payload, rng)):
        code = judge(frame)
        assert code is None or code in REJECT_TEXT


def corpus(rng: random.Random, count: int, victim: int) -> list[bytes]:
    """Random bytes, msgpack of the wrong shapes, and mutations of every valid request
    (including sign-ups, log-ins and other people's order ids)."""
    valid = [
        encode(PlaceOrder("f1", "AAPL", Side.BUY, 5, to_units("165.00"))),
        encode(PlaceOrder("f2", "TSLA", Side.SELL, 5, to_units("161.00"), post_only=True)),
        encode(CancelRequest("f3", victim)),
        encode(ReplaceRequest("f4", victim, to_units("169.00"), 1)),
        encode(AdminRequest("f5", "halt", "AAPL")),
        encode(ChangePassword("f6", PASSWORD, "Other.pw2")),
        encode(GetFills("AAPL", 3)),
        encode(Signup("fz", PASSWORD)),
        encode(Login("alice", "Guess.pw1")),
        encode(Resume("0" * 64)),
    ]
    shapes = [1, "x", None, 2.5, {}, [], {"a": [1, {"b": None}]}, [[[[[]]]]], "order"]
    out = []
    for i in range(count):
        roll = i % 10
        if roll == 0:
            out.append(rng.randbytes(rng.randrange(1, 300)))
        elif roll == 1:
            out.append(msgspec.msgpack.encode(rng.choice(shapes)))
        elif roll == 2:
            out.append(rng.choice(valid))  # valid frames from a session that may not own them
        else:
            out.append(mutate(rng.choice(valid), rng))
    return out


def answers_in(reply) -> list:
    return list(reply.reports) if type(reply) is Reports else [reply]


def test_whole_path_fuzz_with_an_honest_trader(short_home):
    # the anonymous half must reach the decoder, not stop at the rate before login
    mesh = Mesh(short_home, timings=FAST_TIMINGS, security={"anonymous_rate": 10**6})
    try:
        mesh.start()
        gateway = mesh.cfg.endpoints["gateway"]
        alice, bob = Client(gateway, timeout=20), Client(gateway, timeout=20)
        for c, name in ((alice, "alice"), (bob, "bob")):
            c.signup(name, PASSWORD)
            c.login(name, PASSWORD)
        victim = alice.place("AAPL", Side.SELL, 1, to_units("180.00")).ack.order_id
        Client(gateway).signup("mallory", PASSWORD)
        mallory = Client(gateway)
        mallory.login("mallory", PASSWORD)
        anon = zmq.Context.instance().socket(zmq.DEALER)
        anon.setsockopt(zmq.LINGER, 0)
        anon.connect(gateway)

        fills: list[Fill] = []  # bob's own record of his fills, from his reports
        problems: list[str] = []
        done = threading.Event()

        def honest() -> None:
            try:
                rounds = 0
                while not done.is_set() or rounds < 30:
                    alice.place("TSLA", Side.SELL, 3, to_units("160.00"))
                    bought = bob.place("TSLA", Side.BUY, 3, to_units("160.00"))
                    fills.extend(e for e in bought.events if type(e) is Fill)
                    rounds += 1
            except Exception as exc:  # noqa: BLE001 - reported below
                problems.append(repr(exc))

        trader = threading.Thread(target=honest)
        trader.start()
        frames = corpus(random.Random(SEED), FRAMES, victim)
        half = len(frames) // 2
        codes: dict[int, int] = {}
        try:
            # anonymous frames 50 in flight at a time; a session's one at a time, since
            # a repeat of a client order id still in flight is (by design) answered once
            for sock, batch, size in (
                (anon, frames[:half], 50),
                (mallory.socket, frames[half:], 1),
            ):
                for start in range(0, len(batch), size):
                    window = batch[start : start + size]
                    for frame in window:
                        sock.send(frame)
                    answered = 0
                    deadline = time.monotonic() + 30
                    while answered < len(window):
                        assert sock.poll(max(1, int((deadline - time.monotonic()) * 1000))), (
                            f"{len(window) - answered} frames unanswered near {start}"
                        )
                        for reply in answers_in(reply_decoder.decode(sock.recv())):
                            if isinstance(reply, RequestRejected):
                                assert reply.text and reply.code in REJECT_TEXT, reply
                                codes[reply.code] = codes.get(reply.code, 0) + 1
                                answered += 1
                            elif isinstance(reply, Pong | LoggedIn):
                                answered += 1
                            elif isinstance(reply, Report):
                                first = reply.events[0]
                                answered += hasattr(first, "cl_ord_id") or hasattr(first, "name")
                            else:  # positions, orders, fills, logged_out: one each
                                answered += 1
        finally:
            done.set()
            trader.join(60)
            anon.close(0)
        assert not problems, problems
        assert len(codes) >= 8 and codes.get(15, 0) > len(frames) // 10, codes
        for name, service in mesh.services.items():
            assert service.alive(), f"{name} died:\n{service.log()[-2000:]}"
        # the honest trader's positions and cash are exactly what his own fills say
        # (those answering his orders, and any that came later on his session)
        for report in bob.drain_reports():
            fills.extend(e for e in report.events if type(e) is Fill)
        position: dict[str, int] = {}
        cash = mesh.cfg.risk.opening_cash  # the account opened with it (a cash event)
        for f in {f.trade_id: f for f in fills}.values():
            bought = (f.side == Side.BUY) == (f.taker_account == bob.account)
            sign = 1 if bought else -1
            position[f.symbol] = position.get(f.symbol, 0) + sign * f.qty
            cash -= sign * f.qty * f.price
        held = bob.positions()
        assert held.positions == position and held.cash == cash
        assert position["TSLA"] > 0
        live = matcher_state(mesh.cfg)
        replayed = replay_journal(mesh)
        assert (replayed["last_seq"], replayed["state_hash"]) == (live.seq, live.state_hash)
        for c in (alice, bob, mallory):
            c.close()
    finally:
        mesh.stop()
