"""Process-level settings shared by the services that sit on the order path."""

from __future__ import annotations

import ctypes
import gc
import os

import zmq


def tune_gc() -> None:
    """Move everything built at boot out of the collector's sight and collect young
    objects less often. The order path allocates mostly untracked msgspec structs, so
    the remaining garbage is small lists; full collections over a large book would
    otherwise show up as latency spikes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def batch_io_threads(ctx: zmq.Context) -> None:
    """Have ``ctx`` start its I/O threads under ``SCHED_BATCH`` (set before its first
    socket: libzmq applies it as it starts them).

    Every send wakes the context's I/O thread, and a woken thread normally preempts
    the one that woke it: a loop sending a reply to each of several sessions then
    bounces between the two threads once per message. A batch thread is not run
    ahead of the running one on a busy core, so the loop finishes its sends and the
    I/O thread takes them all at once (on an idle core it still runs at once). Any
    process may choose it for its own threads; where it does not exist (not Linux)
    nothing changes. Measured in docs/performance.md, "How the order path is kept cheap"."""
    if hasattr(os, "SCHED_BATCH"):
        ctx.set(zmq.THREAD_SCHED_POLICY, os.SCHED_BATCH)


def die_with_parent(sig: int) -> None:
    """Have the kernel send this process ``sig`` when its parent dies (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing). A service started by a test or benchmark
    that is killed (a CI timeout, Ctrl-C twice) stops too instead of running on with
    nobody to stop it by PID, and a matcher's snapshot child never outlives the
    matcher whose memory it is writing out."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process's own symbols: libc's
        # prctl among them (find_library would run ldconfig in a subprocess)
        libc.prctl(1, sig)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the caller's own stop() remains
        pass
