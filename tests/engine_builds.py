"""One seeded flow of every kind of command, through whichever engine build this process
runs: ``python -m tests.engine_builds SEED COUNT`` prints which build it ran, a digest of
every event's bytes and the state hash. tests/test_engine_builds.py runs it under both
builds and compares.

The flow is made as it is applied (cancels and replaces mostly name orders resting
then), so the two builds see the same flow as long as they agree: orders of
every type, time in force, self-trade mode and post-only, prices in and out of the
bands and off tick, sizes off lot and over the limits, cancels and replaces of order
ids that may or may not rest, duplicate client ids, operators' kills, deposits, halts,
reference moves, reopens and password changes; and the trading day: session moves
(call periods and their auctions, by the scheduler's command and an operator's), DAY,
GTD (good and bad dates) and on-close orders, and ends of day (some resent).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta

from services.common.bus import (
    Admin,
    CancelOrder,
    CreateAccount,
    EndOfDay,
    NewOrder,
    Reopen,
    ReplaceOrder,
    SetPassword,
    SetSession,
)
from services.common.codec import encode
from services.common.config import RiskLimits, SymbolSpec
from services.matcher import snapshot
from services.matcher.compiled import running_compiled
from services.matcher.engine import Engine

SYMBOLS = {
    "AAA": SymbolSpec("AAA", 100, 1, 1_000_000, 1000, 300),
    "BBB": SymbolSpec("BBB", 1, 100, 50_000, 2000),
}
RISK = RiskLimits(max_order_qty=5_000, max_position=20_000, max_open_orders=40, short_limit=5_000)
ACCOUNTS = 6
FIRST_DAY = 20260105


def next_day(day: int) -> int:
    d = date(day // 10_000, day // 100 % 100, day % 100) + timedelta(days=1)
    return d.year * 10_000 + d.month * 100 + d.day


def flow(seed: int, count: int, engine: Engine) -> Iterator:
    """Commands to apply to ``engine``, one at a time (it reads the book as it goes)."""
    rng = random.Random(seed)
    yield from [CreateAccount(f"acct{i}", f"h{i}", rng.choice((0, 1, 2, 3))) for i in range(8)]
    yield CreateAccount("acct1", "dup")  # a name taken
    yield CreateAccount("bad name!", "x")
    yield EndOfDay(0, FIRST_DAY)
    for n in range(count):
        account = rng.randint(1, ACCOUNTS + 1)  # sometimes an unknown account
        cl = f"c{n}" if rng.random() > 0.03 else f"c{rng.randrange(max(n, 1))}"  # duplicates
        symbol = rng.choice(("AAA", "AAA", "BBB", "ZZZ" if rng.random() < 0.02 else "BBB"))
        spec = SYMBOLS.get(symbol, SYMBOLS["AAA"])
        picked = rng.randint(1, engine.next_order)  # an order id that may rest
        if engine.orders and rng.random() < 0.8:  # mostly one that rests, by its own account
            resting = sorted(engine.orders)
            picked = resting[rng.randrange(len(resting))]
            account = engine.orders[picked].account
        roll = rng.random()
        if roll < 0.55:
            mid = spec.reference + spec.tick * rng.randint(-40, 40)
            price = mid + (0 if rng.random() > 0.03 else 1)  # sometimes off tick
            if rng.random() < 0.03:
                price = spec.reference * 3  # outside the static band
            qty = spec.lot * rng.randint(1, 60) + (0 if rng.random() > 0.03 else 1)
            if rng.random() < 0.02:
                qty = rng.choice((0, -spec.lot, 10**7))
            market = rng.random() < 0.08
            if market:
                tif = rng.choice((2, 3, 4, 4, 6, 1 if rng.random() < 0.1 else 2))
            else:
                tif = rng.choice((1, 1, 2, 3, 4, 4, 4, 5, 5, 6))
            today = engine.trading_date
            expire = rng.choice((today, today, next_day(today), today - 1, 20261340))
            expire = expire if tif == 5 or rng.random() < 0.02 else 0
            yield (
                NewOrder(
                    account,
                    cl,
                    symbol,
                    rng.choice((1, 2)),
                    qty,
                    0 if market else price,
                    2 if market else 1,
                    tif,
                    rng.random() < 0.1,
                    rng.choice((0, 0, 0, 1, 2, 3)),
                    expire,
                )
            )
        elif roll < 0.77:
            yield (CancelOrder(account, cl, picked))
        elif roll < 0.92:
            qty = spec.lot * rng.randint(1, 60)
            price = spec.reference + spec.tick * rng.randint(-40, 40)
            yield (ReplaceOrder(account, cl, picked, price, qty))
        elif roll < 0.97:
            action = rng.choice(
                ("unkill", "resume", "deposit", "reference", "session") * 3
                + ("kill", "halt", "end_of_day")
            )
            yield (
                Admin(
                    1,
                    cl,
                    action,
                    symbol,
                    rng.randint(1, ACCOUNTS + 1),
                    spec.reference + spec.tick * rng.randint(-30, 30),
                    rng.choice((10**9, -(10**8), 0)),
                    rng.randint(1, 4) if rng.random() < 0.95 else 7,
                    next_day(engine.trading_date) if rng.random() < 0.9 else engine.trading_date,
                )
            )
        elif roll < 0.975:
            yield (Reopen(symbol))
        elif roll < 0.988:  # the scheduler: mostly along the day, sometimes anywhere
            state = engine.books[symbol].state if symbol in engine.books else 3
            along = {1: 2, 2: 3, 3: 4, 4: 1}[state]
            yield SetSession(symbol, along if rng.random() < 0.8 else rng.randint(1, 4))
        elif roll < 0.99:
            today = engine.trading_date
            yield EndOfDay(today if rng.random() < 0.8 else today - 1, next_day(today))
        else:
            yield (SetPassword(account, cl, f"p{n}"))


def run(seed: int, count: int) -> dict:
    engine = Engine(SYMBOLS, RISK)
    digest = hashlib.sha256()
    events = 0
    for cmd in flow(seed, count, engine):
        out = engine.apply(cmd)
        events += len(out)
        digest.update(encode(out))
    snap = encode(snapshot.capture(engine, count, 1))
    return {
        "compiled": running_compiled(),
        "events": events,
        "events_sha256": digest.hexdigest(),
        "state_hash": engine.state_hash(),
        "snapshot_sha256": hashlib.sha256(snap).hexdigest(),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]), int(sys.argv[2]))))
