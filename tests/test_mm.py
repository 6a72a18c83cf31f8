"""`exchange mm`: the quoting logic on its own, then the real command on a real mesh
(through a matcher failover, a fill that moves its inventory, and a clean stop)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

from clients.bench.cluster import ROOT
from clients.client import Client, snapshot
from clients.mm.quotes import (
    BUY,
    SELL,
    Draws,
    Live,
    Quote,
    QuoteParams,
    fair_value,
    feed_agrees,
    ladder,
    plan,
    step_for,
)
from clients.settings import SymbolSpec
from services.common.money import to_units
from services.common.wire import Side, Tif
from tests.mesh import Mesh, trader, wait_for

AAPL = SymbolSpec("AAPL", tick=100, lot=1, reference=1_700_000, band_bps=1000)
PENNY = SymbolSpec("PENNY", tick=1, lot=100, reference=5_000, band_bps=2000)
PASSWORD = "Secret.pw1"


def draws(params: QuoteParams | None = None, lot: int = 1, seed: int = 1) -> Draws:
    return Draws.draw(random.Random(seed), params or QuoteParams(), lot)


def test_ladder_is_ten_levels_a_side_symmetric_around_fair():
    params = QuoteParams()
    centre, wanted = ladder(AAPL, params, 1_700_000, 0, draws())
    assert centre == 1_700_000
    bids = [wanted[(BUY, i)] for i in range(10)]
    asks = [wanted[(SELL, i)] for i in range(10)]
    assert all(b.price + a.price == 2 * centre for b, a in zip(bids, asks, strict=True))
    fades = [centre - b.price for b in bids]  # 0.05 .. 0.50 plus up to 2 ticks of noise
    assert all(500 * (i + 1) <= f <= 500 * (i + 1) + 200 for i, f in enumerate(fades))
    assert all(q.price % AAPL.tick == 0 and q.qty >= 1 for q in bids + asks)
    sizes = [q.qty for q in bids + asks]
    assert 60 < sum(sizes) / len(sizes) < 140 and len(set(sizes)) > 5  # around the base


def test_inventory_skews_both_sides_and_position_limit_caps_sizes():
    params = QuoteParams(skew=1, max_position=250)
    d = draws(params)
    long_centre, long = ladder(AAPL, params, 1_700_000, 200, d)
    short_centre, _ = ladder(AAPL, params, 1_700_000, -200, d)
    assert long_centre == 1_700_000 - 200 < 1_700_000 < short_centre
    # long 200 of 250: only 50 more may be bid (open orders count); asks may sell 450
    assert sum(q.qty for (s, _), q in long.items() if s == BUY) <= 50
    assert sum(q.qty for (s, _), q in long.items() if s == SELL) <= 450
    # the skew is capped at the ladder's width, so quotes never cross the fair value far
    far_centre, _ = ladder(AAPL, QuoteParams(skew=100), 1_700_000, 10**6, d)
    assert far_centre == 1_700_000 - 10 * 500


def test_step_fits_the_band_and_lot_for_a_penny_stock():
    step = step_for(PENNY, 500, 10)  # 0.05 would leave the +-20% band of a $0.50 stock
    assert step == 1_000 // 11
    _, wanted = ladder(PENNY, QuoteParams(), PENNY.reference, 0, draws(lot=100))
    assert len(wanted) == 20
    assert all(q.qty % 100 == 0 and 4_000 <= q.price <= 6_000 for q in wanted.values())


def test_fair_value_ignores_our_own_quotes_and_a_lagging_feed():
    bids, asks = [(1_699_500, 100), (1_699_000, 50)], [(1_700_500, 100)]
    own = {(BUY, 1_699_500): 100, (SELL, 1_700_500): 100}
    # only our quotes on the ask side: no mid of others, so the reference
    assert fair_value(bids, asks, own, 0, 1_700_000, 100) == (1_700_000, "reference")
    bids2 = [(1_699_500, 150)]  # 50 of the level is someone else's
    mid = fair_value(bids2, [(1_701_500, 10)], own, 0, 1_700_000, 100)
    assert mid == (1_700_500, "mid")
    # a trade outranks the others' mid: it is a fact no quote can move
    assert fair_value(bids2, [(1_701_500, 10)], own, 1_698_000, 1_700_000, 100) == (
        1_698_000,
        "trade",
    )
    assert feed_agrees(bids, asks, own)
    assert not feed_agrees(bids, asks, own | {(BUY, 1_698_000): 10})  # not in the feed yet


def test_plan_replaces_in_place_cancels_extras_and_waits_for_pending():
    wanted = {(BUY, 0): Quote(100, 10), (SELL, 0): Quote(200, 10), (BUY, 1): Quote(90, 10)}
    live = {
        (BUY, 0): Live(1, 101, 10),  # price moved down: replace (away from the asks)
        (SELL, 0): Live(2, 200, 3),  # mostly filled: refill by replacing
        (SELL, 1): Live(3, 210, 10),  # no longer wanted: cancel
        (BUY, 1): Live(0, 0, 0, pending="x"),  # in flight: leave alone
    }
    actions = plan(wanted, live)
    assert [(a.kind, a.key, a.order_id) for a in actions] == [
        ("cancel", (SELL, 1), 3),
        ("replace", (BUY, 0), 1),
        ("replace", (SELL, 0), 2),
    ]
    assert (
        plan(wanted, {k: Live(i + 1, q.price, q.qty) for i, (k, q) in enumerate(wanted.items())})
        == []
    )


def _mm(mesh: Mesh, *args: str) -> subprocess.Popen:
    env = dict(
        os.environ,
        EXCHANGE_HOME=str(mesh.home),
        EXCHANGE_CONFIG=str(mesh.config_path),
        EXCHANGE_PASSWORD=PASSWORD,
        PYTHONPATH=str(ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "clients.cli", "mm", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ladder_on_book(mesh: Mesh, symbol: str):
    """(bids, asks) when the public book shows 10 levels a side, else None."""
    snap = snapshot(mesh.cfg.endpoints["marketdata_snapshot"], symbol)
    if len(snap.bids) == 10 and len(snap.asks) == 10:
        return snap.bids, snap.asks
    return None


def _centre(bids, asks) -> int | None:
    """The price every level pair is symmetric around, or None."""
    sums = {b[0] + a[0] for b, a in zip(bids, asks, strict=True)}
    return sums.pop() // 2 if len(sums) == 1 else None


def test_mm_quotes_survives_failover_replaces_after_a_fill_and_stops_clean(short_home):
    mesh = Mesh(short_home, standby=True, timings={"heartbeat_ms": 50, "missed_beats": 4})
    mm = None
    try:
        mesh.start()
        gateway = mesh.cfg.endpoints["gateway"]
        mm = _mm(
            mesh,
            "--account",
            "mm1",
            "--create-account",
            "--symbols",
            "AAPL,TSLA",
            "--refresh",
            "0",
            "--seed",
            "7",
            "--json",
            "--status-every",
            "0.5",
        )
        # 10 levels a side, symmetric around the reference price, on both symbols
        bids, asks = wait_for(lambda: _ladder_on_book(mesh, "AAPL"), 15, 0.05, "AAPL quotes")
        assert _centre(bids, asks) == to_units("170.00")
        assert bids[0][0] < to_units("170.00") < asks[0][0]
        wait_for(lambda: _ladder_on_book(mesh, "TSLA"), 5, 0.05, "TSLA quotes")
        watcher = Client(gateway, timeout=5)
        watcher.login("mm1", PASSWORD)
        assert len(watcher.orders().orders) == 40

        # a matcher failover: the bot carries on (the gateway resends, sends a notice)
        (primary,) = [s.service for s in mesh.status().services if s.role == "primary"]
        wait_for(
            lambda: any(
                s.service != primary and s.seq >= 40
                for s in mesh.status().services
                if s.service.startswith("matcher")
            ),
            what="the standby to follow",
        )
        mesh[primary].kill()
        wait_for(lambda: mesh.status().epoch == 2, 10, 0.05, "the standby to take over")

        # a taker sells 150 into the bids: the bot is long, so its ladder moves down
        taker = trader(mesh, "taker")
        result = taker.place("AAPL", Side.SELL, 150, to_units("169.00"), tif=Tif.IOC)
        assert sum(getattr(e, "qty", 0) for e in result.events if type(e).__name__ == "Fill") == 150

        def moved():
            book = _ladder_on_book(mesh, "AAPL")
            centre = book and _centre(*book)
            return centre if centre and centre < to_units("169.99") else None

        counts = []
        centre = wait_for(
            lambda: counts.append(len(watcher.orders().orders)) or moved(),
            10,
            0.05,
            "the ladder to move down",
        )
        assert max(counts) <= 40  # replaced in place, never piled up
        assert len(watcher.orders().orders) == 40
        # long 150 at a skew of 0.0001 a share: 0.015 under the last trade, on the tick
        last_trade = min(f.price for f in result.events if type(f).__name__ == "Fill")
        assert centre == last_trade - 200 or centre == last_trade - 100

        mm.send_signal(signal.SIGTERM)
        out, err = mm.communicate(timeout=15)
        assert mm.returncode == 0, err
        status = json.loads(out)
        assert status["ok"] and status["cancelled_on_exit"]
        assert status["symbols"]["AAPL"]["position"] == 150
        assert status["peak_open_orders"] <= 40
        assert status["placed"] <= 42 and status["replaced"] >= 10
        assert status["failovers"] >= 1
        assert "mm | AAPL fair" in err  # the status line
        assert watcher.orders().orders == []
        watcher.close()
        taker.close()
    finally:
        if mm is not None and mm.poll() is None:
            os.kill(mm.pid, signal.SIGKILL)
            mm.wait(timeout=10)
        mesh.stop()
