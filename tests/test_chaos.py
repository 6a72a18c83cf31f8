"""Chaos: bots trade on several symbols while the primary matcher is killed five times
and stalled once. Nothing acknowledged may be lost or doubled, and the books balance."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections import Counter

from clients.client import Client, ExchangeError, NoAnswer
from services.common.wire import Accepted, Fill, OrdType, Side, Tif
from services.gateway.reports import fill_for
from services.journal import tools as journal_tools
from tests.mesh import Mesh, matcher_state, wait_for

PASSWORD = "Chaos.pw1"
SYMBOLS = {"AAPL": 1_700_000, "TSLA": 1_600_000, "MSFT": 4_200_000}


class Bot(threading.Thread):
    """Trades until told to stop; keeps its own record of acks and fills."""

    def __init__(self, endpoint: str, name: str, taker: bool, seed: int) -> None:
        super().__init__(daemon=True)
        self.client = Client(endpoint, timeout=20)
        self.client.signup(name, PASSWORD)
        self.client.login(name, PASSWORD)
        self.taker = taker
        self.rng = random.Random(seed)
        self.acked: set[str] = set()
        self.fills: dict[int, Fill] = {}
        self.resting: list[int] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def note(self, events) -> None:
        for event in events:
            if isinstance(event, Fill):
                self.fills[event.trade_id] = event
            elif isinstance(event, Accepted):
                self.acked.add(event.cl_ord_id)

    def send(self, n: int) -> None:
        symbol, mid = self.rng.choice(list(SYMBOLS.items()))
        side = self.rng.choice((Side.BUY, Side.SELL))
        cl = f"{self.client.account}-{n}"
        if self.taker:
            price = mid + (300 if side == Side.BUY else -300)
            kwargs = {"tif": Tif.IOC}
        else:
            price = mid + self.rng.randint(1, 5) * 100 * (-1 if side == Side.BUY else 1)
            kwargs = {"tif": Tif.GTC, "ord_type": OrdType.LIMIT}
        for _ in range(3):  # a timed-out request is resent as is: exactly once
            try:
                result = self.client.place(
                    symbol, side, self.rng.randint(1, 20), price, cl_ord_id=cl, **kwargs
                )
                self.note(result.events)
                if not self.taker and result.events[-1].__class__.__name__ == "Rested":
                    self.resting.append(result.ack.order_id)
                return
            except NoAnswer:
                continue

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                self.send(n)
                if not self.taker and len(self.resting) > 20:
                    # filled meanwhile, or no answer in time: both fine for a market maker
                    with contextlib.suppress(ExchangeError, NoAnswer):
                        self.client.cancel(self.resting.pop(0), cl_ord_id=f"x{n}")
                for report in self.client.drain_reports():
                    self.note(report.events)
        except Exception as exc:  # noqa: BLE001 - surfaced by the test
            self.error = repr(exc)

    def finish(self) -> None:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for report in self.client.drain_reports():
                self.note(report.events)
            time.sleep(0.05)
        self.client.close()


def primary(mesh: Mesh) -> str:
    return wait_for(
        lambda: next(
            (
                s.service
                for s in mesh.status().services
                if s.role == "primary" and s.alive and s.epoch == mesh.status().epoch
            ),
            None,
        ),
        timeout=10,
        what="a primary",
    )


def back_as_standby(mesh: Mesh, name: str) -> None:
    mesh[name].start()
    try:
        wait_for(
            lambda: any(
                s.service == name and s.role == "standby" and s.alive
                for s in mesh.status().services
            ),
            timeout=20,
            what=f"{name} as standby",
        )
    except AssertionError as exc:  # say what the mesh looked like: this failed once
        status = mesh.status()
        roles = (
            [(s.service, s.role, s.alive, s.epoch, s.seq) for s in status.services]
            if status
            else None
        )
        logs = {n: mesh[n].log()[-1500:] for n in ("heartbeat", "matcher-a", "matcher-b")}
        raise AssertionError(f"{exc}; services {roles}; {logs}") from None


def test_chaos_kills_and_a_stall_lose_and_double_nothing(short_home):
    rng = random.Random(11)
    mesh = Mesh(short_home, standby=True, timings={"heartbeat_ms": 50, "missed_beats": 4})
    bots: list[Bot] = []
    try:
        mesh.start()
        endpoint = mesh.cfg.endpoints["gateway"]
        bots = [Bot(endpoint, f"mm{i}", False, i) for i in range(2)]
        bots += [Bot(endpoint, f"taker{i}", True, 10 + i) for i in range(2)]
        for bot in bots:
            bot.start()
        for round_no in range(6):
            time.sleep(rng.uniform(0.8, 2.0))
            victim = primary(mesh)
            if round_no == 3:  # a stall longer than the timeout: fencing
                mesh[victim].signal(signal.SIGSTOP)
                wait_for(lambda v=victim: primary(mesh) != v, what="promotion past a stall")
                time.sleep(0.3)
                mesh[victim].signal(signal.SIGCONT)
                wait_for(lambda v=victim: not mesh[v].alive(), what="the stalled one to go")
            else:
                mesh[victim].kill()
            back_as_standby(mesh, victim)
        time.sleep(1.0)
        for bot in bots:
            bot.stop.set()
        for bot in bots:
            bot.join(30)
            bot.finish()
        assert [b.error for b in bots] == [None] * len(bots)
        assert mesh.status().epoch == 7  # six promotions after the first

        live = matcher_state(mesh.cfg, primary(mesh).split("-")[1])
        wait_for(
            lambda: journal_tools.verify(short_home / "journal")["last_seq"] >= live.seq,
            what="the journal to commit everything",
        )
        records = list(journal_tools.records(short_home / "journal"))
        accepted = Counter(
            (e.account, e.cl_ord_id) for r in records for e in r.events if isinstance(e, Accepted)
        )
        fills = {e.trade_id: e for r in records for e in r.events if isinstance(e, Fill)}
        assert len(fills) == sum(isinstance(e, Fill) for r in records for e in r.events)
        for bot in bots:
            account = bot.client.account
            assert all(accepted[(account, cl)] == 1 for cl in bot.acked)
            mine = {
                t: fill_for(f, account)  # as the bot is told it: its own side only
                for t, f in fills.items()
                if account in (f.taker_account, f.maker_account)
            }
            assert bot.fills == mine  # each bot's own record matches the journal
        assert sum(len(b.acked) for b in bots) > 100 and len(fills) > 20
        replayed = journal_tools.replay(short_home / "journal", mesh.cfg)
        assert replayed["mismatch"] is None
        assert (replayed["last_seq"], replayed["state_hash"]) == (live.seq, live.state_hash)
        engine = journal_tools.rebuild(short_home / "journal", mesh.cfg)
        for symbol in SYMBOLS:
            assert sum(engine.position(a, symbol) for a in engine.accounts) == 0
        # trades only move cash between accounts: the total is the opening balances
        opening = mesh.cfg.risk.opening_cash * len(engine.accounts)
        assert sum(a.cash for a in engine.accounts.values()) == opening
    finally:
        for bot in bots:
            bot.stop.set()
        mesh.stop()
