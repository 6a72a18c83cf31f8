"""`exchange bench fix --json` runs end to end and reports both gateways (tiny run)."""

import json
import subprocess
import sys

from clients.bench.cluster import ROOT


def test_bench_fix_reports_fix_beside_native():
    run = subprocess.run(
        [sys.executable, "-m", "clients.cli", "bench", "fix", "--orders", "200", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    for side in ("fix", "native"):
        figures = result[side]
        assert figures["orders"] == 200
        assert figures["orders_per_s"] > 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
