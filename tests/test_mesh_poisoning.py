"""The poisoning attack, played against the real mesh: two free accounts walk a price up
by wash trades, then try trades that would overflow cash and notional. Each step is
refused with a clear code while an honest trader carries on; no service restarts; the
journal replays to the live state and the exchange comes back after a restart."""

from __future__ import annotations

from collections import Counter

from clients.client import Client, ExchangeError
from services.common.money import to_units
from services.common.wire import Reject, Side, TradingPause
from tests.mesh import matcher_state, replay_journal, running, trader, wait_for

D = to_units
INT64 = 2**63 - 1


def tick_up(price: int, percent: int) -> int:
    return price * (100 + percent) // 100 // 100 * 100  # on the $0.01 tick


def try_place(client, codes: Counter, *args, **kwargs):
    try:
        return client.place(*args, **kwargs)
    except ExchangeError as exc:
        codes[exc.code] += 1
        return None


def test_wash_trade_walk_and_huge_trades_are_refused_while_an_honest_trader_trades(
    short_home,
):
    with running(short_home, risk={"pause_ms": 200}) as mesh:
        pids = {name: service.pid for name, service in mesh.services.items()}
        seller, buyer = trader(mesh, "wash1"), trader(mesh, "wash2")
        honest = trader(mesh, "honest")
        codes: Counter = Counter()
        price = D(170)
        for step in range(30):  # each step tries to trade 4% above the last trade
            price = tick_up(price, 4)
            try_place(seller, codes, "AAPL", Side.SELL, 10, price)
            try_place(buyer, codes, "AAPL", Side.BUY, 10, price)
            # the honest trader's orders in another symbol go through every step
            ack = honest.place("MSFT", Side.BUY, 1, D(420) - 100 * step).ack
            assert ack.order_id > 0
        assert codes[Reject.PRICE_BAND] > 0  # the walk ends at the static band
        # a jump past the dynamic band (5% around the last trade) pauses the symbol
        buyer.place("AAPL", Side.BUY, 10, D(154))
        dumped = seller.place("AAPL", Side.SELL, 10, D(154))
        assert any(isinstance(e, TradingPause) and e.paused for e in dumped.events)
        assert try_place(buyer, codes, "AAPL", Side.BUY, 1, D(180)) is None
        assert codes[Reject.TRADING_PAUSED] == 1
        assert honest.place("MSFT", Side.BUY, 1, D(400)).ack.order_id > 0  # unaffected
        wait_for(  # the primary reopens it after pause_ms
            lambda: try_place(buyer, Counter(), "AAPL", Side.BUY, 1, D(180)) is not None,
            10,
            0.1,
            "AAPL to reopen",
        )
        band_hi = D(187)  # 170 + 10%: no trade moved it
        assert try_place(buyer, codes, "AAPL", Side.BUY, 1, band_hi + 100) is None
        assert codes[Reject.PRICE_BAND] >= 2

        # trades whose value could overflow: each refused before it is sequenced
        huge = Counter()
        try_place(buyer, huge, "BRKA", Side.BUY, 10**12, D(650_000))  # gateway: size
        try_place(buyer, huge, "BRKA", Side.BUY, 1, 2**62)  # gateway: price
        for _ in range(3):  # 100,000 x $650,000 each: far past the account's cash
            try_place(buyer, huge, "BRKA", Side.BUY, 100_000, D(650_000))
        for _ in range(12):  # short sales: bounded by the position limit (1,000,000)
            try_place(seller, huge, "BRKA", Side.SELL, 100_000, D(650_000))
        assert huge[Reject.MAX_ORDER_SIZE] >= 1 and huge[Reject.BAD_PRICE] >= 1
        assert huge[Reject.INSUFFICIENT_FUNDS] == 3
        assert huge[Reject.POSITION_LIMIT] == 2  # 10 x 100,000 rest; the 11th and 12th do not
        for client in (seller, buyer, honest):
            view = client.positions()
            assert abs(view.cash) <= INT64
            assert all(abs(q) <= INT64 for q in view.positions.values())
        assert honest.place("MSFT", Side.SELL, 1, D(430)).ack.order_id > 0

        # nothing restarted, and the journal replays to the live state
        assert {n: s.pid for n, s in mesh.services.items()} == pids
        live = matcher_state(mesh.cfg)
        replayed = replay_journal(mesh)
        assert replayed["state_hash"] == live.state_hash

        # the exchange comes back after a full restart, with everyone's cash intact
        before = honest.positions()
        for client in (seller, buyer, honest):
            client.close()
        mesh.stop()
        mesh.start()
        again = Client(mesh.cfg.endpoints["gateway"], timeout=15)
        again.login("honest", "Secret.pw1")
        after = again.positions()
        assert (after.cash, after.positions) == (before.cash, before.positions)
        assert again.place("MSFT", Side.BUY, 1, D(419)).ack.order_id > 0
        again.close()
