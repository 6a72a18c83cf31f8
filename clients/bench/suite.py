"""`exchange bench all`: every benchmark in turn, results as JSON, then the report.

Each benchmark's result is written to ``<out>/<name>.json`` as soon as it finishes
(a failure later keeps what was measured), and all of them together with the run's
metadata to ``<out>/results.json``; ``report.md`` and ``latency.png`` follow.
``quick`` shrinks every benchmark so the whole path can be checked in seconds; its
figures are not for comparing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from clients.bench import engine, failover, report, seed, sustained
from clients.bench.cluster import ROOT

# each sustained rate three times, reported by its median run: one host stall can set
# a single run's p99 on a shared VM; each run alternates with one through the relay (the
# floor), and with three `make bench` takes about 9 minutes
SUSTAINED_REPEAT = 3


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def plan(quick: bool) -> list[tuple[str, object]]:
    """(name, a function that runs it and returns its result), in running order."""
    if quick:
        return [
            ("engine", lambda: engine.run(commands=20_000, repeat=1)),
            ("seed", lambda: seed.run(ns=(1, 2), trials=1)),
            ("sustained", lambda: sustained.run(rates=(1_000, None), duration=1.0, repeat=2)),
            ("failover", lambda: failover.run(failovers=1, interval=1.0)),
        ]
    return [
        ("engine", lambda: engine.run()),
        ("seed", lambda: seed.run()),
        ("sustained", lambda: sustained.run(repeat=SUSTAINED_REPEAT)),
        ("failover", lambda: failover.run()),
    ]


def run(out: Path, quick: bool = False, progress=sys.stderr) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(),
            "implementation": sys.executable,
            "cpus": os.cpu_count(),
            "commit": _commit(),
            "quick": quick,
        }
    }
    steps = plan(quick)
    for i, (name, bench) in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] bench {name} ...", file=progress, flush=True)
        began = time.monotonic()
        results[name] = bench()
        results[name]["wall_s"] = round(time.monotonic() - began, 1)
        (out / f"{name}.json").write_text(json.dumps(results[name], indent=2) + "\n")
        print(f"[{i}/{len(steps)}] {name} done in {results[name]['wall_s']} s", file=progress)
    results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    path = report.write(results, out)
    print(f"report: {path}", file=progress)
    return results


def render(results: dict) -> str:
    lines = ["benchmark targets:"]
    for target, measured, met in report.targets(results):
        lines.append(f"  {'met   ' if met else 'MISSED'}  {target}: {measured}")
    lines += ["against the floors measured in the same run (docs/performance.md):"]
    lines += [f"  {what}: {ratio}" for what, ratio in report.ratios(results)]
    return "\n".join(lines)
