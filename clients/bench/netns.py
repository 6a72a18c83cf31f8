"""Hosts for tests: Linux network namespaces on one bridge, made and removed here.

Each host is a namespace with its own loopback and one veth link to a bridge that
lives in a namespace of its own, so nothing touches the machine's own network: every
address (10.77.0.x) exists only inside namespaces this module made. A host is cut off
by taking its link down on the bridge's side, and powered off by SIGKILLing every
process in its namespace (``ip netns pids``: only processes started in it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"xprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Hosts:
    """``names`` -> namespaces with addresses 10.77.0.1, .2, ... in that order."""

    def __init__(self, names: list[str]) -> None:
        self.prefix = f"x{os.getpid() % 100000}"
        self.names = list(names)
        self.bridge = f"{self.prefix}br"
        self.made: list[str] = []

    def ns(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def address(self, name: str) -> str:
        return f"{SUBNET}.{self.names.index(name) + 1}"

    def _link(self, name: str) -> str:
        return f"{self.prefix}{name}b"  # the bridge's end of the host's link

    def __enter__(self) -> Hosts:
        try:
            self._make(self.bridge)
            _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge, "link", "set", "br0", "up")
            for name in self.names:
                self.add(name)
        except BaseException:
            self.close()
            raise
        return self

    def add(self, name: str) -> None:
        """One more host on the bridge (a client machine, say)."""
        if name not in self.names:
            self.names.append(name)
        ns = self.ns(name)
        self._make(ns)
        inside = f"{self.prefix}{name}h"
        _ip("link", "add", inside, "netns", ns, "type", "veth",
            "peer", "name", self._link(name), "netns", self.bridge)  # fmt: skip
        _ip("-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", self.bridge, "link", "set", self._link(name), "master", "br0")
        _ip("-n", self.bridge, "link", "set", self._link(name), "up")

    def _make(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def run(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` as run inside host ``name``."""
        return ["ip", "netns", "exec", self.ns(name), *argv]

    def cut(self, name: str) -> None:
        _ip("-n", self.bridge, "link", "set", self._link(name), "down")

    def heal(self, name: str) -> None:
        _ip("-n", self.bridge, "link", "set", self._link(name), "up")

    def pids(self, name: str) -> list[int]:
        out = _ip("netns", "pids", self.ns(name), check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    def power_off(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILL every process in the host's namespace, and wait until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids(name)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise TimeoutError(f"host {name}: processes {pids} would not die")
            time.sleep(0.05)

    def close(self) -> None:
        for ns in reversed(self.made):
            name = ns[len(self.prefix) :]
            if name in self.names:
                with contextlib.suppress(TimeoutError):
                    self.power_off(name)
            _ip("netns", "del", ns, check=False)
        self.made.clear()

    def __exit__(self, *exc) -> None:
        self.close()
