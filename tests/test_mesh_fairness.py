"""Fairness at the gateway through real processes: one account's burst cannot fill
the in-flight table, a flood of wrong passwords cannot lock the owner out, and
requests that earn NOT_LOGGED_IN cannot use up a connection's way to log in."""

from __future__ import annotations

import threading
import time

import zmq

from clients.client import Client, ExchangeError
from services.common.codec import encode, reply_decoder
from services.common.money import to_units
from services.common.wire import LoggedIn, Login, PlaceOrder, Reject, RequestRejected, Side
from tests.mesh import running, trader

PASSWORD = "Secret.pw1"


def dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def replies(sock: zmq.Socket, quiet_s: float = 0.5, timeout: float = 20.0) -> list:
    """Everything the socket gets until it has been quiet for ``quiet_s``."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and sock.poll(int(quiet_s * 1000)):
        got.append(reply_decoder.decode(sock.recv()))
    return got


def test_one_accounts_burst_leaves_room_for_the_others(short_home):
    """20 in flight per account, 100 over all: an account sending thousands of orders
    without reading holds at most 20, so another's orders are accepted at once (with
    only the global bound, the burst would fill it and the other would get BUSY)."""
    limits = {"max_in_flight_per_account": 20, "session_rate": 10**6, "account_rate": 10**6}
    with running(short_home, security=limits, gateway={"max_in_flight": 100}) as mesh:
        hog, victim = trader(mesh, "hog"), trader(mesh, "victim")
        stop = threading.Event()
        sent: list[str] = []

        def burst() -> None:
            while not stop.is_set():
                for _ in range(500):
                    cl = f"h{len(sent)}"
                    sent.append(cl)
                    hog.socket.send(encode(PlaceOrder(cl, "AAPL", Side.BUY, 1, to_units("160.00"))))
                time.sleep(0.02)

        thread = threading.Thread(target=burst, daemon=True)
        thread.start()
        slowest = 0.0
        try:
            time.sleep(0.2)  # the burst is under way
            for i in range(20):
                began = time.monotonic()
                placed = victim.place("TSLA", Side.BUY, 1, to_units("150.00"), cl_ord_id=f"v{i}")
                slowest = max(slowest, time.monotonic() - began)
                assert placed.ack.order_id
        finally:
            stop.set()
            thread.join(10)
        assert len(sent) > 2_000, len(sent)
        assert slowest < 2.0, slowest
        over = [
            r
            for r in replies(hog.socket)
            if isinstance(r, RequestRejected) and r.code == Reject.TOO_MANY_IN_FLIGHT
        ]
        assert over, "the burst was never held to its account's share"
        assert {r.ref for r in over} <= set(sent)  # each names the order it refused
        assert "await an answer" in over[0].text
        assert len(victim.orders().orders) == 20
        hog.close()
        victim.close()


def test_a_password_flood_cannot_lock_the_owner_out(short_home):
    """Sixteen connections guess the victim's password as fast as they are answered;
    the victim's one log-in with the right password gets through within seconds,
    and the name's hashes stay near ``login_name_rate`` a second."""
    rate, threshold = 2.0, 20
    security = {"login_name_rate": rate, "login_name_threshold": threshold}
    with running(short_home, security=security) as mesh:
        gateway = mesh.cfg.endpoints["gateway"]
        with Client(gateway) as c:
            c.signup("victim", PASSWORD)
            refused = [
                ("x" * 33, PASSWORD),  # a name that cannot exist
                ("victim", "A" * 129),  # a password past the limit
            ]
            for name, password in refused:  # answered at once, no hashing
                began = time.monotonic()
                try:
                    c.login(name, password)
                except ExchangeError as exc:
                    assert exc.code == Reject.BAD_CREDENTIALS
                assert time.monotonic() - began < 0.5
        stop = threading.Event()
        codes: dict[int, int] = {}
        waits: list[str] = []

        def flood() -> None:
            socks = [dealer(gateway) for _ in range(16)]
            poller = zmq.Poller()
            for sock in socks:
                poller.register(sock, zmq.POLLIN)
                sock.send(encode(Login("victim", "Wrong.pass1")))
            try:
                while not stop.is_set():
                    for sock, _ in poller.poll(50):
                        reply = reply_decoder.decode(sock.recv())
                        codes[reply.code] = codes.get(reply.code, 0) + 1
                        if reply.code == Reject.TOO_MANY_ATTEMPTS:
                            waits.append(reply.text)
                        sock.send(encode(Login("victim", "Wrong.pass1")))
            finally:
                for sock in socks:
                    sock.close(0)

        thread = threading.Thread(target=flood, daemon=True)
        began_flood = time.monotonic()
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while codes.get(Reject.BAD_CREDENTIALS, 0) < threshold:  # the name is throttled
                assert time.monotonic() < deadline, codes
                time.sleep(0.05)
            time.sleep(0.5)
            began = time.monotonic()
            with Client(gateway, timeout=5) as owner:
                while True:
                    try:
                        logged = owner.login("victim", PASSWORD)
                        break
                    except ExchangeError as exc:  # a hint to wait is fine; a lock-out not
                        assert exc.code in (Reject.TOO_MANY_ATTEMPTS, Reject.BUSY), exc
                        assert time.monotonic() - began < 3.0, exc
                        time.sleep(0.1)
                took = time.monotonic() - began
                assert isinstance(logged, LoggedIn) and took < 3.0, took
                assert owner.place("AAPL", Side.BUY, 1, to_units("160.00")).ack.order_id
        finally:
            stop.set()
            thread.join(10)
        flood_s = time.monotonic() - began_flood
        guessed = codes.get(Reject.BAD_CREDENTIALS, 0)
        # the threshold, the attempts already hashing when it was crossed, then the rate
        assert guessed <= threshold + 16 + rate * flood_s + 2, (guessed, flood_s, codes)
        assert codes.get(Reject.TOO_MANY_ATTEMPTS, 0) > 0, codes
        assert all("retry in" in text and text.endswith(" s") for text in waits)
        assert mesh["gateway"].alive()


def test_requests_before_login_cannot_use_up_the_way_to_log_in(mesh):
    """A connection not logged in spends its budget on orders (NOT_LOGGED_IN, then
    RATE_LIMITED) and can still log in at once: log-ins have a budget of their own."""
    with Client(mesh.cfg.endpoints["gateway"]) as c:
        c.signup("alice", PASSWORD)
    sock = dealer(mesh.cfg.endpoints["gateway"])
    try:
        for i in range(1_000):
            sock.send(encode(PlaceOrder(f"o{i}", "AAPL", Side.BUY, 1, to_units("160.00"))))
        answered = replies(sock)
        assert len(answered) == 1_000
        codes = {r.code for r in answered}
        assert codes == {Reject.NOT_LOGGED_IN, Reject.RATE_LIMITED}, codes
        sock.send(encode(Login("alice", PASSWORD)))
        assert sock.poll(10_000)
        logged = reply_decoder.decode(sock.recv())
        assert isinstance(logged, LoggedIn), logged
        sock.send(encode(PlaceOrder("after", "AAPL", Side.BUY, 1, to_units("160.00"))))
        assert sock.poll(10_000)
        assert reply_decoder.decode(sock.recv()).events[0].cl_ord_id == "after"
    finally:
        sock.close(0)
