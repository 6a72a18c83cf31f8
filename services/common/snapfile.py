"""Snapshot files: a service's state at a sequence number, written atomically.

Every service that rebuilds state from the journal (the matchers, the gateway,
marketdata) keeps its newest few snapshots in ``$EXCHANGE_HOME/snapshots/<service>/``
as ``<seq>.snap``, boots from the newest one that loads plus the journal's tail, and
so lets the journal archive every segment that all of them have snapshotted past.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import msgspec

from services.common.runtime import die_with_parent

SUFFIX = ".snap"
TEMP = ".tmp"
# a snapshot reaches the disk a chunk at a time, each synced before the next is written:
# one 10 MB fsync held the journal's fdatasync for up to 20 ms here (a 200 KB one, not
# at all), since both wait on the same virtual disk's queue
WRITE_CHUNK = 1 << 20
sync_data = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
SERVICES = ("matcher", "gateway", "marketdata")  # every reader that must not need seq 1
# readers that count once their directory exists on this host (the statements writer
# makes its own at its first start: it needs the records since its last day's end)
OPTIONAL = ("statements",)


def directory(home: Path, service: str) -> Path:
    return home / "snapshots" / service


def write(where: Path, seq: int, data: bytes, keep: int = 3) -> Path:
    """Write ``data`` as the snapshot at ``seq`` (temp file, fsync, rename, so a crash
    leaves the old set or the new one), then keep only the newest ``keep``."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{seq:020d}{SUFFIX}"
    tmp = where / f"{seq:020d}.{os.getpid()}{TEMP}"
    with tmp.open("wb") as fh:
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            fh.write(view[start : start + WRITE_CHUNK])
            fh.flush()
            sync_data(fh.fileno())
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    for old in sorted(where.glob(f"*{SUFFIX}"))[:-keep]:
        old.unlink()
    return path


def remove_stale_temps(where: Path) -> None:
    """Delete temp files whose writer is gone (killed mid-write: a stop, a crash, the
    parent's death), each named ``<seq>.<pid>.tmp``; a live writer's stays."""
    for tmp in where.glob(f"*{TEMP}"):
        try:
            pid = int(tmp.name.split(".")[1])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:  # someone else's live process: leave it
            pass


def newest_first(where: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every snapshot in ``where``, newest first."""
    found = []
    for path in where.glob(f"*{SUFFIX}"):
        try:
            found.append((int(path.stem), path))
        except ValueError:
            continue  # not one of ours
    return sorted(found, reverse=True)


def covered_seq(home: Path) -> int:
    """The last sequence number every journal reader has a snapshot at or past: the
    journal keeps what follows it (0 while any reader has none)."""
    seqs = []
    optional = [s for s in OPTIONAL if directory(home, s).is_dir()]
    for service in (*SERVICES, *optional):
        found = newest_first(directory(home, service))
        if not found:
            return 0
        seqs.append(min(seq for seq, _ in found))  # the oldest kept: a fallback if
        # the newest turns out damaged must still find its tail in the journal
    return min(seqs)


REFUSED = (ValueError, KeyError, msgspec.DecodeError, msgspec.ValidationError)


def newest_state(where: Path, restore, log=None):
    """(seq, ``restore(data)``) of the newest snapshot ``restore`` accepts (it raises
    one of ``REFUSED`` for a damaged one, which is skipped), or None."""
    for seq, path in newest_first(where):
        try:
            return seq, restore(path.read_bytes())
        except REFUSED as exc:
            if log is not None:
                log.warning("snapshot_refused", path=str(path), error=str(exc)[:200])
    return None


def _run_only_when_idle() -> None:
    """Put this process under ``SCHED_IDLE`` (else, where there is none, ``nice 19``).

    On this project's kernel (6.18, EEVDF) a ``nice 19`` snapshot child still held a
    CPU for its slice whenever an order-path thread woke there: in the 300 ms after
    each standby snapshot 12-17 % of orders took over 4 ms, against 1-3 % elsewhere in
    the same runs. A ``SCHED_IDLE`` task yields at once to any woken normal task, and
    the scheduler counts its CPU as idle when placing one: 4 % against 3 %."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


class Snapshots:
    """A service's snapshot schedule: the newest state that loads at boot, then a new
    snapshot every ``every`` records (0: never).

    The service's loop only captures the state (it must, to be consistent); writing,
    fsyncing and renaming happen on a thread, because done inline they held every
    order in flight for as long as the disk took. A state too large to capture on the
    loop is written by a forked child instead (``fork_write``)."""

    def __init__(
        self, home: Path, service: str, every: int, log, keep: int = 3, cpu_share: float = 1.0
    ) -> None:
        self.where = directory(home, service)
        self.every = every
        self.cpu_share = cpu_share  # of one CPU, that forked writers may take on average
        self.keep = keep
        self.log = log
        self.last = 0
        self._writer: threading.Thread | None = None
        self._child: tuple[int, int] | None = None  # (pid, seq) of a forked writer
        self._next_fork = 0.0  # monotonic time before which no writer is forked
        remove_stale_temps(self.where)

    def load(self, restore):
        """``restore(data)`` of the newest snapshot it accepts, or None."""
        found = newest_state(self.where, restore, self.log)
        if found is None:
            return None
        self.last, state = found
        self.log.info("snapshot_loaded", seq=self.last)
        return state

    def due(self, seq: int) -> bool:
        """Whether to snapshot at ``seq``: ``every`` records since the last one, and no
        forked writer at work nor resting (see ``fork_write``)."""
        if self.writing() or not self.every or seq - self.last < self.every:
            return False
        return time.monotonic() >= self._next_fork

    def write(self, seq: int, data: bytes) -> None:
        """Write ``data`` as the snapshot at ``seq`` in the background (one at a time)."""
        self._join_thread()
        self.last = seq
        self._writer = threading.Thread(
            target=self._write, args=(seq, data), name="snapshot", daemon=True
        )
        self._writer.start()

    def _write(self, seq: int, data: bytes) -> None:
        try:
            path = write(self.where, seq, data, self.keep)
        except OSError as exc:  # the journal keeps every segment until one succeeds
            self.log.error("snapshot_failed", seq=seq, error=str(exc))
            return
        self.log.info("snapshot_written", seq=seq, path=str(path))

    def fork_write(self, seq: int, produce: Callable[[], bytes]) -> None:
        """Write ``produce()`` as the snapshot at ``seq`` from a forked child.

        The child's memory is the parent's at the fork, copied only where the parent
        writes after it (as Redis saves), so the state is consistent without the
        parent's loop capturing or encoding anything: it pays only the fork (about
        6 ms for a 200 MB process here). The child runs only on an otherwise idle CPU
        (``_run_only_when_idle``), so the capture's CPU (0.3 s at 300,000 client order
        ids) comes from idle time rather than from the processes on the order path
        (not free on this VM all the same: hence ``cpu_share``), and it dies with its
        parent. It touches no socket, lock or logger of the parent's and leaves by
        ``_exit``; the parent logs the outcome when it reaps the child (``due``,
        ``close``), and forks the next one no sooner than its CPU time divided by
        ``cpu_share`` after it (``[matcher] snapshot_cpu_share``). The
        engine's state only grows (every client order id), so a fixed interval would
        make each snapshot dearer than the last; this keeps their cost a fixed share
        of a CPU however long the exchange runs, and spaces them further apart as the
        state grows."""
        if self.writing():
            return  # one writer at a time (``due`` says so too)
        self._join_thread()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:  # no memory or process slot: the standby carries on
            self.log.error("snapshot_failed", seq=seq, error=str(exc))
            self.last = seq  # tried again after another ``every`` records
            return
        if pid == 0:
            code = 1
            try:
                die_with_parent(signal.SIGKILL)
                if os.getppid() != parent:  # it died before the line above took hold
                    os._exit(code)
                _run_only_when_idle()
                gc.disable()  # a short-lived copy: its garbage goes when it exits
                write(self.where, seq, produce(), self.keep)
                code = 0
            except BaseException:  # noqa: BLE001 - the parent sees only the exit code
                traceback.print_exc()  # onto the service's stderr, its log
            finally:
                os._exit(code)
        self.last = seq
        self._child = (pid, seq)

    def writing(self, block: bool = False) -> bool:
        """Whether a forked writer is still at work (with ``block``, wait for it);
        reaps and logs it once done. Cheap without one: call it as often as liked."""
        if self._child is None:
            return False
        pid, seq = self._child
        done, status, usage = os.wait4(pid, 0 if block else os.WNOHANG)
        if not done:
            return True
        self._child = None
        cpu = usage.ru_utime + usage.ru_stime
        if self.cpu_share > 0:  # 0: no pacing
            self._next_fork = time.monotonic() + cpu / self.cpu_share
        if os.waitstatus_to_exitcode(status) == 0:
            self.log.info("snapshot_written", seq=seq, forked=True, cpu_s=round(cpu, 3))
        else:  # the journal keeps every segment until one succeeds
            self.log.error("snapshot_failed", seq=seq, status=status)
        return False

    def _join_thread(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def close(self) -> None:
        """Wait for a snapshot being written by the thread; stop a forked writer (a
        SCHED_IDLE child could take long on a busy host, and a stop should not wait:
        its temp file is removed at the next start, the older snapshots remain)."""
        self._join_thread()
        if self._child is not None:
            os.kill(self._child[0], signal.SIGKILL)  # unreaped, so the pid is still ours
            self.writing(block=True)
