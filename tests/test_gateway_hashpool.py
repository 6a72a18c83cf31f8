"""Password hashes run on idle-priority workers, raised when a hash has waited too long."""

from __future__ import annotations

import os
import time

import pytest

from services.gateway.hashpool import HashPool

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling only")


def policy(tid: int) -> int:
    return os.sched_getscheduler(tid)


def test_workers_are_idle_until_a_hash_starves_then_back_when_the_queue_empties():
    pool = HashPool(workers=1, starve_s=0.5)
    try:
        now = time.monotonic()
        assert pool.submit(now, sum, [1, 2]).result(timeout=5) == 3
        (tid,) = pool.tids
        assert policy(tid) == os.SCHED_IDLE
        pool.tend(now + 0.1, pending=1)  # waiting, not yet starved
        assert policy(tid) == os.SCHED_IDLE and not pool.raised
        pool.tend(now + 0.6, pending=1)  # starved: ordinary time-sharing at nice 19
        assert policy(tid) == os.SCHED_OTHER and pool.raised
        assert os.getpriority(os.PRIO_PROCESS, tid) == 19
        pool.tend(now + 0.7, pending=0)  # drained: idle again, and the clock restarts
        assert policy(tid) == os.SCHED_IDLE and not pool.raised
        assert pool.waiting_since is None
    finally:
        pool.shutdown()


def test_where_idle_cannot_be_undone_the_workers_never_go_idle(monkeypatch):
    from services.gateway import hashpool

    monkeypatch.setattr(hashpool, "idle_is_reversible", lambda: False)
    pool = HashPool(workers=1, starve_s=0.0)
    try:
        now = time.monotonic()
        assert pool.submit(now, sum, [1]).result(timeout=5) == 1
        (tid,) = pool.tids
        assert policy(tid) == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, tid) == 19
        pool.tend(now + 5, pending=1)  # nothing to raise
        assert not pool.raised and policy(tid) == os.SCHED_OTHER
    finally:
        pool.shutdown()
