"""`exchange bench sustained --against COMMIT`: this checkout's mesh and another
commit's, alternating on the same host in one run.

On a shared host a figure measured an hour earlier says little; two builds measured
turn about within minutes share the same interpreter speed, steal and neighbours. The
other commit is exported (``git archive``) to a temporary directory, its compiled
engine built there if it has one, and its services run from it with this checkout's
load, config and measurements: each round starts a fresh mesh of the other commit,
then one of this checkout (fsync on, the given rates once each, no relay), and each
side's figures per rate are its median round by p99, as ``--repeat`` does for one side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from clients.bench import sustained
from clients.bench.cluster import ROOT


def export(commit: str, build: bool = True) -> tuple[Path, str]:
    """(a directory holding ``commit``'s tree, its full hash); with ``build``, its
    compiled engine built when it has one (its own build, so the comparison is of the
    two builds `make` gives)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    where = Path(tempfile.mkdtemp(prefix="exs-against-", dir="/tmp"))
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    if build and (where / "services" / "matcher" / "compiled.py").exists():
        subprocess.run(
            [sys.executable, "-c", "from services.matcher.compiled import build; build()"],
            cwd=where,
            env={**os.environ, "PYTHONPATH": str(where)},
            capture_output=True,
            check=False,  # without a build its pure engine runs, as it would there
        )
    return where, sha


def run(
    commit: str,
    rates=(10_000, None),
    duration: float = sustained.DURATION_S,
    processes: int = 1,
    rounds: int = 3,
    progress=sys.stderr,
) -> dict:
    other, sha = export(commit)
    sides: dict[str, list[dict]] = {"against": [], "this": []}
    try:
        for k in range(rounds):
            for side, root in (("against", other), ("this", None)):
                print(f"round {k + 1}/{rounds}: {side}", file=progress, flush=True)
                done = sustained.run_mesh(
                    True, rates, duration, processes, progress, floor=False, root=root
                )
                sides[side].append(done)
    finally:
        shutil.rmtree(other, ignore_errors=True)

    def medians(runs: list[dict]) -> list[dict]:
        return [sustained.median_run([r["rates"][i] for r in runs]) for i in range(len(rates))]

    this, against = medians(sides["this"]), medians(sides["against"])
    return {
        "commit": sha,
        "duration_s": duration,
        "processes": processes,
        "rounds": rounds,
        "rates": this,
        "against": against,
        "max_orders_per_s": max(r["achieved_per_s"] for r in this),
        "against_max_orders_per_s": max(r["achieved_per_s"] for r in against),
    }


def render(result: dict) -> str:
    lines = [
        f"this checkout against {result['commit'][:12]}, {result['rounds']} alternating "
        f"rounds, fsync on, {result['duration_s']:g} s per rate: each side's median round",
        f"{'side':>8} {'offered/s':>10} {'achieved/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'services CPU µs/order (total; by service)':>30}",
    ]
    for side in ("against", "rates"):
        for r in result[side]:
            cpu = r.get("service_cpu_us", {})
            by = ", ".join(f"{k} {v:g}" for k, v in cpu.items() if k != "total")
            offered = f"{r['offered_per_s']:,}" if r["offered_per_s"] else "max"
            lines.append(
                f"{'before' if side == 'against' else 'this':>8} {offered:>10} "
                f"{r['achieved_per_s']:>11,} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                f"{sustained.one_decimal(cpu.get('total')):>6}; {by}"
            )
    return "\n".join(lines)
