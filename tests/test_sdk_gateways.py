"""Clients given several gateways (and feeds given several marketdata services) carry
on when the one in use dies: a second gateway and a second marketdata run beside the
mesh's, the test kills the one a client uses while it trades, and the client moves to
the other, logs in there and resends what was unanswered. Every order is entered
exactly once (checked by cl_ord_id against the journal), none lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading

import pytest
import zmq

from clients.aio import AsyncClient
from clients.bench.cluster import ROOT
from clients.client import Client, NoAnswer, snapshot
from clients.feed import BookSubscriber
from services.common.money import to_units
from services.common.wire import Fill, Side, Tif
from tests.mesh import beside, cli_env, exchange_cli, free_port, wait_for
from tests.test_mesh_feed import flow, traders
from tests.test_sdk_restart import AFTER, aio_loops, entered_once, price, while_disrupted

PASSWORD = "Secret.pw1"


@pytest.fixture
def second_gateway(mesh):
    """A second gateway on its own port, ready: an order (cancelled) went through it."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    gateway = beside(mesh, "gateway", gateway=endpoint)
    try:
        with Client(endpoint, timeout=10) as probe:
            wait_for(lambda: probe.alive(0.5), timeout=20, what="the second gateway")
            probe.signup("probe", PASSWORD)
            probe.login("probe", PASSWORD)
            probe.cancel(probe.place("AAPL", Side.BUY, 1, price(0)).ack.order_id)
            probe.logout()
        yield endpoint
    finally:
        gateway.stop()


@pytest.fixture
def second_marketdata(mesh):
    """A second marketdata service on its own ports, ready: (feed, snapshot endpoints)."""
    pub, snap = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    service = beside(mesh, "marketdata", marketdata_pub=pub, marketdata_snapshot=snap)
    try:
        wait_for(lambda: _answers(snap), 20, 0.1, "the second marketdata")
        yield pub, snap
    finally:
        service.stop()


def _answers(snapshot_endpoint: str) -> bool:
    try:
        return bool(snapshot(snapshot_endpoint, "AAPL", timeout=0.5))
    except NoAnswer:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "silent"])
def test_sync_client_moves_to_the_other_gateway(mesh, second_gateway, short_home, sig):
    first = mesh.cfg.endpoints["gateway"]
    client = Client([first, second_gateway], timeout=20)
    client.signup("mover", PASSWORD)
    client.login("mover", PASSWORD)
    acks: dict[str, int] = {}
    seqs: list[int] = []

    def loop(killed: threading.Event) -> None:
        after = 0
        while after < AFTER:
            cl = f"s{len(acks)}"
            result = client.place("AAPL", Side.BUY, 1, price(len(acks)), cl_ord_id=cl)
            assert result.ack.cl_ord_id == cl
            acks[cl] = result.ack.order_id
            seqs.append(result.seq)
            after += killed.is_set()

    try:
        while_disrupted(loop, lambda: mesh["gateway"].signal(sig), acks)
        # a SIGKILL drops the connection; a stopped gateway is only silent
        assert client.gateways.current == second_gateway and client.gateways.moves == 1
        assert len(client.orders().orders) == len(acks)  # none missing, none twice
        entered_once(short_home, client.account, acks, max(seqs))
        cash = client.positions().cash
    finally:
        client.close()
    # the command line, told of both by EXCHANGE_GATEWAYS, the dead one first
    env = {
        "EXCHANGE_GATEWAYS": f"{first},{second_gateway}",
        "EXCHANGE_USER": "mover",
        "EXCHANGE_PASSWORD": PASSWORD,
    }
    done = exchange_cli(
        "positions", "--json", home=mesh.home, config_path=mesh.config_path, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert to_units(json.loads(done.stdout)["USD"]) == cash  # JSON money: decimal strings


def test_asyncio_client_moves_to_the_other_gateway(mesh, second_gateway, short_home):
    def moved(client: AsyncClient) -> None:
        assert client.gateways.current == second_gateway and client.gateways.moves == 1

    gateways = [mesh.cfg.endpoints["gateway"], second_gateway]
    account, acks, last_seq = aio_loops(gateways, "aio-mover", mesh["gateway"].kill, moved)
    entered_once(short_home, account, acks, last_seq)


def in_step(book: BookSubscriber, snapshot_endpoint: str) -> bool:
    """The subscriber has applied everything that marketdata published, and agrees."""
    book.poll(50)
    snap = snapshot(snapshot_endpoint, "AAPL", timeout=1.0)
    return (
        book.synced
        and book.seq == snap.seq
        and book.bids() == [tuple(x) for x in snap.bids[: book.depth]]
        and book.asks() == [tuple(x) for x in snap.asks[: book.depth]]
    )


def test_feed_moves_to_the_other_marketdata(mesh, second_marketdata):
    pub, snap = second_marketdata
    ends = mesh.cfg.endpoints
    clients = traders(mesh, "feeder1", "feeder2")
    book = None
    try:
        book = BookSubscriber(
            zmq.Context.instance(),
            [ends["marketdata_pub"], pub],
            [ends["marketdata_snapshot"], snap],
            "AAPL",
            depth=10,
            timeout_ms=500,
            check_ms=200,
        )
        rng = random.Random(17)
        flow(clients, rng, 40)
        wait_for(lambda: in_step(book, ends["marketdata_snapshot"]), 10, what="the first feed")
        mesh["marketdata"].kill()
        flow(clients, rng, 40)
        wait_for(lambda: in_step(book, snap), 10, what="the book from the second marketdata")
        assert book.markets.moves == 1 and book.markets.current == (pub, snap)
        assert book.bids() and book.asks()
    finally:
        if book is not None:
            book.close()
        for client in clients:
            client.close()


def test_market_maker_follows_both_lists(mesh, second_gateway, second_marketdata):
    """`exchange mm` told of both gateways and both marketdata services keeps its
    ladder through the loss of the ones it uses: it hears a fill and moves the
    ladder, never piles up orders, and cancels every quote on the way out."""
    pub, snap = second_marketdata
    ends = mesh.cfg.endpoints
    env = {
        "EXCHANGE_GATEWAYS": f"{ends['gateway']},{second_gateway}",
        "EXCHANGE_MARKETDATA": f"{ends['marketdata_pub']}|{ends['marketdata_snapshot']},"
        f"{pub}|{snap}",
    }
    args = ("--account", "mm1", "--create-account", "--refresh", "0", "--seed", "7", "--json")
    mm = subprocess.Popen(
        [sys.executable, "-m", "clients.cli", "mm", *args],
        cwd=ROOT,
        env=cli_env(mesh.home, mesh.config_path, EXCHANGE_PASSWORD=PASSWORD, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watcher = Client(second_gateway, timeout=10)
    taker = Client(second_gateway, timeout=10)
    try:
        wait_for(lambda: _ladder(snap), 15, 0.05, "the ladder")
        mesh["gateway"].kill()
        mesh["marketdata"].kill()
        watcher.login("mm1", PASSWORD)
        wait_for(lambda: len(watcher.orders().orders) == 20, 10, 0.1, "the quotes, all 20")
        taker.signup("mm-taker", PASSWORD)
        taker.login("mm-taker", PASSWORD)
        taken = taker.place("AAPL", Side.SELL, 150, to_units("169.00"), tif=Tif.IOC)
        assert sum(e.qty for e in taken.events if type(e) is Fill) == 150
        # long 150: the ladder moves down, through the second gateway and feed
        wait_for(
            lambda: (book := _ladder(snap)) and book[0][0][0] < to_units("169.90"),
            10,
            0.05,
            "the ladder to move down",
        )
        mm.send_signal(signal.SIGTERM)
        out, err = mm.communicate(timeout=20)
        assert mm.returncode == 0, err
        status = json.loads(out)
        assert status["ok"] and status["cancelled_on_exit"], status
        assert status["symbols"]["AAPL"]["position"] == 150
        assert status["peak_open_orders"] <= 20
        assert watcher.orders().orders == []
    finally:
        if mm.poll() is None:
            os.kill(mm.pid, signal.SIGKILL)
            mm.wait(timeout=10)
        watcher.close()
        taker.close()


def _ladder(snapshot_endpoint: str):
    """(bids, asks) when the public book shows 10 levels a side, else None."""
    snap = snapshot(snapshot_endpoint, "AAPL", timeout=1.0)
    return (snap.bids, snap.asks) if len(snap.bids) == 10 and len(snap.asks) == 10 else None
