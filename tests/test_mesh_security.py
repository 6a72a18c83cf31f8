"""Credentials, sessions, authorization and limits through the real gateway, and no
secret anywhere it could leak: logs, journal, snapshots, replies."""

from __future__ import annotations

import time

import pytest

from clients.client import Client, ExchangeError
from services.common.codec import encode, reply_decoder
from services.common.money import to_units
from services.common.wire import (
    AccountBlocked,
    Cancelled,
    CancelReason,
    Ping,
    Reject,
    Side,
    SymbolHalted,
)
from services.journal import tools as journal_tools
from tests.mesh import Mesh, matcher_state, replay_journal

# distinctive, so a grep for them cannot match anything by accident
ALICE_PW = "Alice.Secret.7f3a9"
ALICE_NEW = "Alice.Renewed.9c2b1"
OPS_PW = "Ops.Secret.4d8e2"
BOB_PW = "Bob.Secret.1a6f5"


@pytest.fixture
def secure_mesh(short_home):
    mesh = Mesh(
        short_home,
        timings={"heartbeat_ms": 50, "missed_beats": 4},
        security={
            "operators": ["ops"],
            "login_free_tries": 2,
            "login_max_backoff_s": 2,
            "max_sessions_per_account": 3,
            "session_rate": 100,  # bursts of 200
            "token_ttl_s": 30,
        },
    )
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()


def connect(mesh: Mesh, name: str | None = None, password: str | None = None) -> Client:
    client = Client(mesh.cfg.endpoints["gateway"], timeout=10)
    if name:
        client.login(name, password)
    return client


def code_of(call) -> int:
    with pytest.raises(ExchangeError) as err:
        call()
    return err.value.code


def test_credentials_sessions_authorization_limits_and_no_leaks(secure_mesh, short_home):
    mesh = secure_mesh
    # "ops" is listed before anyone signed it up: the gateway says so at start
    assert "operator_unclaimed" in mesh["gateway"].log()
    with connect(mesh) as c:
        for name, pw in (("alice", ALICE_PW), ("bob", BOB_PW), ("ops", OPS_PW)):
            c.signup(name, pw)
    replies: list = []  # every reply any client got, to grep for secrets at the end

    # -- back-off after failed log-ins (2 free tries, then 2 s) ----------------------
    guesser = connect(mesh)
    assert code_of(lambda: guesser.login("alice", "Wrong.pass1")) == Reject.BAD_CREDENTIALS
    assert code_of(lambda: guesser.login("alice", "Wrong.pass2")) == Reject.BAD_CREDENTIALS
    assert code_of(lambda: guesser.login("alice", "Wrong.pass3")) == Reject.BAD_CREDENTIALS
    # locked now: even the right password waits, and costs the gateway no hashing
    assert code_of(lambda: guesser.login("alice", ALICE_PW)) == Reject.TOO_MANY_ATTEMPTS
    time.sleep(2.2)
    alice = connect(mesh, "alice", ALICE_PW)  # the lock has passed
    guesser.close()

    # -- tokens: resume elsewhere, log out ends them, sessions per account ---------------
    logged = alice.login("alice", ALICE_PW)
    assert len(logged.token) == 64 and 0 < logged.expires_in_s <= 30 and not logged.operator
    replies.append(logged)
    second = connect(mesh)
    assert second.resume(logged.token).account == logged.account  # same session, no password
    assert second.positions().account == logged.account
    third = connect(mesh)
    assert code_of(lambda: third.resume("0" * 64)) == Reject.BAD_TOKEN
    fourth = connect(mesh, "alice", ALICE_PW)  # alice, second, fourth: the limit of 3
    assert code_of(lambda: third.login("alice", ALICE_PW)) == Reject.TOO_MANY_SESSIONS
    token = fourth.login("alice", ALICE_PW).token  # a fresh log-in, a fresh token
    fourth.logout()  # ends that token on every connection
    assert code_of(lambda: third.resume(token)) == Reject.BAD_TOKEN
    other = fourth.login("alice", ALICE_PW).token  # another session, ended below

    # -- authorization: only one's own orders -------------------------------------
    bob = connect(mesh, "bob", BOB_PW)
    resting = alice.place("AAPL", Side.BUY, 10, to_units("169.00")).ack.order_id
    assert code_of(lambda: bob.cancel(resting)) == Reject.UNKNOWN_ORDER
    assert code_of(lambda: bob.replace(resting, to_units("168.00"), 5)) == Reject.UNKNOWN_ORDER
    assert bob.orders().orders == [] and len(alice.orders().orders) == 1
    assert code_of(lambda: bob.admin("halt", "AAPL")) == Reject.NOT_AUTHORIZED

    # -- operators: halt, resume, reference, kill switch, all journaled ------------
    ops = connect(mesh, "ops", OPS_PW)
    halted = ops.admin("halt", "AAPL")
    assert SymbolHalted("AAPL", True) in halted.events
    assert code_of(lambda: bob.place("AAPL", Side.SELL, 1, to_units("170.00"))) == (
        Reject.SYMBOL_HALTED
    )
    ops.admin("resume", "AAPL")
    moved = ops.admin("reference", "TSLA", price=to_units("200.00"))
    assert moved.events[1].band_lo == to_units("180.00")
    bob.place("TSLA", Side.BUY, 1, to_units("199.00"))  # inside the new band only
    assert code_of(lambda: ops.admin("kill", account="nobody")) == Reject.UNKNOWN_ACCOUNT
    killed = ops.admin("kill", account="alice")
    assert AccountBlocked(logged.account, True, 1) in killed.events
    told = alice.next_report(timeout=5)  # alice hears of it on her own session
    assert any(
        isinstance(e, Cancelled) and e.reason == CancelReason.KILL_SWITCH for e in told.events
    )
    assert code_of(lambda: alice.place("AAPL", Side.BUY, 1, to_units("169.00"))) == (
        Reject.ACCOUNT_BLOCKED
    )
    ops.admin("unkill", account="alice")
    alice.place("AAPL", Side.BUY, 1, to_units("169.00"))

    # -- change password: checks, then every other session is logged out ----------
    assert code_of(lambda: alice.change_password("Wrong.pass9", ALICE_NEW)) == (
        Reject.BAD_CREDENTIALS
    )
    assert code_of(lambda: alice.change_password(ALICE_PW, "weak")) == Reject.WEAK_PASSWORD
    changed = alice.change_password(ALICE_PW, ALICE_NEW)
    assert type(changed.ack).__name__ == "PasswordChanged"
    assert alice.positions().account == logged.account  # this session carries on
    assert second.positions().account == logged.account  # so does its resumed twin
    assert code_of(lambda: third.resume(other)) == Reject.BAD_TOKEN  # other sessions end
    fourth._credentials = None  # the SDK would log in again; see the raw answer instead
    assert code_of(lambda: fourth.positions()) == Reject.NOT_LOGGED_IN
    assert code_of(lambda: connect(mesh, "alice", ALICE_PW)) == Reject.BAD_CREDENTIALS
    replies.append(connect(mesh, "alice", ALICE_NEW).login("alice", ALICE_NEW))

    # -- rate limit: 300 requests at once from one session, 200 allowed in a burst;
    # past it one RATE_LIMITED says so and the rest are dropped unanswered --------
    for _ in range(300):
        bob.socket.send(encode(Ping(7)))
    limited = pongs = 0
    while bob.socket.poll(1000):
        reply = reply_decoder.decode(bob.socket.recv())
        replies.append(reply)
        pongs += type(reply).__name__ == "Pong"
        limited += getattr(reply, "code", 0) == Reject.RATE_LIMITED
    assert 150 <= pongs <= 250 and 1 <= limited <= 3, (pongs, limited)
    time.sleep(0.2)  # the bucket refills: bob is served again
    bob.socket.send(encode(Ping(8)))
    assert (
        bob.socket.poll(5000) and type(reply_decoder.decode(bob.socket.recv())).__name__ == "Pong"
    )

    # -- admin commands are journal records like any other; replay agrees ----------
    actions = [
        r.command.action
        for r in journal_tools.records(short_home / "journal")
        if type(r.command).__name__ == "Admin"
    ]
    # (the kill of an unknown name never left the gateway)
    assert actions == ["halt", "resume", "reference", "kill", "unkill"]
    # (the resume re-opens the symbol through a call: the scheduler's record of the
    # re-opening may land between the two reads, so they are compared at one seq)
    for _ in range(5):
        live = matcher_state(mesh.cfg)
        replayed = replay_journal(mesh)
        if replayed["last_seq"] == live.seq:
            break
        time.sleep(0.5)
    assert (replayed["last_seq"], replayed["state_hash"]) == (live.seq, live.state_hash)

    # -- no secret in any log, journal record, snapshot or reply -------------------
    for client in (alice, second, third, fourth, bob, ops):
        replies += client.drain_reports() + list(client.notices)
        client.close()
    secrets = [ALICE_PW, ALICE_NEW, OPS_PW, BOB_PW, logged.token, token, other]
    files = [p for p in short_home.rglob("*") if p.is_file() and not p.is_socket()]
    assert any(p.suffix == ".log" for p in files) and any(p.suffix == ".seg" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} found in {path}"
    for reply in replies[2:]:  # after the two logged_in answers that carry their token
        for secret in secrets:
            assert secret.encode() not in encode(reply), (secret, reply)
