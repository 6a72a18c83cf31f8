"""CPU taken by every process of a cluster's hosts, found by their ``EXCHANGE_HOME``.

The hosts of `exchange bench cluster` are network namespaces, not PID namespaces, so
every process of every host is in this machine's /proc; each was started with its
host's ``EXCHANGE_HOME`` (supervisord passes it on). Summing their CPU before and
after a rate gives what the whole cluster (journals, matchers, gateways, marketdata,
heartbeats, etcd, supervisord) spent per order, beside the one-host mesh's figure.
"""

from __future__ import annotations

import os
from pathlib import Path


def _program(cmdline: list[bytes]) -> str:
    """``journal`` for ``python -m services.journal``, else the executable's name."""
    args = [a.decode(errors="replace") for a in cmdline]
    if "-m" in args[:-1]:
        return args[args.index("-m") + 1].rsplit(".", 1)[-1]
    for arg in args[:2]:
        name = Path(arg).name
        if name and not name.startswith("python"):
            return name
    return Path(args[0]).name if args else "?"


def ticks_by_host(homes: dict[str, Path]) -> dict[str, int]:
    """CPU clock ticks (user + system) so far of each host's processes, keyed
    ``host/program``; ``homes`` maps each host to its ``EXCHANGE_HOME``."""
    wanted = {f"EXCHANGE_HOME={home}".encode(): host for host, home in homes.items()}
    ticks: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                host = next((wanted[v] for v in fh.read().split(b"\0") if v in wanted), None)
            if host is None:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                program = _program([a for a in fh.read().split(b"\0") if a])
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
        key = f"{host}/{program}"
        ticks[key] = ticks.get(key, 0) + int(fields[11]) + int(fields[12])
    return ticks
