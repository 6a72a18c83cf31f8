"""`exchange bench days`: simulated trading days of steady load; does memory stay flat?

Each day offers the same open-loop load as `bench sustained` (``--rate`` orders a
second for ``--seconds``, every order a new client order id), then ends the day as the
primary matcher's scheduler does: an ``end_of_day`` command for the engine's date
(sent to the primary's command endpoint, the way the scheduler inside it sequences one,
so the benchmark does not depend on the calendar), and waits for its ``day_ended``
record on the committed stream and for the statements writer's files of that day.
Then, with the exchange quiet, it reads the primary matcher's resident memory and
SIGKILLs the standby matcher, restarts it and times it until its beats say it stands
at the primary's sequence number again (a snapshot load plus the journal's tail).

The engine drops the exactly-once table of client order ids at each end of day, so
from day 2 on both figures should stay flat; an engine that keeps every id
(``--against`` a commit before the trading day) grows both with every day, and, having
no end of day, is only loaded.
"""

from __future__ import annotations

import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

import zmq

from clients.bench import sustained
from clients.bench.cluster import Mesh, Service
from clients.client import Client, session
from services.common import snapfile
from services.common.bus import TOPIC_BEAT, CommandBatch, EndOfDay
from services.common.codec import beat_decoder, encode
from services.common.config import matcher_endpoints
from services.common.frames import recv_frames
from services.common.stream import Follower, HistoryArchived
from services.common.wire import DayEnded

DAYS = 10
RATE = 2_000  # orders/s offered each day
SECONDS = 10.0  # of load each day
FIRST_DATE = 20250102
WAIT_S = 60.0


def next_date(date: int) -> int:
    day = datetime.date(date // 10_000, date // 100 % 100, date % 100)
    return int((day + datetime.timedelta(days=1)).strftime("%Y%m%d"))


class DayEnder:
    """Ends trading days as the scheduler does, and watches the committed stream for
    each ``day_ended`` record (the engine's date is the last one's ``next_date``)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        endpoints = mesh.cfg.endpoints
        self.follower = Follower(
            zmq.Context.instance(), endpoints["journal_pub"], endpoints["journal_read"]
        )
        self.date = 0  # the engine's trading date, as the journal says
        self.ended: list[DayEnded] = []

    def close(self) -> None:
        self.follower.close()

    def _read(self) -> None:
        try:
            records = self.follower.catch_up() or ()
        except HistoryArchived:  # from the journal's present on; the date meanwhile
            # from the feed's snapshot (0 from a commit before the trading day)
            self.follower.next_seq = self._present() + 1
            self.date = self._feed_date()
            records = self.follower.catch_up() or ()
        for record in records:
            for event in record.events:
                if type(event) is DayEnded:
                    self.ended.append(event)
                    self.date = event.next_date

    def _feed_date(self) -> int:
        cfg = self.mesh.cfg
        return session(cfg.endpoints["marketdata_snapshot"], next(iter(cfg.symbols))).trading_date

    def _present(self, timeout: float = 5.0) -> int:
        """The journal's committed seq, from its next beat."""
        sub, deadline = self.follower.sub, time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sub.poll(100):
                topic, payload = recv_frames(sub)
                if topic == TOPIC_BEAT:
                    return beat_decoder.decode(payload).seq
        raise RuntimeError("the journal does not beat")

    def end_day(self, timeout: float = WAIT_S) -> DayEnded:
        """End the engine's current day (the first: start it at FIRST_DATE); the
        ``day_ended`` event once committed. Sent again while it does not come (an
        ``end_of_day`` for a date that is over is ignored, so a repeat is harmless)."""
        self._read()
        date = self.date
        wanted = next_date(date) if date else FIRST_DATE
        seen = len(self.ended)
        deadline = time.monotonic() + timeout
        while True:
            self._send(EndOfDay(date, wanted))
            resend = time.monotonic() + 2.0
            while time.monotonic() < resend:
                self._read()
                done = [e for e in self.ended[seen:] if e.trading_date == date]
                if done:
                    return done[0]
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no day_ended for {date} in {timeout:.0f}s")
                time.sleep(0.05)

    def _send(self, command) -> None:
        status = self.mesh.status()
        primary = [
            s for s in (status.services if status else ()) if s.role == "primary" and s.alive
        ]
        if not primary:
            return
        instance = primary[0].service.split("-")[1]
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(matcher_endpoints(self.mesh.cfg, instance)[0])
        sock.send(encode(CommandBatch([command])))
        sock.close()


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _row(mesh: Mesh, name: str):
    status = mesh.status()
    return next((s for s in (status.services if status else ()) if s.service == name), None)


def standby_restart(mesh: Mesh, timeout: float = 120.0) -> tuple[float, str]:
    """SIGKILL the standby matcher, start it again, and the seconds until its beats
    stand at the primary's seq (taken at the kill; the exchange is quiet)."""
    status = mesh.status()
    roles = {s.service: s for s in status.services if s.alive}
    primary = next(s for s in roles.values() if s.role == "primary")
    standby = next(n for n in ("matcher-a", "matcher-b") if n != primary.service)
    target = primary.seq
    service: Service = mesh[standby]
    began = time.monotonic()
    service.kill()
    service.start()
    deadline = began + timeout
    while time.monotonic() < deadline:
        row = _row(mesh, standby)
        if row and row.alive and row.pid == service.pid and row.seq >= target:
            return round(time.monotonic() - began, 2), standby
        time.sleep(0.02)
    raise RuntimeError(
        f"{standby} did not catch up with seq {target} in {timeout:.0f}s; the end of its "
        f"log:\n{service.log()[-2000:]}"
    )


def _newest_snapshot_mb(home: Path) -> float | None:
    """The size of the matcher's newest snapshot: the state a restarted standby loads."""
    found = snapfile.newest_first(snapfile.directory(home, "matcher"))
    return round(found[0][1].stat().st_size / 2**20, 2) if found else None


def _statements_written(mesh: Mesh, date: int, timeout: float = WAIT_S) -> bool:
    index = Path(mesh.cfg.statements.directory) / f"{date:08d}" / "index.json"
    deadline = time.monotonic() + timeout
    while not index.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run(
    days: int = DAYS,
    rate: int = RATE,
    seconds: float = SECONDS,
    progress=sys.stderr,
    root: Path | None = None,
    end_of_day: bool = True,
) -> dict:
    """``days`` days against one fresh mesh (with its standby and statements writer);
    ``root``: another checkout's services, ``end_of_day`` False for an engine without
    one (only loaded, each "day" then just a stretch of load)."""
    home = Path(tempfile.mkdtemp(prefix="exd-", dir="/tmp"))
    unlimited = {
        "session_rate": 10**9,
        "account_rate": 10**9,
        "max_in_flight_per_account": 10**6,
    }
    where = {"root": root} if root else {}
    mesh = Mesh(
        home,
        standby=True,
        security=unlimited,
        risk={"opening_cash": "1000000000000.00"},
        # a standby snapshot every 10,000 records, unpaced: a restart replays a short
        # tail, so its time is the state's size, not where the last snapshot fell
        matcher={"snapshot_every": 10_000, "snapshot_cpu_share": 0},
        # the primary's retransmit buffer (bounded, 100,000 records by default) fills
        # within the first day, so what grows after it is the engine's state alone
        timings={"retransmit_buffer": 10_000},
        **where,
    )
    if end_of_day:
        mesh.services["statements"] = Service("statements", mesh.config_path, home, **where)
    ender = None
    rows = []
    try:
        mesh.start()
        with Client(mesh.cfg.endpoints["gateway"], timeout=30) as client:
            client.signup("load0a", sustained.PASSWORD)
            client.signup("load0b", sustained.PASSWORD)
        ender = DayEnder(mesh) if end_of_day else None
        if ender is not None:
            ender.end_day()  # the first day begins (unless a scheduler began it)
        for day in range(1, days + 1):
            print(f"  day {day}/{days}: {rate:,} orders/s for {seconds:g} s ...", file=progress,
                  flush=True)  # fmt: skip
            load = sustained.measure(mesh, rate, seconds, 1, day)
            ended = ender.end_day() if ender is not None else None
            written = _statements_written(mesh, ended.trading_date) if ended else None
            primary = next(s for s in mesh.status().services if s.role == "primary" and s.alive)
            memory = rss_mb(primary.pid)
            snapshot = _newest_snapshot_mb(home)
            restart_s, standby = standby_restart(mesh)
            row = {
                "day": day,
                "orders": load["accepted"],
                "matcher_rss_mb": memory,
                "standby_restart_s": restart_s,
                "snapshot_mb": snapshot,
                "trading_date": ended.trading_date if ended else None,
                "seq": primary.seq,
                "p99_ms": load["p99_ms"],
                "statements_written": written,
            }
            rows.append(row)
            print(
                f"    {row['orders']:,} orders, primary matcher {memory} MB, "
                f"snapshot {snapshot} MB, {standby} back in {restart_s} s"
                + (f", day {ended.trading_date} ended, statements {written}" if ended else ""),
                file=progress,
                flush=True,
            )
    finally:
        if ender is not None:
            ender.close()
        mesh.stop()
        shutil.rmtree(home, ignore_errors=True)
    later = rows[1:] or rows
    return {
        "rate": rate,
        "seconds": seconds,
        "end_of_day": end_of_day,
        "days": rows,
        # the spread from day 2 on, and the change from day 2 to the last: what "flat" means
        "rss_growth_mb": _growth(later, "matcher_rss_mb"),
        "restart_growth_s": _growth(later, "standby_restart_s"),
        "snapshot_growth_mb": _growth(later, "snapshot_mb"),
    }


def _growth(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return round(values[-1] - values[0], 2) if len(values) > 1 else None


def run_against(commit: str, days: int, rate: int, seconds: float, progress=sys.stderr) -> dict:
    """This checkout's days, then ``commit``'s (an engine without an end of day is
    only loaded: its memory and restart time show what the day's end bounds)."""
    from clients.bench.against import export

    other, sha = export(commit)
    try:
        has_day = "EndOfDay" in (other / "services" / "matcher" / "engine.py").read_text()
        print(f"against {sha[:12]} (end of day: {has_day})", file=progress, flush=True)
        before = run(days, rate, seconds, progress, root=other, end_of_day=has_day)
    finally:
        shutil.rmtree(other, ignore_errors=True)
    print("this checkout", file=progress, flush=True)
    this = run(days, rate, seconds, progress)
    return {**this, "commit": sha, "against": before}


def render(result: dict) -> str:
    lines = [
        f"{len(result['days'])} days of {result['rate']:,} orders/s for {result['seconds']:g} s"
        f" each (end of day: {result['end_of_day']})",
        f"{'day':>4} {'orders':>8} {'matcher MB':>11} {'snapshot MB':>12} {'restart s':>10} "
        f"{'p99 ms':>8}",
    ]
    sides = [("", result)] + ([("before", result["against"])] if "against" in result else [])
    for label, side in sides:
        if label:
            lines.append(f"before ({result['commit'][:12]}, end of day: {side['end_of_day']}):")
        for r in side["days"]:
            lines.append(
                f"{r['day']:>4} {r['orders']:>8,} {r['matcher_rss_mb']:>11} "
                f"{r['snapshot_mb']:>12} {r['standby_restart_s']:>10} {r['p99_ms']:>8.2f}"
            )
        lines.append(
            f"     from day 2: memory {side['rss_growth_mb']:+} MB, "
            f"snapshot {side['snapshot_growth_mb']:+} MB, restart {side['restart_growth_s']:+} s"
        )
    return "\n".join(lines)
