"""Load processes that start together and each report once.

The seed and sustained benchmarks both spawn N client processes that wait at one
barrier (so they start at the same instant) and put one result each on a queue. A
process that dies without its result fails the run at once instead of leaving the
benchmark waiting, and none outlives the call.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time


def run_together(target, arglists: list[tuple], timeout: float) -> list:
    """``target(*args, start, results)`` in a spawned process per ``args``; the
    results, in the order they arrived."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(len(arglists)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, results)) for args in arglists]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    got: list = []
    try:
        while len(got) < len(procs):
            try:
                got.append(results.get(timeout=0.5))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"load processes failed (exit codes {dead})") from None
        return got
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
