"""Clients that do not read, and messages of many frames, through the real gateway;
and the paged `orders` answer that keeps each reply bounded.

A connection whose reply queue (``client_sndhwm``) is full is choked: its requests
are dropped before they are decoded, so it costs the gateway little CPU, it is
logged once, and everyone else carries on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import zmq

from services.common.codec import encode, reply_decoder
from services.common.money import to_units
from services.common.wire import (
    ORDERS_PAGE,
    Accepted,
    GetOrders,
    LoggedIn,
    Login,
    Orders,
    Ping,
    PlaceOrder,
    Pong,
    Reject,
    RequestRejected,
    Side,
)
from tests.mesh import running, trader, wait_for

PASSWORD = "Secret.pw1"
RESTING = ORDERS_PAGE + 200  # two pages


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rest_many(client, n: int) -> None:
    """``n`` resting buys, sent 400 at a time (under the in-flight limit per account)."""
    for start in range(0, n, 400):
        batch = range(start, min(n, start + 400))
        for i in batch:
            price = to_units("160.00") - (i % 100) * 100
            client.send(PlaceOrder(f"r{i}", "AAPL", Side.BUY, 1, price))
        acked = 0
        while acked < len(batch):
            report = client.next_report(timeout=10)
            acked += sum(type(e) is Accepted for e in report.events)


def raw(endpoint: str, **options: int) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(endpoint)
    return sock


def ask(sock: zmq.Socket, request, timeout: float = 10.0):
    sock.send(encode(request))
    assert sock.poll(int(timeout * 1000)), f"no answer to {request}"
    return reply_decoder.decode(sock.recv())


def test_orders_come_in_pages(mesh):
    alice = trader(mesh, "alice")
    try:
        rest_many(alice, RESTING)
        every = alice.orders()  # the SDK pages through
        ids = [o.order_id for o in every.orders]
        assert len(ids) == RESTING and ids == sorted(ids)
        sock = raw(mesh.cfg.endpoints["gateway"])
        try:
            assert isinstance(ask(sock, Login("alice", PASSWORD)), LoggedIn)
            first = ask(sock, GetOrders(0, 10**9))  # capped at a page
            assert [o.order_id for o in first.orders] == ids[:ORDERS_PAGE] and first.more
            rest = ask(sock, GetOrders(ids[ORDERS_PAGE - 1]))
            assert [o.order_id for o in rest.orders] == ids[ORDERS_PAGE:] and not rest.more
            small = ask(sock, GetOrders(ids[9], 5))
            assert [o.order_id for o in small.orders] == ids[10:15] and small.more
            assert ask(sock, GetOrders(ids[-1])).orders == []
            assert [o.order_id for o in ask(sock, GetOrders(0, 0)).orders] == ids[:1]
        finally:
            sock.close(0)
    finally:
        alice.close()


def test_a_client_that_does_not_read_is_choked(short_home):
    # rates lifted: this measures what choking saves, not the rate limit
    limits = {"client_sndhwm": 50, "session_rate": 10**6, "account_rate": 10**6}
    with running(short_home, security=limits) as mesh:
        gateway = mesh.cfg.endpoints["gateway"]
        pid = mesh["gateway"].pid
        owner = trader(mesh, "owner")
        rest_many(owner, RESTING)  # an `orders` answer is now a page of about 30 KB

        # what answering costs: a client that reads asks for 1,000 pages
        reader = raw(gateway)
        assert isinstance(ask(reader, Login("owner", PASSWORD)), LoggedIn)
        before = cpu_s(pid)
        for _ in range(1_000):
            assert isinstance(ask(reader, GetOrders()), Orders)
        per_page = (cpu_s(pid) - before) / 1_000

        # what the gateway spends doing nothing much (beats, status) meanwhile
        before, began = cpu_s(pid), time.monotonic()
        time.sleep(1.5)
        idle = (cpu_s(pid) - before) / (time.monotonic() - began)

        # a client that asks for 3,000 pages twice over and reads none of them
        hog = raw(gateway, RCVHWM=1, RCVBUF=4096)
        assert isinstance(ask(hog, Login("owner", PASSWORD)), LoggedIn)
        before, began = cpu_s(pid), time.monotonic()
        for _ in range(2):
            for _ in range(3_000):
                hog.send(encode(GetOrders()))
            time.sleep(1.5)  # past a choke: the second burst is refused again
        spent = cpu_s(pid) - before - idle * (time.monotonic() - began)
        log = mesh["gateway"].log()
        assert log.count('"client_choked"') == 1, log[-2000:]  # logged once
        # nearly all of the 6,000 were dropped unread: far less than answering them
        assert spent < 0.25 * 6_000 * per_page, (spent, idle, per_page)

        # everyone else carried on meanwhile and does now
        other = trader(mesh, "other")
        began = time.monotonic()
        assert other.place("TSLA", Side.BUY, 1, to_units("150.00")).ack.order_id
        assert time.monotonic() - began < 1.0
        assert ask(reader, Ping(3)) == Pong(3, True)

        # the hog gets what was queued for it, then answers again once it reads
        answered = 0
        while hog.poll(500):
            answered += isinstance(reply_decoder.decode(hog.recv()), Orders)
        assert 0 < answered < 1_000, answered
        time.sleep(1.1)
        assert ask(hog, Ping(7)) == Pong(7, True)  # still logged in: it reads again
        assert mesh["gateway"].alive()
        for sock in (reader, hog):
            sock.close(0)
        owner.close()
        other.close()


def test_a_message_of_many_frames_is_refused_and_the_connection_goes_on(mesh):
    sock = raw(mesh.cfg.endpoints["gateway"])
    try:
        sock.send_multipart([encode(Ping(1))] + [b"x" * 1_000] * 10_000)
        got = wait_for(lambda: sock.poll(100) and reply_decoder.decode(sock.recv()), 10)
        assert isinstance(got, RequestRejected) and got.code == Reject.MALFORMED, got
        assert "one frame" in got.text
        assert not sock.poll(300)  # one answer for the whole message
        assert ask(sock, Ping(2)) == Pong(2)
        assert mesh["gateway"].alive()
    finally:
        sock.close(0)
