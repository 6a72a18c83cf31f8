"""Password hashes on worker threads that yield the CPU to the order path.

A scrypt hash takes tens of milliseconds of a core. On a host where the gateway,
matcher and journal share two cores, a log-in flood's hashes (even the few a second
the log-in guard lets through) took every order's latency with them, and at nice 19
they still did on this kernel's scheduler. So the workers run as SCHED_IDLE: a hash
runs only on a core nothing else wants. An idle thread can starve on a host that is
never idle, so when a hash has waited ``starve_s`` the gateway's loop raises the
workers to ordinary time-sharing at nice 19 until the queue is empty again: log-ins
slow down under load, they never stop. Where a thread may not leave SCHED_IDLE (no
CAP_SYS_NICE, RLIMIT_NICE 0: containers, unprivileged users) the workers run at nice
19 instead and are never made idle. Off Linux nothing changes priority.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor


def _set_idle(tid: int, idle: bool) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if idle:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, tid, 19)  # a thread's nice, on Linux


def idle_is_reversible() -> bool:
    """Whether a thread here may leave SCHED_IDLE again: that needs CAP_SYS_NICE or an
    RLIMIT_NICE that allows it (a container or an unprivileged user may have neither).
    Tried on a throwaway thread; where it is not, the workers never go idle."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    result: list[bool] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, name="idle-probe")
    thread.start()
    thread.join()
    return bool(result and result[0])


class HashPool:
    def __init__(self, workers: int = 2, starve_s: float = 1.0) -> None:
        self.starve_s = starve_s
        # where idle cannot be undone, the workers stay at nice 19 and are never raised
        self.idle_ok = idle_is_reversible()
        self.tids: list[int] = []
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="passwords", initializer=self._started
        )
        self.waiting_since: float | None = None  # when the queue last became non-empty
        self.raised = False

    def _started(self) -> None:
        tid = threading.get_native_id()
        with self._lock:  # a worker started while the pool is raised starts raised
            _set_idle(tid, self.idle_ok and not self.raised)
            self.tids.append(tid)

    def submit(self, now: float, fn, *args) -> Future:
        if self.waiting_since is None:
            self.waiting_since = now
        return self.pool.submit(fn, *args)

    def tend(self, now: float, pending: int) -> None:
        """Each loop turn with hashes queued (``pending``: how many): raise the workers
        once the queue has waited ``starve_s``, lower them when it is empty."""
        if not pending:
            self.waiting_since = None
            if self.raised:
                self._raise(False)
        elif (
            self.idle_ok
            and not self.raised
            and self.waiting_since is not None
            and now - self.waiting_since >= self.starve_s
        ):
            self._raise(True)

    def _raise(self, raised: bool) -> None:
        with self._lock:
            self.raised = raised
            for tid in self.tids:
                _set_idle(tid, not raised)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
