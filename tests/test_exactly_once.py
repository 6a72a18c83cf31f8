"""The exactly-once table is split over dicts by a hash Python salts per process; the
state hash and snapshots must still come out the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.common.wire import Reject, Rejected
from services.matcher.state import SHARDS, ExactlyOnce

ROOT = Path(__file__).resolve().parents[1]

HASH_AFTER_FLOW = """
from clients.bench.flow import BENCH_RISK, bench_symbols, generate
from services.matcher.snapshot import capture, restore
_, _, engine = generate(commands=3_000, seed=7)
restored = restore(capture(engine, 0, 1), bench_symbols(), BENCH_RISK)
print(engine.state_hash(), restored.state_hash())
"""


def test_answers_and_arrival_order():
    table = ExactlyOnce()
    answers = [Rejected(1, f"id-{i}", Reject.BAD_QTY) for i in range(5 * SHARDS)]
    for answer in answers:
        assert table.first(answer.cl_ord_id) is None
        assert table.add(answer) is answer
    assert all(table.first(a.cl_ord_id) is a for a in answers)
    assert table.items() == answers
    assert sum(1 for shard in table.shards if shard) > 1  # really split
    again = ExactlyOnce(table.items())
    assert again.items() == answers
    assert all(again.first(a.cl_ord_id) == a for a in answers)


def test_state_hash_is_the_same_whatever_the_hash_salt():
    outputs = set()
    for salt in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=salt, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", HASH_AFTER_FLOW],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        assert out[0] == out[1]  # a snapshot restores the same state
        outputs.add(out[0])
    assert len(outputs) == 1
