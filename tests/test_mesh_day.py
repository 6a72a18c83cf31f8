"""A whole trading day on the real mesh, on an accelerated clock: the scheduler moves
every symbol through pre-open, the opening auction, continuous trading, the closing
call and auction, ends the day and opens the next one; traders use the SDK, a market
maker quotes through it all; then the journal replays to the matcher's state hash.
And an operator's part: session moves, a halt's re-opening call, an early end of day
(`exchange admin ...`), `exchange sessions` and `exchange book`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import zmq

from clients.client import ExchangeError, session, snapshot
from clients.feed import BookSubscriber
from services.common.money import to_units
from services.common.wire import (
    Cancelled,
    CancelReason,
    OrdType,
    Reject,
    Session,
    Side,
    Tif,
)
from tests.mesh import (
    exchange_cli,
    matcher_state,
    replay_journal,
    running,
    trader,
    wait_for,
)
from tests.test_mm import PASSWORD, _mm

SPEED = 2400  # exchange seconds per real second: an hour in 1.5 s
BOOT_S = 12.0  # real seconds before the clock reaches Monday 00:00 (the mesh boots)
MONDAY, TUESDAY = 20260309, 20260310
CLOSED, PRE_OPEN, CONTINUOUS, PRE_CLOSE = (
    Session.CLOSED,
    Session.PRE_OPEN,
    Session.CONTINUOUS,
    Session.PRE_CLOSE,
)


def day_schedule() -> dict:
    """Monday 9 March 2026 from 00:00 (UTC), BOOT_S real seconds from now: pre-open
    6 s, continuous 9 s, the closing call 6 s, the day's end 3 s after the close,
    Tuesday's pre-open 12 s after that."""
    return {
        "pre_open": "00:00",
        "open": "04:00",
        "pre_close": "10:00",
        "close": "14:00",
        "end_of_day": "16:00",
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "clock_start": "2026-03-09T00:00:00",
        "clock_origin": time.time() + BOOT_S,
        "clock_speed": float(SPEED),
    }


class Watch:
    """The public feed of one symbol, polled while the test waits: every session state
    it showed, in order, and every trade."""

    def __init__(self, mesh, symbol: str) -> None:
        self.feed = BookSubscriber(
            zmq.Context.instance(),
            mesh.cfg.endpoints["marketdata_pub"],
            mesh.cfg.endpoints["marketdata_snapshot"],
            symbol,
            trades=True,
        )
        self.states: list[tuple[int, int]] = []  # (state, trading date) as they changed
        self.trades = []
        self.indicatives: list[tuple] = []

    def poll(self) -> None:
        feed = self.feed
        feed.poll(20)
        seen = (feed.state, feed.trading_date)
        if feed.synced and (not self.states or self.states[-1] != seen):
            self.states.append(seen)
        if feed.indicative[0] and (not self.indicatives or self.indicatives[-1] != feed.indicative):
            self.indicatives.append(feed.indicative)
        self.trades += feed.take_trades()

    def until(self, state: int, date: int, timeout: float = 40.0) -> None:
        def there():
            self.poll()
            return self.feed.state == state and self.feed.trading_date == date

        wait_for(there, timeout, 0.0, f"{self.feed.symbol} in {Session(state).name} on {date}")


def refused(call) -> int:
    with pytest.raises(ExchangeError) as exc:
        call()
    return exc.value.code


def test_a_whole_day_with_auctions_then_the_next(short_home):
    with running(short_home, schedule=day_schedule()) as mesh:
        mm = _mm(mesh, "--account", "mm", "--create-account", "--symbols", "TSLA",
                 "--refresh", "0", "--seed", "3", "--json", "--status-every", "0")  # fmt: skip
        try:
            alice, bob, cara = trader(mesh, "alice"), trader(mesh, "bob"), trader(mesh, "cara")
            aapl, tsla = Watch(mesh, "AAPL"), Watch(mesh, "TSLA")
            snaps = mesh.cfg.endpoints["marketdata_snapshot"]
            px = to_units

            # Sunday: the first trading date is Monday's, and every symbol is closed
            aapl.until(CLOSED, MONDAY)
            assert refused(lambda: alice.place("AAPL", Side.BUY, 10, px("170.00"))) == (
                Reject.MARKET_CLOSED
            )

            # Monday's pre-open: orders rest without matching; the indicative shows
            aapl.until(PRE_OPEN, MONDAY)
            day_buy = alice.place("AAPL", Side.BUY, 100, px("170.10"), tif=Tif.DAY,
                                  cl_ord_id="alice-day")  # fmt: skip
            gtc_buy = alice.place("AAPL", Side.BUY, 50, px("169.90"), tif=Tif.GTC)
            bob.place("AAPL", Side.SELL, 60, px("169.95"), tif=Tif.DAY)
            gtc_sell = bob.place("AAPL", Side.SELL, 100, px("170.20"), tif=Tif.GTC)
            assert (
                refused(lambda: bob.place("AAPL", Side.SELL, 5, px("169.00"), tif=Tif.IOC))
                == Reject.TIF_NOT_NOW
            )
            wait_for(lambda: (aapl.poll(), aapl.feed.indicative[1] == 60)[1], 10, 0,
                     "the indicative: 60 would match")  # fmt: skip
            assert not aapl.trades
            info = session(snaps, "AAPL")
            assert info.in_call and info.indicative[:2] == (aapl.feed.indicative[0], 60)
            # the market maker quotes its DAY limit orders in the call
            wait_for(lambda: snapshot(snaps, "TSLA").bids, 15, 0.05, "the maker's quotes")

            # the opening auction: one price, between the crossing limits, flagged
            aapl.until(CONTINUOUS, MONDAY)
            opening = wait_for(lambda: (aapl.poll(), aapl.trades)[1], 5, 0, "the auction trade")
            assert all(t.auction for t in opening) and sum(t.qty for t in opening) == 60
            (open_price,) = {t.price for t in opening}
            assert px("169.95") <= open_price <= px("170.10")
            assert aapl.feed.auction is not None and aapl.feed.auction.matched == 60
            # continuous trading: a buy takes bob's GTC offer at once
            taken = alice.place("AAPL", Side.BUY, 40, px("170.20"), tif=Tif.DAY)
            assert any(type(e).__name__ == "Fill" and not e.auction for e in taken.events)
            # a market-on-close order waits aside until the closing call
            moc = bob.place("AAPL", Side.BUY, 10, 0, OrdType.MARKET, Tif.CLOSE)

            # the closing call, then the closing auction: the official close
            aapl.until(PRE_CLOSE, MONDAY)
            cara.place("AAPL", Side.SELL, 30, px("170.00"), tif=Tif.DAY)
            before = len(aapl.trades)
            aapl.until(CLOSED, MONDAY)
            closing = wait_for(
                lambda: (aapl.poll(), aapl.trades[before:])[1], 5, 0, "the closing auction"
            )
            assert all(t.auction for t in closing)
            assert sum(t.qty for t in closing) == 30 and len({t.price for t in closing}) == 1
            assert moc.ack.order_id not in {o.order_id for o in bob.orders().orders}
            assert refused(lambda: alice.place("AAPL", Side.BUY, 1, px("170.00"))) == (
                Reject.MARKET_CLOSED
            )

            # the day's end: DAY orders expire, GTC orders carry over
            aapl.until(CLOSED, TUESDAY)
            open_now = {o.order_id for o in alice.orders().orders}
            assert day_buy.ack.order_id not in open_now and gtc_buy.ack.order_id in open_now
            assert gtc_sell.ack.order_id in {o.order_id for o in bob.orders().orders}
            expired = [
                e
                for r in alice.drain_reports()
                for e in r.events
                if type(e) is Cancelled and e.reason == CancelReason.EXPIRED
            ]
            assert [e.order_id for e in expired] == [day_buy.ack.order_id]
            wait_for(lambda: not snapshot(snaps, "TSLA").bids, 10, 0.05, "the maker's expiry")

            # Tuesday's pre-open: a client order id of Monday's may be used again
            aapl.until(PRE_OPEN, TUESDAY)
            again = alice.place("AAPL", Side.BUY, 1, px("169.00"), cl_ord_id="alice-day")
            assert again.ack.order_id > day_buy.ack.order_id
            wait_for(lambda: snapshot(snaps, "TSLA").bids, 15, 0.05, "Tuesday's quotes")
            tsla.poll()
        finally:
            mm.send_signal(signal.SIGINT)
            try:
                out, err = mm.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                mm.kill()
                out, err = mm.communicate()
        assert mm.returncode == 0, err[-3000:]
        status = json.loads(out.strip().splitlines()[-1])
        assert status["ok"] and status["placed"] > 0

        # the feed showed the whole day, in order
        assert aapl.states[-7:] == [
            (CLOSED, MONDAY),
            (PRE_OPEN, MONDAY),
            (CONTINUOUS, MONDAY),
            (PRE_CLOSE, MONDAY),
            (CLOSED, MONDAY),
            (CLOSED, TUESDAY),
            (PRE_OPEN, TUESDAY),
        ]
        assert aapl.indicatives

        # the journal replays to the state the matcher holds
        for _ in range(5):
            state = matcher_state(mesh.cfg)
            replayed = replay_journal(mesh)
            if replayed["last_seq"] == state.seq:
                assert replayed["state_hash"] == state.state_hash
                break
        else:
            pytest.fail("the matcher kept moving while the journal was replayed")


def test_an_operator_moves_sessions_halts_and_ends_the_day_by_hand(short_home):
    with running(
        short_home, security={"operators": ["op"]}, schedule={"reopen_call_ms": 6000}
    ) as mesh:
        op, ann, ben = trader(mesh, "op"), trader(mesh, "ann"), trader(mesh, "ben")
        env = {"EXCHANGE_USER": "op", "EXCHANGE_PASSWORD": PASSWORD}

        def admin(*args: str) -> dict:
            done = exchange_cli("admin", *args, "--json", home=mesh.home,
                                config_path=mesh.config_path, env=env)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout)

        def sessions() -> dict:
            done = exchange_cli("sessions", "--json", home=mesh.home, config_path=mesh.config_path)
            assert done.returncode == 0, done.stdout + done.stderr
            return {row["symbol"]: row for row in json.loads(done.stdout)["symbols"]}

        # the default schedule: continuous at any hour, today's date from the start
        today = int(time.strftime("%Y%m%d", time.gmtime()))
        first = wait_for(lambda: (s := sessions())["AAPL"]["trading_date"] and s, 10, 0.1,
                         "the first trading date")  # fmt: skip
        assert first["AAPL"]["state"] == "continuous"
        assert first["AAPL"]["trading_date"] in (today, today + 1)  # midnight may pass

        moved = admin("session", "AAPL", "pre-open")
        assert any(e["type"] == "session" and e["state"] == 2 for e in moved["events"])
        ann.place("AAPL", Side.BUY, 20, to_units("170.05"), tif=Tif.DAY)
        ben.place("AAPL", Side.SELL, 20, to_units("169.95"), tif=Tif.GTC)
        shown = wait_for(lambda: (s := sessions()["AAPL"])["indicative"] and s, 10, 0.1,
                         "the indicative auction")  # fmt: skip
        assert shown["state"] == "pre-open" and shown["indicative"]["matched"] == 20
        book = exchange_cli("book", "AAPL", home=mesh.home, config_path=mesh.config_path)
        assert "pre-open" in book.stdout and "indicative" in book.stdout
        # a by-hand pre-open in continuous trading re-opens after reopen_call_ms
        wait_for(lambda: sessions()["AAPL"]["state"] == "continuous", 10, 0.1, "the re-open")
        fills = ann.fills("AAPL").fills
        assert sum(f.qty for f in fills) == 20

        # a halt ends in a re-opening call
        admin("halt", "MSFT")
        resumed = admin("resume", "MSFT")
        assert any(e["type"] == "session" and e["state"] == 2 for e in resumed["events"])
        wait_for(lambda: sessions()["MSFT"]["state"] == "continuous", 10, 0.1, "MSFT re-opened")

        # closed by hand: new orders refused, cancels taken
        resting = ann.place("AAPL", Side.BUY, 5, to_units("169.00"), tif=Tif.GTC)
        admin("session", "AAPL", "closed")
        assert refused(lambda: ann.place("AAPL", Side.BUY, 5, to_units("169.00"))) == (
            Reject.MARKET_CLOSED
        )
        day = ann.place("TSLA", Side.BUY, 5, to_units("159.00"), tif=Tif.DAY)
        date = sessions()["TSLA"]["trading_date"]

        # an early end of day: the next date, DAY orders expired, GTC kept
        ended = admin("end-of-day")
        (day_ended,) = [e for e in ended["events"] if e["type"] == "day_ended"]
        assert day_ended["trading_date"] == date and day_ended["next_date"] > date
        open_now = {o.order_id for o in ann.orders().orders}
        assert resting.ack.order_id in open_now and day.ack.order_id not in open_now
        wait_for(lambda: sessions()["TSLA"]["trading_date"] == day_ended["next_date"], 10, 0.1,
                 "the new date on the feed")  # fmt: skip
        state = matcher_state(mesh.cfg)
        replayed = replay_journal(mesh)
        if replayed["last_seq"] == state.seq:
            assert replayed["state_hash"] == state.state_hash
        op.close()
