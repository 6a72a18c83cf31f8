"""The bots' SDK against a real mesh: the asyncio client (concurrent orders, its own
report stream, logging in again by itself after a gateway restart), a local book that
stays equal to marketdata's after a forced gap and after a matcher failover, and the
example bot."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys

import pytest
import zmq

from clients.aio import AsyncClient, ExchangeError
from clients.bench.cluster import ROOT
from clients.client import Client, snapshot
from clients.feed import BookSubscriber
from services.common.money import to_units
from services.common.status import current_primary
from services.common.wire import Fill, Reject, Side
from tests.mesh import Mesh, cli_env, matcher_state, wait_for
from tests.test_mesh_feed import flow, in_step, traders

PASSWORD = "Secret.pw1"
PX = to_units("170.00")


def test_async_client_orders_reports_and_relogin(mesh):
    gateway = mesh.cfg.endpoints["gateway"]

    async def scenario() -> None:
        async with AsyncClient(gateway) as maker, AsyncClient(gateway) as taker:
            await maker.signup("amaker", PASSWORD)
            await taker.signup("ataker", PASSWORD)
            assert (await maker.login("amaker", PASSWORD)).name == "amaker"
            await taker.login("ataker", PASSWORD)
            async with AsyncClient(gateway) as stranger:
                with pytest.raises(ExchangeError) as bad:
                    await stranger.login("amaker", "Wrong.pass1")
            assert bad.value.code == Reject.BAD_CREDENTIALS

            rest = await maker.place("AAPL", Side.SELL, 30, PX)
            # three orders in flight at once, each answered to its own caller
            taken = await asyncio.gather(
                *(taker.place("AAPL", Side.BUY, 10, PX, cl_ord_id=f"t{i}") for i in range(3))
            )
            assert [r.ack.cl_ord_id for r in taken] == ["t0", "t1", "t2"]
            assert all(any(type(e) is Fill for e in r.events) for r in taken)

            async def maker_fills() -> int:  # the maker hears of each fill on its stream
                filled = 0
                async for report in maker.reports():
                    filled += sum(e.qty for e in report.events if type(e) is Fill)
                    if filled == 30:
                        return filled

            assert await asyncio.wait_for(maker_fills(), 10) == 30
            assert (await maker.positions()).positions == {"AAPL": -30}
            assert (await maker.orders()).orders == []
            own = (await maker.fills("AAPL")).fills
            assert [(f.qty, f.maker, f.order_id) for f in own] == [
                (10, True, rest.ack.order_id)
            ] * 3
            with pytest.raises(ExchangeError) as unknown:
                await taker.cancel(rest.ack.order_id)  # not the taker's (and filled)
            assert unknown.value.code == Reject.UNKNOWN_ORDER

            # the gateway restarts and forgets every session: the SDK logs in again
            mesh["gateway"].kill()
            mesh["gateway"].start()
            await asyncio.to_thread(mesh.wait_ready)
            again = await maker.place("AAPL", Side.BUY, 5, PX - 100, timeout=20)
            assert again.ack.order_id and (await maker.orders()).orders[0].qty == 5

    asyncio.run(scenario())


def test_local_book_equals_snapshot_after_gap_and_failover(short_home):
    mesh = Mesh(short_home, standby=True, timings={"heartbeat_ms": 50, "missed_beats": 4})
    ctx = zmq.Context.instance()
    endpoints = mesh.cfg.endpoints["marketdata_pub"], mesh.cfg.endpoints["marketdata_snapshot"]
    try:
        mesh.start()
        rng = random.Random(7)
        clients = traders(mesh, "bot1", "bot2", "bot3")
        for client in clients:
            client.timeout = 20  # an order sent during the failover waits for the standby
        book = BookSubscriber(ctx, *endpoints, "AAPL", depth=10)
        book.poll(300)
        flow(clients, rng, 40)
        book.drop_next(3)  # a forced gap
        flow(clients, rng, 40)
        wait_for(lambda: in_step(mesh, book), timeout=10, what="the book after the gap")
        assert book.resyncs >= 2
        old = current_primary(mesh.status())[0]  # either matcher may have reported first
        mesh[f"matcher-{old}"].kill()
        flow(clients, rng, 40)  # the first of these waits out the failover
        assert matcher_state(mesh.cfg, "b" if old == "a" else "a").role == "primary"
        wait_for(lambda: in_step(mesh, book), timeout=10, what="the book after the failover")
        assert book.bids() and book.asks()
        book.close()
    finally:
        mesh.stop()


def test_example_bot_quotes_and_cleans_up(mesh, short_home):
    env = cli_env(short_home, mesh.config_path, EXCHANGE_USER="spread1", EXCHANGE_PASSWORD=PASSWORD)
    bot = subprocess.Popen(
        [sys.executable, "-m", "clients.examples.spread_bot", "AAPL", "--duration", "3"]
        + ["--spread", "0.20", "--create-account"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(mesh.cfg.endpoints["gateway"]) as taker:
            taker.signup("hitter", PASSWORD)
            taker.login("hitter", PASSWORD)
            md = mesh.cfg.endpoints["marketdata_snapshot"]
            wait_for(
                lambda: (s := snapshot(md, "AAPL")).bids and s.asks,
                timeout=15,
                what="the bot's two quotes",
            )
            taker.place("AAPL", Side.SELL, 20, PX - 1000)  # hits the bot's bid
        out, err = bot.communicate(timeout=30)
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGKILL)
            bot.wait(10)
    assert bot.returncode == 0, out + err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["placed"] >= 2 and stats["replaced"] >= 2 and stats["fills"] >= 1
    assert "fill: 20 AAPL @ 169.90" in out
    with Client(mesh.cfg.endpoints["gateway"]) as check:
        check.login("spread1", PASSWORD)
        assert check.orders().orders == []  # it cancelled its quotes on the way out
