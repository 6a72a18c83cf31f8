"""A three-host cluster in network namespaces, for `exchange bench cluster` and the
cluster tests:
each host has its own $EXCHANGE_HOME and its own supervisord (`exchange up --cluster
FILE --host NAME` run inside its namespace), and a fourth namespace holds the traders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from clients.bench.netns import Hosts
from services.common.codec import record_decoder
from services.common.wire import Accepted, Duplicate
from services.journal.segment import read_entries, segment_paths

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = str(Path(sys.executable).with_name("exchange"))
LAYOUT = {
    "a": ["etcd", "heartbeat", "journal", "matcher-a", "gateway", "marketdata"],
    "b": ["etcd", "heartbeat", "journal", "matcher-b", "gateway", "marketdata"],
    "c": ["etcd", "heartbeat", "journal"],
}
CLIENT = "x"  # the traders' host


class Cluster:
    def __init__(self, base: Path, security: str = "", extra: str = "") -> None:
        self.base = Path(base)
        self.hosts = Hosts(list(LAYOUT))
        self.security = security  # more [security] keys, as TOML lines
        self.extra = extra  # more TOML for the cluster file
        self.file = self.base / "cluster.toml"
        self.loads: list[subprocess.Popen] = []

    # -- life -------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.hosts.__enter__()
        try:
            self.hosts.add(CLIENT)
            self._write()
            self._keys()
            ups = [self._up(name) for name in LAYOUT]
            for name, up in zip(LAYOUT, ups, strict=True):
                _, err = up.communicate(timeout=180)
                if up.returncode != 0:
                    raise RuntimeError(f"host {name} did not come up: {err[-2000:]}")
            self.wait_primary()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for load in self.loads:
            if load.poll() is None:
                load.kill()
                load.wait(timeout=10)
        self.hosts.close()

    def home(self, name: str) -> Path:
        return self.base / name

    def env(self, name: str) -> dict[str, str]:
        return dict(
            os.environ,
            EXCHANGE_HOME=str(self.home(name)),
            EXCHANGE_CONFIG=str(self.file),
            EXCHANGE_HOST=name if name in LAYOUT else "a",
            PYTHONPATH=str(ROOT),
        )

    def _write(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        lines = [
            f'[security]\ncurve_dir = "{self.base / "keys"}"\n{self.security}\n',
            '[symbols.AAPL]\ntick = "0.01"\nreference = "170.00"\n',
            '[symbols.MSFT]\ntick = "0.01"\nreference = "420.00"\n',
        ]
        for name, services in LAYOUT.items():
            lines.append(
                f'[cluster.hosts.{name}]\naddress = "{self.hosts.address(name)}"\n'
                f"services = {json.dumps(services)}\n"
            )
        self.file.write_text("\n".join(lines) + self.extra)

    def _keys(self) -> None:
        subprocess.run(
            [EXCHANGE, "keys", "server"], env=self.env("a"), check=True,
            capture_output=True, timeout=60,
        )  # fmt: skip

    def _up(self, name: str) -> subprocess.Popen:
        argv = [EXCHANGE, "up", "--cluster", str(self.file), "--host", name]
        return subprocess.Popen(
            self.hosts.run(name, argv), env=self.env(name), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def start(self, name: str) -> None:
        """Power a host on again: its supervisord and services, as after a reboot."""
        up = self._up(name)
        _, err = up.communicate(timeout=180)
        if up.returncode != 0:
            raise RuntimeError(f"host {name} did not come up: {err[-2000:]}")

    def power_off(self, name: str) -> None:
        self.hosts.power_off(name)

    # -- looking ----------------------------------------------------------------

    def run(self, name: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.hosts.run(name, argv), env=self.env(name), capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip

    def status(self, name: str) -> dict:
        out = self.run(name, [EXCHANGE, "status", "--json"]).stdout
        try:
            return json.loads(out)
        except ValueError:
            return {"running": False}

    def primary(self, via: str | None = None) -> dict | None:
        """The live primary matcher's row of `exchange status` (asked on any host)."""
        for name in [via] if via else list(LAYOUT):
            status = self.status(name)
            rows = [s for s in status.get("services", []) if s["alive"]]
            epoch = status.get("epoch")
            for row in rows:
                if row["role"] == "primary" and row["epoch"] == epoch:
                    return row
        return None

    def wait_primary(self, timeout: float = 60, other_than: str = "", via: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.primary(via)
            if row and row["service"] != other_than:
                return row
            time.sleep(0.2)
        raise TimeoutError(f"no primary (other than {other_than!r}) within {timeout}s")

    def inside(self, via: str, *args: str, timeout: float = 120) -> dict:
        """``python -m clients.bench.inside ARGS`` in host ``via``; its JSON."""
        argv = [sys.executable, "-m", "clients.bench.inside", *args]
        out = self.run(via, argv, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"inside {via} {args}: {out.stderr[-2000:]}")
        return json.loads(out.stdout or "{}")

    def state(self, via: str = "c") -> dict:
        try:
            return self.inside(via, "state", timeout=30)
        except (RuntimeError, ValueError):
            return {}

    def gateways(self) -> str:
        return ",".join(f"tcp://{self.hosts.address(h)}:5555" for h in ("a", "b"))

    def load(
        self,
        name: str,
        seconds: float,
        rate: float = 100,
        gateways: str = "",
        where: str = CLIENT,
        silence: float = 1.0,
    ) -> Path:
        """A trader in host ``where`` (the client namespace); returns where it writes
        its acks."""
        out = self.base / f"load-{name}-{len(self.loads)}.json"
        argv = [sys.executable, "-m", "clients.bench.inside", "trader", "--gateways",
                gateways or self.gateways(), "--name", name, "--seconds", str(seconds),
                "--rate", str(rate), "--silence", str(silence), "--out", str(out)]  # fmt: skip
        self.loads.append(
            subprocess.Popen(self.hosts.run(where, argv), env=self.env(where), cwd=ROOT)
        )
        return out

    def wait_loads(self, timeout: float = 120) -> None:
        for load in self.loads:
            load.wait(timeout=timeout)
        self.loads = [load for load in self.loads if load.returncode is None]

    def records(self, name: str) -> list[tuple[int, int, bytes]]:
        """(seq, epoch, bytes) of every record in host ``name``'s journal (its archived
        segments too), read offline."""
        out = []
        journal = self.home(name) / "journal"
        for path in segment_paths(journal / "archive") + segment_paths(journal):
            for item in read_entries(path):
                if isinstance(item, tuple):
                    break
                out.append((item.seq, item.epoch, bytes(item.payload)))
        return out


def settle(cluster: Cluster, timeout: float = 60) -> dict:
    """Wait until every journal holds everything the primary sequenced; the state."""
    deadline = time.monotonic() + timeout
    while True:
        state = cluster.state()
        lasts = {h: (cluster.records(h) or [(0,)])[-1][0] for h in LAYOUT}
        if state and all(last == state["seq"] for last in lasts.values()):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"journals {lasts} never reached the primary's {state}")
        time.sleep(0.5)


def audit(cluster: Cluster, loads: list[Path]) -> dict:
    """Once the cluster stands still: whether the journals are byte-identical; how
    many acknowledged orders are missing from the journal or not at the seq and order
    id they were acknowledged with (``lost``), and how many orders were accepted more
    than once (``duplicated``); whether replaying a journal offline gives the live
    primary's state hash. Looks again if a record was sequenced meanwhile."""
    for _ in range(10):
        state = settle(cluster)
        result = _audit_at(cluster, loads, state)
        if result is not None:
            return result
        time.sleep(1)
    raise TimeoutError("the exchange never stood still long enough to compare")


def _audit_at(cluster: Cluster, loads: list[Path], state: dict) -> dict | None:
    journals = {h: cluster.records(h) for h in LAYOUT}
    first = next(iter(journals.values()))
    records = {seq: record_decoder.decode(raw) for seq, _, raw in first}
    accepted: dict[str, int] = {}
    for record in records.values():
        for event in record.events:
            if isinstance(event, Accepted):
                accepted[event.cl_ord_id] = accepted.get(event.cl_ord_id, 0) + 1
    lost = acked = 0
    for out in loads:
        for ack in json.loads(out.read_text())["acks"]:
            acked += 1
            record = records.get(ack["seq"])
            answers = [
                e.original if isinstance(e, Duplicate) else e
                for e in (record.events if record else [])
                if isinstance(e, Accepted | Duplicate)
            ]
            if (
                record is None
                or getattr(record.command, "cl_ord_id", None) != ack["cl_ord_id"]
                or [a.order_id for a in answers] != [ack["order_id"]]
                or accepted.get(ack["cl_ord_id"]) != 1
            ):
                lost += 1
    replay = subprocess.run(
        [EXCHANGE, "journal", "replay", str(cluster.home("c") / "journal"), "--json",
         "--config", str(cluster.file)],
        capture_output=True, text=True, timeout=120, env=cluster.env("c"),
    )  # fmt: skip
    replayed = json.loads(replay.stdout)
    if replayed["last_seq"] != state["seq"] or cluster.state().get("seq") != state["seq"]:
        return None
    differ = {}
    for host, journal in journals.items():
        for mine, theirs in zip(journal, first, strict=False):
            if mine != theirs:
                differ[host] = mine[0]
                break
        else:
            if len(journal) != len(first):
                differ[host] = min(len(journal), len(first)) + 1
    return {
        "differ_at": differ,  # host -> the first seq where its journal differs
        "acknowledged": acked,
        "lost": lost,
        "duplicated": sum(1 for n in accepted.values() if n > 1),
        "journals_identical": not differ,
        "replay_matches": replayed["state_hash"] == state["state_hash"],
        "seq": state["seq"],
    }
