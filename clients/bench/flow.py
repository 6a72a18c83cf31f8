"""A seeded synthetic order flow for the engine benchmark.

The flow is generated against a live engine (so cancels name orders that are really
resting and aggressive orders really cross 1-3 levels), then replayed into a fresh
engine for the measurement: the engine is deterministic, so both see the same thing.
"""

from __future__ import annotations

import random

import msgspec

from services.common.bus import AnyCommand, CancelOrder, CreateAccount, NewOrder
from services.common.codec import encode
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import Rested, Side, Tif
from services.matcher.engine import Engine

TICK = 100  # $0.01
# a large opening balance: the flow measures matching, not buying-power rejects
BENCH_RISK = RiskLimits(
    max_order_qty=1_000,
    max_position=10**7,
    short_limit=10**7,
    max_open_orders=10**6,
    opening_cash=10**16,
)


def bench_symbols(count: int = 10) -> dict[str, SymbolSpec]:
    return {f"SYM{i}": SymbolSpec(f"SYM{i}", TICK, 1, 100 * 10_000, 5_000) for i in range(count)}


def generate(
    commands: int = 200_000, seed: int = 1, symbols: int = 10, accounts: int = 20
) -> tuple[list, list, Engine]:
    """Return (setup commands, measured commands, the engine that generated them).

    Mix: ~60% passive limits 1-20 ticks from a drifting mid, ~25% cancels of live
    orders, ~15% aggressive orders crossing 1-3 levels; sizes 1-500.
    """
    rng = random.Random(seed)
    specs = bench_symbols(symbols)
    engine = Engine(specs, BENCH_RISK)
    setup = [CreateAccount(f"bench{i}", "x") for i in range(accounts)]
    for cmd in setup:
        engine.apply(cmd)
    names = list(specs)
    mids = {name: spec.reference for name, spec in specs.items()}
    live: list[tuple[int, int]] = []  # (account, order id) that rested
    flow = []
    for n in range(commands):
        roll = rng.random()
        if roll < 0.25:
            victim = _pop_live(rng, live, engine)
            if victim is not None:
                cmd = CancelOrder(victim[0], f"x{n}", victim[1])
                flow.append(cmd)
                engine.apply(cmd)
                continue
        account = rng.randrange(1, accounts + 1)
        symbol = names[rng.randrange(len(names))]
        mid = mids[symbol] = max(TICK * 100, mids[symbol] + TICK * rng.choice((-1, 0, 1)))
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        qty = rng.randint(1, 500)
        if roll < 0.85:
            offset = TICK * rng.randint(1, 20)
            price = mid - offset if side == Side.BUY else mid + offset
            tif = Tif.GTC
        else:
            book = engine.books[symbol]
            levels = (book.asks if side == Side.BUY else book.bids).depth(3)
            price = levels[rng.randrange(len(levels))][0] if levels else mid
            tif = Tif.IOC if rng.random() < 0.5 else Tif.GTC
        cmd = NewOrder(account, f"o{n}", symbol, side, qty, price, tif=tif)
        flow.append(cmd)
        last = engine.apply(cmd)[-1]
        if isinstance(last, Rested):
            live.append((account, last.order_id))
    # the matcher gets commands decoded off the wire: measure with exactly those
    wire = msgspec.msgpack.Decoder(list[AnyCommand])
    return wire.decode(encode(setup)), wire.decode(encode(flow)), engine


def _pop_live(rng: random.Random, live: list, engine: Engine) -> tuple[int, int] | None:
    """A random order that still rests; orders filled since they rested are dropped."""
    while live:
        i = rng.randrange(len(live))
        live[i], live[-1] = live[-1], live[i]
        owner, order_id = live.pop()
        if order_id in engine.orders:
            return owner, order_id
    return None
