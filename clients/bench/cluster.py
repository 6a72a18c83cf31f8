"""A whole exchange as real processes in a temp home, for tests and benchmarks.

Free loopback ports and ipc endpoints under the home, so several can run at once;
every process is stopped by its PID, never by name.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from services.common import config
from services.common.runtime import die_with_parent

ROOT = Path(__file__).resolve().parents[2]


LOWEST_PORT = 10_000
_given: set[int] = set()  # handed out by this process: never twice


def _ephemeral_low() -> int:
    """The bottom of the kernel's range for outgoing connections' local ports."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A loopback port free now, below the ephemeral range when there is room: a port
    from that range (what binding port 0 gives) can be taken by any outgoing
    connection's local end before the service binds it, and the service then fails
    with "Address already in use"."""
    top = _ephemeral_low()
    for _ in range(200 if top > LOWEST_PORT + 1_000 else 0):
        port = random.randrange(LOWEST_PORT, top)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(home: Path, **sections: dict) -> Path:
    """The default config with loopback ports that are free now and ipc endpoints in
    ``home``; ``sections`` override keys section by section (e.g. timings={...})."""
    raw = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    endpoints = raw.setdefault("endpoints", {})
    for key, value in config.Endpoints().items():
        value = endpoints.get(key, value)
        if value.startswith("tcp://"):
            endpoints[key] = f"tcp://127.0.0.1:{free_port()}"
    raw.setdefault("fix", {})["port"] = free_port()  # the FIX acceptor's, likewise
    ports = raw.setdefault("metrics", {}).setdefault("ports", {})
    for service in list(ports):  # several meshes at once: each its own free ports
        ports[service] = free_port()
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    (home / "run").mkdir(parents=True, exist_ok=True)
    path = home / "exchange.toml"
    path.write_text(_to_toml(raw))
    return path


def load(path: Path, home: Path) -> config.Config:
    return config.load(path, home=home)


def _to_toml(raw: dict) -> str:
    lines: list[str] = []

    def emit(prefix: str, table: dict) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_value(v)}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}" if prefix else k, v)

    emit("", raw)
    return "\n".join(lines) + "\n"


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Service:
    """One service process, stopped by PID when the test ends."""

    def __init__(
        self, name: str, config_path: Path, home: Path, *args: str, root: Path = ROOT
    ) -> None:
        self.root = root  # the checkout whose services run (another commit's, to compare)
        self.name = name
        self.config_path = config_path
        self.home = home
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log_path = home / "log" / f"{name}.log"

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, EXCHANGE_HOME=str(self.home), PYTHONPATH=str(self.root))
        module = self.name.split("-")[0]  # "matcher-b" runs services.matcher
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    f"services.{module}",
                    "--config",
                    str(self.config_path),
                    *self.args,
                ],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM),
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Mesh:
    """The whole exchange as real processes on loopback and ipc, in a temp home."""

    ORDER = ("heartbeat", "journal", "matcher-a", "marketdata", "gateway")

    def __init__(
        self, home: Path, standby: bool = False, root: Path = ROOT, **sections: dict
    ) -> None:
        self.home = home
        self.config_path = write_config(home, **sections)
        self.cfg = load(self.config_path, home)
        names = list(self.ORDER) + (["matcher-b"] if standby else [])
        self.services: dict[str, Service] = {}
        for name in names:
            args = ("--instance", name.split("-")[1]) if name.startswith("matcher") else ()
            self.services[name] = Service(name, self.config_path, home, *args, root=root)

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    def start(self, timeout: float = 30.0) -> Mesh:
        for service in self.services.values():
            service.start()
        self.wait_ready(timeout)
        return self

    def status(self):
        from clients.ops import query_status

        return query_status(self.cfg, 0.5)

    def wait_ready(self, timeout: float = 30.0) -> None:
        from clients.ops import mesh_ready

        try:
            wait_for(lambda: mesh_ready(self.status()), timeout, 0.1, "the mesh to come up")
        except AssertionError:
            raise AssertionError(self.logs()) from None

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{s.log()[-3000:]}" for n, s in self.services.items())

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()


def matcher_state(cfg, instance: str = "a", timeout: float = 5.0):
    """Ask a primary matcher for its StateInfo (role, epoch, seq, state hash)."""
    import zmq

    from services.common.bus import StateQuery
    from services.common.codec import bus_decoder, encode
    from services.common.config import matcher_endpoints

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(matcher_endpoints(cfg, instance)[0])
    try:
        sock.send(encode(StateQuery()))
        assert sock.poll(int(timeout * 1000)), "matcher did not answer"
        return bus_decoder.decode(sock.recv())
    finally:
        sock.close(0)


def cli_env(home: Path, config_path: Path, **extra: str) -> dict[str, str]:
    """The environment a client command needs to find this exchange."""
    return dict(
        os.environ,
        EXCHANGE_HOME=str(home),
        EXCHANGE_CONFIG=str(config_path),
        PYTHONPATH=str(ROOT),
        **extra,
    )


def exchange_cli(
    *args: str,
    home: Path,
    config_path: Path,
    env: dict | None = None,
    timeout: float = 60.0,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run the real `exchange` command (``input``: what is typed at it)."""
    return subprocess.run(
        [sys.executable, "-m", "clients.cli", *args],
        cwd=ROOT,
        env=cli_env(home, config_path, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
