"""A command that works through a deep book in one go, here an end of day over hundreds
of thousands of DAY orders (any trader with free accounts can rest that many), keeps
the primary matcher busy for longer than the heartbeat service waits before it
promotes the standby. The engine reports its progress and the matcher beats from it,
so no failover follows, and the day still ends.

The book is filled by sending commands to the primary matcher directly, as the gateway
would (the gateway's own path is tested elsewhere): hundreds of thousands of orders
through log-ins and the SDK would take minutes.
"""

from __future__ import annotations

import json
import time

import zmq

from services.common.bus import CommandBatch, CreateAccount, MatcherBusy, NewOrder
from services.common.codec import bus_decoder, encode
from services.common.config import matcher_endpoints
from services.common.status import current_primary
from services.common.wire import Side, Tif
from tests.mesh import Mesh, exchange_cli, trader, wait_for

PASSWORD = "Secret.pw1"
ACCOUNTS = 70  # besides the operator: 5,000 open orders each (the default limit)
PER_ACCOUNT = 5_000
BATCH = 2_000
# the default heartbeat timeout (200 ms), well under the end of day's work over 350,000
# orders, so a primary that did not beat while it works would be replaced
TIMINGS = {"heartbeat_ms": 50, "missed_beats": 4}


def _primary(mesh) -> tuple[str, int] | None:
    """(instance, epoch) of the live primary matcher, in the heartbeat service's word.
    (Asking the matcher itself would make it hash its whole state each time.)"""
    return current_primary(mesh.status())


def _committed(mesh) -> int:
    status = mesh.status()
    return max((s.seq for s in status.services if s.service == "journal"), default=0)


def _send_all(mesh, sock: zmq.Socket, commands: list) -> None:
    """Send ``commands`` in batches, each once the previous ones are committed; what
    the matcher answers busy (the journal lagging) is sent again."""
    for start in range(0, len(commands), BATCH):
        batch = commands[start : start + BATCH]
        while batch:
            target = _committed(mesh) + len(batch)
            sock.send(encode(CommandBatch(batch)))
            batch = []
            deadline = time.monotonic() + 30
            while _committed(mesh) < target:
                assert time.monotonic() < deadline, "the mesh stopped committing"
                if sock.poll(20):
                    msg = bus_decoder.decode(sock.recv())
                    if isinstance(msg, MatcherBusy):
                        batch += msg.commands
                        target -= len(msg.commands)
            if batch:
                time.sleep(0.05)


def test_an_end_of_day_over_a_deep_book_causes_no_failover(short_home):
    security = {"operators": ["op"], "max_in_flight_per_account": 10**6}
    mesh = Mesh(short_home, standby=True, timings=TIMINGS, security=security)
    try:
        mesh.start()
        trader(mesh, "op", PASSWORD).close()
        instance, epoch = wait_for(lambda: _primary(mesh), 10, 0.1, "a primary")
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(matcher_endpoints(mesh.cfg, instance)[0])
        try:
            # account 1 is the operator; the others rest DAY bids below the reference
            _send_all(mesh, sock, [CreateAccount(f"deep{i}", "h") for i in range(ACCOUNTS)])
            reference = mesh.cfg.symbols["AAPL"].reference
            tick = mesh.cfg.symbols["AAPL"].tick
            orders = [
                NewOrder(
                    2 + a,
                    f"d{k}",
                    "AAPL",
                    Side.BUY,
                    1,
                    reference - tick * (1 + k % 900),
                    tif=Tif.DAY,
                )  # fmt: skip
                for k in range(PER_ACCOUNT)
                for a in range(ACCOUNTS)
            ]
            _send_all(mesh, sock, orders)
        finally:
            sock.close(0)
        assert _primary(mesh) == (instance, epoch), "failed over while the book filled"

        done = exchange_cli(
            "admin", "end-of-day", "--json", home=mesh.home, config_path=mesh.config_path,
            env={"EXCHANGE_USER": "op", "EXCHANGE_PASSWORD": PASSWORD}, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        expired = [e for e in json.loads(done.stdout)["events"] if e["type"] == "cancelled"]
        assert len(expired) == ACCOUNTS * PER_ACCOUNT
        time.sleep(2 * TIMINGS["heartbeat_ms"] * TIMINGS["missed_beats"] / 1000)
        assert _primary(mesh) == (instance, epoch), "a failover followed"
        promotions = mesh.services["heartbeat"].log().count('"event": "promote"')
        assert promotions == 1, f"{promotions} promotions: the first primary's and others"
    except BaseException:
        print(mesh.logs()[-6000:])
        raise
    finally:
        mesh.stop()
