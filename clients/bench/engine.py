"""`exchange bench engine`: the pure engine, in-process, on the seeded synthetic flow.

Passes over the same flow, each on a fresh engine: ``repeat`` timed as a whole for
throughput (the best is reported, as timeit does, and every run is listed: on a shared
2-core machine the others are slowed by neighbours, not by the engine), and one timing
every command for latency percentiles (the timer's own cost would otherwise count
against throughput). All must end in the same state hash.

The same flow also goes through a bare matching loop (``clients.bench.floor``: no
events, risk or accounts), alternating with the engine in this process (bare, engine,
bare, engine...), each reporting its best run: ``engine_vs_bare`` is the engine's
throughput as a fraction of the bare loop's, a figure that holds on any host, beside
``python_loop_ns``, the empty loop's speed measured in the same run.
"""

from __future__ import annotations

import sys
import time

from clients.bench import floor
from clients.bench.flow import BENCH_RISK, bench_symbols, generate
from services.common.runtime import tune_gc
from services.common.wire import Fill
from services.matcher.compiled import running_compiled
from services.matcher.engine import Engine

CHUNKS = 10
BATCH = 256  # commands per apply_batch call: the matcher drains up to 256 frames a turn


def loop_ns(iterations: int = 2_000_000) -> float:
    """ns per iteration of an empty Python loop: how fast this machine runs Python right
    now. Shared 2-core machines vary by 2x over minutes; this puts a figure in context."""
    start = time.perf_counter_ns()
    for _ in range(iterations):
        pass
    return round((time.perf_counter_ns() - start) / iterations, 2)


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _fresh(setup: list) -> Engine:
    engine = Engine(bench_symbols(), BENCH_RISK)
    for cmd in setup:
        engine.apply(cmd)
    tune_gc()  # as the matcher service does after boot
    return engine


def _chunks(flow: list) -> list[list]:
    step = -(-len(flow) // CHUNKS)
    return [flow[i : i + step] for i in range(0, len(flow), step)]


def run(commands: int = 200_000, seed: int = 1, repeat: int = 3, progress=sys.stderr) -> dict:
    say = lambda text: print(text, file=progress, flush=True)  # noqa: E731
    say(f"generating {commands:,} commands (seed {seed})…")
    setup, flow, generator = generate(commands, seed)
    chunks = _chunks(flow)

    calls = floor.ops(flow)
    runs: list[float] = []
    bare_runs: list[float] = []
    for run_no in range(1, repeat + 1):
        book = floor.BareBook()
        tune_gc()
        start = time.perf_counter()
        floor.replay(book, calls)
        bare_runs.append(time.perf_counter() - start)
        bare_trades = book.trades
        del book
        engine = _fresh(setup)
        apply_batch = engine.apply_batch
        elapsed = 0.0
        for chunk in chunks:
            start = time.perf_counter()
            for i in range(0, len(chunk), BATCH):
                apply_batch(chunk[i : i + BATCH])
            elapsed += time.perf_counter() - start
        runs.append(elapsed)
        say(
            f"  throughput run {run_no}/{repeat}: {len(flow) / elapsed:,.0f} commands/s, "
            f"bare loop {len(flow) / bare_runs[-1]:,.0f}"
        )
        state_hash = engine.state_hash()
        accepted = engine.next_order - 1
        del engine
    if accepted != sum(1 for call in calls if call[0] == floor.ADD):
        # the bare loop numbers the new orders as the engine numbers the accepted ones
        raise RuntimeError("the engine rejected orders: the bare loop's cancels would miss")
    elapsed = min(runs)  # like timeit: the least-disturbed run is the engine's speed
    bare = min(bare_runs)

    engine = _fresh(setup)
    apply = engine.apply
    clock = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    filled = trades = events = 0
    for n, chunk in enumerate(chunks, 1):
        for cmd in chunk:
            t0 = clock()
            out = apply(cmd)
            record(clock() - t0)
            events += len(out)
            for event in out:
                if type(event) is Fill:
                    filled += event.qty
                    trades += 1
        say(f"  latency pass {n}/{len(chunks)}")
    latencies.sort()
    if not state_hash == engine.state_hash() == generator.state_hash():
        raise RuntimeError("the same flow gave different states: the engine is not deterministic")
    return {
        "commands": len(flow),
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(flow) / elapsed),
        "runs_commands_per_s": [round(len(flow) / r) for r in runs],
        "bare_commands_per_s": round(len(flow) / bare),
        "runs_bare_commands_per_s": [round(len(flow) / r) for r in bare_runs],
        "engine_vs_bare": round(bare / elapsed, 3),
        "bare_trades": bare_trades,
        "p50_us": round(percentile(latencies, 0.50) / 1000, 2),
        "p99_us": round(percentile(latencies, 0.99) / 1000, 2),
        "max_us": round(latencies[-1] / 1000, 2),
        "filled_lots": filled,
        "trades": trades,
        "events": events,
        "open_orders": len(engine.orders),
        "state_hash": state_hash,
        "seed": seed,
        "python_loop_ns": loop_ns(),
        "build": "compiled" if running_compiled() else "pure",
    }


def render(result: dict) -> str:
    return "\n".join(
        [
            f"engine benchmark (in-process, full engine: events, positions, risk, dedup; "
            f"{result['build']} build)",
            f"  commands        {result['commands']:>12,}",
            f"  elapsed         {result['seconds']:>12.3f} s",
            f"  throughput      {result['commands_per_s']:>12,} commands/s",
            f"  bare loop       {result['bare_commands_per_s']:>12,} commands/s "
            "(price-time matching only, same flow)",
            f"  engine / bare   {result['engine_vs_bare']:>12.3f}",
            f"  latency p50     {result['p50_us']:>12.2f} µs",
            f"  latency p99     {result['p99_us']:>12.2f} µs",
            f"  latency max     {result['max_us']:>12.2f} µs",
            f"  filled lots     {result['filled_lots']:>12,}",
            f"  trades          {result['trades']:>12,}",
            f"  open orders     {result['open_orders']:>12,}",
            f"  state hash      {result['state_hash']:>32}",
            f"  machine         {result['python_loop_ns']:>12.2f} ns per empty Python loop",
        ]
    )
