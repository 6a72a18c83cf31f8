"""A three-host cluster in network namespaces, for tests and `exchange bench cluster`:
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

from services.journal.segment import read_entries, segment_paths
from tests.netns import Hosts

ROOT = Path(__file__).resolve().parents[1]
EXCHANGE = str(Path(sys.executable).with_name("exchange"))
LAYOUT = {
    "a": ["etcd", "heartbeat", "journal", "matcher-a", "gateway", "marketdata"],
    "b": ["etcd", "heartbeat", "journal", "matcher-b", "gateway", "marketdata"],
    "c": ["etcd", "heartbeat", "journal"],
}
CLIENT = "x"  # the traders' host


class Cluster:
    def __init__(self, base: Path, extra: str = "") -> None:
        self.base = Path(base)
        self.hosts = Hosts(list(LAYOUT))
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
            f'[security]\ncurve_dir = "{self.base / "keys"}"\n',
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

    def state(self, via: str = "c") -> dict:
        out = self.run(via, [sys.executable, "-m", "tests.cluster_probe", "hash"]).stdout
        return json.loads(out or "{}")

    def gateways(self) -> str:
        return ",".join(f"tcp://{self.hosts.address(h)}:5555" for h in ("a", "b"))

    def load(
        self, name: str, seconds: float, rate: float = 100, gateways: str = "", where=CLIENT
    ) -> Path:
        """A trader in host ``where`` (the client namespace); returns where it writes
        its acks."""
        out = self.base / f"load-{name}-{len(self.loads)}.json"
        argv = [sys.executable, "-m", "tests.cluster_load", "--gateways",
                gateways or self.gateways(), "--name", name, "--seconds", str(seconds),
                "--rate", str(rate), "--out", str(out)]  # fmt: skip
        self.loads.append(
            subprocess.Popen(self.hosts.run(where, argv), env=self.env(where), cwd=ROOT)
        )
        return out

    def wait_loads(self, timeout: float = 120) -> None:
        for load in self.loads:
            load.wait(timeout=timeout)
        self.loads = [load for load in self.loads if load.returncode is None]

    def records(self, name: str) -> list[tuple[int, int, bytes]]:
        """(seq, epoch, bytes) of every record in host ``name``'s journal, read offline."""
        out = []
        for path in segment_paths(self.home(name) / "journal"):
            for item in read_entries(path):
                if isinstance(item, tuple):
                    break
                out.append((item.seq, item.epoch, bytes(item.payload)))
        return out
